"""IPAM: gateways, static requests, dual-stack, MAC pools; never the same address twice."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from silo.errors import InvalidArgument, Unavailable
from silo.network.ipam import DEFAULT_MAC_RANGE, Ipam
from silo.schema import hns

pytestmark = pytest.mark.unit


def network(*prefixes: str, flags: int = 0, **more: Any) -> dict[str, Any]:
    return hns.validate("network", {
        "Name": "n", "Ipams": [{"Subnets": [{"IpAddressPrefix": p, "Flags": flags}
                                            for p in prefixes]}], **more})


def pool(*prefixes: str, **kw: Any) -> tuple[Ipam, str]:
    ipam = Ipam()
    net = network(*prefixes, **kw)
    ipam.add_network(net)
    return ipam, net["ID"]


def test_the_gateway_is_reserved_and_addresses_follow_it() -> None:
    ipam, nid = pool("10.9.0.0/24")
    assert ipam.gateways(nid) == ["10.9.0.1"]
    ep: dict[str, Any] = {}
    ipam.allocate(nid, ep)
    assert ep["IpConfigurations"] == [{"IpAddress": "10.9.0.2", "PrefixLength": 24}]
    assert ep["MacAddress"] == hns.mac_text(DEFAULT_MAC_RANGE[0])


def test_do_not_reserve_gateway_hands_out_the_first_host_address() -> None:
    ipam, nid = pool("10.9.0.0/24", flags=hns.SUBNET_DO_NOT_RESERVE_GATEWAY)
    assert ipam.gateways(nid) == []
    ep: dict[str, Any] = {}
    ipam.allocate(nid, ep)
    assert ep["IpConfigurations"][0]["IpAddress"] == "10.9.0.1"


def test_dual_stack_gets_one_address_per_family() -> None:
    ipam, nid = pool("10.9.0.0/24", "fd00:9::/64")
    ep: dict[str, Any] = {}
    ipam.allocate(nid, ep)
    assert [c["IpAddress"] for c in ep["IpConfigurations"]] == ["10.9.0.2", "fd00:9::2"]
    assert [c["PrefixLength"] for c in ep["IpConfigurations"]] == [24, 64]


def test_static_requests_are_checked_and_a_refusal_takes_nothing() -> None:
    ipam, nid = pool("10.9.0.0/29", "fd00:9::/64")
    first: dict[str, Any] = {"IpConfigurations": [{"IpAddress": "10.9.0.5"}]}
    ipam.allocate(nid, first)
    assert first["IpConfigurations"][0]["PrefixLength"] == 29
    for addr, words in [("10.9.0.5", "taken"), ("10.9.0.1", "gateway"),
                        ("10.9.0.0", "network or broadcast"), ("10.9.0.7", "broadcast"),
                        ("10.9.1.5", "outside")]:
        before = ipam.in_use(nid)
        ep: dict[str, Any] = {"IpConfigurations": [{"IpAddress": "fd00:9::7"},
                                                   {"IpAddress": addr}]}
        with pytest.raises(InvalidArgument) as e:
            ipam.allocate(nid, ep)
        assert e.value.field == "IpConfigurations[1].IpAddress"
        assert words in e.value.message
        assert ipam.in_use(nid) == before  # fd00:9::7 was given back
    ok: dict[str, Any] = {"IpConfigurations": [{"IpAddress": "fd00:9::7"}]}
    ipam.allocate(nid, ok)  # still free
    with pytest.raises(InvalidArgument) as e:
        ipam.allocate(nid, {"IpConfigurations": [{"IpAddress": "10.9.0.3", "PrefixLength": 24}]})
    assert e.value.field == "IpConfigurations[0].PrefixLength"


def test_a_full_subnet_is_unavailable_and_release_frees() -> None:
    ipam, nid = pool("10.9.0.0/29")  # .1 gateway, .2-.6 endpoints, .7 broadcast
    eps = []
    for _ in range(5):
        ep: dict[str, Any] = {}
        ipam.allocate(nid, ep)
        eps.append(ep)
    with pytest.raises(Unavailable) as e:
        ipam.allocate(nid, {})
    assert e.value.field == "IpConfigurations"
    ipam.release(nid, eps[2])
    again: dict[str, Any] = {}
    ipam.allocate(nid, again)
    assert again["IpConfigurations"] == eps[2]["IpConfigurations"]
    assert again["MacAddress"] not in {e["MacAddress"] for e in eps[:2] + eps[3:]}


def test_mac_pool_ranges_and_exhaustion() -> None:
    ipam, nid = pool("10.9.0.0/24", MacPool={"Ranges": [
        {"StartMacAddress": "02-00-00-00-00-10", "EndMacAddress": "02-00-00-00-00-11"}]})
    macs = []
    for _ in range(2):
        ep: dict[str, Any] = {}
        ipam.allocate(nid, ep)
        macs.append(ep["MacAddress"])
    assert macs == ["02-00-00-00-00-10", "02-00-00-00-00-11"]
    before = ipam.in_use(nid)
    with pytest.raises(Unavailable) as e:
        ipam.allocate(nid, {})
    assert e.value.field == "MacAddress"
    assert ipam.in_use(nid) == before  # the address it took was given back
    with pytest.raises(InvalidArgument) as err:
        ipam.allocate(nid, {"MacAddress": "02-00-00-00-00-10"})
    assert err.value.field == "MacAddress"


def test_overlap_with_another_network_is_found() -> None:
    ipam, nid = pool("10.9.0.0/16")
    other = network("10.8.0.0/16", "10.9.200.0/24")
    assert ipam.overlapping(other) == ("Ipams[0].Subnets[1].IpAddressPrefix", nid, "10.9.0.0/16")
    assert ipam.overlapping(network("10.10.0.0/16")) is None


def test_reserve_restores_what_records_hold() -> None:
    ipam, nid = pool("10.9.0.0/24")
    ipam.reserve(nid, {"IpConfigurations": [{"IpAddress": "10.9.0.2"}],
                       "MacAddress": hns.mac_text(DEFAULT_MAC_RANGE[0])})
    ep: dict[str, Any] = {}
    ipam.allocate(nid, ep)
    assert ep["IpConfigurations"][0]["IpAddress"] == "10.9.0.3"
    assert ep["MacAddress"] != hns.mac_text(DEFAULT_MAC_RANGE[0])
    with pytest.raises(InvalidArgument):
        ipam.reserve(nid, {"IpConfigurations": [{"IpAddress": "10.9.0.2"}]})


def test_concurrent_allocations_never_share_an_address() -> None:
    ipam, nid = pool("10.9.0.0/22", "fd00:9::/120")
    got: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(60):
            ep: dict[str, Any] = {}
            try:
                ipam.allocate(nid, ep)
            except Unavailable as err:  # the /120 has 254 addresses for 480 requests
                errors.append(err)
                continue
            got.append(ep)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    addrs = [c["IpAddress"] for ep in got for c in ep["IpConfigurations"]]
    assert len(addrs) == len(set(addrs))
    assert len({ep["MacAddress"] for ep in got}) == len(got)
    assert len(got) == 254 and len(errors) == 480 - 254


def test_free_subnet_skips_what_networks_hold_and_runs_out() -> None:
    ipam, _ = pool("10.9.0.0/24")
    assert ipam.free_subnet("10.9.0.0/23", 24) == "10.9.1.0/24"
    ipam.add_network(network("10.9.1.128/25"))
    with pytest.raises(Unavailable) as e:
        ipam.free_subnet("10.9.0.0/23", 24)
    assert e.value.field == "Ipams"
