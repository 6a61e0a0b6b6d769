"""A container's root filesystem, built inside its own mount namespace and entered with
pivot_root.

Called only from the container's init process, after ``unshare(CLONE_NEWNS)``; nothing here
touches the host's mount table (step 1 makes every mount a slave of the host's first).

Design notes:
- ``pivot_root(".", ".")`` stacks the old root on top of the new one; unmounting "." with
  MNT_DETACH then removes the old root without needing a directory for it inside the image
  (which would have to be writable).
- masked and read-only paths are applied after pivot_root, so their paths are resolved in the
  container's view and cannot be redirected to the host by the image.
"""

from __future__ import annotations

import os
import stat

from silo.errors import InvalidArgument
from silo.kernel import libc
from silo.kernel.mounts import MountSpec, make_target, mount_one, secure_join

DEFAULT_DEVICES = [
    # path, type, major, minor, mode
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
]
DEV_SYMLINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
]

PROPAGATION_DEFAULT = libc.MS_SLAVE | libc.MS_REC


def prepare(rootfs: str, mounts: list[MountSpec], bundle: str, *, propagation: int,
            devices: list[dict[str, object]], in_userns: bool) -> None:
    """Steps before pivot_root: propagation, the rootfs bind, the mounts, /dev."""
    libc.mount(None, "/", None, propagation or PROPAGATION_DEFAULT)
    make_parent_mount_private(rootfs)
    try:
        libc.mount(rootfs, rootfs, None, libc.MS_BIND | libc.MS_REC)
    except OSError as err:
        raise InvalidArgument("root.path: cannot bind the rootfs onto itself: "
                              f"{os.strerror(err.errno) if err.errno else err.strerror}"
                              " (in a user namespace, its root must be able to reach it)",
                              field="root.path") from err
    dev_is_bind = False
    for i, spec in enumerate(mounts):
        try:
            mount_one(rootfs, spec, bundle)
        except OSError as err:
            why = os.strerror(err.errno) if err.errno else err.strerror  # not libc's detail
            raise InvalidArgument(f"mounts[{i}]: cannot mount {spec.type or 'bind'} "
                                  f"{spec.source!r} on {spec.destination}: {why}",
                                  field=f"mounts[{i}]") from err
        if spec.destination == "/dev" and spec.is_bind:
            dev_is_bind = True
    if not dev_is_bind:
        for path, typ, major, minor, mode in DEFAULT_DEVICES:
            make_device(rootfs, path, typ, major, minor, mode, 0, 0, in_userns)
        for target, link in DEV_SYMLINKS:
            dst = secure_join(rootfs, link)
            if not os.path.lexists(dst):
                os.symlink(target, dst)
        if os.path.exists("/proc/kcore"):
            dst = secure_join(rootfs, "/dev/core")
            if not os.path.lexists(dst):
                os.symlink("/proc/kcore", dst)
    for d in devices:
        make_device(rootfs, str(d["path"]), str(d["type"]), int(d.get("major", 0)),  # type: ignore[call-overload]
                    int(d.get("minor", 0)), int(d.get("fileMode", 0o666)),  # type: ignore[call-overload]
                    int(d.get("uid", 0)), int(d.get("gid", 0)), in_userns)  # type: ignore[call-overload]


def make_device(rootfs: str, path: str, typ: str, major: int, minor: int, mode: int, uid: int,
                gid: int, in_userns: bool) -> None:
    dst = secure_join(rootfs, path)
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    if in_userns:
        # mknod is not allowed in a user namespace: bind the host's node instead.
        make_target(dst, like_file=True)
        libc.mount(path, dst, None, libc.MS_BIND)
        return
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[typ]
    if os.path.lexists(dst):
        os.unlink(dst)
    old = os.umask(0)
    try:
        os.mknod(dst, kind | (mode & 0o7777), os.makedev(major, minor))
    finally:
        os.umask(old)
    os.chown(dst, uid, gid)


def make_parent_mount_private(rootfs: str) -> None:
    """Make the mount that holds ``rootfs`` private if it is shared (rootfsPropagation
    "shared"/"rshared", or a shared host mount): pivot_root refuses a new root whose parent
    mount is shared, and the rootfs bind and the container's mounts would otherwise
    propagate into the host's namespace. runc does the same."""
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            inside = point == "/" or rootfs == point or rootfs.startswith(point + "/")
            if inside and len(point) >= len(best):  # the last of equals is the top one
                best = point
                shared = any(o.startswith("shared:") for o in fields[6:fields.index("-")])
    if shared:
        libc.mount(None, best, None, libc.MS_PRIVATE)


def pivot(rootfs: str) -> None:
    os.chdir(rootfs)
    libc.pivot_root(".", ".")
    # The old root may be a shared mount: make it a slave so unmounting it does not
    # propagate the unmount back to the host.
    libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")


def chroot_instead(rootfs: str) -> None:
    """For ``linux.rootfsPropagation`` setups without a mount namespace (noPivotRoot)."""
    os.chdir(rootfs)
    libc.mount(rootfs, "/", None, libc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def write_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            raise InvalidArgument(f"linux.sysctl.{key}: cannot set {value!r}: {err.strerror}",
                                  field=f"linux.sysctl.{key}") from err


def mask_paths(paths: list[str]) -> None:
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            libc.mount("tmpfs", p, "tmpfs", libc.MS_RDONLY, None)
        else:
            libc.mount("/dev/null", p, None, libc.MS_BIND)


def readonly_paths(paths: list[str]) -> None:
    for p in paths:
        if not os.path.exists(p):
            continue
        libc.mount(p, p, None, libc.MS_BIND | libc.MS_REC)
        libc.mount(None, p, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY
                   | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)


def readonly_root() -> None:
    libc.mount(None, "/", None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY)
