"""A minimal HTTP/1.1 client over ``_socket``: one request per connection.

``http.client`` costs ~20 ms to import here (email, re, ...); silod speaks a small subset of
HTTP — one request, a JSON body, an answer framed by Content-Length, chunked transfer encoding
or the end of the connection — and that is all this module reads and writes. Imports only
``_socket``, ``os``, silo.errors and silo.schema.jsonio.

Connection errors are translated here, once, into :class:`silo.errors.Unavailable` (the cause
kept); answers with a non-2xx status become the error silod sent (``silo.errors.from_wire``).
"""

from __future__ import annotations

import _socket
import os

from silo.errors import SiloError, Unavailable, from_wire
from silo.schema import jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from typing import Any

DEFAULT_HOST = "unix:///run/silo/silod.sock"

_RECV = 65536
_MAX_LINE = 65536
# Error class by HTTP status, for answers that carry no error document (a proxy, a crash).
_CODE_BY_STATUS = {400: "invalid_argument", 404: "not_found", 409: "invalid_state",
                   501: "not_supported", 503: "unavailable", 504: "timeout"}
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(value: str) -> str:
    """Percent-encode ``value`` for a path segment or a query value (RFC 3986 unreserved kept)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in value.encode())


def query(params: list[tuple[str, str]]) -> str:
    """``?k=v&k=v`` from (name, value) pairs, or "" when there are none."""
    if not params:
        return ""
    return "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in params)


class Address:
    """Where silod listens: a unix socket path or a TCP ``host:port``.

    Accepted spellings: ``unix:///run/silo/silod.sock``, ``/run/silo/silod.sock``,
    ``tcp://127.0.0.1:PORT`` and silod's own ``--listen`` form ``tcp:127.0.0.1:PORT``."""

    __slots__ = ("host", "path", "port")

    def __init__(self, spec: str) -> None:
        self.path = ""
        self.host = ""
        self.port = 0
        if spec.startswith("unix://"):
            self.path = spec[len("unix://"):]
        elif spec.startswith("/"):
            self.path = spec
        elif spec.startswith(("tcp://", "tcp:")):
            rest = spec[len("tcp://"):] if spec.startswith("tcp://") else spec[len("tcp:"):]
            host, sep, port = rest.rstrip("/").rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise Unavailable(f"SILO_HOST: {spec!r} is not tcp://HOST:PORT")
            self.host, self.port = host.strip("[]"), int(port)
        else:
            raise Unavailable(f"SILO_HOST: {spec!r} is not unix:///PATH, /PATH or "
                              "tcp://HOST:PORT")
        if self.path == "" and not self.host:
            raise Unavailable(f"SILO_HOST: {spec!r} names no socket")

    def __str__(self) -> str:
        return self.path if self.path else f"{self.host}:{self.port}"

    def connect(self, timeout: float | None) -> _socket.socket:
        if self.path:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            target: Any = self.path
        else:
            family = _socket.AF_INET6 if ":" in self.host else _socket.AF_INET
            sock = _socket.socket(family, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            target = (self.host, self.port)
        sock.settimeout(timeout)
        try:
            sock.connect(target)
        except OSError as err:
            sock.close()
            raise self._unavailable(err) from err
        return sock

    def _unavailable(self, err: OSError) -> Unavailable:
        if self.path:
            if isinstance(err, (FileNotFoundError, ConnectionRefusedError)):
                return Unavailable(f"silod is not running (no socket at {self.path})")
            if isinstance(err, PermissionError):
                return Unavailable(f"cannot reach silod at {self.path}: permission denied "
                                   "(the socket is root's)")
        elif isinstance(err, ConnectionRefusedError):
            return Unavailable(f"silod is not running (nothing listens on {self})")
        return Unavailable(f"cannot reach silod at {self}: {err.strerror or err}")


class Response:
    """The status line and headers of an answer, with its body still on the connection.

    The body is read once: :meth:`read` (whole) or :meth:`iter_lines` (as it arrives)."""

    def __init__(self, conn: _Conn, status: int, reason: str, headers: dict[str, str]) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers

    def _chunks(self) -> Iterator[bytes]:
        conn = self._conn
        if self.status in (204, 304) or 100 <= self.status < 200:
            return
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                line = conn.readline()
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise conn.broken(f"bad chunk size {size_text[:20]!r}") from None
                if size == 0:
                    while conn.readline() not in (b"", b"\r\n", b"\n"):
                        pass  # trailers
                    return
                data = conn.read_exact(size)
                conn.readline()  # the CRLF after the chunk
                yield data
        elif "content-length" in self.headers:
            try:
                left = int(self.headers["content-length"])
            except ValueError:
                raise conn.broken("bad Content-Length") from None
            while left > 0:
                data = conn.read_some(left)
                left -= len(data)
                yield data
        else:
            while True:
                data = conn.read_some(_RECV)
                if not data:
                    return
                yield data

    def read(self) -> bytes:
        try:
            return b"".join(self._chunks())
        finally:
            self.close()

    def iter_lines(self) -> Generator[bytes, None, None]:
        """The body split at newlines, each line as soon as it is complete (JSON lines)."""
        pending = b""
        try:
            for data in self._chunks():
                pending += data
                if b"\n" not in pending:
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line
            if pending.strip():
                yield pending
        finally:
            self.close()

    def close(self) -> None:
        self._conn.close()


class _Conn:
    """A connected socket with a read buffer."""

    def __init__(self, sock: _socket.socket, where: Address) -> None:
        self.sock = sock
        self.where = where
        self.buf = b""

    def broken(self, why: str) -> Unavailable:
        self.close()
        return Unavailable(f"silod at {self.where}: broken answer: {why}")

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(_RECV)
        except TimeoutError as err:
            self.close()
            from silo.errors import Timeout

            raise Timeout(f"silod at {self.where} did not answer in time") from err
        except OSError as err:
            self.close()
            raise Unavailable(f"silod at {self.where}: connection lost: "
                              f"{err.strerror or err}") from err

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            if len(self.buf) > _MAX_LINE:
                raise self.broken("header line too long")
            data = self._recv()
            if not data:
                line, self.buf = self.buf, b""
                return line
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_some(self, limit: int) -> bytes:
        if not self.buf:
            self.buf = self._recv()
        data, self.buf = self.buf[:limit], self.buf[limit:]
        return data

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self._recv()
            if not data:
                raise self.broken("connection closed in the middle of the body")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def request(where: Address, method: str, path: str, body: Any = None,
            timeout: float | None = None) -> Response:
    """Send one request and read the answer's head; a non-2xx answer is raised as the error
    silod sent. ``body``, when not None, goes as JSON."""
    head = [f"{method} {path} HTTP/1.1", "Host: silod", "User-Agent: silo-client",
            "Accept: application/json", "Connection: close"]
    payload = b""
    if body is not None:
        payload = jsonio.dumps(body).encode()
        head.append("Content-Type: application/json")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(payload)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    sock = where.connect(timeout)
    conn = _Conn(sock, where)
    try:
        sock.sendall(data)
    except OSError as err:
        conn.close()
        raise Unavailable(f"silod at {where}: connection lost: {err.strerror or err}") from err
    while True:
        status_line = conn.readline()
        if not status_line:
            raise conn.broken("connection closed before an answer")
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise conn.broken(f"bad status line {status_line[:60]!r}")
        headers: dict[str, str] = {}
        while True:
            line = conn.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if status != 100:
            break
    resp = Response(conn, status, parts[2] if len(parts) > 2 else "", headers)
    if not 200 <= status < 300:
        raise error_of(resp, resp.read())
    return resp


def error_of(resp: Response, body: bytes) -> SiloError:
    """The error an answer carries (``{"Code", "Message", ...}``), or one made from its status."""
    try:
        wire = jsonio.loads(body, "answer")
    except SiloError:
        wire = None
    if isinstance(wire, dict) and isinstance(wire.get("Code"), str):
        return from_wire({k: str(v) for k, v in wire.items()})
    text = body.decode("utf-8", "replace").strip()[:200]
    return from_wire({
        "Code": _CODE_BY_STATUS.get(resp.status, "internal"),
        "Message": f"silod answered {resp.status} {resp.reason}" + (f": {text}" if text else ""),
    })


def decode(body: bytes) -> Any:
    """The JSON document of an answer body (None when the body is empty)."""
    if not body.strip():
        return None
    try:
        return jsonio.loads(body, "silod's answer")
    except SiloError as err:  # InvalidArgument would blame the caller's request
        from silo.errors import Internal

        raise Internal(str(err)) from err


def default_host() -> str:
    return os.environ.get("SILO_HOST") or DEFAULT_HOST
