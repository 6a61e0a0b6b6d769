"""HNS v2 documents: HostComputeNetwork, HostComputeEndpoint, HostComputeNamespace, their
modify requests and policies; JSON Schemas and the checks a schema cannot express.

Owns the documents of silod's network API (docs/api.md) as one registry of JSON Schemas,
:data:`SCHEMAS`, which silod validates requests with and puts into its OpenAPI document (the
names never clash with :data:`silo.schema.hcs.SCHEMAS`). Field names are HCN's (reference §3.3);
what Linux needs and Windows has not lives under ``Linux``.

:func:`validate` checks a document and returns a normalised copy: defaults filled (``Type``
NAT, ``SchemaVersion`` 2.0, ``Flags`` 0, empty ``Policies``), ``ID`` a lowercase GUID (made up
when absent), addresses in their canonical text. Every error names its field as a path into the
document (``Ipams[0].Subnets[1].IpAddressPrefix``, ``Policies[2].Settings.ExternalPort``). A
policy type silo does not implement is NotSupported naming ``Policies[i].Type``.

Imports only :mod:`silo.errors`, :mod:`silo.schema.jsonschema` and :mod:`silo.schema._build` at
import time (it is merged into :mod:`silo.schema.hcs`, which must stay lean); ``copy``,
``ipaddress`` and ``uuid`` when a document is checked.
"""

from __future__ import annotations

from silo.errors import NotSupported, invalid
from silo.schema import jsonschema
from silo.schema._build import array as _arr
from silo.schema._build import integer as _int
from silo.schema._build import obj as _obj
from silo.schema._build import ref as _ref
from silo.schema._build import string as _str

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    Schema = dict[str, Any]
    T = TypeVar("T")

KINDS = ("network", "endpoint", "namespace")
DOCUMENT = {"network": "HostComputeNetwork", "endpoint": "HostComputeEndpoint",
            "namespace": "HostComputeNamespace"}

NETWORK_TYPES = ["NAT", "ICS", "Transparent", "L2Bridge", "L2Tunnel", "Private", "Overlay",
                 "Internal"]
# The types the data path has a driver for (docs/design/network.md); the rest are refused.
SUPPORTED_NETWORK_TYPES = ("NAT", "Internal", "Private", "Transparent", "L2Bridge")
NAMESPACE_TYPES = ["Host", "HostDefault", "Guest", "GuestDefault"]

ENDPOINT_POLICY_TYPES = ("PortMapping", "OutBoundNAT", "ACL", "SDNRoute", "QOS", "EncapOverhead")
NETWORK_POLICY_TYPES = ("NetAdapterName", "NetworkACL")

SUBNET_DO_NOT_RESERVE_GATEWAY = 1  # Ipams[].Subnets[].Flags: DoNotReserveGatewayAddress
PROTOCOL_TCP = 6
PROTOCOL_UDP = 17

_GUID = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
_NAME = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_REASON = "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_MAC = "^[0-9A-Fa-f]{2}([-:][0-9A-Fa-f]{2}){5}$"
_IFNAME = "^[A-Za-z0-9_.-]{1,15}$"

_ID = _str("A GUID; made up by silod when absent", pattern=_GUID,
           **{"x-reason": "must be a GUID (8-4-4-4-12 hex digits)"})
_RNAME = _str("Unique among objects of its kind", pattern=_NAME, **{"x-reason": _NAME_REASON})
# An endpoint's name may be longer: the CNI plugins name it <container id>_<network>, and a
# container id (containerd's) alone is 64 hex digits.
_EPNAME_REASON = ("must be 1 to 200 letters, digits, '_', '.' or '-', starting with a letter "
                  "or digit")
_EPNAME = _str("Unique among endpoints", pattern="^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$",
               **{"x-reason": _EPNAME_REASON})
_MACSTR = _str("A MAC address, 00-15-5D-00-00-01 or 00:15:5d:00:00:01", pattern=_MAC,
               **{"x-reason": "must be a MAC address (six hex pairs)"})
