"""Named network namespaces: a namespace kept alive by a bind mount of its nsfs file at a path
(as ``ip netns`` does under /run/netns; silo uses its own run dir), and running code inside one.

A thread's ``setns`` moves only that thread (trio's note holds here too), so work inside a
namespace runs either on a short-lived thread made for it that exits right after
(:func:`call_in_thread`: opening a socket, writing a sysctl) or in a forked child
(:func:`run_in`: anything that may leave state in its process). A thread that serves other
work is never moved.

Imports :mod:`silo.errors` and :mod:`silo.kernel.libc` only (and netlink, lazily, to bring
``lo`` up in a new namespace).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from silo.errors import AlreadyExists, Internal, NotFound, invalid
from silo.kernel import libc

T = TypeVar("T")

CLONE_NEWNET = libc.CLONE_NEWNET
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def _check_path(path: str, op: str) -> None:
    if not isinstance(path, str) or not path or "\0" in path:
        raise invalid("netns", f"must be a non-empty path, got {path!r}", op=op)
    if not os.path.isabs(path):
        raise invalid("netns", f"must be an absolute path, got {path!r}", op=op, obj=path)


def exists(path: str) -> bool:
    """Whether ``path`` holds a network namespace (an nsfs file of type net)."""
    try:
        fd = _open_nsfs(path)
    except OSError:
        return False
    if fd < 0:
        return False
    try:
        return _is_netns_fd(fd)
    finally:
        os.close(fd)


def _open_nsfs(path: str) -> int:
    """An fd of ``path`` if it is an nsfs file, else -1. Checked with stat before opening, so
    a path a client names that is a FIFO or a device is never opened (that could block or
    have effects)."""
    if os.stat(path).st_dev != _nsfs_dev():
        return -1
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)


def _is_netns_fd(fd: int) -> bool:
    # NS_GET_NSTYPE (_IO(0xb7, 0x3)) answers the namespace type of an nsfs fd.
    import fcntl

    try:
        return fcntl.ioctl(fd, 0xB703) == CLONE_NEWNET
    except OSError:
        return False


def open_fd(path: str) -> int:
    """A close-on-exec fd of the network namespace at ``path``; NotFound if there is none."""
    op = "netns::open"
    _check_path(path, op)
    try:
        fd = _open_nsfs(path)
    except FileNotFoundError as err:
        raise NotFound(f"no network namespace at {path}", op=op, obj=path) from err
    except OSError as err:
        raise Internal(f"open {path}: {err.strerror}", op=op, obj=path) from err
    if fd < 0:
        raise NotFound(f"{path} is not a network namespace", op=op, obj=path)
    if not _is_netns_fd(fd):
        os.close(fd)
        raise NotFound(f"{path} is not a network namespace", op=op, obj=path)
    return fd


def create(path: str) -> None:
    """A new network namespace bind-mounted at ``path`` (parent directories made), with ``lo``
    up. AlreadyExists if ``path`` exists; on any failure nothing is left behind."""
    op = "netns::create"
    _check_path(path, op)
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except FileExistsError as err:
        raise AlreadyExists(f"{path} exists", op=op, obj=path) from err
    except OSError as err:
        raise Internal(f"create {path}: {err.strerror}", op=op, obj=path) from err
    os.close(fd)

    def mount_new() -> None:
        libc.unshare(CLONE_NEWNET)
        libc.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None,
                   libc.MS_BIND)

    try:
        _in_thread(mount_new)
    except BaseException as err:
        _remove(path)
        if isinstance(err, OSError):
            raise Internal(f"create {path}: {err.strerror}", op=op, obj=path) from err
        raise
    try:
        from silo.kernel.netlink import Netlink

        with Netlink(path) as nl:
            nl.set_link("lo", up=True)
    except BaseException:
        _remove(path)
        raise


def is_mount_point(path: str) -> bool:
    """Whether ``path`` is a mount point in this mount namespace (from mountinfo: a bind mount
    of a directory onto itself has the same device as its parent, which os.path.ismount
    misses)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ", 5)[4]
            if "\\" in point:  # mountinfo writes space, tab, newline, backslash as \ooo
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
            if point == real:
                return True
    return False


def _remove(path: str) -> None:
    try:
        libc.umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def delete(path: str) -> None:
    """Unmount and remove the namespace file at ``path``. NotFound if there is no namespace
    there. The namespace itself lives on while a process or an open fd is in it.

    The unlink matters as much as the unmount: a mount namespace copied from ours since (a
    process that unshared) holds its own copy of the bind mount, which an unmount here does
    not reach; unlinking the file detaches it in every namespace (Linux >= 3.18), so no copy
    keeps the network namespace alive. No shared-propagation run dir is needed for that."""
    op = "netns::delete"
    _check_path(path, op)
    if os.path.islink(path):
        # A link to some namespace (/proc/<pid>/ns/net) is not a namespace we bind-mounted.
        raise invalid("netns", f"{path} is a symbolic link, not a namespace mount", op=op,
                      obj=path)
    if not exists(path):
        raise NotFound(f"no network namespace at {path}", op=op, obj=path)
    try:
        libc.umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW)
        os.unlink(path)
    except OSError as err:
        raise Internal(f"delete {path}: {err.strerror}", op=op, obj=path) from err


