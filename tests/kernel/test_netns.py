"""silo.kernel.netns against the running kernel: named namespaces created, entered (a child
process, a short-lived thread) and deleted, with nothing left behind and the caller's own
namespace never changed."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable

import pytest

from silo.errors import AlreadyExists, InvalidArgument, NotFound
from silo.kernel import libc, netns
from silo.kernel.netlink import Netlink
from tests.kernel.netfixtures import RUN_DIR, requires_netns

pytestmark = [pytest.mark.kernel, requires_netns]


def own_netns() -> int:
    return os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_create_delete(net_prefix: str) -> None:
    path = os.path.join(RUN_DIR, f"{net_prefix}-own")
    netns.create(path)
    try:
        assert netns.exists(path) and mounted(path)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        with Netlink(path) as nl:
            lo = nl.link("lo")
            assert lo is not None and lo.up
            assert [x.name for x in nl.links()] == ["lo"]
        with pytest.raises(AlreadyExists):
            netns.create(path)
        assert netns.exists(path)  # the failed create did not touch it
    finally:
        netns.delete(path)
    assert not os.path.exists(path) and not mounted(path)
    assert not netns.exists(path)
    with pytest.raises(NotFound):
        netns.delete(path)
    netns.ensure_deleted(path)  # quiet when absent


def test_run_in_child_and_thread(netns_path: str) -> None:
    mine = own_netns()
    inner = os.stat(netns_path).st_ino

    def where() -> int:
        return own_netns()

    assert netns.run_in(netns_path, where) == inner
    assert netns.call_in_thread(netns_path, where) == inner
    assert own_netns() == mine  # this thread never moved


def test_run_in_returns_the_exception(netns_path: str) -> None:
    def boom(x: int) -> int:
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad 7"):
        netns.run_in(netns_path, boom, 7)
    with pytest.raises(ValueError, match="bad 8"):
        netns.call_in_thread(netns_path, boom, 8)


def test_sysctl_in_is_per_namespace(netns_path: str) -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host = f.read().strip()
    want = "0" if host == "1" else "1"
    netns.sysctl_in(netns_path, "net.ipv4.ip_forward", want)
    assert netns.sysctl_get_in(netns_path, "net.ipv4.ip_forward") == want
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == host
    assert netns.sysctl_get_in(netns_path, "net.ipv4.conf.lo.forwarding") == want


def test_bad_input(net_prefix: str, netns_path: str) -> None:
    for bad in ("", "relative/path", "/x\0y"):
        with pytest.raises(InvalidArgument):
            netns.create(bad)
    with pytest.raises(NotFound):
        netns.open_fd(os.path.join(RUN_DIR, f"{net_prefix}-absent"))
    plain = os.path.join(RUN_DIR, f"{net_prefix}-plain")
    with open(plain, "w"):
        pass
    try:
        with pytest.raises(NotFound):
            netns.open_fd(plain)  # a plain file is not a namespace
        assert not netns.exists(plain)
    finally:
        os.unlink(plain)
    for key in ("kernel.hostname", "net..x", "net.ipv4.../x", "net.ipv4.conf.lo.nope"):
        with pytest.raises((InvalidArgument, NotFound)):
            netns.sysctl_in(netns_path, key, "1")
    with pytest.raises(InvalidArgument):
        netns.sysctl_in(netns_path, "net.ipv4.ip_forward", "banana")
    for value in ("1\n0", "", "1\x00"):
        with pytest.raises(InvalidArgument):
            netns.sysctl_in(netns_path, "net.ipv4.ip_forward", value)
    # A symbolic link to a namespace is not ours to unmount and remove.
    link = os.path.join(RUN_DIR, f"{net_prefix}-link")
    os.symlink(netns_path, link)
    try:
        assert netns.exists(link)
        with pytest.raises(InvalidArgument):
            netns.delete(link)
        assert netns.exists(netns_path) and mounted(netns_path)
    finally:
        os.unlink(link)


def test_many_namespaces_leave_nothing(netns_factory: Callable[[], str],
                                       net_prefix: str) -> None:
    paths = [netns_factory() for _ in range(5)]
    assert len({os.stat(p).st_ino for p in paths}) == 5
    for p in paths:
        netns.delete(p)
    assert [n for n in os.listdir(RUN_DIR) if n.startswith(net_prefix)] == []
    assert not any(mounted(p) for p in paths)


def test_a_fifo_is_never_opened(net_prefix: str) -> None:
    fifo = os.path.join(RUN_DIR, f"{net_prefix}-fifo")
    os.makedirs(RUN_DIR, exist_ok=True)
    os.mkfifo(fifo)
    try:
        assert not netns.exists(fifo)  # would block forever if it opened the FIFO
        with pytest.raises(NotFound):
            netns.open_fd(fifo)
    finally:
        os.unlink(fifo)


def test_delete_reaches_copied_mount_namespaces(net_prefix: str) -> None:
    """A mount namespace copied after the netns was made (a process that unshared; the root
    mount here is private, so no unmount propagates) loses the netns mount when it is deleted,
    so it cannot pin the namespace."""
    d = tempfile.mkdtemp(prefix=f"silo-{net_prefix}-")
    try:
        path = os.path.join(d, "ns")
        netns.create(path)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: its own copy of the mount table
            code = 1
            try:
                libc.unshare(libc.CLONE_NEWNS)
                os.write(from_child_w, b"1" if mounted(path) else b"0")
                os.read(to_child_r, 1)  # the parent deleted it
                code = 0 if not mounted(path) else 3
            finally:
                os._exit(code)
        try:
            assert os.read(from_child_r, 1) == b"1"
            netns.delete(path)
            os.write(to_child_w, b"x")
        finally:
            _, status = os.waitpid(pid, 0)
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 0, "the copy kept the netns mount"
    finally:
        netns.ensure_deleted(os.path.join(d, "ns"))
        os.rmdir(d)