_PORT = _int(1, 65535)
_STRS = _arr({"type": "string"})

_ACL_SETTINGS = _obj({
    "Protocols": _str("Comma list of IP protocol numbers (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, "
                      "2 IGMP); absent: any"),
    "Action": {"type": "string", "enum": ["Allow", "Block", "Pass"]},
    "Direction": {"type": "string", "enum": ["In", "Out"]},
    "LocalAddresses": _str("Comma list of addresses or prefixes"),
    "RemoteAddresses": _str("Comma list of addresses or prefixes"),
    "LocalPorts": _str("Comma list of ports or ranges (80,8000-8080)"),
    "RemotePorts": _str("Comma list of ports or ranges"),
    "RuleType": {"type": "string", "enum": ["Host", "Switch"]},
    "Priority": _int(0, 65535, "Lower wins; Block beats Allow at equal priority"),
    "Id": _str(),
}, ["Action", "Direction"])

# Settings of each supported policy type, checked after the Policy envelope.
POLICY_SETTINGS: dict[str, Schema] = {
    "PortMapping": _obj({
        "Protocol": {"type": "integer", "enum": [PROTOCOL_TCP, PROTOCOL_UDP],
                     "description": "6 TCP, 17 UDP"},
        "InternalPort": _int(0, 65535, "The endpoint's port; 0 or absent: ExternalPort"),
        "ExternalPort": _PORT,
        "VIP": _str("Host address the mapping listens on; absent: every host address"),
        "Flags": _int(0, 7, "NatFlags: LocalRoutedVip 1, IPv6 2, ExternalPortReserved 4"),
    }, ["ExternalPort"]),
    "OutBoundNAT": _obj({
        "VirtualIP": _str("Source address to SNAT to; absent: the host's"),
        "Exceptions": _arr({"type": "string"}, "Prefixes not NATed"),
        "Destinations": _arr({"type": "string"}, "Only these prefixes are NATed"),
        "Flags": _int(0),
        "MaxPortPoolUsage": _int(0),
    }),
    "ACL": _ACL_SETTINGS,
    "NetworkACL": _ACL_SETTINGS,
    "SDNRoute": _obj({
        "DestinationPrefix": _str("A prefix (10.96.0.0/12)"),
        "NextHop": _str("An address; absent: on-link"),
        "NeedEncap": {"type": "boolean"},
    }, ["DestinationPrefix"]),
    "QOS": _obj({
        "MaximumOutgoingBandwidthInBytes": _int(1, 2**63 - 1, "Egress cap, bytes per second"),
    }, ["MaximumOutgoingBandwidthInBytes"]),
    "EncapOverhead": _obj({"Overhead": _int(0, 1000, "Bytes reserved for encapsulation")},
                          ["Overhead"]),
    "NetAdapterName": _obj({
        "NetworkAdapterName": _str("The host interface to bind to", pattern=_IFNAME,
                                   **{"x-reason": "must be a Linux interface name (1-15 "
                                                  "letters, digits, '_', '.', '-')"}),
    }, ["NetworkAdapterName"]),
}

