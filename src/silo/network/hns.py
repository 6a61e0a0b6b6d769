"""The Host Network Service: networks, endpoints and namespaces as HNS v2 documents.

Owns the objects and the checks across them: names unique per kind, subnets that do not
overlap another network's, a host port mapped once, an address inside its network and not
taken, an endpoint attached to one namespace at a time, a network deleted only without
endpoints (or with ``force``, which takes its endpoints with it). Addresses come from
:class:`~silo.network.ipam.Ipam`; the kernel is reached only through the
:class:`~silo.network.datapath_api.DataPath`; records go to a
:class:`~silo.network.store.NetworkStore`.

Every change runs validate → allocate → data path → persist under one lock, and a failure at
any step undoes the steps before it, so a refused or failed request leaves nothing behind.
Documents are returned as copies; lookups take an ID (case-insensitive) or a Name.

Imports schema, errors and the other modules of :mod:`silo.network`; never the service or the
compute library (a container reaches a network as the netns path :meth:`attach_container`
returns).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from silo.errors import (
    AlreadyExists,
    Internal,
    InvalidArgument,
    InvalidState,
    NotFound,
    SiloError,
    invalid,
)
from silo.network.datapath_api import DataPath
from silo.network.ipam import Ipam
from silo.network.store import KINDS, NetworkStore
from silo.schema import hns

log = logging.getLogger("silo.network")

Doc = dict[str, Any]

DEFAULT_NETWORK = "nat"
# Docker on Windows's "nat" prefix. Not in Docker-on-Linux's default pools (172.17-31.0.0/16,
# 192.168.0.0/16) nor podman's (10.88.0.0/16, 10.89.x.0/24).
DEFAULT_SUBNET = "172.16.0.0/16"
# Where ``nat`` goes when the host already routes DEFAULT_SUBNET elsewhere (another silod's
# nat, a VPN): the first of these the data path accepts.
DEFAULT_SUBNET_FALLBACKS = tuple(f"10.{n}.0.0/16" for n in range(90, 100))
# Where a NAT, Internal or Private network created without subnets gets a /24 (as Docker's
# pools give `docker network create web` one): 172.20.0.0/14, apart from DEFAULT_SUBNET.
AUTO_SUBNETS = "172.20.0.0/14"
AUTO_SUBNET_TYPES = ("NAT", "Internal", "Private")

_OP = {"network": "hns::Network", "endpoint": "hns::Endpoint", "namespace": "hns::Namespace"}
_COUNTERS = ("BytesReceived", "BytesSent", "PacketsReceived", "PacketsSent",
             "DroppedPacketsIncoming", "DroppedPacketsOutgoing")


class HostNetworkService:
    """HNS on Linux. Call :meth:`load` once before serving (silod's start)."""

    def __init__(self, store: NetworkStore, datapath: DataPath, *,
                 default_subnet: str = DEFAULT_SUBNET,
                 check_netns: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.datapath = datapath
        self.default_subnet = default_subnet
        self.check_netns = check_netns or check_netns_path
        self.ipam = Ipam()
        self._lock = threading.RLock()
        self._docs: dict[str, dict[str, Doc]] = {k: {} for k in KINDS}

    def close(self) -> None:
        """Let go of the store and the data path's sockets (the host keeps what the data path
        made: containers run on)."""
        for part in (self.store, self.datapath):
            close = getattr(part, "close", None)
            if close is not None:
                close()

    # -- start ------------------------------------------------------------------------------

    def load(self) -> dict[str, list[str]]:
        """Read every record, take the addresses they hold, rebuild the data path from them
        (which removes what is not recorded). Returns ``{kind: [ids]}``. A record that
        contradicts the others (an address held twice) is dropped with a warning."""
        with self._lock:
            state = self.store.load()
            self.ipam = Ipam()
            self._docs = {k: {} for k in KINDS}
            for nid, net in state.get("network", {}).items():
                self.ipam.add_network(net)
                self._docs["network"][nid] = net
            for eid, ep in state.get("endpoint", {}).items():
                nid = ep.get("HostComputeNetwork", "")
                if nid not in self._docs["network"]:
                    log.warning("endpoint %s: its network %s is not recorded; dropped", eid, nid)
                    self.store.delete("endpoint", eid)
                    continue
                try:
                    self.ipam.reserve(nid, ep)
                except InvalidArgument as err:
                    log.warning("endpoint %s: %s; dropped", eid, err)
                    self.store.delete("endpoint", eid)
                    continue
                self._docs["endpoint"][eid] = ep
            for sid, ns in state.get("namespace", {}).items():
                self._docs["namespace"][sid] = ns
            self.datapath.rebuild(list(self._docs["network"].values()),
                                  list(self._docs["endpoint"].values()),
                                  list(self._docs["namespace"].values()))
            return {k: sorted(v) for k, v in self._docs.items()}

    # -- generic verbs (the API dispatches on kind) -----------------------------------------

    def create(self, kind: str, doc: object) -> Doc:
        return {"network": self.create_network, "endpoint": self.create_endpoint,
                "namespace": self.create_namespace}[kind](doc)

    def get(self, kind: str, ref: str) -> Doc:
        with self._lock:
            return copy.deepcopy(self._find(kind, ref))

    def query(self, kind: str, filter: dict[str, Any] | None = None) -> list[Doc]:
        """The documents whose fields equal every entry of ``filter`` (HCN's query filter):
        ``{"Name": "nat"}``, endpoints by ``{"HostComputeNetwork": <id or name>}``. An unknown
        field is InvalidArgument naming ``filter.<field>``."""
        filter = dict(filter or {})
        props = hns.SCHEMAS[hns.DOCUMENT[kind]]["properties"]
        for key in filter:
            if key not in props and not (kind == "endpoint" and key == "VirtualNetwork"):
                raise invalid(f"filter.{key}", f"{hns.DOCUMENT[kind]} has no such field")
        with self._lock:
            for key in ("HostComputeNetwork", "VirtualNetwork"):
                if kind == "endpoint" and isinstance(filter.get(key), str):
                    found = self._lookup("network", filter.pop(key))
                    filter["HostComputeNetwork"] = found["ID"] if found else ""
            if isinstance(filter.get("ID"), str):
                filter["ID"] = filter["ID"].lower()
            docs = sorted(self._docs[kind].values(), key=lambda d: (d.get("Name", ""), d["ID"]))
            return [copy.deepcopy(d) for d in docs
                    if all(d.get(k) == v for k, v in filter.items())]

    def modify(self, kind: str, ref: str, request: object) -> Doc:
        return {"network": self.modify_network, "endpoint": self.modify_endpoint,
                "namespace": self.modify_namespace}[kind](ref, request)

    def delete(self, kind: str, ref: str, *, force: bool = False) -> None:
        if kind == "network":
            self.delete_network(ref, force=force)
        elif kind == "endpoint":
            self.delete_endpoint(ref)
        else:
            self.delete_namespace(ref)

    # -- networks ---------------------------------------------------------------------------

    def create_network(self, doc: object) -> Doc:
        net = hns.validate("network", doc)
        with self._lock:
            self._unique("network", net)
            if net["Type"] in AUTO_SUBNET_TYPES and \
                    not any(ipam["Subnets"] for ipam in net["Ipams"]):
                net["Ipams"] = [{"Type": "Static", "Subnets": [{
                    "IpAddressPrefix": self.ipam.free_subnet(AUTO_SUBNETS, 24), "Flags": 0,
                    "Routes": [], "Policies": []}]}]
            clash = self.ipam.overlapping(net)
            if clash is not None:
                field, other, prefix = clash
                raise invalid(field, f"overlaps {prefix} of network "
                              f"{self._docs['network'][other].get('Name', other)}",
                              op="hns::CreateNetwork", obj=net["ID"])
            self.ipam.add_network(net)
            undo: list[Callable[[], None]] = [lambda: self.ipam.remove_network(net["ID"])]
            try:
                net["Linux"] = {"Gateways": self.ipam.gateways(net["ID"])}
                facts = self.datapath.ensure_network(copy.deepcopy(net))
                undo.append(lambda: self.datapath.remove_network(net))
                net["Linux"].update(facts or {})
                self.store.put("network", net["ID"], net)
            except BaseException:
                _undo(undo)
                raise
            self._docs["network"][net["ID"]] = net
            return copy.deepcopy(net)

    def ensure_default(self) -> Doc:
        """The default NAT network ``nat`` (Docker on Windows's), made on first use."""
        with self._lock:
            found = self._lookup("network", DEFAULT_NETWORK)
            if found is not None:
                return copy.deepcopy(found)
            candidates: tuple[str, ...] = (self.default_subnet,)
            if self.default_subnet == DEFAULT_SUBNET:
                candidates += DEFAULT_SUBNET_FALLBACKS
            for i, subnet in enumerate(candidates):
                try:
                    return self.create_network({
                        "Name": DEFAULT_NETWORK, "Type": "NAT",
                        "Ipams": [{"Type": "Static",
                                   "Subnets": [{"IpAddressPrefix": subnet}]}],
                    })
                except InvalidState as err:   # the host routes it through another link
                    if i == len(candidates) - 1:
                        raise
                    log.info("default network: %s is taken (%s); trying %s", subnet,
                             err.message, candidates[i + 1])
            raise AssertionError("unreachable")

    def modify_network(self, ref: str, request: object) -> Doc:
        req = hns.validate_modify("network", request)
        with self._lock:
            net = self._find("network", ref)
            new = copy.deepcopy(net)
            if req["ResourceType"] == "Policy":
                new["Policies"] = _change_policies(new.get("Policies", []), req)
            elif req["RequestType"] == "Remove":
                new.pop("Dns", None)
            else:
                new["Dns"] = req["Settings"]
            self._apply(new, net, self.datapath.update_network, "network")
            return copy.deepcopy(new)

    def delete_network(self, ref: str, *, force: bool = False) -> None:
        with self._lock:
            net = self._find("network", ref)
            eps = [e for e in self._docs["endpoint"].values()
                   if e["HostComputeNetwork"] == net["ID"]]
            if eps and not force:
                names = ", ".join(e.get("Name") or e["ID"] for e in eps)
                raise InvalidState(f"network {net['Name']} still has {len(eps)} endpoint(s): "
                                   f"{names} (delete them first, or delete with force)",
                                   op="hns::DeleteNetwork", obj=net["ID"])
            for ep in eps:
                self.delete_endpoint(ep["ID"])
            self.datapath.remove_network(net)
            try:
                self.store.delete("network", net["ID"])
            except BaseException:
                _undo([lambda: _ignore(self.datapath.ensure_network(copy.deepcopy(net)))])
                raise
            self.ipam.remove_network(net["ID"])
            del self._docs["network"][net["ID"]]

    def rules(self, ref: str) -> Doc:
        with self._lock:
            net = self._find("network", ref)
            return {"Network": net["ID"], "Name": net["Name"], "Text": self.datapath.rules(net)}

    # -- endpoints --------------------------------------------------------------------------

    def create_endpoint(self, doc: object, *, ifname: str = "") -> Doc:
        ep = hns.validate("endpoint", doc)
        with self._lock:
            net = self._lookup("network", ep["HostComputeNetwork"])
            if net is None:
                raise NotFound(f"HostComputeNetwork: no such network: "
                               f"{ep['HostComputeNetwork']}", op="hns::CreateEndpoint",
                               obj=ep["ID"], field="HostComputeNetwork")
            ep["HostComputeNetwork"] = net["ID"]
            self._unique("endpoint", ep)
            self._check_ports(ep, ep["Policies"], "Policies")
            self.ipam.allocate(net["ID"], ep)
            if ifname:
                ep["Linux"] = {"InterfaceName": ifname}
            try:
                self.store.put("endpoint", ep["ID"], ep)
            except BaseException:
                self.ipam.release(net["ID"], ep)
                raise
            self._docs["endpoint"][ep["ID"]] = ep
            return copy.deepcopy(ep)

    def modify_endpoint(self, ref: str, request: object) -> Doc:
        req = hns.validate_modify("endpoint", request)
        with self._lock:
            ep = self._find("endpoint", ref)
            new = copy.deepcopy(ep)
            new["Policies"] = _change_policies(new.get("Policies", []), req)
            if req["RequestType"] != "Remove":
                given = req["Settings"]["Policies"]
                kept = [p for p in new["Policies"] if p not in given]
                self._check_ports(new, given, "Settings.Policies", kept=kept)
            net = self._docs["network"][ep["HostComputeNetwork"]]
            update: Callable[[Doc], None] = lambda doc: None  # noqa: E731
            if ep.get("HostComputeNamespace"):
                def update(doc: Doc) -> None:
                    self.datapath.update_endpoint(net, doc)
            self._apply(new, ep, update, "endpoint")
            return copy.deepcopy(new)

    def delete_endpoint(self, ref: str) -> None:
        """Delete an endpoint; one still attached is detached first."""
        with self._lock:
            ep = self._find("endpoint", ref)
            if ep.get("HostComputeNamespace"):
                self._detach(self._docs["namespace"][ep["HostComputeNamespace"]], ep)
            self.store.delete("endpoint", ep["ID"])
            self.ipam.release(ep["HostComputeNetwork"], ep)
            del self._docs["endpoint"][ep["ID"]]

    def endpoint_stats(self, ref: str) -> Doc:
        """The endpoint's counters (zeros while it is not attached)."""
        with self._lock:
            ep = self._find("endpoint", ref)
            stats: Doc = dict.fromkeys(_COUNTERS, 0)
            if ep.get("HostComputeNamespace"):
                try:
                    stats.update(self.datapath.counters(ep))
                except NotFound as err:  # the endpoint exists: what is missing is silo's
                    raise Internal(f"the counters of endpoint {ep['ID']}: {err}",
                                   op="hns::EndpointStats", obj=ep["ID"]) from err
            stats["EndpointId"] = ep["ID"]
            return stats

    # -- namespaces -------------------------------------------------------------------------

    def create_namespace(self, doc: object) -> Doc:
        ns = hns.validate("namespace", doc)
        with self._lock:
            self._unique("namespace", ns)
            ns["NamespaceId"] = 1 + max((n.get("NamespaceId", 0)
                                         for n in self._docs["namespace"].values()), default=0)
            linux = ns.setdefault("Linux", {})
            made = "NetnsPath" not in linux
            if not made:
                self.check_netns(linux["NetnsPath"])
            if made:
                linux["NetnsPath"] = self.datapath.create_namespace(ns["ID"])
            linux["Managed"] = made
            try:
                self.store.put("namespace", ns["ID"], ns)
            except BaseException:
                if made:
                    _undo([lambda: self.datapath.delete_namespace(linux["NetnsPath"])])
                raise
            self._docs["namespace"][ns["ID"]] = ns
            return copy.deepcopy(ns)

    def modify_namespace(self, ref: str, request: object) -> Doc:
        req = hns.validate_modify("namespace", request)
        endpoint = req["Settings"]["EndpointId"]
        if req["RequestType"] == "Add":
            return self.attach(ref, endpoint, ifname=req["Settings"].get("InterfaceName", ""))
        return self.detach(ref, endpoint)

    def attach(self, ns_ref: str, ep_ref: str, *, ifname: str = "") -> Doc:
        """Put an endpoint into a namespace; the namespace's document. ``ifname``: its name
        there (default: the endpoint's ``Linux.InterfaceName``, else ``eth<n>``)."""
        with self._lock:
            ns = self._find("namespace", ns_ref)
            ep = self._find("endpoint", ep_ref, field="Settings.EndpointId")
            if ep.get("HostComputeNamespace"):
                where = ("this namespace" if ep["HostComputeNamespace"] == ns["ID"]
                         else f"namespace {ep['HostComputeNamespace']}")
                raise InvalidState(f"Settings.EndpointId: endpoint {ep['ID']} is already "
                                   f"attached to {where}", op="hns::AttachEndpoint",
                                   obj=ep["ID"], field="Settings.EndpointId")
            net = self._docs["network"][ep["HostComputeNetwork"]]
            new_ep = copy.deepcopy(ep)
            ifname = ifname or ep.get("Linux", {}).get("InterfaceName") \
                or f"eth{_endpoints_in(ns)}"
            facts = self.datapath.attach(net, copy.deepcopy(ep), ns["Linux"]["NetnsPath"],
                                         ifname=ifname)
            new_ep["Linux"] = {"InterfaceName": ifname, **(facts or {})}
            new_ep["HostComputeNamespace"] = ns["ID"]
            new_ns = copy.deepcopy(ns)
            new_ns["Resources"].append({"Type": "Endpoint", "Data": {"ID": ep["ID"]}})
            try:
                self._persist_pair(new_ep, ep, new_ns, ns)
            except BaseException:
                _undo([lambda: self.datapath.detach(net, new_ep)])
                raise
            return copy.deepcopy(new_ns)

    def detach(self, ns_ref: str, ep_ref: str) -> Doc:
        with self._lock:
            ns = self._find("namespace", ns_ref)
            ep = self._find("endpoint", ep_ref, field="Settings.EndpointId")
            if ep.get("HostComputeNamespace") != ns["ID"]:
                raise InvalidState(f"Settings.EndpointId: endpoint {ep['ID']} is not attached "
                                   f"to namespace {ns['ID']}", op="hns::DetachEndpoint",
                                   obj=ep["ID"], field="Settings.EndpointId")
            return copy.deepcopy(self._detach(ns, ep))

    def _detach(self, ns: Doc, ep: Doc) -> Doc:
        net = self._docs["network"][ep["HostComputeNetwork"]]
        self.datapath.detach(net, ep)
        new_ep = copy.deepcopy(ep)
        new_ep.pop("HostComputeNamespace", None)
        new_ep["Linux"] = {k: v for k, v in ep.get("Linux", {}).items() if k == "InterfaceName"}
        new_ns = copy.deepcopy(ns)
        new_ns["Resources"] = [r for r in ns["Resources"]
                               if not (r["Type"] == "Endpoint" and r["Data"]["ID"] == ep["ID"])]
        self._persist_pair(new_ep, ep, new_ns, ns)
        return new_ns

    def delete_namespace(self, ref: str) -> None:
        """Delete a namespace; its endpoints are detached first (they stay, unattached)."""
        with self._lock:
            ns = self._find("namespace", ref)
            for ep in [e for e in self._docs["endpoint"].values()
                       if e.get("HostComputeNamespace") == ns["ID"]]:
                ns = self._detach(ns, ep)
            if ns["Linux"].get("Managed"):
                self.datapath.delete_namespace(ns["Linux"]["NetnsPath"])
            self.store.delete("namespace", ns["ID"])
            del self._docs["namespace"][ns["ID"]]

    # -- containers (the compute service's way in) ------------------------------------------

    def attach_container(self, network_ref: str, container_id: str,
                         port_mappings: Iterable[Doc] = ()) -> str:
        """Give a container an endpoint on ``network_ref`` (``nat`` is made on first use) in a
        namespace of its own, with ``port_mappings`` (PortMapping Settings:
        ``{"Protocol": 6|17, "InternalPort", "ExternalPort", "VIP"?}``); the netns path to
        join. A second call for the same container adds an endpoint (eth1, ...) to the same
        namespace. All or nothing. A mapping without ``Flags`` gets LocalRoutedVip (1), so that
        it answers on the host's own addresses and 127.0.0.1 too, as ``docker run -p`` does."""
        policies = [{"Type": "PortMapping", "Settings": {"Flags": 1, **m}}
                    for m in port_mappings]
        with self._lock:
            if network_ref == DEFAULT_NETWORK:
                self.ensure_default()
            ns = self._container_namespace(container_id)
            made_ns = ns is None
            if ns is None:
                ns = self.create_namespace({})
                ns["Resources"].append({"Type": "Container", "Data": {"ID": container_id}})
                self.store.put("namespace", ns["ID"], ns)
                self._docs["namespace"][ns["ID"]] = copy.deepcopy(ns)
            ep: Doc | None = None
            try:
                ep = self.create_endpoint({"HostComputeNetwork": network_ref,
                                           "Policies": policies},
                                          ifname=f"eth{_endpoints_in(ns)}")
                self.attach(ns["ID"], ep["ID"])
            except BaseException:
                if ep is not None:
                    _undo([lambda: self.delete_endpoint(ep["ID"])])
                if made_ns:
                    _undo([lambda: self.delete_namespace(ns["ID"])])
                raise
            return str(ns["Linux"]["NetnsPath"])

    def detach_container(self, container_id: str) -> None:
        """Remove the container's endpoints and namespace; nothing when it has none."""
        with self._lock:
            ns = self._container_namespace(container_id)
            if ns is None:
                return
            for ep in [e for e in self._docs["endpoint"].values()
                       if e.get("HostComputeNamespace") == ns["ID"]]:
                self.delete_endpoint(ep["ID"])
            self.delete_namespace(ns["ID"])

    def container_namespace(self, container_id: str) -> Doc | None:
        with self._lock:
            ns = self._container_namespace(container_id)
            return copy.deepcopy(ns) if ns is not None else None

    def _container_namespace(self, container_id: str) -> Doc | None:
        for ns in self._docs["namespace"].values():
            for r in ns.get("Resources", []):
                if r["Type"] == "Container" and r["Data"].get("ID") == container_id:
                    return ns
        return None

    # -- helpers ----------------------------------------------------------------------------

    def _lookup(self, kind: str, ref: str) -> Doc | None:
        docs = self._docs[kind]
        found = docs.get(ref.lower())
        if found is not None:
            return found
        for d in docs.values():
            if d.get("Name") == ref:
                return d
        return None

    def _find(self, kind: str, ref: str, *, field: str = "") -> Doc:
        found = self._lookup(kind, ref)
        if found is None:
            raise NotFound(f"{field + ': ' if field else ''}no such {kind}: {ref}",
                           op=_OP[kind], obj=ref, field=field)
        return found

    def _unique(self, kind: str, doc: Doc) -> None:
        if doc["ID"] in self._docs[kind]:
            raise AlreadyExists(f"ID: a {kind} with ID {doc['ID']} exists",
                                op=_OP[kind], obj=doc["ID"], field="ID")
        name = doc.get("Name")
        if name is not None and any(d.get("Name") == name for d in self._docs[kind].values()):
            raise AlreadyExists(f"Name: a {kind} named {name} exists", op=_OP[kind],
                                obj=doc["ID"], field="Name")

    def _check_ports(self, ep: Doc, policies: list[Doc], where: str,
                     kept: list[Doc] | None = None) -> None:
        """A host port is mapped once per protocol and address (HNS's "port already
        exists"): AlreadyExists naming the policy's ExternalPort. ``kept``: the endpoint's
        policies that stay besides ``policies``."""
        mine = [_port_key(p["Settings"]) for p in kept or () if p["Type"] == "PortMapping"]
        for i, p in enumerate(policies):
            if p["Type"] != "PortMapping":
                continue
            key = _port_key(p["Settings"])
            field = f"{where}[{i}].Settings.ExternalPort"
            for other in mine:
                if _ports_clash(key, other):
                    raise AlreadyExists(f"{field}: host port {key[1]}/{_proto(key[0])} is "
                                        "mapped twice on this endpoint", obj=ep["ID"],
                                        field=field)
            for other_ep in self._docs["endpoint"].values():
                if other_ep["ID"] == ep["ID"]:
                    continue
                for q in other_ep.get("Policies", []):
                    if q["Type"] == "PortMapping" and _ports_clash(key, _port_key(q["Settings"])):
                        raise AlreadyExists(
                            f"{field}: port already exists: host port {key[1]}/"
                            f"{_proto(key[0])} is mapped to endpoint {other_ep['ID']}",
                            op="hns::PortMapping", obj=ep["ID"], field=field)
            mine.append(key)

    def _apply(self, new: Doc, old: Doc, update: Callable[[Doc], None], kind: str) -> None:
        """Data path, then record; on a failure to record, the data path is put back."""
        update(copy.deepcopy(new))
        try:
            self.store.put(kind, new["ID"], new)
        except BaseException:
            _undo([lambda: update(copy.deepcopy(old))])
            raise
        self._docs[kind][new["ID"]] = new

    def _persist_pair(self, new_ep: Doc, old_ep: Doc, new_ns: Doc, old_ns: Doc) -> None:
        self.store.put("endpoint", new_ep["ID"], new_ep)
        try:
            self.store.put("namespace", new_ns["ID"], new_ns)
        except BaseException:
            _undo([lambda: self.store.put("endpoint", old_ep["ID"], old_ep)])
            raise
        self._docs["endpoint"][new_ep["ID"]] = new_ep
        self._docs["namespace"][new_ns["ID"]] = new_ns


def check_netns_path(path: str) -> None:
    """A client's ``Linux.NetnsPath`` must be a network namespace file (a bind mount of nsfs,
    as ``ip netns`` and containerd make) other than silod's own: an endpoint attached there
    would otherwise move an interface into the host's namespace, or fail half-way."""
    import os

    field = "Linux.NetnsPath"
    try:
        st = os.stat(path)
        own = os.stat("/proc/self/ns/net")
    except OSError as err:
        raise invalid(field, f"{path}: {err.strerror}") from None
    if st.st_dev != own.st_dev:  # every nsfs inode lives on the one nsfs device
        raise invalid(field, f"{path} is not a network namespace file")
    if st.st_ino == own.st_ino:
        raise invalid(field, f"{path} is silod's own (the host's) network namespace")
    import fcntl

    ns_get_nstype, clone_newnet = 0xB703, 0x40000000  # linux/nsfs.h, linux/sched.h
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            kind = fcntl.ioctl(fd, ns_get_nstype)
        finally:
            os.close(fd)
    except OSError as err:
        raise invalid(field, f"{path}: {err.strerror}") from None
    if kind != clone_newnet:
        raise invalid(field, f"{path} is a namespace, but not a network namespace")


def _ignore(value: object) -> None:
    return None


def _endpoints_in(ns: Doc) -> int:
    return sum(1 for r in ns.get("Resources", []) if r["Type"] == "Endpoint")


def _port_key(s: Doc) -> tuple[int, int, str]:
    return int(s.get("Protocol", hns.PROTOCOL_TCP)), int(s["ExternalPort"]), s.get("VIP", "")


def _ports_clash(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
    return a[0] == b[0] and a[1] == b[1] and (not a[2] or not b[2] or a[2] == b[2])


def _proto(number: int) -> str:
    return {hns.PROTOCOL_TCP: "tcp", hns.PROTOCOL_UDP: "udp"}.get(number, str(number))


def _change_policies(current: list[Doc], req: Doc) -> list[Doc]:
    """Policies after an Add (appended), Remove (each given one must be there: NotFound
    naming it) or Update (those of each given type replaced by the given ones)."""
    given: list[Doc] = req["Settings"]["Policies"]
    kind = req["RequestType"]
    if kind == "Add":
        return [*current, *given]
    if kind == "Remove":
        out = list(current)
        for i, p in enumerate(given):
            if p not in out:
                raise NotFound(f"Settings.Policies[{i}]: no such {p['Type']} policy to remove",
                               field=f"Settings.Policies[{i}]")
            out.remove(p)
        return out
    types = {p["Type"] for p in given}
    return [p for p in current if p["Type"] not in types] + given


def _undo(steps: list[Callable[[], None]]) -> None:
    """Run undo steps, last first; a failing one is logged, the rest still run."""
    for step in reversed(steps):
        try:
            step()
        except (SiloError, OSError) as err:
            log.error("undo failed: %s", err)
