"""Transparent and L2Bridge networks on a LAN made of a netns: the lab's host reaches it by an
uplink veth whose other end (``lan0``) holds the LAN's router, which also runs the servers."""

from __future__ import annotations

import pytest

from silo.errors import InvalidArgument, InvalidState
from silo.kernel.netlink import Netlink
from tests.kernel.test_datapath_lab import Lab, requires_lab

pytestmark = [pytest.mark.kernel, requires_lab]


def adapter(name: str) -> list[dict[str, object]]:
    return [{"Type": "NetAdapterName", "Settings": {"NetworkAdapterName": name}}]


def neighbour_mac(lab: Lab, where: str, ip: str) -> str | None:
    with Netlink(where) as nl:
        for n in nl.neighbours("lan0"):
            if n.ip == ip:
                return n.mac
    return None


def link_mac(where: str, ifname: str) -> str:
    with Netlink(where) as nl:
        link = nl.link(ifname)
        assert link is not None
        return link.mac


def test_transparent_puts_containers_on_the_lan_with_their_own_mac() -> None:
    with Lab() as lab:
        uplink, lan = lab.lan(None, "192.168.81.1/24")
        net = lab.network("Transparent", "192.168.81.0/24", gateway="192.168.81.1",
                          policies=adapter(uplink))
        c = lab.endpoint(net, 10)
        lab.serve(lan, 9000)
        lab.serve(c.path, 80)
        assert lab.reach(c.path, "192.168.81.1", 9000) == "192.168.81.10"
        assert lab.reach(lan, "192.168.81.10", 80) == "192.168.81.1"
        assert neighbour_mac(lab, lan, "192.168.81.10") == link_mac(c.path, "eth0")
        with Netlink(lab.host) as nl:
            up = nl.link(uplink)
            br = nl.link(net["Linux"]["Bridge"])
            assert up is not None and br is not None and up.master == br.index
        lab.remove(net, c)
        lab.dp.remove_network(net)
        with Netlink(lab.host) as nl:
            up = nl.link(uplink)
            assert up is not None and up.master is None   # the uplink is given back


def test_transparent_refuses_an_uplink_that_holds_addresses_and_changes_nothing() -> None:
    with Lab() as lab:
        uplink, _lan = lab.lan("192.168.84.2/24", "192.168.84.1/24")
        with Netlink(lab.host) as nl:
            before = sorted(x.name for x in nl.links())
        with pytest.raises(InvalidState) as err:
            lab.network("Transparent", "192.168.84.0/24", policies=adapter(uplink))
        assert "NetAdapterName" in str(err.value)
        with pytest.raises(InvalidArgument):
            lab.network("Transparent", "192.168.84.0/24", policies=adapter("nosuchlink0"))
        with pytest.raises(InvalidArgument):
            lab.network("L2Bridge", "192.168.84.0/24")       # no NetAdapterName at all
        with Netlink(lab.host) as nl:
            assert sorted(x.name for x in nl.links()) == before


def test_l2bridge_routes_container_addresses_on_the_lan_behind_the_host_mac() -> None:
    with Lab() as lab:
        uplink, lan = lab.lan("192.168.82.2/24", "192.168.82.1/24")
        net = lab.network("L2Bridge", "192.168.82.0/24", gateway="192.168.82.1",
                          policies=adapter(uplink))
        c = lab.endpoint(net, 20)
        d = lab.endpoint(net, 21, policies=[{"Type": "OutBoundNAT", "Settings": {}}])
        lab.serve(lan, 9000)
        lab.serve(c.path, 80)
        # out: the LAN sees the container's own address, from the host's MAC
        assert lab.reach(c.path, "192.168.82.1", 9000) == "192.168.82.20"
        assert lab.reach(lan, "192.168.82.20", 80) == "192.168.82.1"
        assert neighbour_mac(lab, lan, "192.168.82.20") == link_mac(lab.host, uplink)
        # containers of the network reach each other; OutBoundNAT hides one behind the host
        assert lab.reach(d.path, "192.168.82.20", 80) == "192.168.82.21"
        assert lab.reach(d.path, "192.168.82.1", 9000) == "192.168.82.2"
        # a detached endpoint's host route goes with it
        lab.remove(net, c)
        assert lab.reach(lan, "192.168.82.20", 80) is None
        with Netlink(lab.host) as nl:
            assert not [r for r in nl.routes() if r.dst == "192.168.82.20/32"]


def test_rebuild_leaves_out_a_network_whose_uplink_is_gone() -> None:
    with Lab() as lab:
        uplink, _lan = lab.lan(None, "192.168.86.1/24")
        transparent = lab.network("Transparent", "192.168.86.0/24", policies=adapter(uplink))
        nat = lab.network("NAT")
        a, b = lab.endpoint(nat, 2), lab.endpoint(nat, 3)
        for e in (a, b):
            e.doc["HostComputeNamespace"] = e.doc["ID"]
        with Netlink(lab.host) as nl:
            nl.delete_link(uplink)
        lab.dp.close()
        lab.dp = type(lab.dp)(prefix=lab.prefix, run_dir=lab.tmp, host_netns=lab.host)
        lab.dp.rebuild([transparent, nat], [a.doc, b.doc],
                       [{"ID": e.doc["ID"], "Linux": {"NetnsPath": e.path}} for e in (a, b)])
        lab.serve(b.path, 80)
        assert lab.reach(a.path, b.ip, 80) == a.ip
        with Netlink(lab.host) as nl:
            assert nl.link(transparent["Linux"]["Bridge"]) is None