SCHEMAS: dict[str, Schema] = {
    "HnsSchemaVersion": _obj({"Major": _int(0, doc="Only 2 is supported"), "Minor": _int(0)},
                             ["Major", "Minor"]),
    "HnsPolicy": _obj({
        "Type": _str("The policy type"),
        "Settings": {"type": "object", "description": "The type's settings"},
    }, ["Type"]),
    "HnsRoute": _obj({
        "NextHop": _str("An address"),
        "DestinationPrefix": _str("A prefix"),
        "Metric": _int(0, 65535),
    }, ["DestinationPrefix"]),
    "HnsDns": _obj({
        "Domain": _str(), "Search": _STRS, "ServerList": _STRS, "Options": _STRS,
    }),
    "HnsSubnet": _obj({
        "IpAddressPrefix": _str("The subnet (172.31.0.0/16, fd00:5110::/64)"),
        "Policies": _arr({"type": "object"}, "Subnet policies (none supported yet)"),
        "Routes": _arr(_ref("HnsRoute")),
        "Flags": _int(0, 1, "1: DoNotReserveGatewayAddress"),
    }, ["IpAddressPrefix"]),
    "HnsIpam": _obj({
        "Type": {"type": "string", "enum": ["Static", "DHCP"]},
        "Subnets": _arr(_ref("HnsSubnet")),
    }),
    "HnsMacRange": _obj({"StartMacAddress": _MACSTR, "EndMacAddress": _MACSTR},
                        ["StartMacAddress", "EndMacAddress"]),
    "HnsMacPool": _obj({"Ranges": _arr(_ref("HnsMacRange"))}),
    "HnsIpConfig": _obj({
        "IpAddress": _str("An address of the network's subnets"),
        "PrefixLength": _int(0, 128),
    }, ["IpAddress"]),
    "HostComputeNetwork": _obj({
        "ID": _ID,
        "Name": _RNAME,
        "Type": {"type": "string", "enum": NETWORK_TYPES, "default": "NAT"},
        "Policies": _arr(_ref("HnsPolicy")),
        "MacPool": _ref("HnsMacPool"),
        "Dns": _ref("HnsDns"),
        "Ipams": _arr(_ref("HnsIpam")),
        "Flags": _int(0),
        "SchemaVersion": _ref("HnsSchemaVersion"),
        "Linux": _obj({"Bridge": _str(), "Gateways": _STRS}, closed=False,
                      doc="Filled in by silod: the bridge and the gateways on it"),
    }, ["Name"], doc="A network (HCN v2)"),
    "HostComputeEndpoint": _obj({
        "ID": _ID,
        "Name": _EPNAME,
        "HostComputeNetwork": _str("The network's ID or Name"),
        "HostComputeNamespace": _str("Filled in by silod when attached"),
        "Policies": _arr(_ref("HnsPolicy")),
        "IpConfigurations": _arr(_ref("HnsIpConfig")),
        "Dns": _ref("HnsDns"),
        "Routes": _arr(_ref("HnsRoute")),
        "MacAddress": _MACSTR,
        "Flags": _int(0),
        "SchemaVersion": _ref("HnsSchemaVersion"),
        "Linux": _obj({"HostInterface": _str(), "InterfaceName": _str()}, closed=False,
                      doc="Filled in by silod once attached"),
    }, ["HostComputeNetwork"], doc="An endpoint (HCN v2): a port on a network"),
    "HostComputeNamespace": _obj({
        "ID": _ID,
        "Name": _RNAME,
        "NamespaceId": _int(0),
        "Type": {"type": "string", "enum": NAMESPACE_TYPES},
        "Resources": _arr(_obj({"Type": {"type": "string", "enum": ["Container", "Endpoint"]},
                                "Data": {"type": "object"}})),
        "SchemaVersion": _ref("HnsSchemaVersion"),
        "Linux": _obj({
            "NetnsPath": _str("An existing network namespace (a bind-mounted nsfs file); "
                              "absent: silod creates one"),
            "Managed": {"type": "boolean", "readOnly": True,
                        "description": "Filled in by silod: true when silod made the netns "
                                       "(and removes it with the namespace)"},
        }),
    }, doc="A namespace (HCN v2; a Linux network namespace)"),
    "NetworkModifyRequest": _obj({
        "ResourceType": {"type": "string", "enum": ["Policy", "DNS"]},
        "RequestType": {"type": "string", "enum": ["Add", "Remove", "Update"]},
        "Settings": {"type": "object"},
    }, ["ResourceType", "RequestType", "Settings"]),
    "EndpointModifyRequest": _obj({
        "ResourceType": {"type": "string", "enum": ["Policy", "Port"]},
        "RequestType": {"type": "string", "enum": ["Add", "Remove", "Update"]},
        "Settings": {"type": "object"},
    }, ["ResourceType", "RequestType", "Settings"]),
    "NamespaceModifyRequest": _obj({
        "ResourceType": {"type": "string", "enum": ["Endpoint"]},
        "RequestType": {"type": "string", "enum": ["Add", "Remove"]},
        "Settings": _obj({"EndpointId": _str("The endpoint's ID or Name"),
                          "InterfaceName": _str("Add: its name inside the namespace (default: "
                                                "the endpoint's, else eth<n>)", pattern=_IFNAME,
                                                **{"x-reason": "must be a Linux interface name "
                                                   "(1-15 letters, digits, '_', '.', '-')"})},
                         ["EndpointId"]),
    }, ["ResourceType", "RequestType", "Settings"]),
    "EndpointStats": _obj({
        "EndpointId": _str(),
        "BytesReceived": _int(0), "BytesSent": _int(0),
        "PacketsReceived": _int(0), "PacketsSent": _int(0),
        "DroppedPacketsIncoming": _int(0), "DroppedPacketsOutgoing": _int(0),
    }, closed=False, doc="Counters as the host side of the endpoint sees them"),
    "NetworkRules": _obj({
        "Network": _str(),
        "Layers": _arr({"type": "object"}),
        "Text": _str("The layers as readable text"),
    }, closed=False, doc="The compiled rule layers of a network"),
}