def ensure_deleted(path: str) -> None:
    """:func:`delete` that is quiet when nothing is there (also removes a stray plain file)."""
    _check_path(path, "netns::delete")
    if exists(path):
        delete(path)
    elif os.path.isfile(path) and not is_mount_point(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# -- running code inside ----------------------------------------------------------------------

def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread and return its result or raise its exception there."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:
            box["error"] = err

    t = threading.Thread(target=body, name="silo-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def call_in_thread(path: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a thread made for this call that first enters the network namespace at
    ``path``, then exits. For calls that need only the thread's namespace at the moment they
    run (creating a socket, opening a /proc/sys/net file) and keep no thread state."""
    fd = open_fd(path)

    def body() -> T:
        try:
            libc.setns(fd, CLONE_NEWNET)
        except OSError as err:
            raise Internal(f"setns {path}: {err.strerror}", op="netns::enter",
                           obj=path) from err
        return fn(*args)

    try:
        return _in_thread(body)
    finally:
        os.close(fd)


def run_in(path: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a forked child inside the network namespace at ``path``; its result
    (or the exception it raised) comes back pickled. The child exits right after, so nothing
    it does to its process reaches the caller's."""
    fd = open_fd(path)
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError as err:
        os.close(fd)
        os.close(r)
        os.close(w)
        raise Internal(f"fork: {err.strerror}", op="netns::run_in", obj=path) from err
    if pid == 0:  # the child: never returns into the caller
        code = 0
        try:
            os.close(r)
            libc.setns(fd, CLONE_NEWNET)
            try:
                payload = pickle.dumps((True, fn(*args)))
            except BaseException as err:
                code = 1
                try:
                    payload = pickle.dumps((False, err))
                except Exception:
                    payload = pickle.dumps((False, Internal(repr(err), op="netns::run_in",
                                                            obj=path)))
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view):]
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    os.close(fd)
    os.close(w)
    chunks = []
    try:
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise Internal("the child inside the namespace died without an answer",
                       op="netns::run_in", obj=path)
    ok, value = pickle.loads(b"".join(chunks))
    if ok:
        result: T = value
        return result
    raise value


# -- sysctls inside a namespace ---------------------------------------------------------------

def sysctl_path(key: str) -> str:
    """/proc/sys path of a dotted key. An interface part with dots is written with ``/`` as
    sysctl(8) does (``net.ipv4.conf.eth0/100.proxy_arp``)."""
    parts = key.split(".")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise invalid("sysctl", f"not a sysctl key: {key!r}")
    parts = [p.replace("/", ".") for p in parts]
    if any(p in (".", "..") or "\0" in p for p in parts):
        raise invalid("sysctl", f"not a sysctl key: {key!r}")
    return "/proc/sys/" + "/".join(parts)


def write_sysctl_file(file: str, key: str, value: str) -> None:
    if not value or any(ord(c) < 32 and c != "\t" for c in value):
        raise invalid("sysctl", f"{key}: {value!r} is not a single-line value",
                      op="sysctl::set", obj=key)
    try:
        with open(file, "w") as f:
            f.write(value)
    except FileNotFoundError as err:
        raise NotFound(f"no sysctl {key}", op="sysctl::set", obj=key) from err
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ERANGE):
            raise invalid("sysctl", f"{key}: {value!r} refused: {err.strerror}",
                          op="sysctl::set", obj=key) from err
        raise Internal(f"write {key}: {err.strerror}", op="sysctl::set", obj=key) from err


def read_sysctl_file(file: str, key: str) -> str:
    try:
        with open(file) as f:
            return f.read().strip()
    except FileNotFoundError as err:
        raise NotFound(f"no sysctl {key}", op="sysctl::get", obj=key) from err
    except OSError as err:
        raise Internal(f"read {key}: {err.strerror}", op="sysctl::get", obj=key) from err


def _check_net_key(key: str) -> str:
    file = sysctl_path(key)
    if not key.startswith("net."):
        raise invalid("sysctl", f"{key}: only net.* keys belong to a network namespace")
    return file


def sysctl_in(path: str, key: str, value: str | int) -> None:
    """Write a ``net.*`` sysctl inside the namespace at ``path``."""
    file = _check_net_key(key)
    call_in_thread(path, write_sysctl_file, file, key, str(value))


def sysctl_get_in(path: str, key: str) -> str:
    file = _check_net_key(key)
    return call_in_thread(path, read_sysctl_file, file, key)


__all__ = ["call_in_thread", "create", "delete", "ensure_deleted", "exists",
           "is_mount_point", "open_fd", "read_sysctl_file", "run_in", "sysctl_get_in",
           "sysctl_in", "sysctl_path", "write_sysctl_file"]
