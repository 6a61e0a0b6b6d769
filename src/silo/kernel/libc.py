"""The C library, loaded once and lazily, and thin wrappers over the syscalls Python lacks.

Python 3.11 has no ``os.unshare``, ``os.setns``, ``mount`` or ``pivot_root``. Every wrapper
raises ``OSError`` with the errno and the call's arguments in the message; callers in
``silo.kernel`` translate that into :mod:`silo.errors` at their own boundary.

The calls go through :mod:`silo.kernel._sys`, a small C extension built at setup
(``scripts/build-ext``), when it is there; otherwise through ``ctypes``, imported on first use.
Both paths behave the same; the extension spares silo-runtime the 2-3 ms ctypes costs.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from typing import Any

_libc: ctypes.CDLL | None = None

try:
    from silo.kernel import _sys  # type: ignore[attr-defined]
except ImportError:  # not built: ctypes it is
    _sys = None

# x86_64 and aarch64 syscall numbers for calls glibc does not wrap (or wraps under other names).
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "seccomp": 317, "bpf": 321,
               "pidfd_open": 434, "close_range": 436, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "seccomp": 277, "bpf": 280,
                "pidfd_open": 434, "close_range": 436, "mount_setattr": 442},
}

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return _libc


def load() -> None:
    """Load now what the wrappers will use, for a caller about to enter a container's mount
    namespace (a dlopen there would read the container's files)."""
    if _sys is None:
        libc()


def syscall_number(name: str) -> int:
    machine = os.uname().machine
    try:
        return _SYSCALLS[machine][name]
    except KeyError:
        raise OSError(38, f"{name}: no syscall number known for {machine}") from None


def _fail(what: str) -> OSError:
    import ctypes

    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def _check(ret: int, what: str) -> int:
    """A result of :mod:`_sys` (>= 0, or -errno) as a value or an OSError."""
    if ret < 0:
        return_err = -ret
        raise OSError(return_err, f"{what}: {os.strerror(return_err)}")
    return ret


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    what = f"mount {source} on {target} (type {fstype}, flags {flags:#x}, data {data!r})"
    if _sys is not None:
        _check(_sys.mount(_b(source), os.fsencode(target), _b(fstype), flags, _b(data)), what)
    elif libc().mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(f"mount {source} on {target} (type {fstype}, flags {flags:#x}, data {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    if _sys is not None:
        _check(_sys.umount2(os.fsencode(target), flags), f"umount {target}")
    elif libc().umount2(_b(target), flags) != 0:
        raise _fail(f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    if _sys is not None:
        _check(_sys.pivot_root(os.fsencode(new_root), os.fsencode(put_old)),
               f"pivot_root {new_root} {put_old}")
    elif libc().syscall(syscall_number("pivot_root"), _b(new_root), _b(put_old)) != 0:
        raise _fail(f"pivot_root {new_root} {put_old}")


def unshare(flags: int) -> None:
    if _sys is not None:
        _check(_sys.unshare(flags), f"unshare {flags:#x}")
    elif libc().unshare(flags) != 0:
        raise _fail(f"unshare {flags:#x}")


def setns(fd: int, nstype: int = 0) -> None:
    if _sys is not None:
        _check(_sys.setns(fd, nstype), f"setns {nstype:#x}")
    elif libc().setns(fd, nstype) != 0:
        raise _fail(f"setns {nstype:#x}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    if _sys is not None:
        return _check(_sys.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")
    import ctypes

    fn = libc().prctl
    ret: int = fn(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                  ctypes.c_ulong(arg5))
    if ret < 0:
        raise _fail(f"prctl {option}")
    return ret


def sethostname(name: str) -> None:
    raw = name.encode()
    if _sys is not None:
        _check(_sys.sethostname(raw), f"sethostname {name!r}")
    elif libc().sethostname(raw, len(raw)) != 0:
        raise _fail(f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _sys is not None:
        _check(_sys.setdomainname(raw), f"setdomainname {name!r}")
    elif libc().setdomainname(raw, len(raw)) != 0:
        raise _fail(f"setdomainname {name!r}")


AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


def mount_setattr(path: str, attr_set: int, attr_clr: int, recursive: bool = True) -> None:
    """Change mount attributes of ``path`` (and every mount below it when ``recursive``)."""
    what = f"mount_setattr {path} set {attr_set:#x} clear {attr_clr:#x}"
    if _sys is not None:
        _check(_sys.mount_setattr(os.fsencode(path), attr_set, attr_clr,
                                  AT_RECURSIVE if recursive else 0), what)
        return
    import ctypes

    attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    if libc().syscall(syscall_number("mount_setattr"), -100, _b(path), flags,
                      ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        raise _fail(f"mount_setattr {path} set {attr_set:#x} clear {attr_clr:#x}")


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    if _sys is not None:
        _check(_sys.close_range(first, last, flags), "close_range")
    elif libc().syscall(syscall_number("close_range"), first, last, flags) != 0:
        raise _fail("close_range")


CLOSE_RANGE_CLOEXEC = 4


# Capabilities: glibc exports capget/capset; version 3 takes two 32-bit words per set.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capget(pid: int = 0) -> tuple[int, int, int]:
    """The (effective, permitted, inheritable) 64-bit capability masks of ``pid`` (0 = self)."""
    if _sys is not None:
        got = _sys.capget(pid)
        if isinstance(got, int):
            _check(got, f"capget {pid}")
        eff, prm, inh = got
        return int(eff), int(prm), int(inh)
    import ctypes

    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (ctypes.c_uint32 * 6)()  # [eff, prm, inh] for bits 0-31, then for bits 32-63
    if libc().capget(header, data) != 0:
        raise _fail(f"capget {pid}")
    return (data[0] | data[3] << 32, data[1] | data[4] << 32, data[2] | data[5] << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets (64-bit masks)."""
    if _sys is not None:
        _check(_sys.capset(effective, permitted, inheritable),
               f"capset eff={effective:#x} prm={permitted:#x} inh={inheritable:#x}")
        return
    import ctypes

    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    low, high = 0xFFFFFFFF, 32
    data = (ctypes.c_uint32 * 6)(
        effective & low, permitted & low, inheritable & low,
        effective >> high & low, permitted >> high & low, inheritable >> high & low,
    )
    if libc().capset(header, data) != 0:
        raise _fail(f"capset eff={effective:#x} prm={permitted:#x} inh={inheritable:#x}")


# libseccomp, loaded on first use. Its calls return a negative errno instead of setting errno.
_libseccomp: ctypes.CDLL | None = None


def libseccomp() -> ctypes.CDLL:
    """libseccomp.so.2 with the prototypes silo uses; OSError(ENOENT) when it is not installed."""
    global _libseccomp
    if _libseccomp is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as err:
            raise OSError(2, f"libseccomp.so.2: {err}") from err
        ctx, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        for name, restype, argtypes in (
            ("seccomp_init", ctx, [u32]),
            ("seccomp_release", None, [ctx]),
            ("seccomp_attr_set", cint, [ctx, cint, u32]),
            ("seccomp_arch_exist", cint, [ctx, u32]),
            ("seccomp_arch_add", cint, [ctx, u32]),
            ("seccomp_arch_remove", cint, [ctx, u32]),
            ("seccomp_arch_native", u32, []),
            ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
            ("seccomp_syscall_resolve_name", cint, [ctypes.c_char_p]),
            ("seccomp_rule_add_array", cint, [ctx, u32, cint, ctypes.c_uint, ctypes.c_void_p]),
            ("seccomp_load", cint, [ctx]),
            ("seccomp_export_pfc", cint, [ctx, cint]),
            ("seccomp_api_get", ctypes.c_uint, []),
        ):
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        _libseccomp = lib
    return _libseccomp


_scmp_arg_cmp: type[ctypes.Structure] | None = None


def scmp_arg_cmp_array(conditions: list[tuple[int, int, int, int]]) -> ctypes.Array[Any]:
    """A C array of ``struct scmp_arg_cmp`` from (arg index, op, datum_a, datum_b) tuples."""
    global _scmp_arg_cmp
    import ctypes

    if _scmp_arg_cmp is None:
        class ScmpArgCmp(ctypes.Structure):
            _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int),
                        ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))

        _scmp_arg_cmp = ScmpArgCmp
    struct = _scmp_arg_cmp
    return (struct * len(conditions))(*(struct(*c) for c in conditions))
