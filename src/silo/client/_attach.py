"""A process's stdio through its monitor, conmon: the attach socket and the control fifo.

silod answers ``Stdio: {"AttachSocket": path, "ControlFifo": path}`` for a process that has
pipes or a console; a local client (root, same host) connects to them directly. What this
module implements, as conmon 2.1 (src/conn_sock.c, src/ctr_stdio.c, src/ctrl.c) and podman's
attach (libpod/oci_conmon_attach_common.go) do it:

- **attach socket**: ``AF_UNIX``, ``SOCK_SEQPACKET``. A path longer than ``sun_path`` allows is
  reached through ``/proc/self/fd/N`` of an ``O_PATH`` descriptor of the socket, as podman
  does.
- **reading**: each packet is one read of the process's output, at most 8192 bytes of data,
  after one byte naming the stream: ``2`` stdout, ``3`` stderr (``1`` is stdin in conmon's
  ``stdpipe_t`` and is never sent). With a console there is only the pty, reported as ``2``.
  End of file (a zero-length read, or ECONNRESET) means conmon closed it: the process's output
  is over.
- **writing**: bytes written are the process's stdin, as they are (no stream byte), in packets
  of at most 32768 bytes (conmon's read size for it). ``shutdown(SHUT_WR)`` makes conmon close
  the process's stdin, unless conmon runs with ``--leave-stdin-open``.
- **control fifo** (``ctl`` in the bundle): a line ``"1 HEIGHT WIDTH\\n"`` resizes the console
  (message type 1; type 2, reopen the log file, is silod's, not a client's). Opened
  ``O_WRONLY | O_NONBLOCK`` per message, so a gone conmon is an error rather than a hang.

:meth:`Attachment.relay` copies between the socket and file descriptors until the output ends
or the detach keys (docker's ctrl-p ctrl-q by default) are typed.
"""

from __future__ import annotations

import _socket
import os

from silo.errors import Unavailable

STDIN, STDOUT, STDERR = 1, 2, 3
DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q, docker's default

_RECV = 8192 + 1 + 64  # conmon's STDIO_BUF_SIZE, its stream byte, and room to spare
_SEND = 32768           # conmon's CONN_SOCK_BUF_SIZE: the most it reads of one packet
_SUN_PATH = 107


class Attachment:
    """A connection to a monitor's attach socket (and its control fifo, for resizing)."""

    def __init__(self, socket_path: str, control_fifo: str = "") -> None:
        self.socket_path = socket_path
        self.control_fifo = control_fifo
        self.sock = _socket.socket(_socket.AF_UNIX,
                                   _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        try:
            if len(os.fsencode(socket_path)) <= _SUN_PATH:
                self.sock.connect(socket_path)
            else:
                fd = os.open(socket_path, os.O_PATH | os.O_CLOEXEC)
                try:
                    self.sock.connect(f"/proc/self/fd/{fd}")
                finally:
                    os.close(fd)
        except OSError as err:
            self.sock.close()
            raise Unavailable(f"cannot attach to {socket_path}: {err.strerror or err} (is the "
                              "process still running, and are you root?)") from err
        self.stdin_open = True

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> tuple[int, bytes] | None:
        """The next packet of output: (stream, data), stream being STDOUT or STDERR; None at
        the end."""
        while True:
            try:
                packet = self.sock.recv(_RECV)
            except (ConnectionResetError, BrokenPipeError):
                return None
            except InterruptedError:  # pragma: no cover - retried by Python since 3.5
                continue
            if not packet:
                return None
            if len(packet) == 1:
                continue
            return packet[0], packet[1:]

    def send(self, data: bytes) -> None:
        """Write ``data`` to the process's stdin. Unavailable once conmon has gone."""
        view = memoryview(data)
        try:
            for i in range(0, len(view), _SEND):
                self.sock.sendall(view[i:i + _SEND])
        except OSError as err:
            self.stdin_open = False
            raise Unavailable(f"{self.socket_path}: stdin closed: {err.strerror or err}") \
                from err

    def close_stdin(self) -> None:
        """End of file on the process's stdin."""
        if self.stdin_open:
            self.stdin_open = False
            try:
                self.sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass

    def resize(self, height: int, width: int) -> None:
        """Set the console's size through the control fifo."""
        if not self.control_fifo:
            raise Unavailable("no control fifo to resize the console through")
        try:
            fd = os.open(self.control_fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.write(fd, f"1 {int(height)} {int(width)}\n".encode())
            finally:
                os.close(fd)
        except OSError as err:
            raise Unavailable(f"{self.control_fifo}: cannot resize: {err.strerror or err}") \
                from err

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def relay(self, stdin: int | None = 0, stdout: int = 1, stderr: int = 2,
              detach_keys: bytes | None = DETACH_KEYS) -> bool:
        """Copy output to ``stdout``/``stderr`` and, when ``stdin`` is a descriptor, input to
        the process, until the output ends (returns False) or ``detach_keys`` are read from
        ``stdin`` (returns True; the process keeps running). End of file on ``stdin`` closes
        the process's stdin and keeps relaying output."""
        import select

        keys = detach_keys or b""
        matched = 0
        watch = [self.sock.fileno()] + ([stdin] if stdin is not None else [])
        while True:
            ready, _, _ = select.select(watch, [], [])
            if self.sock.fileno() in ready:
                got = self.recv()
                if got is None:
                    return False
                stream, data = got
                _write_all(stderr if stream == STDERR else stdout, data)
            if stdin is not None and stdin in ready:
                try:
                    data = os.read(stdin, _SEND)
                except OSError:
                    data = b""
                if not data:
                    watch.remove(stdin)
                    self.close_stdin()
                    continue
                out, matched, detached = _detach_filter(data, keys, matched)
                if out and self.stdin_open:
                    try:
                        self.send(out)
                    except Unavailable:
                        watch.remove(stdin)
                if detached:
                    return True


def _detach_filter(data: bytes, keys: bytes, matched: int) -> tuple[bytes, int, bool]:
    """Input with the detach sequence taken out: (bytes to pass on, how much of ``keys`` the
    end of ``data`` matched, whether the whole sequence was typed). A partial match is held
    back until the next byte shows whether it was the sequence."""
    out = bytearray()
    for b in data:
        if keys and b == keys[matched]:
            matched += 1
            if matched == len(keys):
                return bytes(out), 0, True
            continue
        if matched:
            out += keys[:matched]
            matched = 0
            if b == keys[0]:
                matched = 1
                continue
        out.append(b)
    return bytes(out), matched, False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]
