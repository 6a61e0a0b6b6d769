"""Pseudo-terminals for containers, and handing their master side over a unix socket.

The pty is opened *inside* the container (after pivot_root) so the slave is the container's
own ``/dev/pts/N`` of its devpts instance; the master is sent to whoever listens on
``--console-socket`` with SCM_RIGHTS, as runc does.
"""

from __future__ import annotations

import _socket
import os
import sys

TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGWINSZ = 0x5413


def connect(path: str) -> int:
    """Connect to the caller's console socket; the fd survives a later pivot_root."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    fd: int = s.detach()
    os.set_inheritable(fd, True)
    return fd


def open_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    return master, slave


def send_fd(sock_fd: int, fd: int, name: str) -> None:
    s = _socket.socket(fileno=sock_fd)
    try:
        s.sendmsg([name.encode()],
                  [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
    finally:
        s.detach()


def recv_fd(sock_fd: int) -> tuple[int, str]:
    """Receive one fd (e.g. a pty master) and the name sent with it."""
    s = _socket.socket(fileno=sock_fd)
    try:
        msg, anc, _flags, _addr = s.recvmsg(4096, 64)
    finally:
        s.detach()
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return int.from_bytes(data[:4], sys.byteorder), msg.decode(errors="replace")
    raise OSError(0, "no file descriptor received on the console socket")


def make_controlling(slave: int) -> None:
    """Become a session leader with ``slave`` as controlling terminal and stdio."""
    import fcntl

    if os.getsid(0) != os.getpid():
        os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for n in (0, 1, 2):
        os.dup2(slave, n)
    if slave > 2:
        os.close(slave)


def set_size(fd: int, height: int, width: int) -> None:
    import fcntl

    fcntl.ioctl(fd, TIOCSWINSZ, height.to_bytes(2, sys.byteorder) + width.to_bytes(2, sys.byteorder)
                + bytes(4))


def get_size(fd: int) -> tuple[int, int]:
    import fcntl

    raw = fcntl.ioctl(fd, TIOCGWINSZ, bytes(8))
    return int.from_bytes(raw[0:2], sys.byteorder), int.from_bytes(raw[2:4], sys.byteorder)
