"""silod's HTTP/1.1 server: JSON over a unix socket (and loopback TCP for tests and fuzzing).

Owns the listening sockets, the framing (Content-Length, chunked transfer, keep-alive, the body
size limit), a small router from ``(method, "/v1/things/{id}")`` to handlers, and the one place
where :mod:`silo.errors` become HTTP statuses (the table of docs/api.md). It knows nothing about
compute systems: :mod:`silo.service.app` binds routes to the compute service.

A handler takes a :class:`Request` and returns a :class:`Response` (one JSON document, or none
for 204) or a :class:`Stream` (JSON lines sent with chunked transfer as the iterator yields
them). Whatever a handler raises becomes an error answer; nothing a client sends stops the
server.

Imports only :mod:`silo.errors` and the standard library.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import logging
import os
import select
import socket
import socketserver
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from silo.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    NotSupported,
    SiloError,
    Unavailable,
    invalid,
)

log = logging.getLogger("silod.http")

MAX_BODY = 1 << 20          # bytes; compute-system documents are a few KiB
IDLE_TIMEOUT = 300.0        # seconds a kept-alive connection may sit idle between requests
STREAM_CHECK_INTERVAL = 1.0  # seconds between checks that a quiet stream's client is still there
JSON = "application/json"
_MAX_TRAILERS = 100
_DISCARD_MAX = 16 << 20     # an oversized body up to this is read and dropped after the 413
_DISCARD_TIMEOUT = 2.0
JSON_LINES = "application/x-ndjson"

# docs/api.md: the HTTP status of each error category.
STATUS_BY_CODE: dict[str, int] = {
    "invalid_argument": 400,
    "not_found": 404,
    "already_exists": 409,
    "invalid_state": 409,
    "not_supported": 501,
    "unavailable": 503,
    "timeout": 504,
    "internal": 500,
}

# Errors the HTTP layer itself answers (bad framing, unknown path), by status, with the
# category a client's from_wire() turns them into.
_CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_argument",
    404: "not_found",
    405: "not_supported",
    408: "timeout",
    411: "invalid_argument",
    413: "invalid_argument",
    414: "invalid_argument",
    415: "invalid_argument",
    431: "invalid_argument",
    500: "internal",
    501: "not_supported",
    505: "not_supported",
}


# ---------------------------------------------------------------------------------------------
# Requests, answers, routes


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str]             # from the route's {placeholders}, percent-decoded
    query: Mapping[str, list[str]]        # every value of every query parameter, in order
    headers: Message
    body: bytes = b""

    def json(self) -> Any:
        """The body as a JSON value; None when the body is empty.

        Rejects (400, field "body") what is not one strict JSON value in UTF-8: syntax errors,
        NaN and Infinity, and objects that repeat a key (which one would win is a guess).
        """
        if not self.body.strip():
            return None
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise invalid("body", f"not UTF-8: {err}") from None
        try:
            return json.loads(text, object_pairs_hook=_unique_keys,
                              parse_constant=_no_constant)
        except json.JSONDecodeError as err:
            raise invalid("body", f"not valid JSON: {err}") from None
        except RecursionError:
            raise invalid("body", "not valid JSON: nested too deeply") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise invalid("body", f"not valid JSON: key {key!r} appears twice")
        doc[key] = value
    return doc


def _no_constant(name: str) -> Any:
    raise invalid("body", f"not valid JSON: {name} is not a JSON number")


@dataclass
class Response:
    """One JSON document (``document=None`` with 204: no body)."""

    status: int = 200
    document: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    """JSON lines sent as the iterator yields them, with chunked transfer.

    The iterator is closed when the client leaves or the answer ends; if it has a
    ``get(timeout)`` (None when nothing came in time, StopIteration once closed), a departed
    client is noticed while the stream is quiet, not only at the next write. Errors it raises
    are not special: the status line is already sent, so the connection is cut without the
    last chunk and the client sees a truncated answer. Check arguments (and raise NotFound)
    before returning the Stream.
    """

    items: Iterator[Any]
    status: int = 200
    content_type: str = JSON_LINES


Handler = Callable[[Request], "Response | Stream"]


class MethodNotAllowed(NotSupported):
    """The path exists but not with this method (405, with Allow)."""

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"method {method} is not allowed here (allowed: {', '.join(allowed)})")
        self.allowed = allowed


class BodyTooLarge(InvalidArgument):
    """The request body exceeds the server's limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than {limit} bytes", field="body")


