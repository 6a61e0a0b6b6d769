"""silo.kernel.sysctl inside fresh network namespaces (the host's values are only read, and
checked unchanged)."""

from __future__ import annotations

import pytest

from silo.errors import InvalidArgument, NotFound
from silo.kernel import sysctl
from silo.kernel.netlink import Netlink
from tests.kernel.netfixtures import requires_netns

pytestmark = [pytest.mark.kernel, requires_netns]

HOST_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
             "net.bridge.bridge-nf-call-iptables")


def test_network_sysctls_in_a_namespace(netns_path: str) -> None:
    host = {k: sysctl.read(k) for k in HOST_KEYS}
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0")
        nl.add_bridge("br0.5")  # a dot: written with a slash in the key
    sysctl.ensure_ip_forward(netns=netns_path)
    sysctl.ensure_ipv6_forwarding(netns=netns_path)
    sysctl.set_route_localnet("br0", netns=netns_path)
    sysctl.set_proxy_arp("br0.5", netns=netns_path)
    sysctl.set_disable_ipv6("br0", netns=netns_path)
    sysctl.set_accept_dad("br0.5", 0, netns=netns_path)
    sysctl.ensure_bridge_nf_call(netns=netns_path)
    sysctl.ensure_bridge_nf_call(netns=netns_path)  # idempotent
    got = {k: sysctl.read(k, netns=netns_path) for k in (
        "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
        "net.ipv4.conf.br0.route_localnet", "net.ipv4.conf.br0/5.proxy_arp",
        "net.ipv6.conf.br0.disable_ipv6", "net.ipv6.conf.br0/5.accept_dad",
        "net.bridge.bridge-nf-call-ip6tables")}
    assert got == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
                   "net.ipv4.conf.br0.route_localnet": "1",
                   "net.ipv4.conf.br0/5.proxy_arp": "1", "net.ipv6.conf.br0.disable_ipv6": "1",
                   "net.ipv6.conf.br0/5.accept_dad": "0",
                   "net.bridge.bridge-nf-call-ip6tables": "1"}
    with Netlink(netns_path) as nl:
        assert not [a for a in nl.addresses("br0") if a.family == 10]  # v6 off: no link-local
    sysctl.set_route_localnet("br0", False, netns=netns_path)
    assert sysctl.read("net.ipv4.conf.br0.route_localnet", netns=netns_path) == "0"
    assert {k: sysctl.read(k) for k in HOST_KEYS} == host


def test_bad_input(netns_path: str) -> None:
    before = sysctl.read("net.ipv4.ip_forward", netns=netns_path)
    with pytest.raises(NotFound):
        sysctl.set_proxy_arp("nope0", netns=netns_path)
    with pytest.raises(InvalidArgument) as e:
        sysctl.set_proxy_arp("../../x", netns=netns_path)
    assert e.value.field == "ifname"
    with pytest.raises(InvalidArgument):
        sysctl.write("net.ipv4.ip_forward", "maybe", netns=netns_path)
    with pytest.raises(InvalidArgument):
        sysctl.write("kernel.hostname", "x", netns=netns_path)  # not a network sysctl
    assert sysctl.read("net.ipv4.ip_forward", netns=netns_path) == before
