"""What the commands of silo-cni share: the call (environment + configuration + client), the
translation of silod's errors into the spec's codes, the endpoint's name, lookups, the
documents silod is sent, the result built from silod's answer, and delegation to an IPAM
plugin named by the configuration.
"""

from __future__ import annotations

import os

from silo.client import DEFAULT_HOST
from silo.errors import (
    InvalidArgument,
    InvalidState,
    NotFound,
    NotSupported,
    SiloError,
    Timeout,
    Unavailable,
)
from silo.schema import cni

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from silo.client import Client

    Doc = dict[str, Any]

SILOD_TIMEOUT = 60.0  # seconds for one answer; silod serialises network changes


class Call:
    """One invocation: ``command``, the CNI_* environment, the checked configuration and the
    client of silod (made on first use)."""

    def __init__(self, command: str, env: Mapping[str, str], conf: Doc,
                 client: Callable[[str], Client] | None) -> None:
        self.command = command
        self.env = env
        self.conf = conf
        self.version: str = conf["cniVersion"]
        self.network: str = conf["name"]
        self.container_id = env.get("CNI_CONTAINERID", "")
        self.netns = env.get("CNI_NETNS", "")
        self.ifname = env.get("CNI_IFNAME", "")
        self.path = env.get("CNI_PATH", "")
        self.host = conf.get("host") or env.get("SILO_HOST") or DEFAULT_HOST
        self._make = client
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            if self._make is not None:
                self._client = self._make(self.host)
            else:
                from silo.client import Client

                self._client = Client(self.host, timeout=SILOD_TIMEOUT)
        return self._client

    @property
    def endpoint_name(self) -> str:
        """``<containerID>_<network>``, as win-bridge and sdnbridge name it."""
        return f"{self.container_id}_{self.network}"

    @property
    def delegated_ipam(self) -> str:
        return str(self.conf.get("ipam", {}).get("type") or "")


def make_call(command: str, env: Mapping[str, str], conf: Doc,
              client: Callable[[str], Client] | None) -> Call:
    """Check the environment the command needs (the spec's per-command requirements)."""
    call = Call(command, env, conf, client)
    needs = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
             "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
             "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH")}
    for key in needs.get(command, ()):
        if not env.get(key):
            raise cni.CniError(cni.INVALID_ENVIRONMENT, f"{key}: required for {command}")
    if call.container_id and not _container_id_ok(call.container_id):
        raise cni.CniError(cni.INVALID_ENVIRONMENT, "CNI_CONTAINERID: must be letters, digits, "
                           "'_', '.' or '-', starting with a letter or digit, at most 128 "
                           f"characters; got {call.container_id!r}")
    if call.ifname and not (len(call.ifname) <= 15 and call.ifname not in (".", "..") and all(
            c.isascii() and (c.isalnum() or c in "_.-") for c in call.ifname)):
        raise cni.CniError(cni.INVALID_ENVIRONMENT, "CNI_IFNAME: must be an interface name "
                           f"(1-15 letters, digits, '_', '.', '-'); got {call.ifname!r}")
    if call.netns and command in ("ADD", "CHECK"):
        check_netns(call.netns)
    return call


def _container_id_ok(cid: str) -> bool:
    return (len(cid) <= 128 and cid[0].isascii() and cid[0].isalnum()
            and all(c.isascii() and (c.isalnum() or c in "_.-") for c in cid))


def check_netns(path: str) -> None:
    """CNI_NETNS must name an existing file (silod checks that it is a network namespace)."""
    if not path.startswith("/") or "\0" in path:
        raise cni.CniError(cni.INVALID_ENVIRONMENT, f"CNI_NETNS: must be an absolute path, "
                           f"got {path!r}")
    if not os.path.exists(path):
        raise cni.CniError(cni.UNKNOWN_CONTAINER, f"CNI_NETNS: {path} does not exist (the "
                           "container's network namespace is gone)")


def translate(err: SiloError, doing: str) -> cni.CniError:
    """silod's error as the spec's: unreachable → try again later; a refused document →
    invalid configuration (or unsupported field); the rest → silo-cni's own code."""
    details = f"silod: {err.code}: {err.describe()}"
    if isinstance(err, (Unavailable, Timeout)):
        return cni.CniError(cni.TRY_AGAIN_LATER, f"{doing}: {err.message}", details)
    if isinstance(err, NotSupported):
        return cni.CniError(cni.UNSUPPORTED_FIELD, f"{doing}: {err.message}", details)
    if isinstance(err, InvalidArgument):
        if err.field.startswith("Linux.NetnsPath"):
            return cni.CniError(cni.INVALID_ENVIRONMENT, f"CNI_NETNS: {err.message}", details)
        return cni.CniError(cni.INVALID_CONFIG, f"{doing}: {err.message}", details)
    return cni.CniError(cni.SILOD_REFUSED, f"{doing}: {err.message}", details)


