"""silo.kernel.netlink against real links, each test inside fresh network namespaces of its
own (tests.kernel.netfixtures): bridges, veth pairs across namespaces, addresses, routes,
neighbours, vxlan and FDB entries, statistics after real traffic, and the errors."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable

import pytest

from silo.errors import AlreadyExists, InvalidArgument, NotFound
from silo.kernel import netns, sysctl
from silo.kernel.netlink import Netlink
from tests.kernel.netfixtures import requires_netns

pytestmark = [pytest.mark.kernel, requires_netns]


def ip_in(path: str, *args: str) -> str:
    """What iproute2 sees inside the namespace: the independent witness."""
    return subprocess.run(["nsenter", f"--net={path}", "ip", *args], check=True,
                          capture_output=True, text=True).stdout


def test_bridge_create_list_delete(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0", mtu=1400, mac="02:00:00:00:00:01")
        link = nl.link("br0")
        assert link is not None
        assert (link.kind, link.mtu, link.mac, link.up) == ("bridge", 1400, "02:00:00:00:00:01",
                                                             False)
        assert "br0" in [x.name for x in nl.links()]
        assert "br0:" in ip_in(netns_path, "link", "show", "br0")
        nl.set_link("br0", up=True)
        assert nl.link("br0").up  # type: ignore[union-attr]
        nl.delete_link("br0")
        assert nl.link("br0") is None
        assert [x.name for x in nl.links()] == ["lo"]


def test_netlink_lives_in_its_namespace(netns_path: str, net_prefix: str) -> None:
    """A bridge made through a namespace's Netlink never appears on the host."""
    name = f"{net_prefix}br"
    with Netlink(netns_path) as nl:
        nl.add_bridge(name)
    with Netlink() as host:
        assert host.link(name) is None
    assert name in ip_in(netns_path, "-br", "link")


def test_veth_peer_created_in_another_namespace(netns_factory: Callable[[], str]) -> None:
    a, b = netns_factory(), netns_factory()
    with Netlink(a) as na, Netlink(b) as nb:
        na.add_bridge("br0")
        na.add_veth("h0", "eth0", peer_netns=b, mtu=1450, peer_mac="02:00:00:00:00:22")
        na.set_link("h0", master="br0", up=True)
        host_side = na.link("h0")
        peer = nb.link("eth0")
        assert host_side is not None and peer is not None
        assert host_side.kind == peer.kind == "veth"
        assert host_side.master == na.link("br0").index  # type: ignore[union-attr]
        assert (peer.mtu, peer.mac) == (1450, "02:00:00:00:00:22")
        assert host_side.peer_ifindex == peer.index
        assert na.link("eth0") is None
        na.set_link("h0", master=False)
        assert na.link("h0").master is None  # type: ignore[union-attr]
        na.delete_link("h0")
        assert nb.link("eth0") is None  # the peer went with it


def test_set_link_moves_renames_and_changes_mtu(netns_factory: Callable[[], str]) -> None:
    a, b = netns_factory(), netns_factory()
    with Netlink(a) as na, Netlink(b) as nb:
        na.add_veth("v0", "v1")
        na.set_link("v1", netns=b)
        assert na.link("v1") is None and nb.link("v1") is not None
        nb.set_link("v1", rename="eth0", mtu=1300, mac="02:00:00:00:00:33")
        link = nb.link("eth0")
        assert link is not None and (link.mtu, link.mac) == (1300, "02:00:00:00:00:33")


