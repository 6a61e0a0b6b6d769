# ruff: noqa: E501  (golden nft text is kept as nft prints it, one command a line)
"""The rule compiler: policies → nft text (golden), ACL grouping and order, policy checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from silo.errors import InvalidArgument, NotSupported
from silo.network import names
from silo.network.drivers import driver_for
from silo.network.rules import compiler, model, render
from silo.network.rules.policy import endpoint_policies, network_policies

pytestmark = pytest.mark.unit

NET: dict[str, Any] = {
    "ID": "0a0b0c0d-0000-4000-8000-000000000001", "Type": "NAT",
    "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.1.2.0/24",
                            "Routes": [{"NextHop": "10.1.2.1",
                                        "DestinationPrefix": "0.0.0.0/0"}]}]}]}
EP: dict[str, Any] = {
    "ID": "e0e1e2e3-e4e5-4000-8000-000000000002", "HostComputeNetwork": NET["ID"],
    "MacAddress": "00-15-5D-01-02-03",
    "IpConfigurations": [{"IpAddress": "10.1.2.5", "PrefixLength": 24}],
    "Policies": [
        {"Type": "PortMapping", "Settings": {"Protocol": 6, "InternalPort": 80,
                                             "ExternalPort": 8080, "Flags": 1}},
        {"Type": "ACL", "Settings": {"Action": "Block", "Direction": "In", "Protocols": "6",
                                     "LocalPorts": "22", "Priority": 200}},
        {"Type": "ACL", "Settings": {"Action": "Allow", "Direction": "In", "Protocols": "6",
                                     "LocalPorts": "22", "RemoteAddresses": "10.9.0.0/16",
                                     "Priority": 100}},
        {"Type": "OutBoundNAT", "Settings": {"Exceptions": ["10.0.0.0/8"]}}]}

GOLDEN_EP_ADD = """\
table inet silo {
	counter drop_e0e1e2e3e4_in { }
	set acl_e0e1e2e3e4_in_0_4p { type inet_proto . ipv4_addr . ipv4_addr . inet_service . inet_service; flags interval; elements = { tcp . 10.9.0.0/16 . 0.0.0.0/0 . 0-65535 . 22 } }
	set acl_e0e1e2e3e4_in_1_4p { type inet_proto . ipv4_addr . ipv4_addr . inet_service . inet_service; flags interval; elements = { tcp . 0.0.0.0/0 . 0.0.0.0/0 . 0-65535 . 22 } }
	chain acl_e0e1e2e3e4_in {
		meta l4proto . ip saddr . ip daddr . th sport . th dport @acl_e0e1e2e3e4_in_0_4p return
		meta l4proto . ip saddr . ip daddr . th sport . th dport @acl_e0e1e2e3e4_in_1_4p counter name "drop_e0e1e2e3e4_in" drop
		meta l4proto { tcp, udp, icmp, ipv6-icmp, igmp } return
		counter name "drop_e0e1e2e3e4_in" drop
	}
	chain snat_e0e1e2e3e4 {
		oifname @bridges accept
		ip daddr { 10.0.0.0/8 } accept
		masquerade
	}
}
add element inet silo acl_in4 { 10.1.2.5 : jump acl_e0e1e2e3e4_in }
add element inet silo snat4 { 10.1.2.5 : jump snat_e0e1e2e3e4 }
create element inet silo pmany4 { tcp . 8080 : 10.1.2.5 . 80 }
create element inet silo pmanyl4 { tcp . 8080 : 10.1.2.5 . 80 }
add element bridge silo ports { "siloe0e1e2e3e4" }
add element bridge silo mac_ok { "siloe0e1e2e3e4" . 00:15:5d:01:02:03 }
add element bridge silo src4 { "siloe0e1e2e3e4" . 00:15:5d:01:02:03 . 10.1.2.5 : accept }
"""

GOLDEN_EP_DELETE = """\
delete element inet silo acl_in4 { 10.1.2.5 }
delete element inet silo snat4 { 10.1.2.5 }
delete element inet silo pmany4 { tcp . 8080 }
delete element inet silo pmanyl4 { tcp . 8080 }
delete element bridge silo ports { "siloe0e1e2e3e4" }
delete element bridge silo mac_ok { "siloe0e1e2e3e4" . 00:15:5d:01:02:03 }
delete element bridge silo src4 { "siloe0e1e2e3e4" . 00:15:5d:01:02:03 . 10.1.2.5 }
flush chain inet silo acl_e0e1e2e3e4_in
flush chain inet silo snat_e0e1e2e3e4
delete chain inet silo acl_e0e1e2e3e4_in
delete chain inet silo snat_e0e1e2e3e4
delete set inet silo acl_e0e1e2e3e4_in_0_4p
delete set inet silo acl_e0e1e2e3e4_in_1_4p
delete counter inet silo drop_e0e1e2e3e4_in
"""

GOLDEN_NET = """\
table inet silo {
	chain masq_0a0b0c0d {
		oifname @bridges accept
		masquerade
	}
}
table bridge silo {
	chain fast_0a0b0c0d {
		ip daddr 10.1.2.0/24 ip daddr . meta l4proto @peer4 notrack accept
		accept
	}
}
add element inet silo bridges { "silobr0a0b0c0d" }
add element inet silo same_net { "silobr0a0b0c0d" . "silobr0a0b0c0d" }
add element inet silo hairpin4 { 10.1.2.0/24 . "silobr0a0b0c0d" }
add element inet silo masq4 { 10.1.2.0/24 : jump masq_0a0b0c0d }
"""

GOLDEN_RENDER = """\
Network 0a0b0c0d-0000-4000-8000-000000000001 (NAT) bridge silobr0a0b0c0d
  Layer ISOLATION
    other silo networks: block (published ports excepted)
    outside interfaces: allow
    host: allow
  Layer NAT
    masquerade 10.1.2.0/24 to other interfaces
  Port e0e1e2e3-e4e5-4000-8000-000000000002 siloe0e1e2e3e4 00:15:5d:01:02:03 (10.1.2.5)
    Layer PORT
      source MAC 00:15:5d:01:02:03, ARP and IP from 10.1.2.5 only, no VLAN tags
    Layer ACL IN
      Group 0
        Rule priority 100   Allow proto TCP local any:22 remote 10.9.0.0/16:any
      Group 1
        Rule priority 200   Block proto TCP local any:22 remote any:any
      Default allow TCP,UDP,ICMP,ICMPV6,IGMP; block other
    Layer ACL OUT
      Default allow all
    Layer NAT
      PortMapping TCP *:8080 -> :80 LocalRoutedVip
      OutBoundNAT to host address except 10.0.0.0/8 only any
