"""Loop devices (loop(4)): a regular file seen as a block device, and a filesystem image
mounted through one.

Owns ``/dev/loop-control``, ``/dev/loopN``, the ``LOOP_*`` ioctls and
``/sys/block/loopN/loop/``. Imports :mod:`silo.errors` and :mod:`silo.kernel.libc` only. Every
``OSError`` is translated here into :mod:`silo.errors`, the original kept as ``__cause__``.

Design notes (the kernel is subtle here):

- ``LOOP_CTL_GET_FREE`` only *names* a free device; two callers can be handed the same one.
  ``LOOP_CONFIGURE`` (5.8) binds the file and sets the flags in one ioctl, and fails with
  ``EBUSY`` for the loser of that race, who asks again.
- ``LO_FLAGS_AUTOCLEAR``: the device unbinds itself when its last reference goes. A mount of it
  is a reference, and so is an open fd: :func:`mount` closes its fd once the filesystem is
  mounted, so unmounting frees the device, and a crash before the mount leaks nothing.
  :func:`detach` clears a device explicitly for the cases autoclear cannot see (a lazy
  unmount still under way).
- A ``/dev`` without devtmpfs (a container's) has no ``loopN`` node for a new device: it is
  made with ``mknod`` (block major 7).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from silo.errors import Internal, NotSupported, Unavailable
from silo.kernel import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class LoopDevices(Protocol):
        """What :mod:`silo.storage.rootfs` needs of loop devices (this module is one; unit
        tests pass a fake)."""

        def mount(self, image: str, target: str, fstype: str, flags: int = ...) -> str: ...

        def detach(self, dev: str, backing: str) -> None: ...


LOOP_CLR_FD = 0x4C01
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_AUTOCLEAR = 4
LOOP_MAJOR = 7

CONTROL = "/dev/loop-control"
_TRIES = 64


def config(backing_fd: int, name: str, flags: int = LO_FLAGS_AUTOCLEAR) -> bytes:
    """``struct loop_config`` for ``LOOP_CONFIGURE`` (304 bytes on every Linux ABI)."""
    # struct loop_config { u32 fd, block_size; struct loop_info64 info; u64 reserved[8]; }
    # struct loop_info64 { u64 device, inode, rdevice, offset, sizelimit;
    #   u32 number, encrypt_type, encrypt_key_size, flags; u8 file_name[64], crypt_name[64],
    #   encrypt_key[32]; u64 init[2]; }
    info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, flags,
                       os.fsencode(name)[:63], b"", b"", 0, 0)
    return struct.pack("=II", backing_fd, 0) + info + bytes(64)


def attach(backing: str) -> tuple[int, str]:
    """Bind a free loop device to the file ``backing`` with autoclear; its open fd and its
    path. The device lives while the fd (or a mount of it) does: the caller closes the fd.

    Raises NotSupported when the host has no loop devices, Unavailable when none is free,
    Internal otherwise."""
    try:
        bfd = os.open(backing, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise Internal(f"opening {backing} for a loop device: {e.strerror}", op="loop::attach",
                       obj=backing) from e
    try:
        return _configure_free(bfd, backing)
    finally:
        os.close(bfd)


def _configure_free(backing_fd: int, name: str) -> tuple[int, str]:
    try:
        ctl = os.open(CONTROL, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NotSupported(f"{CONTROL} is missing: this host has no loop devices",
                           op="loop::attach", obj=name) from e
    except OSError as e:
        raise Internal(f"opening {CONTROL}: {e.strerror}", op="loop::attach", obj=name) from e
    last: OSError | None = None
    try:
        for _ in range(_TRIES):
            try:
                n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                dev = f"/dev/loop{n}"
                if not os.path.exists(dev):
                    try:
                        os.mknod(dev, 0o600 | 0o060000, os.makedev(LOOP_MAJOR, n))
                    except FileExistsError:
                        pass
                fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise Internal(f"finding a free loop device for {name}: {e.strerror}",
                               op="loop::attach", obj=name) from e
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, config(backing_fd, name))
                return fd, dev
            except OSError as e:
                os.close(fd)
                if e.errno != errno.EBUSY:  # EBUSY: another caller took it first
                    raise Internal(f"binding {dev} to {name}: {e.strerror}",
                                   op="loop::attach", obj=name) from e
                last = e
        raise Unavailable(f"no free loop device for {name} after {_TRIES} tries",
                          op="loop::attach", obj=name) from last
    finally:
        os.close(ctl)


def backing_file(dev: str) -> str | None:
    """The file ``dev`` is bound to, or None when it is bound to nothing (or does not exist)."""
    try:
        with open(f"/sys/block/{os.path.basename(dev)}/loop/backing_file") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def detach(dev: str, backing: str) -> None:
    """Unbind ``dev`` if it is still bound to ``backing`` (an absolute, resolved path); a
    device that autoclear freed, or that serves another file by now, is left alone."""
    if backing_file(dev) != backing:
        return
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        raise Internal(f"opening {dev}: {e.strerror}", op="loop::detach", obj=dev) from e
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    except OSError as e:
        if e.errno != errno.ENXIO:  # ENXIO: not bound any more
            raise Internal(f"detaching {dev} from {backing}: {e.strerror}",
                           op="loop::detach", obj=dev) from e
    finally:
        os.close(fd)


def mount(image: str, target: str, fstype: str,
          flags: int = libc.MS_NODEV | libc.MS_NOSUID) -> str:
    """Mount the filesystem image file ``image`` on ``target`` through a loop device; returns
    the device, which goes with the mount (autoclear). On failure no device stays bound."""
    fd, dev = attach(image)
    try:
        libc.mount(dev, target, fstype, flags, None)
    except OSError as e:
        os.close(fd)  # the last reference: autoclear frees the device
        err = Internal(f"mounting {image} ({dev}, {fstype}) on {target}: {e.strerror}",
                       op="loop::mount", obj=image)
        try:
            detach(dev, os.path.realpath(image))
        except Internal as undo:
            err.add_note(f"and detaching {dev} failed: {undo}")
        raise err from e
    os.close(fd)  # from now on the mount holds the device
    return dev
