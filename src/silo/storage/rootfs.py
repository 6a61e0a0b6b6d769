"""Container root filesystems: an overlay of an image's layers and a per-container scratch
(upper) layer, optionally capped in size by a loop-mounted ext4 image.

Imports :mod:`silo.errors` and :mod:`silo.kernel.libc` only; the image store (images.py)
decides what to mount, this module mounts and unmounts it.

Design notes (the kernel is subtle here):

- Many layers. Classic ``mount(2)`` takes overlay's options as one string of at most a page
  (4096 bytes), which long lowerdir lists overflow (~50-100 layers with real paths); the usual
  workaround is short links and a relative lowerdir from a child that chdir'ed. Since 6.8
  the new mount API takes each lower dir as its own ``fsconfig(FSCONFIG_SET_STRING,
  "lowerdir+", path)``: no length limit (overlayfs allows 500 lowers), no escaping of ``:``
  and ``,`` in paths, no fork. That is what silo uses; on an older kernel it falls back to
  ``mount(2)`` with the ``l/`` links when the options fit a page.
- Size caps. overlayfs has no quota of its own; the scratch is an ext4 image (sparse file)
  on a loop device, mounted under the container's dir, with upper/ and work/ inside it.
  The loop device is configured with ``LO_FLAGS_AUTOCLEAR`` and its fd is closed once it is
  mounted, so unmounting it frees the device; ``destroy`` also clears it explicitly.
- overlay's workdir must be an empty dir on the same filesystem as the upperdir.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Sequence

from silo.errors import Internal, InvalidArgument, NotSupported, invalid
from silo.kernel import libc

PAGE = 4096
MAX_LOWERS = 500
MIN_SIZE = 8 << 20
MAX_SIZE = 1 << 50

# loop(4)
LOOP_CLR_FD = 0x4C01
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_AUTOCLEAR = 4
# the new mount API (same numbers on x86_64 and aarch64)
SYS_MOVE_MOUNT, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 429, 430, 431, 432
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100


def check_size(size: object) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int):
        raise invalid("size", f"must be an integer number of bytes, got {size!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise invalid("size", f"{size} is outside {MIN_SIZE} (8 MiB) .. {MAX_SIZE} bytes")
    return size


# -- mounts ------------------------------------------------------------------------------------

def mounts_below(path: str) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


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
    with contextlib.suppress(OSError):
        while True:
            msg = os.read(fd, 1024)
            if not msg:
                break
            msgs.append(msg.decode(errors="replace").strip())
    return "; ".join(msgs)


class _NoNewAPI(Exception):
    """The kernel has no fsopen, or its overlayfs no ``lowerdir+`` (before 6.8)."""


def _overlay_new_api(lowers: Sequence[str], upper: str, work: str, target: str) -> None:
    import ctypes

    try:
        fsfd = _syscall(SYS_FSOPEN, b"overlay", FSOPEN_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            raise _NoNewAPI from e
        raise
    try:
        def put(key: str, value: str) -> None:
            try:
                _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_SET_STRING, key.encode(),
                         os.fsencode(value), 0)
            except OSError as e:
                raise OSError(e.errno, f"overlay {key}={value}: {e.strerror} "
                                       f"{_fs_messages(fsfd)}".rstrip()) from None

        for i, lower in enumerate(lowers):
            try:
                put("lowerdir+", lower)
            except OSError as e:
                if i == 0 and e.errno == errno.EINVAL and "Unknown parameter" in str(e):
                    raise _NoNewAPI from e
                raise
        put("upperdir", upper)
        put("workdir", work)
        try:
            _syscall(SYS_FSCONFIG, fsfd, FSCONFIG_CMD_CREATE, None, None, 0)
        except OSError as e:
            raise OSError(e.errno, f"overlay create: {e.strerror} "
                                   f"{_fs_messages(fsfd)}".rstrip()) from None
        mfd = _syscall(SYS_FSMOUNT, fsfd, FSMOUNT_CLOEXEC, 0)
        try:
            _syscall(SYS_MOVE_MOUNT, mfd, b"", ctypes.c_int(AT_FDCWD), os.fsencode(target),
                     MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(mfd)
    finally:
        os.close(fsfd)


def mount_overlay(lowers: Sequence[str], upper: str, work: str, target: str,
                  short: Sequence[str] = ()) -> None:
    """Mount an overlay of ``lowers`` (top first) with ``upper``/``work`` on ``target``.
    ``short``: the same lowers as short links, for the fallback on kernels before 6.8."""
    if not 1 <= len(lowers) <= MAX_LOWERS:
        raise NotSupported(f"an overlay takes 1 to {MAX_LOWERS} layers, the image has "
                           f"{len(lowers)}", op="rootfs::mount", obj=target)
    try:
        _overlay_new_api(lowers, upper, work, target)
        return
    except _NoNewAPI:
        pass
    except OSError as e:
        raise Internal(f"mounting the overlay on {target}: {e}", op="rootfs::mount",
                       obj=target) from e
    # before 6.8: one option string of at most a page
    names = list(short) or list(lowers)
    if any(c in p for p in [*names, upper, work] for c in ",:"):
        raise NotSupported("a store path has ',' or ':', which this kernel's overlay "
                           "options cannot carry", op="rootfs::mount", obj=target)
    data = f"lowerdir={':'.join(names)},upperdir={upper},workdir={work}"
    if len(data) >= PAGE:
        raise NotSupported(f"{len(lowers)} layers do not fit overlay's mount options on this "
                           f"kernel (before 6.8)", op="rootfs::mount", obj=target)
    try:
        libc.mount("overlay", target, "overlay", 0, data)
    except OSError as e:
        raise Internal(f"mounting the overlay on {target}: {e}", op="rootfs::mount",
                       obj=target) from e


def unmount(target: str) -> None:
    try:
        libc.umount2(target, 0)
    except OSError as e:
        if e.errno == errno.EBUSY:  # something still has it open: detach it from the tree
            libc.umount2(target, libc.MNT_DETACH)
        elif e.errno not in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount
            raise


# -- loop devices ------------------------------------------------------------------------------

def _loop_config(backing_fd: int, name: str) -> bytes:
    # struct loop_config { u32 fd, block_size; struct loop_info64 info; u64 reserved[8]; }
    # struct loop_info64 { u64 device, inode, rdevice, offset, sizelimit;
    #   u32 number, encrypt_type, encrypt_key_size, flags; u8 file_name[64], crypt_name[64],
    #   encrypt_key[32]; u64 init[2]; }
    info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, LO_FLAGS_AUTOCLEAR,
                       os.fsencode(name)[:63], b"", b"", 0, 0)
    return struct.pack("=II", backing_fd, 0) + info + bytes(64)


def _open_free_loop(backing_fd: int, name: str) -> tuple[int, str]:
    """Configure a free loop device on ``backing_fd``; its open fd and path. Two callers can
    be handed the same free device: LOOP_CONFIGURE fails with EBUSY for the loser, who asks
    again."""
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):
            n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            dev = f"/dev/loop{n}"
            if not os.path.exists(dev):  # a /dev without devtmpfs
                with contextlib.suppress(FileExistsError):
                    os.mknod(dev, 0o600 | 0o060000, os.makedev(7, n))
            fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, _loop_config(backing_fd, name))
                return fd, dev
            except OSError as e:
                os.close(fd)
                if e.errno != errno.EBUSY:
                    raise
        raise OSError(errno.EBUSY, "no free loop device after 64 tries")
    finally:
        os.close(ctl)


def loop_backing_file(dev: str) -> str | None:
    try:
        with open(f"/sys/block/{os.path.basename(dev)}/loop/backing_file") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def clear_loop(dev: str, backing: str) -> None:
    """Detach ``dev`` if it is still bound to ``backing`` (autoclear normally did it)."""
    if loop_backing_file(dev) != backing:
        return
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    except OSError as e:
        if e.errno != errno.ENXIO:  # ENXIO: not bound any more
            raise
    finally:
        os.close(fd)


def make_scratch_image(path: str, size: int) -> None:
    """A sparse ext4 image of ``size`` bytes (no journal, no reserved blocks)."""
    with open(path, "xb") as f:
        f.truncate(size)
    try:
        r = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                            "-E", "root_owner=0:0,lazy_itable_init=1", path],
                           capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise NotSupported("mkfs.ext4 is not installed (Debian's e2fsprogs): a size-capped "
                           "scratch needs it", op="rootfs::create", obj=path) from e
    if r.returncode != 0:
        raise Internal(f"mkfs.ext4 {path}: {r.stderr.strip()}", op="rootfs::create", obj=path)


def mount_loop(image: str, target: str) -> str:
    """Mount the ext4 ``image`` on ``target`` through a loop device; returns the device."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        fd, dev = _open_free_loop(backing, image)
    finally:
        os.close(backing)
    try:
        libc.mount(dev, target, "ext4", libc.MS_NODEV | libc.MS_NOSUID, None)
    except OSError:
        os.close(fd)  # the last reference: autoclear frees the device
        with contextlib.suppress(OSError):
            clear_loop(dev, os.path.realpath(image))
        raise
    os.close(fd)  # from now on the mount holds the device
    return dev


