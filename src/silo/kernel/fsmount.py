"""Mounting a filesystem by the new mount API (``fsopen``, ``fsconfig``, ``fsmount``,
``move_mount``; Linux 5.2), overlayfs on top of it with one ``lowerdir+`` per layer (6.8) and
by ``mount(2)`` options before that, and taking mounts down again.

Owns those syscalls and the reading of ``/proc/self/mountinfo`` for :func:`mounts_below`.
Imports :mod:`silo.errors` and :mod:`silo.kernel.libc` only (``ctypes`` through it, on the
first call). Every ``OSError`` is translated here into :mod:`silo.errors`, the original kept as
``__cause__``; :class:`NoNewMountAPI` says that the caller should fall back to ``mount(2)``.

Design notes (the kernel is subtle here):

- ``mount(2)`` takes overlay's options as one string of at most a page (4096 bytes), which a
  long ``lowerdir=a:b:...`` overflows (~50-100 layers with real paths); ``,`` and ``:`` in a
  path cannot be carried at all. With the new API each lower dir is its own
  ``fsconfig(FSCONFIG_SET_STRING, "lowerdir+", path)``: no length limit (overlayfs takes up
  to 500 lowers), no escaping, no chdir trick in a child.
- A failed ``fsconfig`` leaves the filesystem's own explanation ("overlayfs: failed to
  resolve ...") in the fs context; it is read from the context fd and put in the error.
- An overlay's workdir must be an empty dir on the same filesystem as its upperdir.
"""

from __future__ import annotations

import errno
import os

from silo.errors import Internal, NotSupported
from silo.kernel import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    class Mounts(Protocol):
        """What :mod:`silo.storage.rootfs` needs of mounts (this module is one; unit tests
        pass a fake)."""

        def overlay(self, lowers: Sequence[str], upper: str, work: str,
                    target: str) -> None: ...

        def overlay_by_options(self, lowers: Sequence[str], upper: str, work: str,
                               target: str) -> None: ...

        def unmount(self, target: str) -> None: ...

        def mounts_below(self, path: str) -> list[str]: ...


PAGE = 4096
OVERLAY_MAX_LOWERS = 500  # overlayfs's own limit
# the new mount API: the same numbers on every architecture (the unified syscall table)
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100


class NoNewMountAPI(NotSupported):
    """The kernel has no ``fsopen``, or the filesystem does not know a parameter it was given
    (overlayfs's ``lowerdir+`` before 6.8): the caller may fall back to ``mount(2)``."""


def _syscall(nr: int, *args: object) -> int:
    import ctypes

    ret: int = libc.libc().syscall(nr, *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _fs_messages(fd: int) -> str:
    """What the filesystem said about a failed fsconfig (read from the fs context)."""
    msgs = []
    while True:
        try:
            msg = os.read(fd, 1024)
        except OSError:  # ENODATA: nothing (more) to say
            break
        if not msg:
            break
        msgs.append(msg.decode(errors="replace").strip())
    return "; ".join(msgs)


def mount(fstype: str, params: Sequence[tuple[str, str]], target: str) -> None:
    """Make a filesystem of ``fstype`` from the string parameters ``params`` (in order, a key
    may repeat) and mount it on ``target``.

    Raises NoNewMountAPI when the kernel lacks the API or the filesystem a parameter's key;
    Internal (naming the parameter and what the filesystem said) for any other failure."""
    import ctypes

    op, where = "fsmount::mount", f"mounting {fstype} on {target}"
    try:
        fsfd = _syscall(SYS_FSOPEN, os.fsencode(fstype), FSOPEN_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            raise NoNewMountAPI(f"{where}: this kernel has no fsopen (before 5.2)", op=op,
                                obj=target) from e
        raise Internal(f"{where}: fsopen: {e.strerror}", op=op, obj=target) from e
    try:
        for key, value in params:
            try:
                _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_SET_STRING, key.encode(),
                         os.fsencode(value), 0)
            except OSError as e:
                said = _fs_messages(fsfd)
                if e.errno == errno.EINVAL and "Unknown parameter" in said:
                    raise NoNewMountAPI(f"{where}: {fstype} does not know {key!r} on this "
                                        f"kernel ({said})", op=op, obj=target) from e
                raise Internal(f"{where}: {fstype} {key}={value}: {e.strerror} {said}".rstrip(),
                               op=op, obj=target) from e
        try:
            _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_CMD_CREATE, None, None, 0)
        except OSError as e:
            raise Internal(f"{where}: {fstype} create: {e.strerror} "
                           f"{_fs_messages(fsfd)}".rstrip(), op=op, obj=target) from e
        try:
            mfd = _syscall(SYS_FSMOUNT, fsfd, FSMOUNT_CLOEXEC, 0)
        except OSError as e:
            raise Internal(f"{where}: fsmount: {e.strerror}", op=op, obj=target) from e
        try:
            _syscall(SYS_MOVE_MOUNT, mfd, b"", ctypes.c_int(AT_FDCWD), os.fsencode(target),
                     MOVE_MOUNT_F_EMPTY_PATH)
        except OSError as e:
            raise Internal(f"{where}: move_mount: {e.strerror}", op=op, obj=target) from e
        finally:
            os.close(mfd)
    finally:
        os.close(fsfd)


