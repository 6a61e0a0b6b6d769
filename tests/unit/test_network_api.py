"""silod's network API over a real HTTP server and the real client: HostNetworkService with a
recording fake data path behind it. Statuses, field names, filters, and that a refused request
changes nothing; with no network service the routes answer 503 but still check bodies first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from silo.client import Client
from silo.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    Unavailable,
)
from silo.network.hns import HostNetworkService
from silo.network.store import MemoryStore
from tests.unit.fake_datapath import FakeDataPath
from tests.unit.served import serving
from tests.unit.test_http import UnixConnection

pytestmark = pytest.mark.unit


@pytest.fixture
def svc() -> HostNetworkService:
    return HostNetworkService(MemoryStore(), FakeDataPath())


def serve(tmp_path: Path, network: HostNetworkService | None) -> Iterator[tuple[Client, str]]:
    with serving(tmp_path, network=network) as sock:
        yield Client("unix://" + sock, timeout=10), sock


@pytest.fixture
def api(tmp_path: Path, svc: HostNetworkService) -> Iterator[tuple[Client, str]]:
    yield from serve(tmp_path, svc)


@pytest.fixture
def client(api: tuple[Client, str]) -> Client:
    return api[0]


def raw(sock: str, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    conn = UnixConnection(sock)
    try:
        conn.request(method, path, body=body or None,
                     headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


NET = {"Name": "web", "Type": "NAT",
       "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.77.0.0/24"}]}]}


def test_networks_round_trip(client: Client) -> None:
    net = client.create_network(NET)
    assert net["Name"] == "web" and net["Linux"]["Gateways"] == ["10.77.0.1"]
    assert client.get_network("web") == net == client.get_network(net["ID"])
    assert client.list_networks() == [net]
    assert client.list_networks({"Name": "web"}) == [net]
    assert client.list_networks({"Name": "nope"}) == []
    assert client.network_rules("web")["Text"].startswith("Layer ACL")
    out = client.modify_network("web", "DNS", "Update", {"ServerList": ["10.77.0.1"]})
    assert out["Dns"] == {"ServerList": ["10.77.0.1"]}
    client.delete_network("web")
    with pytest.raises(NotFound):
        client.get_network("web")


def test_query_parameters(api: tuple[Client, str]) -> None:
    client, sock = api
    net = client.create_network(NET)
    ep = client.create_endpoint({"Name": "e1", "HostComputeNetwork": "web"})
    status, body = raw(sock, "GET", '/v1/networks?filter={"Name":"web"}'.replace('"', "%22"))
    assert status == 200 and [n["ID"] for n in body] == [net["ID"]]
    status, body = raw(sock, "GET", "/v1/networks?Name=web")
    assert status == 200 and len(body) == 1
    status, body = raw(sock, "GET", "/v1/endpoints?HostComputeNetwork=web")
    assert status == 200 and [e["ID"] for e in body] == [ep["ID"]]
    for query, field in [("filter=notjson", "filter"), ("filter=[1]", "filter"),
                         ("filter=%7B%22Colour%22:1%7D", "filter.Colour"), ("Bogus=1", "Bogus")]:
        status, body = raw(sock, "GET", "/v1/networks?" + query)
        assert status == 400 and body["Field"] == field, (query, body)


@pytest.mark.parametrize(("doc", "error", "field"), [
    ({**NET, "Name": "other"}, InvalidArgument, "Ipams[0].Subnets[0].IpAddressPrefix"),
    ({**NET, "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.78.0.0/24"}]}]}, AlreadyExists,
     "Name"),
    ({**NET, "Name": "x", "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.78.0.0/99"}]}]},
     InvalidArgument, "Ipams[0].Subnets[0].IpAddressPrefix"),
    ({**NET, "Name": "x", "Type": "Overlay"}, NotSupported, "Type"),
    ({**NET, "Name": "x", "Policies": [{"Type": "Nope"}]}, NotSupported, "Policies[0].Type"),
])
def test_bad_networks_are_refused_naming_the_field(client: Client, svc: HostNetworkService,
                                                   doc: dict[str, Any], error: type[Exception],
                                                   field: str) -> None:
    client.create_network(NET)
    before = svc.store.load()
    with pytest.raises(error) as e:
        client.create_network(doc)
    assert getattr(e.value, "field", None) == field
    assert svc.store.load() == before


def test_endpoints_namespaces_attach_and_stats(client: Client, svc: HostNetworkService) -> None:
    client.create_network(NET)
    ep = client.create_endpoint({"Name": "e1", "HostComputeNetwork": "web", "Policies": [
        {"Type": "PortMapping", "Settings": {"ExternalPort": 8080, "InternalPort": 80}}]})
    assert ep["IpConfigurations"] == [{"IpAddress": "10.77.0.2", "PrefixLength": 24}]
    assert client.list_endpoints({"HostComputeNetwork": "web"}) == [ep]
    with pytest.raises(AlreadyExists) as port:
        client.create_endpoint({"HostComputeNetwork": "web", "Policies": [
            {"Type": "PortMapping", "Settings": {"ExternalPort": 8080}}]})
    assert port.value.field == "Policies[0].Settings.ExternalPort"
    ns = client.create_namespace()
    attached = client.attach_endpoint(ns["ID"], "e1")
    assert attached["Resources"] == [{"Type": "Endpoint", "Data": {"ID": ep["ID"]}}]
    with pytest.raises(InvalidState) as twice:
        client.attach_endpoint(ns["ID"], "e1")
    assert twice.value.field == "Settings.EndpointId"
    assert client.endpoint_stats("e1")["BytesSent"] == 20
    out = client.modify_endpoint("e1", "Add", [
        {"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 100000}}])
    assert [p["Type"] for p in out["Policies"]] == ["PortMapping", "QOS"]
    with pytest.raises(InvalidState):
        client.delete_network("web")
    client.detach_endpoint(ns["ID"], "e1")
    assert "HostComputeNamespace" not in client.get_endpoint("e1")
    client.delete_namespace(ns["ID"])
    client.delete_network("web", force=True)
    assert client.list_endpoints() == [] and client.list_namespaces() == []


def test_bodies_are_checked_at_the_boundary(api: tuple[Client, str]) -> None:
    _, sock = api
    for method, path, body, field in [
        ("POST", "/v1/networks", b"", "body"),
        ("POST", "/v1/networks", b"[1]", "body"),
        ("POST", "/v1/networks", b'{"Name": 1}', "Name"),
        ("POST", "/v1/endpoints", b"{}", "HostComputeNetwork"),
        ("POST", "/v1/namespaces/x/modify",
         b'{"ResourceType":"Endpoint","RequestType":"Add","Settings":{}}',
         "Settings.EndpointId"),
        ("GET", "/v1/networks/x", b'{"a":1}', "body"),
    ]:
        status, doc = raw(sock, method, path, body)
        assert status == 400 and doc["Field"] == field, (path, body, doc)


def test_without_a_network_service_bodies_are_checked_then_503(tmp_path: Path) -> None:
    for client, sock in serve(tmp_path, None):
        status, doc = raw(sock, "POST", "/v1/networks", b'{"Name": "bad name"}')
        assert status == 400 and doc["Field"] == "Name"
        with pytest.raises(Unavailable):
            client.list_networks()
