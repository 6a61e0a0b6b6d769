"""Mount options, safe path joins inside a root, and one OCI mount applied to a rootfs.

Design note: a mount destination must be resolved *inside* the container's root, following
symlinks as the container would see them, or a malicious image can point ``/proc`` (or any
destination) at a host directory through a symlink. :func:`secure_join` walks the path one
component at a time and clamps every symlink to the root.
"""

from __future__ import annotations

import os
import stat

from silo.errors import InvalidArgument
from silo.kernel import libc

# option -> (clear, flag) : clear=True means the option removes the flag.
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, libc.MS_SYNCHRONOUS), "atime": (True, libc.MS_NOATIME),
    "bind": (False, libc.MS_BIND), "defaults": (False, 0), "dev": (True, libc.MS_NODEV),
    "diratime": (True, libc.MS_NODIRATIME), "dirsync": (False, libc.MS_DIRSYNC),
    "exec": (True, libc.MS_NOEXEC), "iversion": (False, 1 << 23),
    "lazytime": (False, libc.MS_LAZYTIME), "loud": (True, libc.MS_SILENT),
    "mand": (False, libc.MS_MANDLOCK), "noatime": (False, libc.MS_NOATIME),
    "nodev": (False, libc.MS_NODEV), "nodiratime": (False, libc.MS_NODIRATIME),
    "noexec": (False, libc.MS_NOEXEC), "noiversion": (True, 1 << 23),
    "nolazytime": (True, libc.MS_LAZYTIME), "nomand": (True, libc.MS_MANDLOCK),
    "norelatime": (True, libc.MS_RELATIME), "nostrictatime": (True, libc.MS_STRICTATIME),
    "nosuid": (False, libc.MS_NOSUID), "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
    "rbind": (False, libc.MS_BIND | libc.MS_REC), "relatime": (False, libc.MS_RELATIME),
    "remount": (False, libc.MS_REMOUNT), "ro": (False, libc.MS_RDONLY),
    "rw": (True, libc.MS_RDONLY), "silent": (False, libc.MS_SILENT),
    "strictatime": (False, libc.MS_STRICTATIME), "suid": (True, libc.MS_NOSUID),
    "symfollow": (True, libc.MS_NOSYMFOLLOW), "sync": (False, libc.MS_SYNCHRONOUS),
}
PROPAGATION: dict[str, int] = {
    "private": libc.MS_PRIVATE, "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED, "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE, "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE, "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}
# Recursive variants (OCI 1.1): the plain flag is applied to the mount itself, and the
# attribute to every mount below it with mount_setattr(AT_RECURSIVE).
# option -> (clear?, MS_* flag for the mount itself, MOUNT_ATTR_* for the tree)
RECURSIVE_ATTRS: dict[str, tuple[bool, int, int]] = {
    "rro": (False, libc.MS_RDONLY, libc.MOUNT_ATTR_RDONLY),
    "rrw": (True, libc.MS_RDONLY, libc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, libc.MS_NOSUID, libc.MOUNT_ATTR_NOSUID),
    "rsuid": (True, libc.MS_NOSUID, libc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, libc.MS_NODEV, libc.MOUNT_ATTR_NODEV),
    "rdev": (True, libc.MS_NODEV, libc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, libc.MS_NOEXEC, libc.MOUNT_ATTR_NOEXEC),
    "rexec": (True, libc.MS_NOEXEC, libc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, libc.MS_NODIRATIME, libc.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, libc.MS_NODIRATIME, libc.MOUNT_ATTR_NODIRATIME),
    "rnoatime": (False, libc.MS_NOATIME, libc.MOUNT_ATTR_NOATIME),
    "ratime": (True, libc.MS_NOATIME, libc.MOUNT_ATTR_NOATIME),
    "rrelatime": (False, libc.MS_RELATIME, libc.MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, libc.MS_RELATIME, 0),
    "rstrictatime": (False, libc.MS_STRICTATIME, libc.MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, libc.MS_STRICTATIME, libc.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, libc.MS_NOSYMFOLLOW, libc.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, libc.MS_NOSYMFOLLOW, libc.MOUNT_ATTR_NOSYMFOLLOW),
}
_ATIME = {"rnoatime", "ratime", "rrelatime", "rstrictatime", "rnostrictatime"}
OTHER = {"tmpcopyup", "acl", "noacl", "idmap", "ridmap"}

ALL_OPTIONS = sorted(set(FLAGS) | set(PROPAGATION) | set(RECURSIVE_ATTRS) | OTHER)


