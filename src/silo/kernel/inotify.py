"""inotify: block until something happens in a directory (Python has no binding of its own).

silod uses it to learn that a monitor wrote an exit file the moment it happens, instead of
finding out at the next poll.
"""

from __future__ import annotations

import os

from silo.kernel import libc

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000


class Inotify:
    """One inotify instance. ``add(dir)`` watches a directory for files written or moved in;
    ``wait(timeout)`` returns True when events came (they are drained), False on timeout."""

    def __init__(self) -> None:
        fd = libc.libc().inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            raise libc._fail("inotify_init1")
        self.fd: int = fd
        self._dirs: set[str] = set()

    def add(self, directory: str) -> None:
        if directory in self._dirs:
            return
        wd = libc.libc().inotify_add_watch(self.fd, os.fsencode(directory),
                                           IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
        if wd < 0:
            raise libc._fail(f"inotify_add_watch {directory}")
        self._dirs.add(directory)

    def wait(self, timeout: float) -> bool:
        import select

        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
