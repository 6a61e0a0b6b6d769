"""Container root filesystems: an overlay of an image's layers and a per-container scratch
(upper) layer, optionally capped in size by a loop-mounted ext4 image.

Imports :mod:`silo.errors` and, for everything that touches Linux, :mod:`silo.kernel.fsmount`
(the overlay, unmounting, the mount table) and :mod:`silo.kernel.loop` (the capped scratch);
the image store (images.py) decides what to mount, this module lays out the container's dir
and has the kernel layer mount and unmount it. Unit tests pass fakes of both (``mounts=``,
``loops=``).

Layout of ``<root>/containers/<id>/``: ``merged/`` (the overlay), and either ``upper/`` and
``work/`` beside it, or, with a size cap, ``scratch.img`` (a sparse ext4 image), ``loop`` (the
device it is mounted through) and ``scratch/{upper,work}`` on that mount.

Design notes:

- Many layers: the overlay is mounted with one ``lowerdir+`` per layer (Linux 6.8); before
  that, with one ``mount(2)`` option string through the short ``l/`` links, as long as it fits
  a page (:mod:`silo.kernel.fsmount`).
- Size caps: overlayfs has no quota of its own, so a capped scratch is an ext4 image on an
  autoclear loop device, with upper/ and work/ inside it (work/ must be on the same
  filesystem as upper/). Unmounting frees the device; ``destroy`` also detaches it explicitly.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Sequence

from silo.errors import Internal, InvalidArgument, NotSupported, invalid
from silo.kernel import fsmount, loop

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.kernel.fsmount import Mounts
    from silo.kernel.loop import LoopDevices

MAX_LOWERS = fsmount.OVERLAY_MAX_LOWERS
MIN_SIZE = 8 << 20
MAX_SIZE = 1 << 50


def check_size(size: object) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int):
        raise invalid("size", f"must be an integer number of bytes, got {size!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise invalid("size", f"{size} is outside {MIN_SIZE} (8 MiB) .. {MAX_SIZE} bytes")
    return size


# -- mounts ------------------------------------------------------------------------------------

def mount_overlay(lowers: Sequence[str], upper: str, work: str, target: str,
                  short: Sequence[str] = (), *, mounts: Mounts = fsmount) -> None:
    """Mount an overlay of ``lowers`` (top first) with ``upper``/``work`` on ``target``.
    ``short``: the same lowers as short links, for the fallback on kernels before 6.8."""
    if not 1 <= len(lowers) <= MAX_LOWERS:
        raise NotSupported(f"an overlay takes 1 to {MAX_LOWERS} layers, the image has "
                           f"{len(lowers)}", op="rootfs::mount", obj=target)
    try:
        mounts.overlay(lowers, upper, work, target)
    except fsmount.NoNewMountAPI:
        mounts.overlay_by_options(list(short) or list(lowers), upper, work, target)


def make_scratch_image(path: str, size: int) -> None:
    """A sparse ext4 image of ``size`` bytes (no journal, no reserved blocks); a size the
    store's filesystem cannot hold in one file is InvalidArgument naming ``size``."""
    with open(path, "xb") as f:
        try:
            f.truncate(size)
        except OSError as e:
            if e.errno not in (errno.EFBIG, errno.EINVAL):
                raise
            raise InvalidArgument(f"size: {size} bytes is more than a file on the store's "
                                  f"filesystem can hold ({e.strerror})", op="rootfs::create",
                                  obj=path, field="size") from e
    try:
        r = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                            "-E", "root_owner=0:0,lazy_itable_init=1", path],
                           capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise NotSupported("mkfs.ext4 is not installed (Debian's e2fsprogs): a size-capped "
                           "scratch needs it", op="rootfs::create", obj=path) from e
    if r.returncode != 0:
        raise Internal(f"mkfs.ext4 {path}: {r.stderr.strip()}", op="rootfs::create", obj=path)


# -- one container's scratch ---------------------------------------------------------------------

def create(cdir: str, lowers: Sequence[str], *, size: int | None = None,
           short: Sequence[str] = (), mounts: Mounts = fsmount,
           loops: LoopDevices = loop) -> str:
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
            # nosuid,nodev (the default): the scratch's host path must not serve a setuid
            # file or a device node that a container made
            dev = loops.mount(image, base, "ext4")
            with open(os.path.join(cdir, "loop"), "w") as f:
                f.write(dev)
        os.mkdir(os.path.join(base, "upper"), 0o755)
        os.mkdir(os.path.join(base, "work"), 0o700)
        merged = os.path.join(cdir, "merged")
        os.mkdir(merged, 0o755)
        mount_overlay(lowers, os.path.join(base, "upper"), os.path.join(base, "work"), merged,
                      short, mounts=mounts)
        return merged
    except BaseException as e:
        try:
            destroy(cdir, mounts=mounts, loops=loops)
        except Exception as undo:
            e.add_note(f"and undoing it failed: {undo}")
        if isinstance(e, OSError):
            raise Internal(f"creating the root filesystem in {cdir}: {e}",
                           op="rootfs::create", obj=cdir) from e
        raise


def destroy(cdir: str, *, mounts: Mounts = fsmount, loops: LoopDevices = loop) -> None:
    """Unmount everything below ``cdir``, free its loop device, remove it. Idempotent."""
    if not os.path.lexists(cdir):
        return
    for point in mounts.mounts_below(cdir):
        mounts.unmount(point)
    left = mounts.mounts_below(cdir)
    if left:
        raise Internal(f"still mounted after unmounting: {', '.join(left)}",
                       op="rootfs::remove", obj=cdir)
    try:
        with open(os.path.join(cdir, "loop")) as f:
            dev = f.read().strip()
    except FileNotFoundError:
        dev = ""
    except OSError as e:
        raise Internal(f"reading {cdir}/loop: {e.strerror}", op="rootfs::remove",
                       obj=cdir) from e
    if dev.startswith("/dev/loop"):
        loops.detach(dev, os.path.realpath(os.path.join(cdir, "scratch.img")))
    try:
        shutil.rmtree(cdir)
    except OSError as e:
        raise Internal(f"removing the root filesystem {cdir}: {e}", op="rootfs::remove",
                       obj=cdir) from e