# -- one container's scratch ---------------------------------------------------------------------

def create(cdir: str, lowers: Sequence[str], *, size: int | None = None,
           short: Sequence[str] = ()) -> str:
    """Make ``cdir`` (must not exist) with the scratch and the merged overlay; returns the
    merged dir. On failure nothing is left: no mount, no loop device, no dir."""
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        raise InvalidArgument(f"{cdir} exists already", op="rootfs::create", obj=cdir,
                              field="container_id") from None
    except OSError as e:
        raise Internal(f"creating {cdir}: {e.strerror}", op="rootfs::create", obj=cdir) from e
    try:
        base = cdir
        if size is not None:
            image = os.path.join(cdir, "scratch.img")
            make_scratch_image(image, size)
            base = os.path.join(cdir, "scratch")
            os.mkdir(base, 0o711)
            dev = mount_loop(image, base)
            with open(os.path.join(cdir, "loop"), "w") as f:
                f.write(dev)
        os.mkdir(os.path.join(base, "upper"), 0o755)
        os.mkdir(os.path.join(base, "work"), 0o700)
        merged = os.path.join(cdir, "merged")
        os.mkdir(merged, 0o755)
        mount_overlay(lowers, os.path.join(base, "upper"), os.path.join(base, "work"), merged,
                      short)
        return merged
    except BaseException as e:
        try:
            destroy(cdir)
        except Exception as undo:
            e.add_note(f"and undoing it failed: {undo}")
        if isinstance(e, OSError):
            raise Internal(f"creating the root filesystem in {cdir}: {e}",
                           op="rootfs::create", obj=cdir) from e
        raise


def destroy(cdir: str) -> None:
    """Unmount everything below ``cdir``, free its loop device, remove it. Idempotent."""
    if not os.path.lexists(cdir):
        return
    try:
        for point in mounts_below(cdir):
            unmount(point)
        left = mounts_below(cdir)
        if left:
            raise Internal(f"still mounted after unmounting: {', '.join(left)}",
                           op="rootfs::remove", obj=cdir)
        with contextlib.suppress(FileNotFoundError):
            with open(os.path.join(cdir, "loop")) as f:
                dev = f.read().strip()
            if dev.startswith("/dev/loop"):
                clear_loop(dev, os.path.realpath(os.path.join(cdir, "scratch.img")))
        shutil.rmtree(cdir)
    except OSError as e:
        raise Internal(f"removing the root filesystem {cdir}: {e}", op="rootfs::remove",
                       obj=cdir) from e