def test_addresses_v4_v6(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0")
        nl.add_address("br0", "10.20.0.1/24")
        nl.add_address("br0", "fd00:20::1/64")
        got = {a.cidr for a in nl.addresses("br0")}
        assert {"10.20.0.1/24", "fd00:20::1/64"} <= got
        shown = ip_in(netns_path, "addr", "show", "br0")
        assert "inet 10.20.0.1/24 brd 10.20.0.255" in shown and "fd00:20::1/64" in shown
        with pytest.raises(AlreadyExists):
            nl.add_address("br0", "10.20.0.1/24")
        nl.delete_address("br0", "10.20.0.1/24")
        assert "10.20.0.1/24" not in {a.cidr for a in nl.addresses("br0")}
        with pytest.raises(NotFound):
            nl.delete_address("br0", "10.20.0.1/24")


def test_routes_v4_v6(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0")
        nl.set_link("br0", up=True)
        nl.add_address("br0", "10.21.0.1/24")
        nl.add_address("br0", "fd00:21::1/64")
        nl.add_route("10.99.0.0/16", via="10.21.0.2", metric=50)
        nl.add_route("default", via="10.21.0.254")
        nl.add_route("10.98.0.0/16", dev="br0")
        nl.add_route("fd00:99::/48", via="fd00:21::2")
        nl.add_route("10.97.0.0/16", via="10.21.0.3", table=100)
        main = {(r.dst, r.gateway) for r in nl.routes()}
        assert {("10.99.0.0/16", "10.21.0.2"), ("default", "10.21.0.254"),
                ("10.98.0.0/16", None), ("fd00:99::/48", "fd00:21::2")} <= main
        assert ("10.97.0.0/16", "10.21.0.3") not in main
        assert ("10.97.0.0/16", "10.21.0.3") in {(r.dst, r.gateway)
                                                  for r in nl.routes(table=100)}
        assert "10.99.0.0/16 via 10.21.0.2 dev br0 proto static metric 50" in \
            ip_in(netns_path, "route")
        with pytest.raises(AlreadyExists):
            nl.add_route("default", via="10.21.0.254")
        nl.add_route("default", via="10.21.0.253", replace=True)
        nl.delete_route("10.99.0.0/16", via="10.21.0.2")
        nl.delete_route("default")
        nl.delete_route("fd00:99::/48")
        left = {r.dst for r in nl.routes()}
        assert not {"10.99.0.0/16", "default", "fd00:99::/48"} & left
        with pytest.raises(NotFound):
            nl.delete_route("10.99.0.0/16")


def test_neighbours(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0")
        nl.add_neighbour("10.22.0.5", "02:00:00:00:00:05", "br0")
        nl.add_neighbour("fd00:22::5", "02:00:00:00:00:06", "br0")
        nl.add_neighbour("10.22.0.5", "02:00:00:00:00:07", "br0")  # replaces
        seen = {(n.ip, n.mac) for n in nl.neighbours("br0")}
        assert {("10.22.0.5", "02:00:00:00:00:07"), ("fd00:22::5", "02:00:00:00:00:06")} <= seen
        assert "10.22.0.5 lladdr 02:00:00:00:00:07 PERMANENT" in \
            ip_in(netns_path, "neigh", "show", "dev", "br0")
        nl.delete_neighbour("10.22.0.5", "br0")
        assert "10.22.0.5" not in {n.ip for n in nl.neighbours("br0")}
        with pytest.raises(NotFound):
            nl.delete_neighbour("10.22.0.5", "br0")


def test_vxlan_and_fdb(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("under")
        nl.add_address("under", "10.23.0.1/24")
        nl.add_vxlan("vx0", vni=4242, local="10.23.0.1", dev="under", port=4790)
        link = nl.link("vx0")
        assert link is not None and link.kind == "vxlan"
        detail = ip_in(netns_path, "-d", "link", "show", "vx0")
        assert "vxlan id 4242 local 10.23.0.1 dev under" in detail
        assert "dstport 4790" in detail and "nolearning" in detail
        nl.add_fdb("00:00:00:00:00:00", "vx0", dst="10.23.0.7", append=True)
        nl.add_fdb("00:00:00:00:00:00", "vx0", dst="10.23.0.8", append=True)
        nl.add_fdb("02:00:00:00:00:09", "vx0", dst="10.23.0.7")
        fdb = ip_in(netns_path, "-4", "neigh", "show")  # unrelated; fdb below
        del fdb
        shown = subprocess.run(["nsenter", f"--net={netns_path}", "bridge", "fdb", "show",
                                "dev", "vx0"], check=True, capture_output=True,
                               text=True).stdout
        assert "00:00:00:00:00:00 dst 10.23.0.7" in shown
        assert "00:00:00:00:00:00 dst 10.23.0.8" in shown
        assert "02:00:00:00:00:09 dst 10.23.0.7" in shown
        nl.delete_fdb("02:00:00:00:00:09", "vx0", dst="10.23.0.7")
        assert "02:00:00:00:00:09" not in {n.mac for n in nl.neighbours("vx0", family=7)}


def _ping_from(path: str, dst: str) -> None:
    """One ICMP echo from inside ``path`` to ``dst`` (a datagram ICMP socket, no ping
    binary), answered by the peer's kernel."""

    def echo() -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        s.settimeout(5)
        try:
            s.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01silo", (dst, 0))
            data, _ = s.recvfrom(1024)
            return data[0] == 0  # echo reply
        finally:
            s.close()

    assert netns.run_in(path, echo), f"no echo reply from {dst}"


def test_stats_after_ping_between_namespaces(netns_factory: Callable[[], str]) -> None:
    a, b = netns_factory(), netns_factory()
    for path in (a, b):
        netns.sysctl_in(path, "net.ipv4.ping_group_range", "0 0")
    with Netlink(a) as na, Netlink(b) as nb:
        na.add_veth("eth0", "eth0", peer_netns=b)
        na.add_address("eth0", "10.24.0.1/24")
        nb.add_address("eth0", "10.24.0.2/24")
        na.set_link("eth0", up=True)
        nb.set_link("eth0", up=True)
        before = na.stats("eth0")
        _ping_from(a, "10.24.0.2")
        after_a, after_b = na.stats("eth0"), nb.stats("eth0")
        assert after_a.tx_packets > before.tx_packets and after_a.rx_packets >= 1
        assert after_b.rx_bytes >= 40 and after_b.tx_packets >= 1


def test_errors_name_the_thing_and_change_nothing(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        before = [x.name for x in nl.links()]
        nl.add_bridge("br0")
        with pytest.raises(AlreadyExists) as e1:
            nl.add_bridge("br0")
        assert e1.value.op == "netlink::add_bridge" and e1.value.obj == "br0"
        with pytest.raises(NotFound) as e2:
            nl.delete_link("nope0")
        assert "nope0" in str(e2.value)
        with pytest.raises(NotFound):
            nl.set_link("nope0", up=True)
        with pytest.raises(NotFound):
            nl.add_address("nope0", "10.0.0.1/24")
        for bad in ("10.0.0.300/24", "10.0.0.1", "fd00::1/129", "", "x/y"):
            with pytest.raises(InvalidArgument) as e3:
                nl.add_address("br0", bad)
            assert e3.value.field == "cidr"
        with pytest.raises(InvalidArgument) as e4:
            nl.add_bridge("x" * 16)
        assert e4.value.field == "name"
        with pytest.raises(InvalidArgument):
            nl.add_bridge("a/b")
        with pytest.raises(InvalidArgument) as e5:
            nl.add_bridge("br1", mtu=10)
        assert e5.value.field == "mtu"
        with pytest.raises(InvalidArgument) as e6:
            nl.add_veth("v0", "v1", peer_mac="zz:00:00:00:00:00")
        assert e6.value.field == "peer_mac"
        with pytest.raises(InvalidArgument):
            nl.add_route("10.0.0.1/24", via="10.0.0.254")  # host bits set
        with pytest.raises(InvalidArgument):
            nl.add_route("10.30.0.0/16", via="fd00::1")
        with pytest.raises(InvalidArgument):
            nl.add_vxlan("vx0", vni=1 << 24)
        with pytest.raises(InvalidArgument):
            nl.add_neighbour("10.0.0.1", "nope", "br0")
        # The kernel's own refusals are InvalidArgument with the kernel's words.
        with pytest.raises(InvalidArgument) as e7:
            nl.add_route("10.31.0.0/16", via="10.32.0.1")  # no route to that gateway
        assert "invalid gateway" in str(e7.value)
        nl.add_bridge("br1")
        with pytest.raises(InvalidArgument) as e8:
            nl.set_link("br1", master="br0")
        assert "enslave a bridge" in str(e8.value)
        nl.delete_link("br1")
        nl.ensure_link_deleted("v0")
        nl.delete_link("br0")
        assert [x.name for x in nl.links()] == before
        assert nl.addresses() == [a for a in nl.addresses() if a.ifname == "lo"]


def test_delete_group_removes_only_that_group(netns_factory: Callable[[], str]) -> None:
    a, b = netns_factory(), netns_factory()
    with Netlink(a) as na, Netlink(b) as nb:
        na.add_bridge("keep0")
        for i in range(5):
            na.add_veth(f"g{i}", f"e{i}", peer_netns=b)
            na.set_link(f"g{i}", group=77)
        assert {x.name: x.group for x in na.links()}["g3"] == 77
        na.delete_group(77)
        assert sorted(x.name for x in na.links()) == ["keep0", "lo"]
        assert [x.name for x in nb.links()] == ["lo"]  # the peers went too
        with pytest.raises(InvalidArgument):
            na.delete_group(0)
        assert na.link("keep0") is not None


def test_ipv6_between_namespaces_without_dad(netns_factory: Callable[[], str]) -> None:
    """Addresses added with nodad (the default) are usable at once: an ICMPv6 echo crosses
    the veth right after both ends come up."""
    a, b = netns_factory(), netns_factory()
    for path in (a, b):
        netns.sysctl_in(path, "net.ipv4.ping_group_range", "0 0")
    with Netlink(a) as na, Netlink(b) as nb:
        na.add_veth("eth0", "eth0", peer_netns=b)
        na.add_address("eth0", "fd00:25::1/64")
        nb.add_address("eth0", "fd00:25::2/64")
        na.set_link("eth0", up=True)
        nb.set_link("eth0", up=True)
        assert "tentative" not in ip_in(a, "-6", "addr", "show", "eth0", "scope", "global")

        def echo6() -> bool:
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
            s.settimeout(5)
            try:
                s.sendto(b"\x80\x00\x00\x00\x00\x01\x00\x01silo", ("fd00:25::2", 0))
                data, _ = s.recvfrom(1024)
                return data[0] == 129  # echo reply
            finally:
                s.close()

        assert netns.run_in(a, echo6)
        assert nb.stats("eth0").rx_packets >= 1


def test_one_netlink_shared_by_threads(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(10):
                    nl.add_bridge(f"b{t}x{i}")
                    nl.add_address(f"b{t}x{i}", f"10.{40 + t}.{i}.1/24")
                    assert nl.link(f"b{t}x{i}") is not None
                    nl.links()
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert len([x for x in nl.links() if x.kind == "bridge"]) == 40
        assert len([a for a in nl.addresses() if a.address.startswith("10.4")]) == 40


def test_routed_v4_and_v6_through_a_router_namespace(netns_factory: Callable[[], str]) -> None:
    """Default routes via a gateway in a third namespace that forwards: traffic crosses two
    veths and the router, both families."""
    a, router, b = netns_factory(), netns_factory(), netns_factory()
    with Netlink(router) as nr:
        for side, peer, n in (("ra", a, 1), ("rb", b, 2)):
            nr.add_veth(side, "eth0", peer_netns=peer)
            nr.add_address(side, f"10.26.{n}.1/24")
            nr.add_address(side, f"fd00:26:{n}::1/64")
            nr.set_link(side, up=True)
    sysctl.ensure_ip_forward(netns=router)
    sysctl.ensure_ipv6_forwarding(netns=router)
    for path, n in ((a, 1), (b, 2)):
        netns.sysctl_in(path, "net.ipv4.ping_group_range", "0 0")
        with Netlink(path) as nl:
            nl.add_address("eth0", f"10.26.{n}.2/24")
            nl.add_address("eth0", f"fd00:26:{n}::2/64")
            nl.set_link("eth0", up=True)
            nl.add_route("default", via=f"10.26.{n}.1")
            nl.add_route("default", via=f"fd00:26:{n}::1")
            assert {(r.family, r.gateway) for r in nl.routes() if r.dst == "default"} == \
                {(socket.AF_INET, f"10.26.{n}.1"), (socket.AF_INET6, f"fd00:26:{n}::1")}
    _ping_from(a, "10.26.2.2")

    def echo6() -> bool:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
        s.settimeout(5)
        try:
            s.sendto(b"\x80\x00\x00\x00\x00\x01\x00\x01silo", ("fd00:26:2::2", 0))
            return s.recvfrom(1024)[0][0] == 129
        finally:
            s.close()

    assert netns.run_in(a, echo6)


def test_bridge_port_options(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0")
        nl.add_veth("p0", "p1")
        with pytest.raises(InvalidArgument):
            nl.set_bridge_port("p0", hairpin=True)  # not a bridge port yet
        nl.set_link("p0", master="br0")
        nl.set_bridge_port("p0", hairpin=True, learning=False, unicast_flood=False,
                           isolated=True)
        shown = ip_in(netns_path, "-d", "link", "show", "p0")
        assert "hairpin on" in shown and "learning off" in shown
        assert "flood off" in shown and "isolated on" in shown
        nl.set_bridge_port("p0", hairpin=False, isolated=False)
        shown = ip_in(netns_path, "-d", "link", "show", "p0")
        assert "hairpin off" in shown and "isolated off" in shown and "learning off" in shown
        with pytest.raises(InvalidArgument):
            nl.set_bridge_port("p0", hairpin=1)  # type: ignore[arg-type]


def test_a_refused_veth_leaves_neither_end(netns_factory: Callable[[], str]) -> None:
    a, b = netns_factory(), netns_factory()
    with Netlink(a) as na, Netlink(b) as nb:
        nb.add_bridge("eth0")  # the peer's name is taken over there
        with pytest.raises(AlreadyExists):
            na.add_veth("h0", "eth0", peer_netns=b)
        assert na.link("h0") is None
        assert [x.kind for x in nb.links() if x.name == "eth0"] == ["bridge"]
        with pytest.raises(NotFound):
            na.add_veth("h0", "eth1", peer_netns="/run/silo-test-netns/absent-ns")
        with pytest.raises(NotFound):
            na.add_vxlan("vx0", vni=7, dev="absent0")
        assert [x.name for x in na.links()] == ["lo"]


def test_no_link_local_and_no_multicast_snooping(netns_factory: Callable[[], str]) -> None:
    """``link_local6=False`` before the first ``up`` leaves a link without an IPv6
    link-local address (the default makes one); ``mcast_snooping`` is set at creation and
    changed on an existing bridge."""
    a, b = netns_factory(), netns_factory()
    with Netlink(a) as na, Netlink(b) as nb:
        na.add_bridge("br0", mcast_snooping=False)
        na.add_bridge("br1")
        na.add_veth("h0", "eth0", peer_netns=b)
        na.add_veth("h1", "eth1", peer_netns=b)
        na.set_link("h0", master="br0", up=True, link_local6=False)
        na.set_link("h1", master="br0", up=True)
        nb.set_link("eth0", link_local6=False)
        nb.set_link("eth0", up=True)
        nb.set_link("eth1", up=True)
        with pytest.raises(InvalidArgument):
            na.set_bridge("br1", mcast_snooping="no")  # type: ignore[arg-type]
        na.set_bridge("br1", mcast_snooping=False)
    assert "fe80::" not in ip_in(b, "-6", "addr", "show", "eth0")
    assert "fe80::" in ip_in(b, "-6", "addr", "show", "eth1")
    assert "fe80::" not in ip_in(a, "-6", "addr", "show", "h0")
    assert "fe80::" in ip_in(a, "-6", "addr", "show", "h1")
    for bridge in ("br0", "br1"):
        assert "mcast_snooping 0" in ip_in(a, "-d", "link", "show", bridge)
