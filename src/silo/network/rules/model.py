"""What the compiler needs of a network and an endpoint, read once from their HNS documents.

A ``NetworkSpec`` carries the driver's traits (does the host hold a gateway address, is there
a way out, is the network masqueraded, may the host reach it), so the compiler knows nothing
of network types by name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from silo.errors import invalid
from silo.network import names
from silo.network.rules.policy import (
    Addr,
    EndpointPolicies,
    Net,
    NetworkPolicies,
    addr,
    endpoint_policies,
    net,
    network_policies,
)


@dataclass(frozen=True)
class Traits:
    """How a network type treats packets (reference §3.4)."""

    gateway_on_host: bool   # the bridge holds the subnet's gateway address (NAT, Internal)
    way_out: bool           # traffic may leave to non-silo interfaces
    host_reach: bool        # the host and its containers may talk
    masquerade: bool        # outbound traffic is SNATed to the host by default (NAT)


@dataclass
class NetworkSpec:
    id: str
    short: str                       # 8 hex: names its chains
    type: str
    bridge: str
    subnets: list[Net]
    gateways: list[Addr]             # one per subnet that has one
    traits: Traits
    policies: NetworkPolicies = field(default_factory=NetworkPolicies)
    fast_path: bool = True           # PORT layer: stateless flows skip conntrack


@dataclass
class EndpointSpec:
    id: str
    short: str                       # 10 hex: names its chains and sets
    network_id: str
    host_veth: str
    mac: str                         # aa:bb:cc:dd:ee:ff
    addresses: list[tuple[Addr, int]]
    policies: EndpointPolicies = field(default_factory=EndpointPolicies)

    def v4(self) -> list[ipaddress.IPv4Address]:
        return [a for a, _ in self.addresses if isinstance(a, ipaddress.IPv4Address)]

    def v6(self) -> list[ipaddress.IPv6Address]:
        return [a for a, _ in self.addresses if isinstance(a, ipaddress.IPv6Address)]


def _id(doc: dict[str, Any]) -> str:
    oid = doc.get("ID")
    if not isinstance(oid, str) or not oid:
        raise invalid("ID", "missing")
    return oid.lower()


def subnets_and_gateways(doc: dict[str, Any]) -> tuple[list[Net], list[Addr]]:
    """The network's subnets, and the gateway of each: the next hop of its default route, or
    else its first host address."""
    subnets: list[Net] = []
    gateways: list[Addr] = []
    ipams = doc.get("Ipams") or []
    if not isinstance(ipams, list):
        raise invalid("Ipams", "must be a list")
    for i, ipam in enumerate(ipams):
        subs = ipam.get("Subnets") or [] if isinstance(ipam, dict) else None
        if not isinstance(subs, list):
            raise invalid(f"Ipams[{i}].Subnets", "must be a list")
        for j, sub in enumerate(subs):
            where = f"Ipams[{i}].Subnets[{j}]"
            if not isinstance(sub, dict):
                raise invalid(where, "must be an object")
            prefix = net(sub.get("IpAddressPrefix"), f"{where}.IpAddressPrefix")
            subnets.append(prefix)
            gw: Addr | None = None
            for k, route in enumerate(sub.get("Routes") or []):
                if isinstance(route, dict) and route.get("NextHop") and \
                        net(route.get("DestinationPrefix") or "0.0.0.0/0",
                            f"{where}.Routes[{k}].DestinationPrefix").prefixlen == 0:
                    gw = addr(route["NextHop"], f"{where}.Routes[{k}].NextHop")
                    if gw.version != prefix.version:
                        raise invalid(f"{where}.Routes[{k}].NextHop",
                                      f"{gw} is not of the subnet's IP version")
                    break
            if gw is None and prefix.num_addresses > 2:
                gw = ipaddress.ip_address(prefix.network_address + 1)
            if gw is not None:
                gateways.append(gw)
    return subnets, gateways


def network_spec(doc: dict[str, Any], prefix: str, traits: Traits) -> NetworkSpec:
    nid = _id(doc)
    subnets, gateways = subnets_and_gateways(doc)
    return NetworkSpec(id=nid, short=names.short(nid, 8), type=str(doc.get("Type") or "NAT"),
                       bridge=names.bridge(prefix, nid), subnets=subnets, gateways=gateways,
                       traits=traits, policies=network_policies(doc))


def endpoint_mac(doc: dict[str, Any]) -> str:
    """The endpoint's MacAddress as aa:bb:..., or a locally administered one made from its id
    (the same every time, so a rebuild gives the same MAC)."""
    mac = doc.get("MacAddress")
    if mac:
        s = str(mac).replace("-", ":").lower()
        parts = s.split(":")
        if len(parts) != 6 or not all(len(p) == 2 and
                                      all(c in "0123456789abcdef" for c in p) for p in parts):
            raise invalid("MacAddress", f"{mac!r} is not a MAC address")
        if int(parts[0], 16) & 1:
            raise invalid("MacAddress", f"{mac!r} is a multicast address")
        return s
    h = names.short(_id(doc), 10)
    return "02:" + ":".join(h[i:i + 2] for i in range(0, 10, 2))


def endpoint_spec(doc: dict[str, Any], prefix: str) -> EndpointSpec:
    eid = _id(doc)
    addresses: list[tuple[Addr, int]] = []
    configs = doc.get("IpConfigurations") or []
    if not isinstance(configs, list):
        raise invalid("IpConfigurations", "must be a list")
    for i, c in enumerate(configs):
        if not isinstance(c, dict):
            raise invalid(f"IpConfigurations[{i}]", "must be an object")
        a = addr(c.get("IpAddress"), f"IpConfigurations[{i}].IpAddress")
        plen = c.get("PrefixLength")
        top = 32 if a.version == 4 else 128
        if isinstance(plen, bool) or not isinstance(plen, int) or not 0 < plen <= top:
            raise invalid(f"IpConfigurations[{i}].PrefixLength", f"must be 1-{top}")
        addresses.append((a, plen))
    return EndpointSpec(id=eid, short=names.short(eid, 10),
                        network_id=str(doc.get("HostComputeNetwork") or "").lower(),
                        host_veth=names.host_veth(prefix, eid), mac=endpoint_mac(doc),
                        addresses=addresses, policies=endpoint_policies(doc))
