"""The sync channel between the runtime and the container's first processes.

A SOCK_SEQPACKET socketpair: message boundaries are kept, so each message is one ``send``.
Messages are ``b"tag"`` or ``b"tag payload"``.
"""

from __future__ import annotations

import _socket
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn, TypeVar

    T = TypeVar("T")


class Channel:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @staticmethod
    def pair() -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        return Channel(a.detach()), Channel(b.detach())

    def send(self, tag: str, payload: str = "") -> None:
        """Send one message. A peer that is already gone is not an error here: the next
        :meth:`recv` returns what it sent before it went (its error, usually), then EOF."""
        msg = f"{tag} {payload}" if payload else tag
        try:
            os.write(self.fd, msg.encode())
        except BrokenPipeError:
            pass

    def recv(self) -> tuple[str, str]:
        """Next message; ``("eof", "")`` when the other side is gone."""
        try:
            data = os.read(self.fd, 65536)
        except ConnectionResetError:
            # The peer closed with a message of ours unread. The kernel reports that once,
            # ahead of the messages the peer sent before closing: read those.
            try:
                data = os.read(self.fd, 65536)
            except ConnectionResetError:
                data = b""
        if not data:
            return "eof", ""
        text = data.decode(errors="replace")
        tag, _, payload = text.partition(" ")
        return tag, payload

    @staticmethod
    def spawn(child_main: Callable[[T, Channel], NoReturn], args: T) -> tuple[int, Channel]:
        """Fork a child that runs ``child_main(args, its end)`` and never returns; gives the
        child's pid and our end of the channel."""
        parent, child = Channel.pair()
        try:
            pid = os.fork()
        except OSError:
            parent.close()
            child.close()
            raise
        if pid == 0:
            parent.close()
            child_main(args, child)
        child.close()
        return pid, parent

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
