"""CNI documents: the network configuration silo-cni reads and the results and errors it
writes, for CNI spec versions 0.3.0 to 1.1.0.

Owns the words of the CNI spec (its error codes, its result shapes per version) and the
configuration keys in the style of the Windows plugins (win-bridge, sdnbridge; reference §4.2):

    {"cniVersion": "1.0.0", "name": "<the silod network>", "type": "silo-cni",
     "host": "unix:///run/silo/silod.sock",            # else $SILO_HOST, else the default
     "networkType": "NAT",                              # of a network made on the first ADD
     "ipam": {"subnet": "10.22.0.0/24", "routes": [{"dst": "10.96.0.0/12", "gw": "..."}]},
     "ipam": {"type": "host-local", ...},               # or: delegate to that IPAM plugin
     "dns": {"nameservers": [...], "domain": "...", "search": [...], "options": [...]},
     "policies": [{"name": "EndpointPolicy", "value": {"Type": "ACL", "Settings": {...}}}],
     "ipMasqNetwork": "10.0.0.0/8", "outBoundNATExceptions": ["192.168.0.0/16"],
     "optionalFlags": {"localRoutedPortMapping": true},
     "capabilities": {"portMappings": true, "dns": true},
     "runtimeConfig": {"portMappings": [{"hostPort", "containerPort", "protocol", "hostIP"}],
                       "dns": {"servers": [...], "searches": [...], "options": [...]}}}

:func:`parse_config` checks a configuration and answers :class:`CniError` (code and message as
the spec has them) for what is wrong; :func:`result` writes a result in the shape of the
version asked for. Imports only :mod:`silo.errors` and :mod:`silo.schema.jsonio` at import
time: silo-cni runs once per pod and must start fast.
"""

from __future__ import annotations

from silo.schema import jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"

# The spec's well-known error codes (SPEC.md, "Error"); 100+ are the plugin's own.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
# silo-cni's own: silod refused the request (the details carry silod's code and message);
# a failure of the plugin itself.
SILOD_REFUSED = 100
INTERNAL = 999

NETWORK_TYPES = ("NAT", "Internal", "Private", "Transparent", "L2Bridge")
# The commands each version knows (CHECK from 0.4.0, STATUS and GC from 1.1.0).
COMMANDS = {"ADD": "0.1.0", "DEL": "0.1.0", "VERSION": "0.1.0", "CHECK": "0.4.0",
            "STATUS": "1.1.0", "GC": "1.1.0"}