def overlay(lowers: Sequence[str], upper: str, work: str, target: str) -> None:
    """Mount an overlay of ``lowers`` (top first) with ``upper``/``work`` on ``target``, one
    ``lowerdir+`` per lower dir. NoNewMountAPI before 6.8 (see :func:`overlay_by_options`)."""
    mount("overlay", [*(("lowerdir+", lower) for lower in lowers), ("upperdir", upper),
                      ("workdir", work)], target)


def overlay_options(lowers: Sequence[str], upper: str, work: str) -> str:
    """overlay's ``mount(2)`` data for these dirs; NotSupported when it cannot carry them (a
    ``,`` or ``:`` in a path, or more than a page in all)."""
    if any(c in p for p in [*lowers, upper, work] for c in ",:"):
        raise NotSupported("a path has ',' or ':', which overlay's mount options cannot carry "
                           "on this kernel (before 6.8)", op="fsmount::overlay")
    data = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(data) >= PAGE:
        raise NotSupported(f"{len(lowers)} layers do not fit overlay's mount options on this "
                           f"kernel (before 6.8)", op="fsmount::overlay")
    return data


def overlay_by_options(lowers: Sequence[str], upper: str, work: str, target: str) -> None:
    """:func:`overlay` by one ``mount(2)`` option string, for kernels before 6.8: short
    ``lowers`` (links) make more of them fit a page."""
    try:
        data = overlay_options(lowers, upper, work)
    except NotSupported as e:
        e.obj = target
        raise
    try:
        libc.mount("overlay", target, "overlay", 0, data)
    except OSError as e:
        raise Internal(f"mounting overlay on {target}: {e.strerror}", op="fsmount::overlay",
                       obj=target) from e


def unmount(target: str) -> None:
    """Unmount ``target``; detach it from the tree (``MNT_DETACH``) when something still has
    it open. Not (or no longer) a mount point: nothing to do."""
    try:
        try:
            libc.umount2(target, 0)
        except OSError as e:
            if e.errno == errno.EBUSY:
                libc.umount2(target, libc.MNT_DETACH)
            elif e.errno not in (errno.EINVAL, errno.ENOENT):
                raise
    except OSError as e:
        raise Internal(f"unmounting {target}: {e.strerror}", op="fsmount::unmount",
                       obj=target) from e


def mounts_below(path: str) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, the latest mounted first:
    the order to unmount them in, as a mount comes after the one it sits on, and an overlay
    after the filesystem of its upper dir (mountinfo lists mounts in the order they were
    made)."""
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = unescape(line.split()[4])
                if point == path or point.startswith(path + "/"):
                    found.append(point)
    except OSError as e:
        raise Internal(f"reading /proc/self/mountinfo: {e.strerror}", op="fsmount::mounts",
                       obj=path) from e
    return found[::-1]


def unescape(s: str) -> str:
    """A mountinfo field as a path: mountinfo writes space, tab, newline, backslash as \\ooo."""
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")
