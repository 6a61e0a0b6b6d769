"""HostNetworkService over a recording fake DataPath and a MemoryStore: the objects, the checks
across them, attach/detach, and that every refusal or failure leaves nothing behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from silo.errors import AlreadyExists, Internal, InvalidArgument, InvalidState, NotFound
from silo.network.hns import (
    DEFAULT_NETWORK,
    DEFAULT_SUBNET,
    DEFAULT_SUBNET_FALLBACKS,
    HostNetworkService,
)
from silo.network.store import MemoryStore
from tests.unit.fake_datapath import FakeDataPath

pytestmark = pytest.mark.unit


@pytest.fixture
def svc() -> HostNetworkService:
    return HostNetworkService(MemoryStore(), FakeDataPath(), check_netns=lambda path: None)


@pytest.mark.parametrize(("path", "words"), [
    ("/nonexistent/netns", "No such file"), ("/proc/self/ns/net", "own"),
    ("/etc/hostname", "not a network namespace"), ("/proc/self/ns/mnt", "not a network namespace"),
])
def test_a_client_netns_path_must_be_another_network_namespace(path: str, words: str) -> None:
    real = HostNetworkService(MemoryStore(), FakeDataPath())
    with pytest.raises(InvalidArgument) as e:
        real.create_namespace({"Linux": {"NetnsPath": path}})
    assert e.value.field == "Linux.NetnsPath" and words in e.value.message
    assert real.query("namespace") == []


def dp(s: HostNetworkService) -> FakeDataPath:
    assert isinstance(s.datapath, FakeDataPath)
    return s.datapath


def snapshot(s: HostNetworkService) -> Any:
    assert isinstance(s.store, MemoryStore)
    return (s.store.load(), dp(s).host(),
            {nid: s.ipam.in_use(nid) for nid in s.store.load()["network"]})


def mknet(s: HostNetworkService, name: str = "web", prefix: str = "10.50.0.0/24",
          **more: Any) -> dict[str, Any]:
    return s.create_network({"Name": name, "Ipams": [{"Subnets": [{"IpAddressPrefix": prefix}]}],
                             **more})


def pm(port: int, internal: int = 80, proto: int = 6, **more: Any) -> dict[str, Any]:
    return {"Type": "PortMapping", "Settings": {"ExternalPort": port, "InternalPort": internal,
                                                "Protocol": proto, **more}}


def test_network_lifecycle(svc: HostNetworkService) -> None:
    net = mknet(svc)
    assert net["Linux"] == {"Gateways": ["10.50.0.1"], "Bridge": "tstbr" + net["ID"][:8]}
    assert svc.get("network", "web") == net == svc.get("network", net["ID"].upper())
    assert svc.query("network", {"Name": "web"}) == [net]
    assert svc.query("network", {"Name": "other"}) == []
    assert svc.store.load()["network"][net["ID"]] == net
    svc.delete_network("web")
    assert dp(svc).bridges == {} and svc.store.load()["network"] == {}
    with pytest.raises(NotFound) as e:
        svc.get("network", "web")
    assert e.value.obj == "web"


def test_duplicate_name_and_overlapping_subnets_change_nothing(svc: HostNetworkService) -> None:
    mknet(svc)
    before = snapshot(svc)
    with pytest.raises(AlreadyExists) as dup:
        mknet(svc, prefix="10.51.0.0/24")
    assert dup.value.field == "Name"
    with pytest.raises(InvalidArgument) as over:
        mknet(svc, "other", "10.50.0.128/25")
    assert over.value.field == "Ipams[0].Subnets[0].IpAddressPrefix"
    assert "web" in over.value.message
    assert snapshot(svc) == before


def test_a_data_path_failure_undoes_the_network(svc: HostNetworkService) -> None:
    before = snapshot(svc)
    dp(svc).fail["ensure_network"] = Internal("bridge refused")
    with pytest.raises(Internal):
        mknet(svc)
    assert snapshot(svc) == before
    mknet(svc)  # the subnet was given back


def test_a_store_failure_undoes_the_data_path(svc: HostNetworkService) -> None:
    assert isinstance(svc.store, MemoryStore)
    svc.store.fail_on["network"] = Internal("disk full")
    with pytest.raises(Internal):
        mknet(svc)
    assert dp(svc).bridges == {}
    assert [c[0] for c in dp(svc).calls] == ["ensure_network", "remove_network"]


def test_endpoints_get_addresses_and_filters_find_them(svc: HostNetworkService) -> None:
    net = mknet(svc)
    a = svc.create_endpoint({"Name": "a", "HostComputeNetwork": "web"})
    b = svc.create_endpoint({"HostComputeNetwork": net["ID"],
                             "IpConfigurations": [{"IpAddress": "10.50.0.9"}]})
    assert a["HostComputeNetwork"] == net["ID"]
    assert a["IpConfigurations"] == [{"IpAddress": "10.50.0.2", "PrefixLength": 24}]
    assert b["IpConfigurations"] == [{"IpAddress": "10.50.0.9", "PrefixLength": 24}]
    assert a["MacAddress"] != b["MacAddress"]
    assert [e["ID"] for e in svc.query("endpoint", {"HostComputeNetwork": "web"})] \
        == sorted([a["ID"], b["ID"]], key=lambda i: ("a" if i == a["ID"] else "", i))
    assert svc.query("endpoint", {"Name": "a"}) == [a]
    with pytest.raises(InvalidArgument) as e:
        svc.query("endpoint", {"Colour": "red"})
    assert e.value.field == "filter.Colour"


@pytest.mark.parametrize(("doc", "error", "field"), [
    ({"HostComputeNetwork": "nope"}, NotFound, "HostComputeNetwork"),
    ({"HostComputeNetwork": "web", "IpConfigurations": [{"IpAddress": "10.60.0.2"}]},
     InvalidArgument, "IpConfigurations[0].IpAddress"),
    ({"HostComputeNetwork": "web", "IpConfigurations": [{"IpAddress": "10.50.0.2"}]},
     InvalidArgument, "IpConfigurations[0].IpAddress"),
    ({"HostComputeNetwork": "web", "Name": "first"}, AlreadyExists, "Name"),
    ({"HostComputeNetwork": "web", "Policies": [pm(8080)]}, AlreadyExists,
     "Policies[0].Settings.ExternalPort"),
    ({"HostComputeNetwork": "web", "Policies": [pm(9090), pm(9090, 81)]}, AlreadyExists,
     "Policies[1].Settings.ExternalPort"),
    ({"HostComputeNetwork": "web", "Policies": [{"Type": "Bogus"}]}, Exception,
     "Policies[0].Type"),
])
def test_bad_endpoints_change_nothing(svc: HostNetworkService, doc: dict[str, Any],
                                      error: type[Exception], field: str) -> None:
    mknet(svc)
    svc.create_endpoint({"Name": "first", "HostComputeNetwork": "web", "Policies": [pm(8080)]})
    before = snapshot(svc)
    with pytest.raises(error) as e:
        svc.create_endpoint(doc)
    assert getattr(e.value, "field", None) == field
    assert snapshot(svc) == before


def test_port_mappings_on_other_protocols_or_vips_do_not_clash(svc: HostNetworkService) -> None:
    mknet(svc)
    svc.create_endpoint({"HostComputeNetwork": "web", "Policies": [pm(53, 53, 6)]})
    svc.create_endpoint({"HostComputeNetwork": "web", "Policies": [pm(53, 53, 17)]})
    svc.create_endpoint({"HostComputeNetwork": "web",
                         "Policies": [pm(54, VIP="127.0.0.1")]})
    svc.create_endpoint({"HostComputeNetwork": "web",
                         "Policies": [pm(54, VIP="127.0.0.2")]})
    with pytest.raises(AlreadyExists) as e:
        svc.create_endpoint({"HostComputeNetwork": "web", "Policies": [pm(54)]})
    assert "port already exists" in e.value.message


def test_attach_detach_and_counters(svc: HostNetworkService) -> None:
    mknet(svc)
    ep = svc.create_endpoint({"Name": "e", "HostComputeNetwork": "web", "Policies": [pm(8080)]})
    ns = svc.create_namespace({})
    path = ns["Linux"]["NetnsPath"]
    assert ns["Linux"]["Managed"] is True and path in dp(svc).netns
    assert svc.endpoint_stats("e")["BytesSent"] == 0
    out = svc.modify_namespace(ns["ID"], {"ResourceType": "Endpoint", "RequestType": "Add",
                                          "Settings": {"EndpointId": "e"}})
    assert out["Resources"] == [{"Type": "Endpoint", "Data": {"ID": ep["ID"]}}]
    got = svc.get("endpoint", "e")
    assert got["HostComputeNamespace"] == ns["ID"]
    assert got["Linux"] == {"InterfaceName": "eth0", "HostInterface": "tst" + ep["ID"][:10]}
    assert dp(svc).ports[ep["ID"]] == (path, "eth0")
    assert svc.endpoint_stats("e")["BytesSent"] == 20
    dp(svc).fail["counters"] = NotFound("no such counter")
    with pytest.raises(Internal) as lost:
        svc.endpoint_stats("e")
    assert lost.value.obj == ep["ID"]
    before = snapshot(svc)
    ns2 = svc.create_namespace({"Name": "two", "Linux": {"NetnsPath": "/run/elsewhere/x"}})
    assert ns2["Linux"]["Managed"] is False
    with pytest.raises(InvalidState) as twice:
        svc.attach("two", "e")
    assert twice.value.field == "Settings.EndpointId"
    svc.delete_namespace("two")
    assert snapshot(svc) == before
    with pytest.raises(NotFound) as nf:
        svc.attach(ns["ID"], "ghost")
    assert nf.value.field == "Settings.EndpointId"
    svc.detach(ns["ID"], "e")
    assert "HostComputeNamespace" not in svc.get("endpoint", "e")
    assert svc.get("namespace", ns["ID"])["Resources"] == []
    assert dp(svc).ports == {}
    with pytest.raises(InvalidState):
        svc.detach(ns["ID"], "e")


def test_a_failed_attach_changes_nothing(svc: HostNetworkService) -> None:
    mknet(svc)
    svc.create_endpoint({"Name": "e", "HostComputeNetwork": "web"})
    ns = svc.create_namespace({})
    before = snapshot(svc)
    dp(svc).fail["attach"] = Internal("veth refused")
    with pytest.raises(Internal):
        svc.attach(ns["ID"], "e")
    assert snapshot(svc) == before
    assert isinstance(svc.store, MemoryStore)
    svc.store.fail_on["namespace"] = Internal("disk full")
    with pytest.raises(Internal):
        svc.attach(ns["ID"], "e")
    assert snapshot(svc) == before


def test_network_with_endpoints_is_not_deleted_unless_forced(svc: HostNetworkService) -> None:
    mknet(svc)
    ep = svc.create_endpoint({"Name": "e", "HostComputeNetwork": "web"})
    ns = svc.create_namespace({})
    svc.attach(ns["ID"], ep["ID"])
    before = snapshot(svc)
    with pytest.raises(InvalidState) as e:
        svc.delete_network("web")
    assert "e" in e.value.message and "force" in e.value.message
    assert snapshot(svc) == before
    svc.delete_network("web", force=True)
    assert svc.query("endpoint") == [] and dp(svc).bridges == {} and dp(svc).ports == {}
    assert svc.get("namespace", ns["ID"])["Resources"] == []


def test_modify_endpoint_policies_in_place(svc: HostNetworkService) -> None:
    mknet(svc)
    mknet(svc, "other", "10.51.0.0/24")
    svc.create_endpoint({"Name": "x", "HostComputeNetwork": "other", "Policies": [pm(7000)]})
    ep = svc.create_endpoint({"Name": "e", "HostComputeNetwork": "web", "Policies": [pm(8080)]})
    ns = svc.create_namespace({})
    svc.attach(ns["ID"], ep["ID"])

    def mod(kind: str, *policies: dict[str, Any]) -> dict[str, Any]:
        return svc.modify_endpoint("e", {"ResourceType": "Policy", "RequestType": kind,
                                         "Settings": {"Policies": list(policies)}})

    qos = {"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 1000}}
    out = mod("Add", qos)
    assert [p["Type"] for p in out["Policies"]] == ["PortMapping", "QOS"]
    assert [p["Type"] for p in dp(svc).policies[ep["ID"]]] == ["PortMapping", "QOS"]
    out = mod("Update", pm(8081))
    assert [p["Settings"]["ExternalPort"] for p in out["Policies"]
            if p["Type"] == "PortMapping"] == [8081]
    before = snapshot(svc)
    with pytest.raises(AlreadyExists) as e:
        mod("Add", pm(7000))
    assert e.value.field == "Settings.Policies[0].Settings.ExternalPort"
    with pytest.raises(AlreadyExists) as same:
        mod("Add", pm(8081, 82))
    assert same.value.field == "Settings.Policies[0].Settings.ExternalPort"
    with pytest.raises(NotFound) as nf:
        mod("Remove", pm(9999))
    assert nf.value.field == "Settings.Policies[0]"
    dp(svc).fail["update_endpoint"] = Internal("nft refused")
    with pytest.raises(Internal):
        mod("Remove", qos)
    assert snapshot(svc) == before
    out = mod("Remove", qos)
    assert [p["Type"] for p in out["Policies"]] == ["PortMapping"]
    assert svc.get("endpoint", "e") == out


def test_modify_network_policies_and_dns(svc: HostNetworkService) -> None:
    net = mknet(svc)
    acl = {"Type": "NetworkACL", "Settings": {"Action": "Block", "Direction": "In",
                                              "Protocols": "17"}}
    out = svc.modify_network("web", {"ResourceType": "Policy", "RequestType": "Add",
                                     "Settings": {"Policies": [acl]}})
    assert out["Policies"][0]["Type"] == "NetworkACL"
    assert dp(svc).bridges[net["ID"]]["Policies"] == out["Policies"]
    out = svc.modify_network("web", {"ResourceType": "DNS", "RequestType": "Update",
                                     "Settings": {"ServerList": ["10.50.0.1"]}})
    assert out["Dns"] == {"ServerList": ["10.50.0.1"]}
    assert svc.rules("web")["Text"].startswith("Layer ACL")


def test_load_restores_and_rebuilds(svc: HostNetworkService) -> None:
    mknet(svc)
    ep = svc.create_endpoint({"HostComputeNetwork": "web"})
    ns = svc.create_namespace({})
    svc.attach(ns["ID"], ep["ID"])
    again = HostNetworkService(svc.store, FakeDataPath())
    report = again.load()
    assert report["endpoint"] == [ep["ID"]]
    rebuilt = dp(again).rebuilt
    assert rebuilt is not None
    assert [e["ID"] for e in rebuilt[1]] == [ep["ID"]]
    nxt = again.create_endpoint({"HostComputeNetwork": "web"})
    assert nxt["IpConfigurations"][0]["IpAddress"] != ep["IpConfigurations"][0]["IpAddress"]
    assert nxt["MacAddress"] != ep["MacAddress"]


def test_default_network_and_containers(svc: HostNetworkService) -> None:
    path = svc.attach_container(DEFAULT_NETWORK, "c1", [{"ExternalPort": 8080,
                                                         "InternalPort": 80}])
    nat = svc.get("network", DEFAULT_NETWORK)
    assert nat["Ipams"][0]["Subnets"][0]["IpAddressPrefix"] == DEFAULT_SUBNET
    assert svc.ensure_default() == nat
    ns = svc.container_namespace("c1")
    assert ns is not None and ns["Linux"]["NetnsPath"] == path
    mknet(svc)
    assert svc.attach_container("web", "c1") == path
    eps = svc.query("endpoint")
    assert sorted(e["Linux"]["InterfaceName"] for e in eps) == ["eth0", "eth1"]
    before = snapshot(svc)
    with pytest.raises(AlreadyExists):
        svc.attach_container("web", "c2", [{"ExternalPort": 8080}])
    with pytest.raises(NotFound):
        svc.attach_container("nope", "c2")
    assert snapshot(svc) == before
    svc.detach_container("c1")
    svc.detach_container("c1")
    assert svc.query("endpoint") == [] and svc.query("namespace") == []
    assert dp(svc).netns == set() and dp(svc).ports == {}


def test_the_default_network_moves_when_the_host_routes_its_subnet(
        svc: HostNetworkService) -> None:
    taken = InvalidState("Ipams[0].Subnets[0].IpAddressPrefix: the host routes 172.16.0.0/16 "
                         "through eth9")
    dp(svc).fail["ensure_network"] = taken
    nat = svc.ensure_default()
    assert nat["Ipams"][0]["Subnets"][0]["IpAddressPrefix"] == DEFAULT_SUBNET_FALLBACKS[0]
    assert [n["Name"] for n in svc.query("network")] == [DEFAULT_NETWORK]


def test_concurrent_endpoint_creates_never_share_an_address(svc: HostNetworkService) -> None:
    mknet(svc, prefix="10.50.0.0/23")
    made: list[dict[str, Any]] = []
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        for _ in range(40):
            made.append(svc.create_endpoint({"HostComputeNetwork": "web"}))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    addrs = {e["IpConfigurations"][0]["IpAddress"] for e in made}
    assert len(made) == 240 and len(addrs) == 240
    assert len(svc.store.load()["endpoint"]) == 240


def test_a_network_without_subnets_gets_a_free_24(svc: HostNetworkService) -> None:
    mknet(svc, "taken", "172.20.0.0/24")
    net = svc.create_network({"Name": "auto"})
    assert net["Ipams"][0]["Subnets"][0]["IpAddressPrefix"] == "172.20.1.0/24"
    assert net["Linux"]["Gateways"] == ["172.20.1.1"]
    second = svc.create_network({"Name": "auto2", "Type": "Internal"})
    assert second["Ipams"][0]["Subnets"][0]["IpAddressPrefix"] == "172.20.2.0/24"
    l2 = svc.create_network({"Name": "l2", "Type": "L2Bridge"})
    assert l2["Ipams"] == []