class CniError(Exception):
    """An error as the CNI spec writes it: ``{"cniVersion", "code", "msg", "details"}``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def document(self, version: str = LATEST) -> dict[str, Any]:
        doc: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc


def bad(field: str, reason: str, code: int = INVALID_CONFIG) -> CniError:
    return CniError(code, f"{field}: {reason}")


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def allows(version: str, command: str) -> bool:
    return version_tuple(version) >= version_tuple(COMMANDS[command])


# ---------------------------------------------------------------------------------------------
# The configuration


def parse_config(data: bytes | str, command: str = "ADD") -> dict[str, Any]:
    """The network configuration on stdin, checked for ``command``. CniError: DECODE_FAILURE
    for what is not a JSON object, INCOMPATIBLE_VERSION for a cniVersion silo-cni does not
    speak, INVALID_CONFIG naming the field otherwise. What only ADD uses (policies, DNS, port
    mappings, the subnet) is not checked for DEL, GC and STATUS: a DEL refused for a field it
    never reads would leave the container's network behind (containerd keeps the netns of a
    sandbox whose network teardown failed)."""
    from silo.errors import InvalidArgument

    try:
        conf = jsonio.loads(data, "the network configuration")
    except InvalidArgument as err:
        raise CniError(DECODE_FAILURE, f"the network configuration on stdin is not JSON: "
                       f"{err.message}") from None
    if not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "the network configuration on stdin must be a JSON "
                       "object")
    version = conf.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise bad("cniVersion", "required: a CNI spec version such as 1.0.0")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion: {version} is not supported",
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    name = conf.get("name")
    if not isinstance(name, str) or not _is_name(name, 64):
        raise bad("name", "required: the silod network's name, 1 to 64 letters, digits, '_', "
                  "'.' or '-', starting with a letter or digit")
    if not isinstance(conf.get("type"), str) or not conf["type"]:
        raise bad("type", "required: the plugin's name")
    if "host" in conf and not isinstance(conf["host"], str):
        raise bad("host", "must be a string: silod's address (unix:///PATH, tcp://HOST:PORT)")
    ipam = conf.get("ipam", {})
    if not isinstance(ipam, dict):
        raise bad("ipam", "must be a JSON object")
    if "type" in ipam and (not isinstance(ipam["type"], str) or "/" in ipam["type"]):
        raise bad("ipam.type", "must be the file name of an IPAM plugin in CNI_PATH")
    conf["_portMappings"] = []
    if command not in ("ADD", "CHECK"):
        return conf
    for key in ("networkType", "ipMasqNetwork"):
        if key in conf and not isinstance(conf[key], str):
            raise bad(key, "must be a string")
    if conf.get("networkType", "NAT") not in NETWORK_TYPES:
        raise bad("networkType", f"{conf['networkType']!r} is not one of "
                  f"{', '.join(NETWORK_TYPES)}")
    for key in ("dns", "capabilities", "runtimeConfig", "optionalFlags"):
        if key in conf and not isinstance(conf[key], dict):
            raise bad(key, "must be a JSON object")
    for key in ("policies", "outBoundNATExceptions"):
        if key in conf and not isinstance(conf[key], list):
            raise bad(key, "must be a JSON array")
    _check_ipam(conf.get("ipam", {}))
    _check_dns(conf.get("dns", {}), "dns",
               ("nameservers", "search", "options"), ("domain",))
    rc = conf.get("runtimeConfig", {})
    if "dns" in rc:
        if not isinstance(rc["dns"], dict):
            raise bad("runtimeConfig.dns", "must be a JSON object")
        rc["dns"] = folded(rc["dns"])
        _check_dns(rc["dns"], "runtimeConfig.dns", ("servers", "searches", "options"),
                   ("domain",))
    conf["_portMappings"] = port_mappings(rc.get("portMappings", []))
    for i, p in enumerate(conf.get("policies", [])):
        where = f"policies[{i}]"
        if not isinstance(p, dict):
            raise bad(where, "must be a JSON object")
        if "name" in p:  # win-bridge's envelope: {"name": "EndpointPolicy", "value": {...}}
            if p["name"] not in ("EndpointPolicy", "NetworkPolicy"):
                raise bad(f"{where}.name", f"{p['name']!r} is not EndpointPolicy or "
                          "NetworkPolicy")
            if not isinstance(p.get("value"), dict):
                raise bad(f"{where}.value", "required: an HNS policy {Type, Settings}")
            if not isinstance(p["value"].get("Type"), str):
                raise bad(f"{where}.value.Type", "required: the HNS policy's type")
        elif not isinstance(p.get("Type"), str):
            raise bad(where, 'must be {"name": "EndpointPolicy", "value": {Type, Settings}} '
                      "or an HNS policy {Type, Settings}")
    for i, text in enumerate(conf.get("outBoundNATExceptions", [])):
        if not isinstance(text, str) or not text:
            raise bad(f"outBoundNATExceptions[{i}]", "must be an address prefix")
    if "prevResult" in conf and not isinstance(conf["prevResult"], dict):
        raise bad("prevResult", "must be a JSON object")
    return conf


def _is_name(text: str, longest: int) -> bool:
    return (0 < len(text) <= longest and text[0].isascii() and text[0].isalnum()
            and all(c.isascii() and (c.isalnum() or c in "_.-") for c in text))


def _check_ipam(ipam: dict[str, Any]) -> None:
    subnet = ipam.get("subnet")
    if subnet is not None and not (isinstance(subnet, str) or (
            isinstance(subnet, list) and all(isinstance(s, str) for s in subnet))):
        raise bad("ipam.subnet", "must be a prefix (10.22.0.0/24) or a list of them")
    routes = ipam.get("routes", [])
    if not isinstance(routes, list):
        raise bad("ipam.routes", "must be a JSON array")
    for i, r in enumerate(routes):
        if not isinstance(r, dict) or not isinstance(r.get("dst"), str):
            raise bad(f"ipam.routes[{i}]", 'must be {"dst": "<prefix>", "gw"?: "<address>"}')


def _check_dns(dns: dict[str, Any], where: str, lists: tuple[str, ...],
               strings: tuple[str, ...]) -> None:
    for key in lists:
        value = dns.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"{where}.{key}", "must be a list of strings")
    for key in strings:
        if key in dns and not isinstance(dns[key], str):
            raise bad(f"{where}.{key}", "must be a string")


def folded(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its keys spelled as the spec does, whatever their case: runtimes written
    in Go send capability arguments from structs without JSON tags (containerd's go-cni sends
    ``HostPort``, ``Servers``), and Go's JSON decoder, which the reference plugins use, matches
    keys case-insensitively."""
    known = {k.lower(): k for k in ("hostPort", "containerPort", "protocol", "hostIP",
                                    "servers", "searches", "options", "domain")}
    return {known.get(k.lower(), k): v for k, v in doc.items()}


