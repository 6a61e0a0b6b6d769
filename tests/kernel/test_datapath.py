"""The data path with real traffic: NAT, port mappings, outbound NAT, Internal, Private,
isolation between networks, IPv6, failure atomicity, rebuild. Every test builds its own lab
(a netns as the host, containers' and a LAN's netns off it) and removes it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from silo.errors import AlreadyExists, InvalidArgument, InvalidState, SiloError
from silo.kernel.netlink import Netlink
from silo.kernel.nftables import Nft
from tests.kernel.test_datapath_lab import Ep, Lab, requires_lab

pytestmark = [pytest.mark.kernel, requires_lab]


def test_nat_tcp_udp_icmp_between_containers_and_the_gateway() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        gw = net["Linux"]["Gateways"][0]
        lab.serve(b.path, 8000)
        lab.serve(b.path, 8001, "udp")
        lab.serve(lab.host, 8002)
        assert lab.reach(a.path, b.ip, 8000) == a.ip
        assert lab.reach(a.path, b.ip, 8001, "udp") == a.ip
        assert lab.reach(a.path, gw, 8002) == a.ip
        assert lab.ping(a.path, b.ip) and lab.ping(a.path, gw)
        assert lab.ping(lab.host, a.ip)
        counters = lab.dp.counters(a.doc)
        assert counters["PacketsSent"] > 0 and counters["BytesReceived"] > 0


def test_port_mappings_from_the_lan_the_host_localhost_and_another_container() -> None:
    with Lab() as lab:
        _uplink, lan = lab.lan("192.168.77.1/24", "192.168.77.2/24")
        net = lab.network("NAT")
        web = lab.endpoint(net, 2, policies=[
            {"Type": "PortMapping", "Settings": {"Protocol": 6, "InternalPort": 80,
                                                 "ExternalPort": 8080, "Flags": 1}},
            {"Type": "PortMapping", "Settings": {"Protocol": 17, "InternalPort": 53,
                                                 "ExternalPort": 5353}}])
        other = lab.endpoint(net, 3)
        lab.serve(web.path, 80)
        lab.serve(web.path, 53, "udp")
        gw = net["Linux"]["Gateways"][0]
        # a remote on the LAN, to the host's LAN address: it is seen as itself
        assert lab.reach(lan, "192.168.77.1", 8080) == "192.168.77.2"
        assert lab.reach(lan, "192.168.77.1", 5353, "udp") == "192.168.77.2"
        # the host itself, on its own addresses and on 127.0.0.1 (LocalRoutedVip)
        assert lab.reach(lab.host, "192.168.77.1", 8080) is not None
        assert lab.reach(lab.host, "127.0.0.1", 8080) == gw
        # without LocalRoutedVip, the host itself is not served
        assert lab.reach(lab.host, "127.0.0.1", 5353, "udp") is None
        # hairpin: another container through the host's address sees the mapping
        assert lab.reach(other.path, gw, 8080) == gw
        assert lab.reach(other.path, "192.168.77.1", 8080) is not None
        # unmapped ports are not forwarded
        assert lab.reach(lan, "192.168.77.1", 8081) is None


def test_a_host_port_is_mapped_once() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        pm = {"Type": "PortMapping", "Settings": {"Protocol": 6, "InternalPort": 80,
                                                  "ExternalPort": 8080}}
        lab.endpoint(net, 2, policies=[pm])
        with Nft(lab.host) as nft:
            before = nft.run(f"list table inet {lab.prefix}")
        for policies in ([pm], [{"Type": "PortMapping", "Settings": {
                "Protocol": 6, "InternalPort": 81, "ExternalPort": 8080,
                "VIP": "192.0.2.10"}}]):
            with pytest.raises(AlreadyExists) as err:
                lab.endpoint(net, 3, policies=policies)
            assert err.value.field == "Policies[0].Settings.ExternalPort"
        # the same port over UDP is another mapping
        lab.endpoint(net, 4, policies=[{"Type": "PortMapping", "Settings": {
            "Protocol": 17, "InternalPort": 80, "ExternalPort": 8080}}])
        with Nft(lab.host) as nft:
            after = nft.run(f"list table inet {lab.prefix}")
        assert "udp . 8080" in after and before.count("tcp . 8080") == after.count("tcp . 8080")
        with Netlink(lab.host) as nl:
            assert len([x for x in nl.links() if x.name.startswith(lab.prefix)
                        and x.kind == "veth"]) == 2


def test_outbound_nat_to_the_lan_and_its_exceptions() -> None:
    with Lab() as lab:
        _uplink, lan = lab.lan("192.168.78.1/24", "192.168.78.2/24")
        lab.run(lan, "ip", "route", "add", f"10.{lab.octet}.0.0/16", "via", "192.168.78.1")
        net = lab.network("NAT")
        masked = lab.endpoint(net, 2)
        excepted = lab.endpoint(net, 3, policies=[{"Type": "OutBoundNAT", "Settings": {
            "Exceptions": ["192.168.78.0/24"]}}])
        lab.serve(lan, 9000)
        assert lab.reach(masked.path, "192.168.78.2", 9000) == "192.168.78.1"
        assert lab.reach(excepted.path, "192.168.78.2", 9000) == excepted.ip
        assert lab.ping(masked.path, "192.168.78.2")
        # the exception is removed in place: NATed again
        excepted.doc["Policies"] = []
        lab.dp.update_endpoint(net, excepted.doc)
        assert lab.reach(excepted.path, "192.168.78.2", 9000) == "192.168.78.1"


def test_internal_has_no_way_out_and_private_no_host() -> None:
    with Lab() as lab:
        _uplink, lan = lab.lan("192.168.79.1/24", "192.168.79.2/24")
        lab.run(lan, "ip", "route", "add", f"10.{lab.octet}.0.0/16", "via", "192.168.79.1")
        lab.serve(lan, 9000)
        lab.serve(lab.host, 9001)
        internal = lab.network("Internal")
        i1, i2 = lab.endpoint(internal, 2), lab.endpoint(internal, 3)
        gw = internal["Linux"]["Gateways"][0]
        assert lab.reach(i1.path, gw, 9001) == i1.ip           # the host: yes
        assert lab.ping(i1.path, i2.ip)                          # each other: yes
        assert lab.reach(i1.path, "192.168.79.2", 9000) is None  # out: no
        lab.serve(i1.path, 80)
        assert lab.reach(lan, i1.ip, 80) is None                 # in from outside: no

        private = lab.network("Private")
        p1, p2 = lab.endpoint(private, 2), lab.endpoint(private, 3)
        lab.serve(p2.path, 80)
        assert lab.reach(p1.path, p2.ip, 80) == p1.ip
        # even with a route to it, the host cannot talk to a Private network
        bridge = private["Linux"]["Bridge"]
        subnet = private["Ipams"][0]["Subnets"][0]["IpAddressPrefix"]
        assert lab.run(lab.host, "ip", "route", "add", subnet, "dev", bridge).returncode == 0
        assert lab.reach(lab.host, p2.ip, 80) is None
        assert not lab.ping(lab.host, p2.ip)


def test_two_networks_are_isolated_except_published_ports() -> None:
    with Lab() as lab:
        net_a, net_b = lab.network("NAT"), lab.network("NAT")
        a = lab.endpoint(net_a, 2)
        b = lab.endpoint(net_b, 2, policies=[{"Type": "PortMapping", "Settings": {
            "Protocol": 6, "InternalPort": 80, "ExternalPort": 8080}}])
        lab.serve(b.path, 80)
        assert lab.reach(a.path, b.ip, 80) is None
        assert not lab.ping(a.path, b.ip)
        gw_a = net_a["Linux"]["Gateways"][0]
        assert lab.reach(a.path, gw_a, 8080) is not None   # published on the host: yes


def test_ipv6_on_a_dual_stack_nat_network() -> None:
    with Lab() as lab:
        _uplink, lan = lab.lan("192.168.80.1/24", "192.168.80.2/24",
                               host6="fd00:80::1/64", lan6="fd00:80::2/64")
        v6 = f"fd00:{lab.octet:x}::/64"
        net = lab.network("NAT", v6=v6)
        base = v6.split("/")[0]
        a = lab.endpoint(net, 2, ip6=f"{base}2")
        b = lab.endpoint(net, 3, ip6=f"{base}3", policies=[{"Type": "PortMapping", "Settings": {
            "Protocol": 6, "InternalPort": 80, "ExternalPort": 8086, "Flags": 2}}])
        lab.serve(b.path, 80)
        lab.serve(lan, 9000)
        for ep in (a, b):
            lab.wait_ready(ep.path, f"{base}1")
        assert lab.reach(a.path, f"{base}3", 80) == f"{base}2"
        assert lab.reach(a.path, "fd00:80::2", 9000) == "fd00:80::1"   # masqueraded
        assert lab.reach(lan, "fd00:80::1", 8086) == "fd00:80::2"      # mapped over IPv6


def test_the_ebpf_fast_path_carries_ipv6_too() -> None:
    """Dual stack: with a's veth off the bridge and static neighbours, TCP over IPv6 between
    a and b still flows (only the classifier's IPv6 section can carry it)."""
    with Lab() as lab:
        v6 = f"fd00:{lab.octet:x}::/64"
        net = lab.network("NAT", v6=v6)
        base = v6.split("/")[0]
        a = lab.endpoint(net, 2, ip6=f"{base}2")
        b = lab.endpoint(net, 3, ip6=f"{base}3")
        lab.serve(b.path, 80)
        for ep in (a, b):
            lab.wait_ready(ep.path, f"{base}1")
        only_the_redirect_between(lab, a, b, v6=True)
        assert lab.reach(a.path, f"{base}3", 80) == f"{base}2"


def test_a_subnet_the_host_already_routes_is_refused_and_nothing_is_left() -> None:
    with Lab() as lab:
        uplink, _lan = lab.lan("192.168.87.1/24", "192.168.87.2/24")
        with Netlink(lab.host) as nl:
            before = sorted(x.name for x in nl.links())
        for subnet in ("192.168.87.0/24", "192.168.0.0/16", "192.168.87.128/25"):
            with pytest.raises(InvalidState) as err:
                lab.network("NAT", subnet)
            assert err.value.field == "Ipams" and uplink in str(err.value)
        with Netlink(lab.host) as nl:
            assert sorted(x.name for x in nl.links()) == before
        lab.network("Internal", "192.168.88.0/24")   # next door is fine


def test_a_failed_change_leaves_everything_as_it_was() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        a = lab.endpoint(net, 2)
        lab.serve(a.path, 80)
        nft = Nft(lab.host)
        lab.closing.append(nft.close)
        # Something else took the mapping's key in the table: the kernel refuses the attach.
        nft.apply(f"add element inet {lab.prefix} pmany4 {{ tcp . 9999 : 10.0.0.9 . 1 }}\n")
        before = nft.run(f"list table inet {lab.prefix}")
        with Netlink(lab.host) as nl:
            links_before = sorted(x.name for x in nl.links())
        with pytest.raises(SiloError):
            lab.endpoint(net, 3, policies=[{"Type": "PortMapping", "Settings": {
                "Protocol": 6, "InternalPort": 80, "ExternalPort": 9999}}])
        with pytest.raises(InvalidArgument):
            lab.endpoint(net, 4, policies=[{"Type": "ACL", "Settings": {
                "Action": "Allow", "Direction": "In", "LocalPorts": "99999"}}])
        assert nft.run(f"list table inet {lab.prefix}") == before
        with Netlink(lab.host) as nl:
            assert sorted(x.name for x in nl.links()) == links_before
        assert lab.reach(lab.host, a.ip, 80) is not None
        # the namespaces of the failed endpoints went too (the lab removed them)
        assert len(lab.eps) == 1


def test_rebuild_restores_the_recorded_state_and_removes_the_rest() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        a = lab.endpoint(net, 2)
        b = lab.endpoint(net, 3, policies=[{"Type": "ACL", "Settings": {
            "Action": "Block", "Direction": "In", "Protocols": "6", "LocalPorts": "81"}}])
        lab.serve(b.path, 80)
        lab.serve(b.path, 81)
        stray = lab.network("NAT")       # not in the state given to the rebuild
        lab.dp.detach(net, a.doc)         # a's link is gone but it is recorded attached
        stray_ns = lab.dp.create_namespace("stray")
        namespaces = [{"ID": e.doc["ID"], "Linux": {"NetnsPath": e.path}} for e in (a, b)]
        for e in (a, b):
            e.doc["HostComputeNamespace"] = e.doc["ID"]
        lab.dp.close()
        lab.dp = type(lab.dp)(prefix=lab.prefix, run_dir=lab.tmp, host_netns=lab.host)
        lab.dp.rebuild([net], [a.doc, b.doc], namespaces)
        with Netlink(lab.host) as nl:
            names = {x.name for x in nl.links()}
        assert stray["Linux"]["Bridge"] not in names
        assert a.doc["Linux"]["HostInterface"] in names
        assert not __import__("os").path.exists(stray_ns)
        assert lab.reach(a.path, b.ip, 80) == a.ip
        assert lab.reach(a.path, b.ip, 81) is None


def test_a_rebuild_makes_the_fast_path_again_or_removes_it() -> None:
    """A new data path (silod restarted) gives the recorded endpoints a new map and new
    classifiers; restarted with the fast path off, it takes the classifiers away. Traffic
    flows either way."""
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        lab.serve(b.path, 80)
        for e in (a, b):
            e.doc["HostComputeNamespace"] = e.doc["ID"]
        namespaces = [{"ID": e.doc["ID"], "Linux": {"NetnsPath": e.path}} for e in (a, b)]
        for fast in (True, False):
            lab.dp.close()
            lab.dp = type(lab.dp)(prefix=lab.prefix, run_dir=lab.tmp, host_netns=lab.host,
                                  fast_path=fast)
            lab.dp.rebuild([net], [a.doc, b.doc], namespaces)
            filters = lab.run(lab.host, "tc", "filter", "show", "dev",
                              a.doc["Linux"]["HostInterface"], "ingress").stdout
            assert ("silo" in filters) is fast
            assert lab.dp.fastpath.plugged(str(a.doc["ID"]).lower()) is fast
            assert lab.reach(a.path, b.ip, 80) == a.ip


SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
n = 0
s.settimeout(5)           # nothing at all within 5 s: none came through
while True:
    try:
        s.recv(2000)
    except socket.timeout:
        break
    n += 1
    s.settimeout(0.5)
    try:
        while True:
            s.recv(2000)
            n += 1
    except OSError:
        break
print(n, flush=True)
"""

BURST = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b"x" * 1000, (sys.argv[1], int(sys.argv[2])))
"""


def datagrams_through(lab: Lab, src: str, dst_ns: str, dst_ip: str, count: int) -> int:
    """How many of ``count`` 1000-byte datagrams sent at once reach the other side."""
    sink = subprocess.Popen(["nsenter", f"--net={dst_ns}", sys.executable, "-c", SINK, "7"],
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    try:
        assert sink.stdout.readline().strip() == "ready"
        lab.run(src, sys.executable, "-c", BURST, dst_ip, "7", str(count))
        return int(sink.stdout.readline())
    finally:
        sink.kill()
        sink.wait()
        sink.stdout.close()


def test_routes_mtu_and_qos_of_an_endpoint() -> None:
    with Lab() as lab:
        _uplink, lan = lab.lan("192.168.85.1/24", "192.168.85.2/24")
        net = lab.network("NAT")
        gw = net["Linux"]["Gateways"][0]
        a = lab.endpoint(net, 2, policies=[
            {"Type": "EncapOverhead", "Settings": {"Overhead": 50}},
            {"Type": "SDNRoute", "Settings": {"DestinationPrefix": "198.51.100.0/24",
                                              "NextHop": gw}},
            {"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 2000}}])
        with Netlink(a.path) as nl:
            eth0 = nl.link("eth0")
            assert eth0 is not None and eth0.mtu == 1450
            routes = {r.dst: r.gateway for r in nl.routes()}
        assert routes["default"] == gw and routes["198.51.100.0/24"] == gw
        # 2,000 bytes/s with a bucket of ~24 kB: far fewer than 100 kB sent at once pass
        assert datagrams_through(lab, a.path, lan, "192.168.85.2", 100) < 50
        # the route goes when the policy does, and the limit too
        a.doc["Policies"] = []
        lab.dp.update_endpoint(net, a.doc)
        with Netlink(a.path) as nl:
            assert "198.51.100.0/24" not in {r.dst for r in nl.routes()}
        assert datagrams_through(lab, a.path, lan, "192.168.85.2", 100) == 100


BOUND_CLIENT = r"""
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[4]))
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3])))
    s.sendall(b"x")
    print(s.recv(100).decode())
except OSError as err:
    print("FAIL", err)
    sys.exit(1)
"""


def test_a_container_cannot_spoof_its_address_or_mac() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        lab.serve(b.path, 80)
        fake = a.ip.rsplit(".", 1)[0] + ".99"
        assert lab.run(a.path, "ip", "addr", "add", f"{fake}/24", "dev", "eth0").returncode == 0

        def from_(src: str, to: str) -> str | None:
            r = lab.run(a.path, sys.executable, "-c", BOUND_CLIENT, src, to, "80", "1")
            return r.stdout.strip() if r.returncode == 0 else None

        assert from_(a.ip, b.ip) == a.ip
        assert from_(fake, b.ip) is None                                   # bridged
        assert from_(fake, net["Linux"]["Gateways"][0]) is None            # to the host
        assert lab.run(a.path, "ip", "link", "set", "eth0", "address",
                       "02:00:00:00:00:99").returncode == 0
        assert from_(a.ip, b.ip) is None
        assert not lab.ping(a.path, b.ip)


def tracked(lab: Lab, src: str, dst: str) -> bool:
    """Whether the host's conntrack holds a flow from ``src`` to ``dst``."""
    table = lab.run(lab.host, "cat", "/proc/net/nf_conntrack").stdout
    return any(f" src={src} dst={dst} " in line for line in table.splitlines())


def test_the_fast_path_skips_conntrack_between_endpoints_without_acls_only() -> None:
    """Between two endpoints without ACLs a flow never meets conntrack (the PORT layer
    forwards it from one host veth to the other); to an endpoint with an ACL, or to the host,
    it does. Replies of a published port still come back through conntrack."""
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3, policies=[
            {"Type": "PortMapping", "Settings": {"Protocol": 6, "InternalPort": 80,
                                                 "ExternalPort": 8080}}])
        c = lab.endpoint(net, 4, policies=[{"Type": "ACL", "Settings": {
            "Action": "Allow", "Direction": "In", "Protocols": "6", "Priority": 100}}])
        gw = net["Linux"]["Gateways"][0]
        for ep in (b, c):
            lab.serve(ep.path, 80)
        lab.serve(lab.host, 81)
        assert lab.reach(a.path, b.ip, 80) == a.ip and not tracked(lab, a.ip, b.ip)
        assert lab.reach(a.path, c.ip, 80) == a.ip and tracked(lab, a.ip, c.ip)
        assert lab.reach(a.path, gw, 81) == a.ip and tracked(lab, a.ip, gw)
        assert lab.reach(a.path, gw, 8080) == gw                  # hairpin, masqueraded
        assert "fast path" in lab.dp.rules(net)


def only_the_redirect_between(lab: Lab, a: Ep, b: Ep, *, v6: bool = False) -> None:
    """Static neighbours both ways and a's veth taken off the bridge: from now on only the
    fast path's redirect can carry a frame between a and b."""
    macs = {}
    for ep in (a, b):
        with Netlink(ep.path) as nl:
            eth0 = nl.link("eth0")
        assert eth0 is not None
        macs[ep.path] = eth0.mac
    for ep, peer in ((a, b), (b, a)):
        ip = str(peer.ip6) if v6 else peer.ip
        assert lab.run(ep.path, "ip", "neigh", "replace", ip, "lladdr", macs[peer.path],
                       "dev", "eth0", "nud", "permanent").returncode == 0
    with Netlink(lab.host) as nl:
        nl.set_link(a.doc["Linux"]["HostInterface"], master=False)


def test_the_ebpf_fast_path_carries_frames_between_endpoints_without_acls() -> None:
    """With a's veth taken off the bridge and static neighbours both ways, only the
    classifiers' redirect can carry a frame between a and b. An ACL on b takes it off the fast
    path (and puts it back when it goes); a QOS policy on a does too."""
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        fast = lab.dp.fastpath

        def on(ep: Ep) -> bool:
            return fast.plugged(str(ep.doc["ID"]).lower())

        assert on(a) and on(b)
        lab.serve(b.path, 80)
        only_the_redirect_between(lab, a, b)
        assert lab.reach(a.path, b.ip, 80) == a.ip
        b.doc["Policies"] = [{"Type": "ACL", "Settings": {
            "Action": "Allow", "Direction": "In", "Protocols": "6", "Priority": 100}}]
        lab.dp.update_endpoint(net, b.doc)
        assert not on(b) and lab.reach(a.path, b.ip, 80) is None
        b.doc["Policies"] = []
        lab.dp.update_endpoint(net, b.doc)
        assert on(b) and lab.reach(a.path, b.ip, 80) == a.ip
        a.doc["Policies"] = [{"Type": "QOS", "Settings": {
            "MaximumOutgoingBandwidthInBytes": 10**8}}]
        lab.dp.update_endpoint(net, a.doc)
        assert not on(a) and lab.reach(a.path, b.ip, 80) is None


def test_a_refused_classifier_leaves_the_endpoint_on_the_bridge_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path changes no verdict: when the kernel refuses the program, the attach
    still succeeds, the endpoint is off the fast path and its traffic takes the bridge."""
    from silo.errors import Internal
    from silo.kernel import bpf

    def refuse(insns: bytes, name: str = "") -> int:
        raise Internal("bpf program refused: test", op="bpf::load")

    monkeypatch.setattr(bpf, "load_classifier", refuse)
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        lab.serve(b.path, 80)
        assert not lab.dp.fastpath.plugged(str(a.doc["ID"]).lower())
        assert lab.reach(a.path, b.ip, 80) == a.ip


def test_without_the_fast_path_every_flow_is_tracked() -> None:
    with Lab() as lab:
        lab.dp.fast_path = False              # silod --no-network-fast-path
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        lab.serve(b.path, 80)
        assert not lab.dp.fastpath.plugged(str(a.doc["ID"]).lower())
        assert lab.reach(a.path, b.ip, 80) == a.ip and tracked(lab, a.ip, b.ip)
        assert "fast path" not in lab.dp.rules(net)


def test_the_fast_path_keeps_networks_apart() -> None:
    """A container that addresses a frame to the MAC and IP of another network's endpoint
    (a static neighbour and an on-link route) reaches nothing: the fast path looks only in
    its own network's map, and the bridge does not know that MAC."""
    with Lab() as lab:
        net_a, net_b = lab.network("NAT"), lab.network("NAT")
        a, b = lab.endpoint(net_a, 2), lab.endpoint(net_b, 3)
        with Netlink(b.path) as nl:
            eth0 = nl.link("eth0")
        assert eth0 is not None
        mac = eth0.mac
        for argv in (("ip", "neigh", "add", b.ip, "lladdr", mac, "dev", "eth0", "nud",
                      "permanent"), ("ip", "route", "add", f"{b.ip}/32", "dev", "eth0")):
            assert lab.run(a.path, *argv).returncode == 0
        assert datagrams_through(lab, a.path, b.path, b.ip, 20) == 0
        c = lab.endpoint(net_b, 4)                               # its own network: yes
        assert datagrams_through(lab, c.path, b.path, b.ip, 20) == 20


@requires_lab
def test_a_deferred_detach_frees_the_name_at_once_and_a_reattach_waits_for_the_reaper() -> None:
    """The host veth of an endpoint in a namespace the data path made goes to the reaper
    (deleted in batches, off the caller's path); its name is free at once, a new attach in
    the same namespace with the same interface name still works, and close leaves nothing."""
    with Lab() as lab:
        net = lab.network("NAT")
        ep = lab.endpoint(net, 2)
        veth = ep.doc["Linux"]["HostInterface"]
        lab.dp.detach(net, ep.doc)
        assert lab.dp._reaper is not None                      # the deferred path it took
        with Netlink(lab.host) as nl:
            assert nl.link(veth) is None                       # out of service now
        again = lab.dp.attach(net, ep.doc, ep.path)            # eth0 may still be the old peer
        assert again["InterfaceName"] == "eth0"
        gw = net["Linux"]["Gateways"][0]
        assert lab.ping(ep.path, gw)
        lab.dp.detach(net, ep.doc)
        lab.dp.close()
        with Netlink(lab.host) as nl:
            left = [link.name for link in nl.links() if link.name.startswith(lab.prefix)]
        assert left == [net["Linux"]["Bridge"]]                # no tombstone outlives close
        lab.dp = type(lab.dp)(prefix=lab.prefix, run_dir=lab.tmp, host_netns=lab.host)
        lab.dp.rebuild([net], [], [])