"""


def specs(net: dict[str, Any] = NET, ep: dict[str, Any] = EP,
          prefix: str = "silo") -> tuple[model.NetworkSpec, model.EndpointSpec]:
    n = model.network_spec(net, prefix, driver_for(net.get("Type")).traits)
    return n, model.endpoint_spec(ep, prefix)


def with_policies(*policies: dict[str, Any]) -> dict[str, Any]:
    ep = copy.deepcopy(EP)
    ep["Policies"] = list(policies)
    return ep


def acl(**settings: Any) -> dict[str, Any]:
    return {"Type": "ACL", "Settings": settings}


# -- golden text --------------------------------------------------------------------------------

def test_endpoint_part_golden() -> None:
    net, ep = specs()
    part = compiler.endpoint_part(net, ep)
    assert compiler.script(part.add_lines("silo")) == GOLDEN_EP_ADD


def test_endpoint_part_deletes_exactly_what_it_added() -> None:
    net, ep = specs()
    assert compiler.script(compiler.endpoint_part(net, ep).delete_lines("silo")) == \
        GOLDEN_EP_DELETE


def test_only_endpoints_whose_rules_need_no_state_take_the_fast_path() -> None:
    """An endpoint without ACLs (its own or its network's) and without QOS is on the fast path
    (its flows with its like skip conntrack): as a source with its subnet, as a destination
    over the protocols the default inbound filter passes. An ACL in either direction, a
    network ACL, a QOS policy, or ``fast_path`` off keep it tracked; an OutBoundNAT does not
    (it never applies inside the subnet). Anti-spoofing is there either way."""
    net, _ = specs()

    def fast(*policies: dict[str, Any]) -> list[str]:
        ep = model.endpoint_spec(with_policies(*policies), "silo")
        part = compiler.endpoint_part(net, ep)
        return [f"{name}: {value}" for fam, name, value, _ in part.elements
                if name in ("src4", "peer4")]

    on = ['src4: "siloe0e1e2e3e4" . 00:15:5d:01:02:03 . 10.1.2.5 : goto fast_0a0b0c0d',
          "peer4: 10.1.2.5 . tcp, 10.1.2.5 . udp, 10.1.2.5 . icmp, 10.1.2.5 . igmp"]
    assert fast() == on
    assert fast({"Type": "OutBoundNAT", "Settings": {}}) == on
    off = ['src4: "siloe0e1e2e3e4" . 00:15:5d:01:02:03 . 10.1.2.5 : accept']
    assert fast({"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 10**6}}) == \
        ['src4: "siloe0e1e2e3e4" . 00:15:5d:01:02:03 . 10.1.2.5 : goto qos_e0e1e2e3e4']
    assert fast(acl(Action="Block", Direction="Out", Priority=1)) == off
    assert fast(acl(Action="Allow", Direction="In", Priority=1)) == off
    net.policies = network_policies({"Policies": [{"Type": "NetworkACL", "Settings": {
        "Action": "Block", "Direction": "In", "Priority": 1, "Protocols": "6"}}]})
    assert fast() == off
    net.policies = network_policies({"Policies": []})
    net.fast_path = False
    assert fast() == off
    assert compiler.network_part(net).bridge_chains == []
    plain = model.endpoint_spec(with_policies(), "silo")
    assert "fast path" not in render.render([net], [plain])
    net.fast_path = True
    assert "fast path" in render.render([net], [plain])
    assert "fast path" not in render.render([net], [specs()[1]])
    assert "notrack" in compiler.script(compiler.network_part(net).add_lines("silo"))
    assert "notrack" not in compiler.SKELETON_INET


def test_network_part_golden() -> None:
    net, _ep = specs()
    assert compiler.script(compiler.network_part(net).add_lines("silo")) == GOLDEN_NET


def test_render_golden() -> None:
    net, ep = specs()
    assert render.render([net], [ep]) == GOLDEN_RENDER


def test_full_script_replaces_both_tables_then_adds_every_part() -> None:
    net, ep = specs()
    text = compiler.full_script("silo", [net], [ep])
    lines = text.splitlines()
    assert lines[:4] == ["add table inet silo", "delete table inet silo",
                         "add table bridge silo", "delete table bridge silo"]
    # every object in the one block (see Part.add_lines), then the elements
    assert "\tchain masq_0a0b0c0d {" in text and "\tchain acl_e0e1e2e3e4_in {" in text
    assert text.count("table inet silo {") == 1
    net, ep = specs()
    elements = compiler.network_part(net).element_lines("silo") + \
        compiler.endpoint_part(net, ep).element_lines("silo")
    assert text.endswith(compiler.script(elements))


def test_prefix_names_every_object() -> None:
    net, ep = specs(prefix="zq1")
    text = compiler.full_script("zq1", [net], [ep])
    assert "inet silo" not in text and "bridge silo" not in text
    assert '"zq1br0a0b0c0d"' in text and '"zq1e0e1e2e3e4"' in text


# -- NAT layer ----------------------------------------------------------------------------------

def test_port_mapping_with_vip_goes_in_the_vip_map_and_not_the_local_one() -> None:
    _net, ep = specs(ep=with_policies({"Type": "PortMapping", "Settings": {
        "Protocol": 17, "InternalPort": 53, "ExternalPort": 5353, "VIP": "192.0.2.9"}}))
    part = compiler.endpoint_part(specs()[0], ep)
    assert ("inet", "pm4", "192.0.2.9 . udp . 5353 : 10.1.2.5 . 53", True) in part.elements
    assert not [e for e in part.elements if e[1].startswith(("pml", "pmany"))]


def test_port_mapping_external_port_defaults_to_internal() -> None:
    pol = endpoint_policies(with_policies({"Type": "PortMapping", "Settings": {
        "Protocol": 6, "InternalPort": 443}}))
    assert pol.port_mappings[0].external == 443


def test_outbound_nat_destinations_and_vip() -> None:
    net, ep = specs(ep=with_policies({"Type": "OutBoundNAT", "Settings": {
        "Destinations": ["198.51.100.0/24"], "VirtualIP": "192.0.2.50"}}))
    chains = dict(compiler.endpoint_part(net, ep).chains)
    assert chains["snat_e0e1e2e3e4"] == [
        "oifname @bridges accept",
        "ip daddr != { 198.51.100.0/24 } accept",
        "meta nfproto ipv6 accept",
        "meta nfproto ipv4 snat ip to 192.0.2.50",
        "masquerade"]


def test_only_nat_networks_masquerade() -> None:
    for kind in ("Internal", "Private", "L2Bridge", "Transparent"):
        net, _ = specs(net={**NET, "Type": kind})
        assert compiler.network_part(net).chains == [], kind
    internal, _ = specs(net={**NET, "Type": "Internal"})
    private, _ = specs(net={**NET, "Type": "Private"})
    assert ("inet", "closed", '"silobr0a0b0c0d"', False) in \
        compiler.network_part(internal).elements
    assert ("inet", "hostless", '"silobr0a0b0c0d"', False) not in \
        compiler.network_part(internal).elements
    assert ("inet", "hostless", '"silobr0a0b0c0d"', False) in \
        compiler.network_part(private).elements


# -- ACL layer ----------------------------------------------------------------------------------

def test_a_thousand_rules_of_one_action_are_one_set_lookup() -> None:
    rules = [acl(Action="Block", Direction="In", Protocols="6", LocalPorts=str(20000 + i),
                 Priority=1000 + i) for i in range(1000)]
    net, ep = specs(ep=with_policies(*rules))
    part = compiler.endpoint_part(net, ep)
    chain = dict(part.chains)["acl_e0e1e2e3e4_in"]
    assert len(chain) == 3  # the set lookup, the default allow list, the default drop
    (name, _decl, elements), = part.sets
    assert len(elements) == 1000 and name == "acl_e0e1e2e3e4_in_0_4p"


def test_priority_orders_groups_and_block_wins_a_tie() -> None:
    rules = [acl(Action="Allow", Direction="Out", Priority=300, RemoteAddresses="1.1.1.1"),
             acl(Action="Allow", Direction="Out", Priority=100, RemoteAddresses="2.2.2.2"),
             acl(Action="Block", Direction="Out", Priority=100, RemoteAddresses="3.3.3.3"),
             acl(Action="Block", Direction="Out", Priority=200, RemoteAddresses="4.4.4.4")]
    net, ep = specs(ep=with_policies(*rules))
    part = compiler.endpoint_part(net, ep)
    chain = dict(part.chains)["acl_e0e1e2e3e4_out"]
    verdicts = [r.rsplit(" ", 1)[-1] for r in chain]
    assert verdicts == ["drop", "return", "drop", "return", "return"]
    sets = {name: elems for name, _d, elems in part.sets}
    assert sets["acl_e0e1e2e3e4_out_0_4a"] == ["0-255 . 0.0.0.0/0 . 3.3.3.3/32"]
    assert sets["acl_e0e1e2e3e4_out_1_4a"] == ["0-255 . 0.0.0.0/0 . 2.2.2.2/32"]
    assert sets["acl_e0e1e2e3e4_out_2_4a"] == ["0-255 . 0.0.0.0/0 . 4.4.4.4/32"]


def test_directions_lay_out_local_and_remote_on_the_right_side() -> None:
    rules = [acl(Action="Block", Direction="In", Protocols="17", LocalPorts="53",
                 RemotePorts="1000-2000", RemoteAddresses="192.0.2.0/24"),
             acl(Action="Block", Direction="Out", Protocols="17", LocalPorts="53",
                 RemotePorts="1000-2000", RemoteAddresses="192.0.2.0/24")]
    net, ep = specs(ep=with_policies(*rules))
    sets = {name: elems for name, _d, elems in compiler.endpoint_part(net, ep).sets}
    assert sets["acl_e0e1e2e3e4_in_0_4p"] == [
        "udp . 192.0.2.0/24 . 0.0.0.0/0 . 1000-2000 . 53"]
    assert sets["acl_e0e1e2e3e4_out_0_4p"] == [
        "udp . 0.0.0.0/0 . 192.0.2.0/24 . 53 . 1000-2000"]


def test_network_acl_applies_to_every_endpoint_of_the_network() -> None:
    net_doc = {**NET, "Policies": [{"Type": "NetworkACL", "Settings": {
        "Action": "Block", "Direction": "Out", "RemoteAddresses": "203.0.113.0/24"}}]}
    net, ep = specs(net=net_doc, ep=with_policies())
    sets = {name: elems for name, _d, elems in compiler.endpoint_part(net, ep).sets}
    assert sets == {"acl_e0e1e2e3e4_out_0_4a": ["0-255 . 0.0.0.0/0 . 203.0.113.0/24"]}


def test_rules_of_the_other_family_only_are_left_out() -> None:
    rules = [acl(Action="Block", Direction="Out", RemoteAddresses="2001:db8::/32")]
    net, ep = specs(ep=with_policies(*rules))
    assert compiler.endpoint_part(net, ep).sets == []


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "field"), [
    ({"Type": "PortMapping", "Settings": {"Protocol": 1, "InternalPort": 80}},
     "Policies[0].Settings.Protocol"),
    ({"Type": "PortMapping", "Settings": {"Protocol": 6, "InternalPort": 70000}},
     "Policies[0].Settings.InternalPort"),
    ({"Type": "PortMapping", "Settings": {"Protocol": 6, "InternalPort": 80,
                                          "VIP": "not-an-ip"}}, "Policies[0].Settings.VIP"),
    ({"Type": "PortMapping", "Settings": {"Protocol": 6, "InternalPort": 80,
                                          "VIP": "192.0.2.1", "Flags": 2}},
     "Policies[0].Settings.VIP"),
    (acl(Action="Maybe", Direction="In"), "Policies[0].Settings.Action"),
    (acl(Action="Allow", Direction="Sideways"), "Policies[0].Settings.Direction"),
    (acl(Action="Allow", Direction="In", LocalPorts="80-20"), "Policies[0].Settings.LocalPorts"),
    (acl(Action="Allow", Direction="In", Protocols="1", LocalPorts="80"),
     "Policies[0].Settings.LocalPorts"),
    (acl(Action="Allow", Direction="In", Protocols="tcp,999"),
     "Policies[0].Settings.Protocols"),
    (acl(Action="Allow", Direction="In", RemoteAddresses="10.0.0.0/8,bogus"),
     "Policies[0].Settings.RemoteAddresses"),
    (acl(Action="Allow", Direction="In", Priority="high"), "Policies[0].Settings.Priority"),
    ({"Type": "SDNRoute", "Settings": {"DestinationPrefix": "10.0.0.0/33"}},
     "Policies[0].Settings.DestinationPrefix"),
    ({"Type": "QOS", "Settings": {"MaximumOutgoingBandwidthInBytes": 0}},
     "Policies[0].Settings.MaximumOutgoingBandwidthInBytes"),
    ({"Settings": {}}, "Policies[0].Type"),
])
def test_a_bad_endpoint_policy_names_its_field(policy: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        endpoint_policies(with_policies(policy))
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_a_policy_type_the_data_path_does_not_do_is_not_supported() -> None:
    with pytest.raises(NotSupported) as err:
        endpoint_policies(with_policies({"Type": "Iov", "Settings": {}}))
    assert err.value.field == "Policies[0].Type"


def test_bad_network_documents() -> None:
    with pytest.raises(InvalidArgument) as err:
        network_policies({"Policies": [{"Type": "NetAdapterName",
                                        "Settings": {"NetworkAdapterName": "eth0; rm"}}]})
    assert err.value.field == "Policies[0].Settings.NetworkAdapterName"
    with pytest.raises(InvalidArgument) as err:
        specs(net={**NET, "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.1.2.0/99"}]}]})
    assert err.value.field == "Ipams[0].Subnets[0].IpAddressPrefix"
    with pytest.raises(NotSupported) as nerr:
        driver_for("ICS")
    assert nerr.value.field == "Type"


def test_bad_endpoint_documents() -> None:
    for change, field in (({"MacAddress": "01-00-5e-00-00-01"}, "MacAddress"),
                          ({"MacAddress": "zz"}, "MacAddress"),
                          ({"IpConfigurations": [{"IpAddress": "10.1.2.5",
                                                  "PrefixLength": 40}]},
                           "IpConfigurations[0].PrefixLength"),
                          ({"IpConfigurations": [{"IpAddress": "10.1.2.500",
                                                  "PrefixLength": 24}]},
                           "IpConfigurations[0].IpAddress")):
        with pytest.raises(InvalidArgument) as err:
            model.endpoint_spec({**EP, **change}, "silo")
        assert err.value.field == field


# -- names --------------------------------------------------------------------------------------

def test_names_fit_an_interface_and_are_recognised() -> None:
    for prefix in ("s", "silo", "zq9ab"):
        br = names.bridge(prefix, NET["ID"])
        veth = names.host_veth(prefix, EP["ID"])
        assert len(br) <= names.IFNAMSIZ and len(veth) <= names.IFNAMSIZ
        assert names.ours(prefix, br) and names.ours(prefix, veth)
    assert not names.ours("silo", "eth0") and not names.ours("silo", "silobr")
    for bad in ("", "Silo", "toolong", "1abc", "a-b"):
        with pytest.raises(InvalidArgument):
            names.check_prefix(bad)
    with pytest.raises(InvalidArgument):
        names.netns_file("/run/silo", "silo", "../etc")


def test_an_endpoint_without_acls_owns_no_chain_and_uses_the_shared_default() -> None:
    net, ep = specs(ep=with_policies({"Type": "PortMapping", "Settings": {
        "Protocol": 6, "InternalPort": 80, "ExternalPort": 8080}}))
    part = compiler.endpoint_part(net, ep)
    assert part.chains == [] and part.sets == [] and part.counters == []
    assert ("inet", "acl_in4", "10.1.2.5 : jump acl_default_in", False) in part.elements
    assert not [e for e in part.elements if e[1] == "acl_out4"]


def test_a_policy_change_keeps_the_counters_both_parts_have() -> None:
    net, old = specs()
    _net, new = specs(ep=with_policies(
        acl(Action="Block", Direction="In", Protocols="17"),
        acl(Action="Block", Direction="Out", Protocols="17")))
    lines = compiler.replace_lines("silo", compiler.endpoint_part(net, old),
                                   compiler.endpoint_part(net, new))
    counters = [line for line in lines if "counter inet" in line]
    assert counters == ["add counter inet silo drop_e0e1e2e3e4_out"]
    assert not [line for line in lines if line.startswith("\tcounter")]