def port_mappings(maps: object) -> list[dict[str, Any]]:
    """``runtimeConfig.portMappings`` as HNS PortMapping settings (``Protocol`` 6/17,
    ``InternalPort``, ``ExternalPort``, ``VIP``)."""
    where = "runtimeConfig.portMappings"
    if not isinstance(maps, list):
        raise bad(where, "must be a JSON array")
    out = []
    for i, m in enumerate(maps):
        w = f"{where}[{i}]"
        if not isinstance(m, dict):
            raise bad(w, "must be a JSON object")
        m = folded(m)
        ports = {}
        for key in ("hostPort", "containerPort"):
            value = m.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                raise bad(f"{w}.{key}", f"must be a port (1..65535), got {value!r}")
            ports[key] = value
        proto = m.get("protocol", "tcp")
        if not isinstance(proto, str) or proto.lower() not in ("tcp", "udp"):
            raise bad(f"{w}.protocol", f"must be tcp or udp, got {proto!r}")
        settings: dict[str, Any] = {"Protocol": 6 if proto.lower() == "tcp" else 17,
                                    "InternalPort": ports["containerPort"],
                                    "ExternalPort": ports["hostPort"]}
        host_ip = m.get("hostIP", "")
        if not isinstance(host_ip, str):
            raise bad(f"{w}.hostIP", "must be an address")
        if host_ip and host_ip not in ("0.0.0.0", "::"):
            settings["VIP"] = host_ip
        out.append(settings)
    return out


def valid_attachments(conf: dict[str, Any]) -> set[tuple[str, str]]:
    """GC's ``cni.dev/valid-attachments``: the (containerID, ifname) pairs to keep."""
    where = "cni.dev/valid-attachments"
    items = conf.get(where, [])
    if not isinstance(items, list):
        raise bad(where, "must be a JSON array")
    out = set()
    for i, a in enumerate(items):
        if not isinstance(a, dict) or not isinstance(a.get("containerID"), str):
            raise bad(f"{where}[{i}]", 'must be {"containerID": "...", "ifname": "..."}')
        out.add((a["containerID"], str(a.get("ifname", ""))))
    return out


# ---------------------------------------------------------------------------------------------
# Results


def result(version: str, interfaces: list[dict[str, Any]], ips: list[dict[str, Any]],
           routes: list[dict[str, Any]], dns: dict[str, Any]) -> dict[str, Any]:
    """A result of ``version``'s shape. ``ips``: ``{"address": "a/len", "gateway"?,
    "interface"?}``; 0.3.x and 0.4.0 get each address's ``version`` ("4" or "6")."""
    old = version_tuple(version) < (1, 0, 0)
    out_ips = []
    for ip in ips:
        item = dict(ip)
        if old:
            item = {"version": "6" if ":" in ip["address"] else "4", **item}
        out_ips.append(item)
    doc: dict[str, Any] = {"cniVersion": version, "interfaces": interfaces, "ips": out_ips}
    if routes:
        doc["routes"] = routes
    doc["dns"] = {k: v for k, v in dns.items() if v}
    return doc


def prev_addresses(prev: dict[str, Any]) -> list[str]:
    """The addresses (``a/len``) of a prevResult of any version."""
    ips = prev.get("ips", [])
    if not isinstance(ips, list):
        raise bad("prevResult.ips", "must be a JSON array")
    out = []
    for i, ip in enumerate(ips):
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            raise bad(f"prevResult.ips[{i}].address", "required: an address in CIDR form")
        out.append(ip["address"])
    return out
