"""HNS v2 documents: defaults, normalisation, and every refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from silo.errors import InvalidArgument, NotSupported
from silo.schema import hns

pytestmark = pytest.mark.unit


def net(**more: Any) -> dict[str, Any]:
    return {"Name": "n1", "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.200.0.0/24"}]}],
            **more}


def test_network_defaults_are_filled_and_the_input_is_not_changed() -> None:
    given = net()
    out = hns.validate("network", given)
    assert "ID" not in given
    assert hns.is_guid(out["ID"]) and out["ID"] == out["ID"].lower()
    assert out["Type"] == "NAT"
    assert out["SchemaVersion"] == {"Major": 2, "Minor": 0}
    assert out["Ipams"][0]["Type"] == "Static"
    assert out["Ipams"][0]["Subnets"][0]["Flags"] == 0
    assert out["Policies"] == [] and out["Flags"] == 0


def test_a_given_guid_is_lowercased() -> None:
    out = hns.validate("network", net(ID="A1B2C3D4-0000-4000-8000-00000000000A"))
    assert out["ID"] == "a1b2c3d4-0000-4000-8000-00000000000a"


@pytest.mark.parametrize(("doc", "field", "words"), [
    (net(ID="nope"), "ID", "GUID"),
    ({"Ipams": []}, "Name", "required"),
    (net(Name="bad name"), "Name", "letters"),
    (net(Ipams=[{"Subnets": [{"IpAddressPrefix": "10.200.0.0/33"}]}]),
     "Ipams[0].Subnets[0].IpAddressPrefix", "not a valid prefix"),
    (net(Ipams=[{"Subnets": [{"IpAddressPrefix": "10.200.0.1/24"}]}]),
     "Ipams[0].Subnets[0].IpAddressPrefix", "host bits"),
    (net(Ipams=[{"Subnets": [{"IpAddressPrefix": "10.200.0.0/31"}]}]),
     "Ipams[0].Subnets[0].IpAddressPrefix", "no address left"),
    (net(Ipams=[{"Subnets": [{"IpAddressPrefix": "10.200.0.0/24"},
                             {"IpAddressPrefix": "10.200.0.128/25"}]}]),
     "Ipams[0].Subnets[1].IpAddressPrefix", "overlaps"),
    (net(Ipams=[{"Subnets": [{"IpAddressPrefix": "10.200.0.0/24", "Flags": 2}]}]),
     "Ipams[0].Subnets[0].Flags", "<= 1"),
    (net(Ipams=[{"Subnets": [{"IpAddressPrefix": "10.200.0.0/24",
                              "Routes": [{"DestinationPrefix": "fd00::/64"}]}]}]),
     "Ipams[0].Subnets[0].Routes[0].DestinationPrefix", "IPv4"),
    (net(MacPool={"Ranges": [{"StartMacAddress": "02-00-00-00-00-09",
                              "EndMacAddress": "02-00-00-00-00-01"}]}),
     "MacPool.Ranges[0].EndMacAddress", "before"),
    (net(MacPool={"Ranges": [{"StartMacAddress": "zz", "EndMacAddress": "02-00-00-00-00-01"}]}),
     "MacPool.Ranges[0].StartMacAddress", "MAC"),
    (net(Linux={"Bridge": "x"}), "Linux", "silod"),
    (net(Policies=[{"Type": "NetAdapterName", "Settings": {}}]),
     "Policies[0].Settings.NetworkAdapterName", "required"),
    (net(Policies=[{"Type": "NetworkACL", "Settings": {"Action": "Allow", "Direction": "In",
                                                      "LocalPorts": "80-70"}}]),
     "Policies[0].Settings.LocalPorts", "range"),
    (net(Dns={"ServerList": ["not-an-ip"]}), "Dns.ServerList[0]", "IP address"),
    (net(Unknown=1), "Unknown", ""),
])
def test_bad_networks_name_the_field(doc: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        hns.validate("network", doc)
    assert e.value.field == field
    assert e.value.message.startswith(field + ":")
    assert words in e.value.message


@pytest.mark.parametrize(("doc", "field"), [
    (net(Type="Overlay"), "Type"),
    (net(Ipams=[{"Type": "DHCP"}]), "Ipams[0].Type"),
    (net(Policies=[{"Type": "VxlanPort", "Settings": {"Port": 1}}]), "Policies[0].Type"),
    (net(Policies=[{"Type": "PortMapping", "Settings": {"ExternalPort": 1}}]),
     "Policies[0].Type"),
    (net(SchemaVersion={"Major": 1, "Minor": 0}), "SchemaVersion.Major"),
])
def test_what_silo_does_not_do_is_not_supported_naming_the_field(
        doc: dict[str, Any], field: str) -> None:
    with pytest.raises(NotSupported) as e:
        hns.validate("network", doc)
    assert e.value.field == field


def test_endpoint_policies_are_checked_and_normalised() -> None:
    out = hns.validate("endpoint", {
        "HostComputeNetwork": "nat", "MacAddress": "02:aa:bb:cc:dd:ee",
        "IpConfigurations": [{"IpAddress": "fd00:0::5"}],
        "Policies": [
            {"Type": "PortMapping", "Settings": {"ExternalPort": 8080}},
            {"Type": "ACL", "Settings": {"Action": "Block", "Direction": "In",
                                         "Protocols": "6,17", "RemoteAddresses": "10.0.0.0/8"}},
            {"Type": "OutBoundNAT", "Settings": {"Exceptions": ["10.0.0.0/8"]}},
            {"Type": "SDNRoute", "Settings": {"DestinationPrefix": "10.96.0.0/12"}},
            {"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 1000}},
            {"Type": "EncapOverhead", "Settings": {"Overhead": 50}},
        ]})
    assert out["MacAddress"] == "02-AA-BB-CC-DD-EE"
    assert out["IpConfigurations"] == [{"IpAddress": "fd00::5"}]
    pm = out["Policies"][0]["Settings"]
    assert pm == {"ExternalPort": 8080, "InternalPort": 8080, "Protocol": 6, "Flags": 0}
    assert out["Policies"][1]["Settings"]["Priority"] == 0


@pytest.mark.parametrize(("policy", "field"), [
    ({"Type": "PortMapping", "Settings": {"ExternalPort": 0}},
     "Policies[0].Settings.ExternalPort"),
    ({"Type": "PortMapping", "Settings": {"ExternalPort": 80, "Protocol": 1}},
     "Policies[0].Settings.Protocol"),
    ({"Type": "PortMapping", "Settings": {"ExternalPort": 80, "VIP": "x"}},
     "Policies[0].Settings.VIP"),
    ({"Type": "ACL", "Settings": {"Action": "Maybe", "Direction": "In"}},
     "Policies[0].Settings.Action"),
    ({"Type": "ACL", "Settings": {"Action": "Allow", "Direction": "In", "Protocols": "tcp"}},
     "Policies[0].Settings.Protocols"),
    ({"Type": "SDNRoute", "Settings": {"DestinationPrefix": "10.0.0.0/8", "NextHop": "fd00::1"}},
     "Policies[0].Settings.NextHop"),
    ({"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 0}},
     "Policies[0].Settings.MaximumOutgoingBandwidthInBytes"),
    ({"Type": "QOS"}, "Policies[0].Settings.MaximumOutgoingBandwidthInBytes"),
    ({"Settings": {}}, "Policies[0].Type"),
    ({"Type": "ACL", "Settings": [1]}, "Policies[0].Settings"),
])
def test_malformed_policies_name_the_field(policy: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        hns.validate("endpoint", {"HostComputeNetwork": "nat", "Policies": [policy]})
    assert e.value.field == field


def test_an_unknown_endpoint_policy_type_is_not_supported_naming_its_index() -> None:
    with pytest.raises(NotSupported) as e:
        hns.validate("endpoint", {"HostComputeNetwork": "nat", "Policies": [
            {"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 1}},
            {"Type": "L4Proxy", "Settings": {}}]})
    assert e.value.field == "Policies[1].Type"
    assert "L4Proxy" in e.value.message


@pytest.mark.parametrize(("doc", "field"), [
    ({}, "HostComputeNetwork"),
    ({"HostComputeNetwork": "n", "IpConfigurations": [{"IpAddress": "10.0.0.300"}]},
     "IpConfigurations[0].IpAddress"),
    ({"HostComputeNetwork": "n", "IpConfigurations": [{"IpAddress": "10.0.0.3"},
                                                      {"IpAddress": "10.0.0.4"}]},
     "IpConfigurations[1].IpAddress"),
    ({"HostComputeNetwork": "n", "IpConfigurations": [{"IpAddress": "10.0.0.3",
                                                       "PrefixLength": 40}]},
     "IpConfigurations[0].PrefixLength"),
    ({"HostComputeNetwork": "n", "MacAddress": "01-00-00-00-00-01"}, "MacAddress"),
    ({"HostComputeNetwork": "n", "HostComputeNamespace": "x"}, "HostComputeNamespace"),
])
def test_bad_endpoints_name_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        hns.validate("endpoint", doc)
    assert e.value.field == field


def test_namespace_documents() -> None:
    assert hns.validate("namespace", {})["Type"] == "Host"
    for doc, field in [({"Linux": {"NetnsPath": "rel/path"}}, "Linux.NetnsPath"),
                       ({"Linux": {"NetnsPath": "/run/../etc"}}, "Linux.NetnsPath"),
                       ({"Linux": {"Managed": True}}, "Linux.Managed"),
                       ({"Resources": []}, "Resources"),
                       ({"NamespaceId": 3}, "NamespaceId")]:
        with pytest.raises(InvalidArgument) as e:
            hns.validate("namespace", doc)
        assert e.value.field == field
    with pytest.raises(NotSupported):
        hns.validate("namespace", {"Type": "Guest"})


def test_modify_requests() -> None:
    req = hns.validate_modify("endpoint", {"ResourceType": "Policy", "RequestType": "Add",
                                           "Settings": {"Policies": [
                                               {"Type": "PortMapping",
                                                "Settings": {"ExternalPort": 81}}]}})
    assert req["Settings"]["Policies"][0]["Settings"]["InternalPort"] == 81
    with pytest.raises(InvalidArgument) as e:
        hns.validate_modify("endpoint", {"ResourceType": "Policy", "RequestType": "Add",
                                         "Settings": {}})
    assert e.value.field == "Settings.Policies"
    with pytest.raises(NotSupported) as ns:
        hns.validate_modify("endpoint", {"ResourceType": "Policy", "RequestType": "Add",
                                         "Settings": {"Policies": [{"Type": "NetworkACL"}]}})
    assert ns.value.field == "Settings.Policies[0].Type"
    with pytest.raises(NotSupported):
        hns.validate_modify("endpoint", {"ResourceType": "Port", "RequestType": "Add",
                                         "Settings": {}})
    with pytest.raises(InvalidArgument) as e:
        hns.validate_modify("namespace", {"ResourceType": "Endpoint", "RequestType": "Update",
                                          "Settings": {"EndpointId": "x"}})
    assert e.value.field == "RequestType"