class Router:
    """``(method, pattern)`` → handler; a pattern's ``{name}`` matches one path segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, tuple[str, ...], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        segments = _split(pattern)
        for other_method, other, _ in self._routes:
            if other_method == method and other == segments:
                raise ValueError(f"route {method} {pattern} is declared twice")
        self._routes.append((method.upper(), segments, handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and the path's parameters; NotFound or MethodNotAllowed. A pattern with
        more literal segments wins over one with placeholders (``/v1/images/pull`` is not the
        image ``pull`` of ``/v1/images/{ref}``)."""
        segments = tuple(unquote(s, errors="strict") for s in _split(path))
        found: list[tuple[int, str, Handler, dict[str, str]]] = []
        for route_method, pattern, handler in self._routes:
            params = _match(pattern, segments)
            if params is not None:
                found.append((len(pattern) - len(params), route_method, handler, params))
        best = max((literal for literal, _, _, _ in found), default=0)
        allowed: list[str] = []
        for literal, route_method, handler, params in found:
            if literal != best:
                continue
            if route_method == method:
                return handler, params
            allowed.append(route_method)
        if allowed:
            raise MethodNotAllowed(method, sorted(set(allowed)))
        raise NotFound(f"no such path: {path}")


class Unready(Router):
    """Answers every request with 503 (silod is starting: the socket is claimed, reconcile runs)."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        raise Unavailable(self.reason)


def _split(path: str) -> tuple[str, ...]:
    if not path.startswith("/"):
        raise NotFound(f"no such path: {path}")
    return tuple(path[1:].split("/"))


def _match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def _encode(document: Any, status: int) -> bytes:
    """The body of an answer: compact JSON and a newline; nothing for 204 or a None document."""
    if document is None or status in (204, 304):
        return b""
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def error_status(err: SiloError) -> int:
    if isinstance(err, MethodNotAllowed):
        return 405
    if isinstance(err, BodyTooLarge):
        return 413
    return STATUS_BY_CODE.get(err.code, 500)


# ---------------------------------------------------------------------------------------------
# The connection handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive; every answer is framed
    server_version = "silod"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _Listener
    _headers_buffer: list[bytes]      # BaseHTTPRequestHandler's, written by flush_headers()
    _unread = 0                       # bytes of a refused body still on the wire

    # -- request loop --------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414, "request line too long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # answered the error itself, through send_error
                return
            if self.request_version == "HTTP/0.9":
                self.send_error(505, "HTTP/0.9 is not supported")
                return
            self._unread = 0
            self._serve()
            self.wfile.flush()
            if self._unread:
                self._discard(self._unread)
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it.
        try:
            length = self._content_length()
        except InvalidArgument as err:
            self._send_error_document(400, err.to_wire(), close=True)
            return False
        if length is not None and length > self.server.max_body:
            self._send_error_document(413, BodyTooLarge(self.server.max_body).to_wire(),
                                      close=True)
            return False
        return super().handle_expect_100()

    def _serve(self) -> None:
        try:
            try:
                body = self._read_body()
            except SiloError:
                # The rest of the body is unread: the connection cannot carry another request.
                self.close_connection = True
                raise
            request, handler = self._route(body)
            answer = handler(request)
            if not isinstance(answer, Stream):
                data = _encode(answer.document, answer.status)
        except SiloError as err:
            self._send_silo_error(err)
            return
        except Exception:
            log.exception("%s %s failed", self.command, self.path)
            self._send_error_document(500, {"Code": "internal",
                                            "Message": "internal error (see silod's log)"})
            return
        if isinstance(answer, Stream):
            self._send_stream(answer)
        else:
            self._write(answer.status, data, answer.headers)

    def _discard(self, length: int) -> None:
        # A client that sends its whole body before reading (most do) would meet a reset
        # instead of the 413 if the connection closed under it: read and drop a bounded amount.
        if length > _DISCARD_MAX:
            return
        self.connection.settimeout(_DISCARD_TIMEOUT)
        while length > 0:
            data = self.rfile.read(min(length, 65536))
            if not data:
                return
            length -= len(data)

    def _route(self, body: bytes) -> tuple[Request, Handler]:
        url = urlsplit(self.path)
        try:
            handler, params = self.server.router.match(self.command, url.path)
        except UnicodeDecodeError:
            raise NotFound(f"no such path: {url.path} (not UTF-8)") from None
        try:
            query = parse_qs(url.query, keep_blank_values=True, errors="strict",
                             max_num_fields=100)
        except UnicodeDecodeError:
            raise invalid("query", "not UTF-8") from None
        except ValueError as err:  # too many fields
            raise invalid("query", str(err)) from None
        request = Request(method=self.command, path=url.path, params=params, query=query,
                          headers=self.headers, body=body)
        return request, handler

    # -- body ------------------------------------------------------------------------------------

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit() or not value.isascii():
            raise invalid("Content-Length", f"not a length: {value!r}")
        return int(value)

    def _read_body(self) -> bytes:
        limit = self.server.max_body
        te = self.headers.get("Transfer-Encoding", "").strip().lower()
        if te:
            if te != "chunked":
                raise NotSupported(f"Transfer-Encoding {te!r} is not supported (only chunked)")
            return self._read_chunked(limit)
        length = self._content_length()
        if not length:
            return b""
        if length > limit:
            self._unread = length
            raise BodyTooLarge(limit)
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise invalid("body", f"ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise invalid("body", "bad chunk size in chunked transfer") from None
            if size < 0:
                raise invalid("body", "bad chunk size in chunked transfer")
            if size == 0:
                break
            total += size
            if total > limit:
                raise BodyTooLarge(limit)
            data = self.rfile.read(size)
            if len(data) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise invalid("body", "truncated chunk in chunked transfer")
            parts.append(data)
        # Trailers, up to the empty line.
        for _ in range(_MAX_TRAILERS):
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                return b"".join(parts)
        raise invalid("body", "too many trailers in chunked transfer")

    # -- answers ---------------------------------------------------------------------------------

    def _send_silo_error(self, err: SiloError) -> None:
        status = error_status(err)
        headers = {}
        if isinstance(err, MethodNotAllowed):
            headers["Allow"] = ", ".join(err.allowed)
        self._send_document(status, err.to_wire(), headers)

    def _send_error_document(self, status: int, wire: dict[str, str], close: bool = False) -> None:
        self._send_document(status, wire, {"Connection": "close"} if close else {})

    def _send_document(self, status: int, document: Any, headers: Mapping[str, str]) -> None:
        self._write(status, _encode(document, status), headers)

    def _write(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status not in (204, 304):
            if data:
                self.send_header("Content-Type", JSON)
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection or headers.get("Connection", "").lower() == "close":
            self.close_connection = True
            if "Connection" not in headers:
                self.send_header("Connection", "close")
        # Status, headers and body in one write: two small writes on TCP meet Nagle's
        # algorithm and the peer's delayed ACK (40 ms per answer on keep-alive).
        self._headers_buffer.append(b"\r\n")
        if data and self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()

    def _send_stream(self, stream: Stream) -> None:
        items = stream.items
        chunked = self.request_version != "HTTP/1.0"
        try:
            self.send_response(stream.status)
            self.send_header("Content-Type", stream.content_type)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.flush()
            try:
                for item in self._items(items):
                    line = json.dumps(item, separators=(",", ":"), allow_nan=False).encode()
                    line += b"\n"
                    if chunked:
                        line = b"%x\r\n%s\r\n" % (len(line), line)
                    self.wfile.write(line)
                    self.wfile.flush()
            except (ConnectionError, TimeoutError):
                raise
            except Exception:
                # The status is sent: cut the connection so the client sees the answer end early.
                log.exception("%s %s: the stream failed", self.command, self.path)
                self.close_connection = True
                return
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("%s %s: closing the stream failed", self.command, self.path)

    def _items(self, items: Iterator[Any]) -> Iterator[Any]:
        """The stream's items; with a ``get(timeout)`` iterator, ends when the client leaves.

        A plain iterator finds a departed client only at its next write, which for a quiet
        event stream may be never: the thread and the subscription would stay. An iterator that
        can come up for air (``get(timeout)`` returning None when nothing came, raising
        StopIteration once closed, as silod's event subscriptions do) lets the client be
        checked between items.
        """
        get = getattr(items, "get", None)
        if not callable(get):
            yield from items
            return
        while True:
            try:
                item = get(STREAM_CHECK_INTERVAL)
            except StopIteration:
                return
            if item is not None:
                yield item
            elif self._client_gone():
                log.debug("%s %s: the client left", self.command, self.path)
                self.close_connection = True
                return

    def _client_gone(self) -> bool:
        poller = select.poll()
        poller.register(self.connection, select.POLLIN | select.POLLRDHUP)
        events = poller.poll(0)
        if not events:
            return False
        mask = events[0][1]
        if mask & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return True
        try:
            peek: bytes = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return peek == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    # -- what BaseHTTPRequestHandler calls -------------------------------------------------------

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The framing errors parse_request finds (bad request line, too many headers, ...),
        # answered as JSON errors like every other.
        wire = {"Code": _CODE_BY_STATUS.get(code, "invalid_argument"),
                "Message": message or self.responses.get(code, ("error",))[0]}
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            # parse_request had not read a version yet: answer with a status line anyway.
            self.request_version = "HTTP/1.0"
        try:
            self._send_error_document(code, wire, close=True)
        except OSError:
            pass

    def address_string(self) -> str:
        # A unix-socket peer has no address; client_address is "".
        addr = self.client_address
        if isinstance(addr, tuple) and addr:
            return str(addr[0])
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


# ---------------------------------------------------------------------------------------------
# Listeners


class _Listener(socketserver.ThreadingMixIn, socketserver.BaseServer):
    """Shared part of the unix and TCP listeners: the router, the limit, open connections."""

    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog is 5: a node starting pods at once runs a silo-cni per
    # pod, and a client's connect (non-blocking, it has a timeout) fails at once with EAGAIN
    # when the queue is full while the accept loop waits for the GIL.
    request_queue_size = 128
    router: Router
    max_body: int

    def setup_listener(self, router: Router, max_body: int) -> None:
        self.router = router
        self.max_body = max_body
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("connection from %r failed", client_address or "unix")

    def cut_connections(self) -> None:
        """End every open connection (kept-alive ones and streams) so their threads finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _UnixListener(_Listener, socketserver.UnixStreamServer):
    pass


class _TCPListener(_Listener, socketserver.TCPServer):
    allow_reuse_address = True

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        # Stream chunks go out as they come, not when Nagle's algorithm lets them.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class _TCP6Listener(_TCPListener):
    address_family = socket.AF_INET6


def _host_port(listener: _Listener) -> tuple[str, int]:
    address: Any = listener.server_address
    return str(address[0]), int(address[1])


def parse_tcp_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:PORT"`` or ``"[::1]:PORT"`` (loopback only: the API has no authentication)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not port_text.isascii():
        raise invalid("listen", f"{text!r} is not HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    port = int(port_text)
    if port > 65535:
        raise invalid("listen", f"port {port} is out of range")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise invalid("listen", f"{host!r} is not an IP address") from None
    if not loopback:
        raise invalid("listen", f"{host} is not a loopback address: the API has no "
                      "authentication, so it listens on loopback only")
    return host, port


class UnixSocket:
    """The API's unix socket: mode 0600, one silod at a time, a stale socket replaced.

    A lock file beside the socket (``<path>.lock``) is held while the socket is served, so two
    silods starting at once cannot both take it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if len(os.fsencode(path)) >= 108:
            raise invalid("socket", f"{path}: longer than a unix socket path may be (107 bytes)")
        self._lock_fd = -1
        self._inode: tuple[int, int] | None = None

    def bind(self) -> socket.socket:
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        self._lock()
        try:
            self._remove_stale()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                # Bind under a private name, make it 0600, then move it into place: the socket
                # is never reachable by its public name with looser permissions.
                tmp = f"{self.path}.{os.getpid()}"
                if len(os.fsencode(tmp)) >= 108:
                    tmp = os.path.join(parent, f".silod.{os.getpid()}")
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                sock.bind(tmp)
                os.chmod(tmp, 0o600)
                os.rename(tmp, self.path)
                st = os.stat(self.path)
                self._inode = (st.st_dev, st.st_ino)
            except BaseException:
                sock.close()
                raise
            return sock
        except BaseException:
            self._unlock()
            raise

    def release(self) -> None:
        """Remove the socket file if it is still ours; let go of the lock."""
        if self._inode is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._inode = None
        self._unlock()

    def _lock(self) -> None:
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyExists(f"another silod holds {self.path}", op="silod::listen",
                                obj=self.path) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise invalid("socket", f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(self.path)
        except OSError as err:
            if err.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise
        else:
            raise AlreadyExists(f"another silod answers on {self.path}", op="silod::listen",
                                obj=self.path)
        finally:
            probe.close()
        log.info("removing the stale socket %s", self.path)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class APIServer:
    """Serves one router on a unix socket and/or a loopback TCP address, a thread per listener.

    ``start()`` binds and returns; ``stop()`` stops accepting, cuts open connections (streams
    included) and removes the socket file. Usable as a context manager.
    """

    def __init__(self, router: Router, *, socket_path: str = "", tcp: str = "",
                 max_body: int = MAX_BODY) -> None:
        if not socket_path and not tcp:
            raise invalid("socket", "give a unix socket path, a TCP address, or both")
        self.router = router
        self.socket_path = socket_path
        self.tcp = tcp
        self.max_body = max_body
        self._unix: UnixSocket | None = None
        self._listeners: list[_Listener] = []
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    @property
    def tcp_address(self) -> tuple[str, int]:
        """The bound TCP address (with the real port when 0 was asked for)."""
        for listener in self._listeners:
            if isinstance(listener, _TCPListener):
                return _host_port(listener)
        raise NotFound("not listening on TCP")

    def start(self) -> None:
        try:
            if self.tcp:
                host, port = parse_tcp_address(self.tcp)
                tcp_cls = _TCP6Listener if ":" in host else _TCPListener
                tcp = tcp_cls((host, port), _Handler)
                tcp.setup_listener(self.router, self.max_body)
                self._listeners.append(tcp)
            if self.socket_path:
                self._unix = UnixSocket(self.socket_path)
                sock = self._unix.bind()
                unix = _UnixListener(self.socket_path, _Handler, bind_and_activate=False)
                unix.socket.close()
                unix.socket = sock
                unix.server_activate()
                unix.setup_listener(self.router, self.max_body)
                self._listeners.append(unix)
        except BaseException:
            self.stop()
            raise
        for listener in self._listeners:
            thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.1},
                                      name=f"silod-http-{type(listener).__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("serving on %s", ", ".join(self.addresses()))

    def set_router(self, router: Router) -> None:
        """Serve with another router from the next request on (e.g. once silod is ready)."""
        self.router = router
        for listener in self._listeners:
            listener.router = router

    def addresses(self) -> list[str]:
        out = []
        for listener in self._listeners:
            if isinstance(listener, _UnixListener):
                out.append(f"unix:{self.socket_path}")
            else:
                host, port = _host_port(listener)
                out.append(f"tcp:{host}:{port}")
        return out

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() (True), or until the timeout passes (False)."""
        return self._stopped.wait(timeout)

    def stop(self) -> None:
        # Each serve_forever notices the request at its next poll: ask them all at once.
        stoppers = [threading.Thread(target=listener.shutdown)
                    for listener, thread in zip(self._listeners, self._threads, strict=False)
                    if thread.is_alive()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for listener in self._listeners:
            listener.server_close()
            listener.cut_connections()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listeners.clear()
        self._threads.clear()
        if self._unix is not None:
            self._unix.release()
            self._unix = None
        self._stopped.set()

    def __enter__(self) -> APIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