def ignore_missing(fn: Callable[[], object]) -> None:
    """Run a removal; an object already gone (NotFound), or one still in use by another
    container (InvalidState), is not an error of ours."""
    try:
        fn()
    except (NotFound, InvalidState):
        pass


# ---------------------------------------------------------------------------------------------
# Lookups


def find_endpoint(call: Call) -> Doc | None:
    found = call.client.list_endpoints({"Name": call.endpoint_name})
    return found[0] if found else None


def namespace_by_path(call: Call, path: str) -> Doc | None:
    for ns in call.client.list_namespaces():
        if ns.get("Linux", {}).get("NetnsPath") == path:
            return ns
    return None


def remove_endpoint(call: Call, ep: Doc) -> None:
    """Delete an endpoint (silod detaches it first), then the namespace document it was in
    when that was a client's netns (not silod's) and holds nothing else."""
    ns_id = ep.get("HostComputeNamespace", "")
    ignore_missing(lambda: call.client.delete_endpoint(ep["ID"]))
    if ns_id:
        forget_namespace(call, ns_id)


def forget_namespace(call: Call, ns_id: str) -> None:
    """Delete the namespace document of a client's netns once it holds no endpoint (silod
    never removes a netns it did not make)."""
    try:
        ns = call.client.get_namespace(ns_id)
    except NotFound:
        return
    if ns.get("Linux", {}).get("Managed") or any(
            r.get("Type") == "Endpoint" for r in ns.get("Resources", [])):
        return
    ignore_missing(lambda: call.client.delete_namespace(ns_id))


# ---------------------------------------------------------------------------------------------
# Documents


def endpoint_policies(conf: Doc) -> list[Doc]:
    """The configuration's EndpointPolicy entries (raw HNS), its port mappings, and its
    outbound NAT exceptions, as HNS endpoint policies."""
    out: list[Doc] = []
    for p in conf.get("policies", []):
        if p.get("name", "EndpointPolicy") == "EndpointPolicy":
            out.append(p.get("value", p))
    local = conf.get("optionalFlags", {}).get("localRoutedPortMapping", True)
    for m in conf["_portMappings"]:
        out.append({"Type": "PortMapping", "Settings": {**m, "Flags": 1 if local else 0}})
    exceptions = list(conf.get("outBoundNATExceptions", []))
    if conf.get("ipMasqNetwork"):
        exceptions.append(conf["ipMasqNetwork"])
    if exceptions:
        out.append({"Type": "OutBoundNAT", "Settings": {"Exceptions": exceptions}})
    for r in conf.get("ipam", {}).get("routes", []):
        if r["dst"] in ("0.0.0.0/0", "::/0") and not r.get("gw"):
            continue  # the default route is the network's gateway already
        route = {"DestinationPrefix": r["dst"]}
        if r.get("gw"):
            route["NextHop"] = r["gw"]
        out.append({"Type": "SDNRoute", "Settings": route})
    return out


def network_policies(conf: Doc) -> list[Doc]:
    return [p["value"] for p in conf.get("policies", []) if p.get("name") == "NetworkPolicy"]


def dns(conf: Doc) -> Doc:
    """The endpoint's Dns (HNS) from ``dns`` with ``runtimeConfig.dns`` over it."""
    base = conf.get("dns", {})
    rt = conf.get("runtimeConfig", {}).get("dns", {})
    out: Doc = {}
    servers = rt.get("servers") or base.get("nameservers") or []
    if servers:
        out["ServerList"] = list(servers)
    search = rt.get("searches") or base.get("search") or []
    if search:
        out["Search"] = list(search)
    options = rt.get("options") or base.get("options") or []
    if options:
        out["Options"] = list(options)
    domain = rt.get("domain") or base.get("domain")
    if domain:
        out["Domain"] = domain
    return out