_MODIFY = {"network": "NetworkModifyRequest", "endpoint": "EndpointModifyRequest",
           "namespace": "NamespaceModifyRequest"}


def _deep(value: T) -> T:
    import copy  # lazily: silo.schema.hcs (which merges these schemas) must stay lean

    return copy.deepcopy(value)


def openapi_components() -> dict[str, Any]:
    """The schemas for the OpenAPI document's ``components/schemas``, as a copy."""
    return _deep(SCHEMAS)


# ---------------------------------------------------------------------------------------------
# The documents


def validate(kind: str, doc: object) -> dict[str, Any]:
    """Check a create document of ``kind`` (network, endpoint, namespace); return a normalised
    copy. InvalidArgument naming the field, NotSupported for what silo does not do."""
    name = DOCUMENT.get(kind)
    if name is None:
        raise KeyError(f"no document kind {kind!r}")
    if not isinstance(doc, dict):
        raise invalid(name, "must be a JSON object")
    jsonschema.validate(SCHEMAS[name], doc, "", SCHEMAS)
    out = _deep(doc)
    _check_version(out)
    out["ID"] = new_id() if "ID" not in out else out["ID"].lower()
    out.setdefault("SchemaVersion", {"Major": 2, "Minor": 0})
    if kind == "network":
        _check_network(out)
    elif kind == "endpoint":
        _check_endpoint(out)
    else:
        _check_namespace(out)
    return out


def validate_modify(kind: str, doc: object) -> dict[str, Any]:
    """Check a modify request of ``kind``; return it (policies in Settings checked)."""
    name = _MODIFY[kind]
    if not isinstance(doc, dict):
        raise invalid(name, "must be a JSON object")
    jsonschema.validate(SCHEMAS[name], doc, "", SCHEMAS)
    out = _deep(doc)
    resource = out["ResourceType"]
    if kind == "endpoint" and resource == "Port":
        raise NotSupported("ResourceType: Port (binding to a VM switch port) is not supported",
                           field="ResourceType")
    if resource == "Policy":
        policies = out["Settings"].get("Policies")
        if not isinstance(policies, list) or not policies:
            raise invalid("Settings.Policies", "must be a non-empty array of policies")
        allowed = ENDPOINT_POLICY_TYPES if kind == "endpoint" else NETWORK_POLICY_TYPES
        out["Settings"]["Policies"] = check_policies(policies, allowed, "Settings.Policies")
    elif resource == "DNS":
        jsonschema.validate(SCHEMAS["HnsDns"], out["Settings"], "Settings", SCHEMAS)
        _check_dns(out["Settings"], "Settings")
    return out


def new_id() -> str:
    import uuid

    return str(uuid.uuid4())