class MountSpec:
    """One parsed OCI mount: flags, propagation and the data string for the filesystem."""

    __slots__ = ("attr_clr", "attr_set", "data", "destination", "extra", "flags", "propagation",
                 "source", "type")

    def __init__(self, m: dict[str, object], where: str) -> None:
        dest = m.get("destination")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise InvalidArgument(f"{where}.destination: must be an absolute path, got {dest!r}",
                                  field=where + ".destination")
        self.destination = os.path.normpath(dest)
        src = m.get("source", "")
        typ = m.get("type", "")
        if not isinstance(src, str):
            raise InvalidArgument(f"{where}.source: must be a string", field=where + ".source")
        if not isinstance(typ, str):
            raise InvalidArgument(f"{where}.type: must be a string", field=where + ".type")
        opts = m.get("options") or []
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            raise InvalidArgument(f"{where}.options: must be an array of strings",
                                  field=where + ".options")
        self.source = src
        self.type = typ
        flags = 0
        prop = 0
        data: list[str] = []
        extra: list[str] = []
        attr_set = attr_clr = 0
        for o in opts:
            if o in FLAGS:
                clear, bit = FLAGS[o]
                flags = flags & ~bit if clear else flags | bit
            elif o in PROPAGATION:
                prop |= PROPAGATION[o]
            elif o in RECURSIVE_ATTRS:
                clear, bit, attr = RECURSIVE_ATTRS[o]
                flags = flags & ~bit if clear else flags | bit
                if o in _ATIME:
                    attr_clr |= libc.MOUNT_ATTR__ATIME  # the atime mode is one field
                    attr_set = (attr_set & ~libc.MOUNT_ATTR__ATIME) | (0 if clear else attr)
                elif clear:
                    attr_clr |= attr
                    attr_set &= ~attr
                else:
                    attr_set |= attr
                    attr_clr &= ~attr
                extra.append(o)
            elif o in OTHER:
                extra.append(o)
            else:
                data.append(o)  # filesystem-specific (mode=755, size=..., uid=...)
        if typ == "bind":
            flags |= libc.MS_BIND
        self.flags = flags
        self.propagation = prop
        self.data = ",".join(data)
        self.extra = extra
        self.attr_set = attr_set
        self.attr_clr = attr_clr

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & libc.MS_BIND)


def secure_join(root: str, unsafe: str) -> str:
    """``root`` + ``unsafe`` with every symlink resolved as if ``root`` were ``/``.

    Components that do not exist are appended as they are; the result never leaves ``root``.
    """
    parts = [p for p in unsafe.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join([*resolved, part])
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 255:
                raise InvalidArgument(f"too many levels of symlinks in {unsafe!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return root.rstrip("/") + "/" + "/".join(resolved)


def make_target(path: str, like_file: bool) -> None:
    """Create a mount point: a file (for a file bind source) or a directory."""
    if os.path.lexists(path):
        return
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if like_file:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.mkdir(path, 0o755)


def mount_one(rootfs: str, spec: MountSpec, bundle: str) -> None:
    """Mount one OCI mount at its destination inside ``rootfs`` (already our mount ns)."""
    target = secure_join(rootfs, spec.destination)
    source = spec.source
    if spec.is_bind:
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        st = os.stat(source)
        make_target(target, like_file=not stat.S_ISDIR(st.st_mode))
        libc.mount(source, target, None, spec.flags & (libc.MS_BIND | libc.MS_REC))
        # A bind mount ignores other flags on the first call: remount to apply them.
        rest = spec.flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)
        if rest:
            libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT | rest)
    else:
        make_target(target, like_file=False)
        if spec.type == "cgroup":
            mount_cgroup(target, spec)
        else:
            try:
                libc.mount(source or spec.type, target, spec.type, spec.flags, spec.data or None)
            except OSError as err:
                # sysfs cannot be mounted without a network namespace of our own (EPERM):
                # fall back to a read-only recursive bind of the host's, as runc does.
                if spec.type != "sysfs" or err.errno != 1:
                    raise
                libc.mount("/sys", target, None, libc.MS_BIND | libc.MS_REC)
                libc.mount(None, target, None,
                           libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID
                           | libc.MS_NODEV | libc.MS_NOEXEC)
    if spec.attr_set or spec.attr_clr:
        libc.mount_setattr(target, spec.attr_set, spec.attr_clr, recursive=True)
    if spec.propagation:
        libc.mount(None, target, None, spec.propagation)


def mount_cgroup(target: str, spec: MountSpec) -> None:
    """/sys/fs/cgroup inside the container: cgroup2 when the host is v2-only, else a
    tmpfs with a mount of each v1 hierarchy (the container sees its cgroup namespace root)."""
    from silo.kernel import cgroups

    layout = cgroups.detect()
    flags = spec.flags & (libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
                          | libc.MS_RELATIME)
    if layout.mode == "v2":
        libc.mount("cgroup2", target, "cgroup2", flags)
        return
    libc.mount("tmpfs", target, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
               "mode=755")
    seen: dict[str, str] = {}
    for ctrl, mnt in layout.v1.items():
        if mnt in seen:
            continue
        name = os.path.basename(mnt)
        seen[mnt] = name
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        opts = "none,name=systemd" if ctrl == "name=systemd" else name
        try:
            libc.mount("cgroup", sub, "cgroup", flags, opts)
        except OSError:
            os.rmdir(sub)
    # No cgroup2 at unified/ on a hybrid host, as runc: the container's processes are not in
    # the v2 hierarchy there (see Cgroup.join_self), and a fresh cgroup2 mount costs an RCU
    # grace period (10-13 ms here) on every start.
    if flags & libc.MS_RDONLY:
        libc.mount(None, target, None, libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID
                   | libc.MS_NODEV | libc.MS_NOEXEC)