def result(call: Call, ep: Doc, net: Doc) -> Doc:
    """The CNI result for an attached endpoint, in the configuration's version."""
    ifname = ep.get("Linux", {}).get("InterfaceName") or call.ifname
    interfaces = [{"name": ep.get("Linux", {}).get("HostInterface", "")},
                  {"name": ifname, "mac": ep.get("MacAddress", "").replace("-", ":").lower(),
                   "sandbox": call.netns}]
    gateways = net.get("Linux", {}).get("Gateways", [])
    ips, routes = [], []
    for ipc in ep.get("IpConfigurations", []):
        addr = ipc["IpAddress"]
        v6 = ":" in addr
        item: Doc = {"interface": 1, "address": f"{addr}/{ipc.get('PrefixLength', 0)}"}
        gw = next((g for g in gateways if (":" in g) == v6 and g != addr), "")
        if gw:
            item["gateway"] = gw
            routes.append({"dst": "::/0" if v6 else "0.0.0.0/0", "gw": gw})
        ips.append(item)
    for p in ep.get("Policies", []):
        if p["Type"] == "SDNRoute":
            s = p["Settings"]
            route = {"dst": s["DestinationPrefix"]}
            if s.get("NextHop"):
                route["gw"] = s["NextHop"]
            routes.append(route)
    d = ep.get("Dns", {})
    dns_doc = {"nameservers": d.get("ServerList", []), "domain": d.get("Domain", ""),
               "search": d.get("Search", []), "options": d.get("Options", [])}
    return cni.result(call.version, interfaces, ips, routes, dns_doc)


def ip_in_netns(call: Call, *args: str) -> list[Doc]:
    """``ip -j ARGS`` run in ``CNI_NETNS`` (``nsenter``), parsed; [] for a device that is not
    there. The plugin reads the namespace this way and never changes it: silod does."""
    import subprocess

    from silo.schema import jsonio

    argv = ["nsenter", f"--net={call.netns}", "ip", "-j", *args]
    what = " ".join(argv[2:])
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise cni.CniError(cni.IO_FAILURE, f"cannot run {what} in {call.netns}: {err}") \
            from None
    if proc.returncode != 0:
        text = proc.stderr.decode(errors="replace").strip()
        if "does not exist" in text or "Cannot find device" in text:
            return []
        raise cni.CniError(cni.IO_FAILURE, f"{what} in {call.netns} failed: {text}")
    try:
        doc = jsonio.loads(proc.stdout or b"[]", "ip's answer")
    except SiloError as err:
        raise cni.CniError(cni.IO_FAILURE, f"{what}: {err}") from None
    return doc if isinstance(doc, list) else []


# ---------------------------------------------------------------------------------------------
# A delegated IPAM plugin


def ipam_exec(call: Call, command: str) -> Doc | None:
    """Run the IPAM plugin the configuration names, from CNI_PATH, with this call's
    environment and configuration; its result (ADD) or None. Its error is passed on."""
    import subprocess

    from silo.schema import jsonio

    plugin = call.delegated_ipam
    binary = ""
    for d in call.path.split(":"):
        candidate = os.path.join(d, plugin)
        if d and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            binary = candidate
            break
    if not binary:
        raise cni.CniError(cni.INVALID_CONFIG, f"ipam.type: no IPAM plugin {plugin!r} in "
                           f"CNI_PATH ({call.path or 'empty'})")
    env = dict(call.env)
    env["CNI_COMMAND"] = command
    conf = {k: v for k, v in call.conf.items() if not k.startswith("_")}
    try:
        proc = subprocess.run([binary], input=jsonio.dumps(conf).encode(), env=env,
                              capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise cni.CniError(cni.IO_FAILURE, f"ipam ({plugin}): cannot run {binary}: {err}") \
            from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            doc = jsonio.loads(out, "the IPAM plugin's error")
            code, msg = int(doc.get("code", cni.SILOD_REFUSED)), str(doc.get("msg", out))
            details = str(doc.get("details", ""))
        except (SiloError, AttributeError, TypeError, ValueError):
            code, msg, details = cni.IO_FAILURE, out or f"exited {proc.returncode}", ""
        raise cni.CniError(code, f"ipam ({plugin}): {msg}", details or
                           proc.stderr.decode(errors="replace").strip())
    if command != "ADD":
        return None
    try:
        doc = jsonio.loads(out, "the IPAM plugin's result")
    except SiloError as err:
        raise cni.CniError(cni.DECODE_FAILURE, f"ipam ({plugin}): {err}") from None
    if not isinstance(doc, dict):
        raise cni.CniError(cni.DECODE_FAILURE, f"ipam ({plugin}): its result is not an object")
    return doc