def is_guid(text: str) -> bool:
    return len(text) == 36 and jsonschema._search(_GUID, text)


def _check_version(doc: dict[str, Any]) -> None:
    version = doc.get("SchemaVersion")
    if isinstance(version, dict) and version.get("Major") != 2:
        raise NotSupported(f"SchemaVersion.Major: schema version {version.get('Major')}.x is "
                           "not supported (2.x is)", field="SchemaVersion.Major")


def _check_network(n: dict[str, Any]) -> None:
    n.setdefault("Type", "NAT")
    if n["Type"] not in SUPPORTED_NETWORK_TYPES:
        raise NotSupported(f"Type: network type {n['Type']} is not supported (supported: "
                           f"{', '.join(SUPPORTED_NETWORK_TYPES)})", field="Type")
    if "Linux" in n:
        raise invalid("Linux", "is filled in by silod; leave it out")
    n.setdefault("Flags", 0)
    n["Policies"] = check_policies(n.get("Policies", []), NETWORK_POLICY_TYPES, "Policies")
    n.setdefault("Ipams", [])
    family_seen: list[Any] = []
    for i, ipam in enumerate(n["Ipams"]):
        where = f"Ipams[{i}]"
        ipam.setdefault("Type", "Static")
        if ipam["Type"] != "Static":
            raise NotSupported(f"{where}.Type: {ipam['Type']} IPAM is not supported (Static "
                               "is)", field=f"{where}.Type")
        ipam.setdefault("Subnets", [])
        for j, subnet in enumerate(ipam["Subnets"]):
            sw = f"{where}.Subnets[{j}]"
            net = parse_prefix(subnet["IpAddressPrefix"], f"{sw}.IpAddressPrefix", strict=True)
            subnet["IpAddressPrefix"] = str(net)
            subnet.setdefault("Flags", 0)
            subnet.setdefault("Routes", [])
            if subnet.get("Policies"):
                raise NotSupported(f"{sw}.Policies: subnet policies (VLAN, VSID) are not "
                                   "supported", field=f"{sw}.Policies")
            subnet.setdefault("Policies", [])
            _check_subnet_size(net, subnet["Flags"], sw)
            for k, route in enumerate(subnet["Routes"]):
                _check_route(route, f"{sw}.Routes[{k}]", family=net.version)
            for prev_where, prev in family_seen:
                if net.overlaps(prev):
                    raise invalid(f"{sw}.IpAddressPrefix",
                                  f"{net} overlaps {prev} ({prev_where})")
            family_seen.append((f"{sw}.IpAddressPrefix", net))
    if "MacPool" in n:
        for i, r in enumerate(n["MacPool"].get("Ranges", [])):
            where = f"MacPool.Ranges[{i}]"
            start = mac_int(r["StartMacAddress"])
            end = mac_int(r["EndMacAddress"])
            if start > end:
                raise invalid(f"{where}.EndMacAddress", "must not come before StartMacAddress")
            if start >> 40 & 1:
                raise invalid(f"{where}.StartMacAddress", "must be a unicast MAC (the low bit "
                              "of the first byte clear)")
            r["StartMacAddress"] = mac_text(start)
            r["EndMacAddress"] = mac_text(end)
    if "Dns" in n:
        _check_dns(n["Dns"], "Dns")


def _check_subnet_size(net: Any, flags: int, where: str) -> None:
    # An IPv4 subnet needs a gateway and one endpoint besides the network and broadcast
    # addresses; /31 and /32 (and IPv6 /127, /128) leave no room for both.
    usable = net.num_addresses - (2 if net.version == 4 else 1)
    if not flags & SUBNET_DO_NOT_RESERVE_GATEWAY:
        usable -= 1
    if usable < 1:
        raise invalid(f"{where}.IpAddressPrefix",
                      f"{net} has no address left for an endpoint (prefix too long)")


