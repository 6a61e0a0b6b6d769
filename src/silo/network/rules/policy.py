"""HNS policies (``{"Type", "Settings"}``) read into typed values the compiler can trust.

The service validates documents against their schemas; this module checks again what the
data path depends on (addresses, ports, protocols, ranges), so that nothing malformed ever
reaches an nft script. Every error names the field by its path in the document.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from silo.errors import NotSupported, invalid

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

TCP, UDP, ICMP, IGMP, ICMPV6 = 6, 17, 1, 2, 58
PROTO_NAMES = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "igmp": IGMP, "icmpv6": ICMPV6}
PORTED = (TCP, UDP)
MAX_ACL_COMBINATIONS = 4096   # set elements one ACL rule may expand into

# Policy types that need nothing from the data path (other services or later layers act on
# them, or they only describe the endpoint); accepted and ignored here.
_INERT = {"ProviderAddress", "SourceMacAddress", "DrMacAddress", "RemoteSubnetRoute",
          "VxlanPort", "HostRoute", "AutomaticDNS", "VSwitchExtension", "SetPolicy",
          "PortName", "InterfaceConstraint", "LayerConstraint", "L2Driver"}


@dataclass(frozen=True)
class PortMapping:
    protocol: int          # 6 or 17
    internal: int
    external: int
    vip: Addr | None       # None: every host address
    local: bool            # LocalRoutedVip: reachable from the host itself (127.0.0.1 too)
    v6: bool
    index: int = 0         # position in Policies, to name it in errors


@dataclass(frozen=True)
class AclRule:
    action: str            # "Allow" | "Block"
    direction: str         # "In" | "Out"
    priority: int
    protocols: tuple[int, ...]            # empty: any
    local: tuple[Net, ...]                # empty: any
    remote: tuple[Net, ...]
    local_ports: tuple[tuple[int, int], ...]   # empty: any
    remote_ports: tuple[tuple[int, int], ...]
    index: int = 0         # position in Policies, for readable output


@dataclass(frozen=True)
class OutboundNat:
    vip: Addr | None
    exceptions: tuple[Net, ...]
    destinations: tuple[Net, ...]


@dataclass(frozen=True)
class Route:
    destination: Net
    next_hop: Addr | None


@dataclass
class EndpointPolicies:
    port_mappings: list[PortMapping] = field(default_factory=list)
    acls: list[AclRule] = field(default_factory=list)
    outbound_nat: OutboundNat | None = None
    routes: list[Route] = field(default_factory=list)
    max_bytes_per_sec: int | None = None
    encap_overhead: int = 0


@dataclass
class NetworkPolicies:
    adapter: str | None = None
    acls: list[AclRule] = field(default_factory=list)


# -- primitives --------------------------------------------------------------------------------

def _get(settings: dict[str, Any], name: str) -> Any:
    """A setting by name, case-insensitively (HNS JSON is PascalCase, clients vary)."""
    if name in settings:
        return settings[name]
    low = name.lower()
    for k, v in settings.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(where, f"must be an integer from {lo} to {hi}")
    try:
        n = int(value)
    except ValueError:
        raise invalid(where, f"{value!r} is not an integer") from None
    if not lo <= n <= hi:
        raise invalid(where, f"{n} is outside {lo}-{hi}")
    return n


def addr(value: Any, where: str) -> Addr:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise invalid(where, f"{value!r} is not an IP address") from None


def net(value: Any, where: str) -> Net:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise invalid(where, f"{value!r} is not an IP address or CIDR prefix") from None


def _list(value: Any, where: str) -> list[str]:
    """A comma list ("a,b") or a JSON list, as stripped non-empty strings."""
    if value is None or value == "":
        return []
    items: list[Any]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise invalid(where, "must be a comma-separated string or a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise invalid(f"{where}[{i}]", "must be a string")
        s = str(item).strip()
        if s:
            out.append(s)
    return out


def _nets(value: Any, where: str) -> tuple[Net, ...]:
    return tuple(net(s, where) for s in _list(value, where))


def _ports(value: Any, where: str) -> tuple[tuple[int, int], ...]:
    out = []
    for s in _list(value, where):
        lo, _, hi = s.partition("-")
        a = _int(lo.strip(), where, 0, 65535)
        b = _int(hi.strip(), where, 0, 65535) if hi else a
        if b < a:
            raise invalid(where, f"range {s!r} ends before it starts")
        out.append((a, b))
    return tuple(out)


def _protocols(value: Any, where: str) -> tuple[int, ...]:
    out: list[int] = []
    for s in _list(value, where):
        n = PROTO_NAMES.get(s.lower())
        if n is None:
            n = _int(s, where, 0, 256)
        if n == 256:  # HNS: any protocol
            return ()
        out.append(n)
    return tuple(sorted(set(out)))


# -- policies ----------------------------------------------------------------------------------

def _policies(doc: dict[str, Any]) -> Iterator[tuple[int, str, str, dict[str, Any]]]:
    """Each of the document's ``Policies``: its index, its path, its type and settings."""
    policies = doc.get("Policies") or []
    if not isinstance(policies, list):
        raise invalid("Policies", "must be a list")
    for n, p in enumerate(policies):
        where = f"Policies[{n}]"
        kind, settings = _settings(p, where)
        yield n, where, kind, settings