def _check_endpoint(e: dict[str, Any]) -> None:
    for key in ("Linux", "HostComputeNamespace"):
        if key in e:
            raise invalid(key, "is filled in by silod when the endpoint is attached; leave "
                          "it out (attach: modify the namespace)")
    e.setdefault("Flags", 0)
    if e["Flags"] & 1:
        raise NotSupported("Flags: remote endpoints (1) are not supported", field="Flags")
    e["Policies"] = check_policies(e.get("Policies", []), ENDPOINT_POLICY_TYPES, "Policies")
    e.setdefault("IpConfigurations", [])
    families: set[int] = set()
    for i, ipc in enumerate(e["IpConfigurations"]):
        addr = parse_address(ipc["IpAddress"], f"IpConfigurations[{i}].IpAddress")
        if addr.version in families:
            raise invalid(f"IpConfigurations[{i}].IpAddress",
                          f"a second IPv{addr.version} address (one per family)")
        families.add(addr.version)
        ipc["IpAddress"] = str(addr)
        if "PrefixLength" in ipc and ipc["PrefixLength"] > addr.max_prefixlen:
            raise invalid(f"IpConfigurations[{i}].PrefixLength",
                          f"must be at most {addr.max_prefixlen} for IPv{addr.version}")
    for k, route in enumerate(e.get("Routes", [])):
        _check_route(route, f"Routes[{k}]", family=None)
    if "MacAddress" in e:
        mac = mac_int(e["MacAddress"])
        if mac >> 40 & 1 or mac == 0:
            raise invalid("MacAddress", "must be a unicast MAC, not zero")
        e["MacAddress"] = mac_text(mac)
    if "Dns" in e:
        _check_dns(e["Dns"], "Dns")


def _check_namespace(ns: dict[str, Any]) -> None:
    for key in ("NamespaceId", "Resources"):
        if key in ns:
            raise invalid(key, "is filled in by silod; leave it out")
    ns.setdefault("Type", "Host")
    if ns["Type"] != "Host":
        raise NotSupported(f"Type: {ns['Type']} namespaces are not supported (Host is)",
                           field="Type")
    if "Managed" in ns.get("Linux", {}):
        raise invalid("Linux.Managed", "is filled in by silod; leave it out")
    path = ns.get("Linux", {}).get("NetnsPath")
    if path is not None and (not path.startswith("/") or "\0" in path
                             or "/../" in path + "/"):
        raise invalid("Linux.NetnsPath", f"must be an absolute path without '..', got {path!r}")
    ns["Resources"] = []


def _check_dns(dns: dict[str, Any], where: str) -> None:
    for i, server in enumerate(dns.get("ServerList", [])):
        dns["ServerList"][i] = str(parse_address(server, f"{where}.ServerList[{i}]"))


def _check_route(route: dict[str, Any], where: str, family: int | None) -> None:
    dest = parse_prefix(route["DestinationPrefix"], f"{where}.DestinationPrefix", strict=False)
    route["DestinationPrefix"] = str(dest)
    if family is not None and dest.version != family:
        raise invalid(f"{where}.DestinationPrefix", f"must be IPv{family} like its subnet")
    if "NextHop" in route:
        hop = parse_address(route["NextHop"], f"{where}.NextHop")
        if hop.version != dest.version:
            raise invalid(f"{where}.NextHop", f"must be IPv{dest.version} like "
                          "DestinationPrefix")
        route["NextHop"] = str(hop)


# ---------------------------------------------------------------------------------------------
# Policies


def check_policies(policies: list[Any], allowed: tuple[str, ...],
                   where: str) -> list[dict[str, Any]]:
    """Each policy's envelope, its type (NotSupported naming ``where[i].Type`` when silo does
    not implement it here) and its settings; returns normalised copies."""
    out = []
    for i, p in enumerate(policies):
        pw = f"{where}[{i}]"
        jsonschema.validate(SCHEMAS["HnsPolicy"], p, pw, SCHEMAS)
        ptype = p["Type"]
        if ptype not in allowed:
            raise NotSupported(f"{pw}.Type: policy type {ptype!r} is not supported here "
                               f"(supported: {', '.join(allowed)})", field=f"{pw}.Type")
        settings = _deep(p.get("Settings", {}))
        jsonschema.validate(POLICY_SETTINGS[ptype], settings, f"{pw}.Settings", SCHEMAS)
        _POLICY_CHECKS.get(ptype, _no_check)(settings, f"{pw}.Settings")
        out.append({"Type": ptype, "Settings": settings})
    return out


def _no_check(settings: dict[str, Any], where: str) -> None:
    return None


def _check_port_mapping(s: dict[str, Any], where: str) -> None:
    s.setdefault("Protocol", PROTOCOL_TCP)
    if not s.get("InternalPort"):
        s["InternalPort"] = s["ExternalPort"]
    s.setdefault("Flags", 0)
    if "VIP" in s:
        s["VIP"] = str(parse_address(s["VIP"], f"{where}.VIP"))


def _check_acl(s: dict[str, Any], where: str) -> None:
    s.setdefault("RuleType", "Switch")
    s.setdefault("Priority", 0)
    if "Protocols" in s:
        for text in _items(s["Protocols"]):
            if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 255:
                raise invalid(f"{where}.Protocols", f"{text!r} is not an IP protocol number "
                              "(0..255)")
    for key in ("LocalAddresses", "RemoteAddresses"):
        if key in s:
            for text in _items(s[key]):
                parse_prefix(text, f"{where}.{key}", strict=False)
    for key in ("LocalPorts", "RemotePorts"):
        if key in s:
            for text in _items(s[key]):
                lo, _, hi = text.partition("-")
                if not all(x.isascii() and x.isdigit() and 0 <= int(x) <= 65535
                           for x in (lo, hi or lo)) or int(lo) > int(hi or lo):
                    raise invalid(f"{where}.{key}", f"{text!r} is not a port or a range "
                                  "(0..65535)")


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _check_outbound_nat(s: dict[str, Any], where: str) -> None:
    if "VirtualIP" in s:
        s["VirtualIP"] = str(parse_address(s["VirtualIP"], f"{where}.VirtualIP"))
    for key in ("Exceptions", "Destinations"):
        for i, text in enumerate(s.get(key, [])):
            s[key][i] = str(parse_prefix(text, f"{where}.{key}[{i}]", strict=False))


def _check_sdn_route(s: dict[str, Any], where: str) -> None:
    _check_route(s, where, family=None)


_POLICY_CHECKS = {
    "PortMapping": _check_port_mapping,
    "ACL": _check_acl,
    "NetworkACL": _check_acl,
    "OutBoundNAT": _check_outbound_nat,
    "SDNRoute": _check_sdn_route,
}


# ---------------------------------------------------------------------------------------------
# Addresses


def parse_prefix(text: str, field: str, *, strict: bool) -> Any:
    """An IPv4 or IPv6 network from ``a.b.c.d/n`` (a bare address is a /32 or /128).
    ``strict``: host bits must be zero (a subnet), else they are dropped."""
    import ipaddress

    if not isinstance(text, str) or not text or text.strip() != text:
        raise invalid(field, f"must be an address prefix like 172.31.0.0/16, got {text!r}")
    try:
        return ipaddress.ip_network(text, strict=strict)
    except ValueError as err:
        reason = str(err)
        if "has host bits set" in reason:
            reason = "has host bits set (give the network address)"
        raise invalid(field, f"{text!r} is not a valid prefix: {reason}") from None


def parse_address(text: str, field: str) -> Any:
    import ipaddress

    if not isinstance(text, str):
        raise invalid(field, f"must be an IP address, got {text!r}")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise invalid(field, f"must be an IP address, got {text!r}") from None


def mac_int(text: str) -> int:
    return int(text.replace("-", "").replace(":", ""), 16)


def mac_text(value: int) -> str:
    """HCN's MAC form: upper-case hex pairs joined by '-'."""
    raw = f"{value:012X}"
    return "-".join(raw[i:i + 2] for i in range(0, 12, 2))