def _unsupported(where: str, kind: str) -> NotSupported:
    return NotSupported(f"{where}.Type: the data path does not do {kind!r}",
                        field=f"{where}.Type")


def _route(dest: Any, hop: Any, where: str) -> Route:
    return Route(net(dest, f"{where}.DestinationPrefix"),
                 addr(hop, f"{where}.NextHop") if hop else None)


def _settings(policy: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(policy, dict):
        raise invalid(where, "must be an object with Type and Settings")
    kind = policy.get("Type")
    if not isinstance(kind, str) or not kind:
        raise invalid(f"{where}.Type", "must be a policy type name")
    settings = policy.get("Settings") or {}
    if not isinstance(settings, dict):
        raise invalid(f"{where}.Settings", "must be an object")
    return kind, settings


def port_mapping(s: dict[str, Any], where: str, index: int = 0) -> PortMapping:
    proto = _int(_get(s, "Protocol"), f"{where}.Protocol", 0, 255)
    if proto not in PORTED:
        raise invalid(f"{where}.Protocol", f"{proto} is neither 6 (TCP) nor 17 (UDP)")
    internal = _get(s, "InternalPort")
    external = _get(s, "ExternalPort")
    i = _int(internal, f"{where}.InternalPort", 1, 65535)
    e = _int(external if external not in (None, 0) else internal, f"{where}.ExternalPort",
             1, 65535)
    flags = _int(_get(s, "Flags") or 0, f"{where}.Flags", 0, 0xFFFF)
    vip_s = _get(s, "VIP")
    vip = addr(vip_s, f"{where}.VIP") if vip_s else None
    v6 = bool(flags & 2) or (vip is not None and vip.version == 6)
    if vip is not None and v6 != (vip.version == 6):
        raise invalid(f"{where}.VIP", "an IPv4 VIP with the IPv6 flag (2)")
    return PortMapping(proto, i, e, vip, bool(flags & 1), v6, index)


def acl(s: dict[str, Any], where: str, index: int) -> AclRule:
    action = str(_get(s, "Action") or "")
    if action.lower() not in ("allow", "block"):
        raise invalid(f"{where}.Action", f"{action!r} is neither Allow nor Block")
    direction = str(_get(s, "Direction") or "")
    if direction.lower() not in ("in", "out"):
        raise invalid(f"{where}.Direction", f"{direction!r} is neither In nor Out")
    prio = _get(s, "Priority")
    rule = AclRule(
        action="Allow" if action.lower() == "allow" else "Block",
        direction="In" if direction.lower() == "in" else "Out",
        priority=_int(prio, f"{where}.Priority", 0, 65535) if prio not in (None, "") else 0,
        protocols=_protocols(_get(s, "Protocols"), f"{where}.Protocols"),
        local=_nets(_get(s, "LocalAddresses"), f"{where}.LocalAddresses"),
        remote=_nets(_get(s, "RemoteAddresses"), f"{where}.RemoteAddresses"),
        local_ports=_ports(_get(s, "LocalPorts"), f"{where}.LocalPorts"),
        remote_ports=_ports(_get(s, "RemotePorts"), f"{where}.RemotePorts"),
        index=index,
    )
    combos = max(len(rule.protocols), 1) * max(len(rule.local), 1) * \
        max(len(rule.remote), 1) * max(len(rule.local_ports), 1) * \
        max(len(rule.remote_ports), 1)
    if combos > MAX_ACL_COMBINATIONS:
        raise invalid(where, f"protocols x addresses x ports make {combos} combinations; "
                      f"at most {MAX_ACL_COMBINATIONS} per rule")
    if (rule.local_ports or rule.remote_ports) and rule.protocols and \
            not set(rule.protocols) & set(PORTED):
        raise invalid(f"{where}.LocalPorts" if rule.local_ports else f"{where}.RemotePorts",
                      "ports need protocol 6 (TCP) or 17 (UDP)")
    return rule


def endpoint_policies(ep: dict[str, Any]) -> EndpointPolicies:
    """The endpoint's ``Policies`` and ``Routes``, read and checked."""
    out = EndpointPolicies()
    for n, path, kind, s in _policies(ep):
        where = f"{path}.Settings"
        if kind == "PortMapping":
            out.port_mappings.append(port_mapping(s, where, n))
        elif kind == "ACL":
            out.acls.append(acl(s, where, n))
        elif kind == "OutBoundNAT":
            vip_s = _get(s, "VirtualIP")
            exceptions = _get(s, "Exceptions")
            if exceptions is None:
                exceptions = _get(s, "ExceptionList")
            out.outbound_nat = OutboundNat(
                vip=addr(vip_s, f"{where}.VirtualIP") if vip_s else None,
                exceptions=_nets(exceptions, f"{where}.Exceptions"),
                destinations=_nets(_get(s, "Destinations"), f"{where}.Destinations"))
        elif kind in ("SDNRoute", "ROUTE"):
            out.routes.append(_route(_get(s, "DestinationPrefix"), _get(s, "NextHop"), where))
        elif kind == "QOS":
            out.max_bytes_per_sec = _int(_get(s, "MaximumOutgoingBandwidthInBytes"),
                                         f"{where}.MaximumOutgoingBandwidthInBytes",
                                         1, 2**40)
        elif kind == "EncapOverhead":
            out.encap_overhead = _int(_get(s, "Overhead"), f"{where}.Overhead", 0, 1000)
        elif kind not in _INERT:
            raise _unsupported(path, kind)
    routes = ep.get("Routes") or []
    if not isinstance(routes, list):
        raise invalid("Routes", "must be a list")
    for n, r in enumerate(routes):
        if not isinstance(r, dict):
            raise invalid(f"Routes[{n}]", "must be an object")
        out.routes.append(_route(r.get("DestinationPrefix"), r.get("NextHop"), f"Routes[{n}]"))
    return out


def network_policies(nw: dict[str, Any]) -> NetworkPolicies:
    """The network's ``Policies``, read and checked."""
    out = NetworkPolicies()
    for n, where, kind, s in _policies(nw):
        if kind == "NetAdapterName":
            name = _get(s, "NetworkAdapterName")
            if not isinstance(name, str) or not name or len(name) > 15 or "/" in name \
                    or any(c.isspace() for c in name):
                raise invalid(f"{where}.Settings.NetworkAdapterName",
                              f"{name!r} is not an interface name")
            out.adapter = name
        elif kind == "NetworkACL":
            out.acls.append(acl(s, f"{where}.Settings", n))
        elif kind not in _INERT:
            raise _unsupported(where, kind)
    return out
