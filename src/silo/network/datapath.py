"""The network data path: Linux bridges, veth pairs, network namespaces and one nft table.

``DataPath`` is what the Host Network Service calls to make its documents true on the host.
It takes normalised HNS v2 dicts (network, endpoint, namespace) and owns nothing persistent:
every Linux fact it makes is returned to the caller to keep (``Linux`` keys) and can be
recreated from the documents by :meth:`DataPath.rebuild`.

Each network type is one driver (``network/drivers/``); policies compile into the tables
``inet <prefix>`` and ``bridge <prefix>`` (the PORT layer: anti-spoofing, the fast path) in
VFP-like layers (``network/rules/``), applied as one atomic nft transaction per change.
What it applied is remembered per object (its *part*), so an endpoint's change deletes
exactly its old part and adds its new one, whatever the number of other endpoints.

Host-wide settings it turns on (and never back off, other users may rely on them):
``net.ipv4.ip_forward``, ``net.bridge.bridge-nf-call-iptables`` and ``-ip6tables`` (bridged
container↔container traffic must meet the ACL layer), ``net.ipv6.conf.all.forwarding`` when a
network has an IPv6 subnet.

May import kernel, schema, errors. Never compute.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
from typing import Any

from silo.errors import AlreadyExists, InvalidState, NotFound, SiloError, invalid
from silo.kernel import netns, tc
from silo.kernel.linkreaper import LinkReaper
from silo.kernel.netlink import Netlink, check_ifname
from silo.kernel.nftables import Nft
from silo.network import names
from silo.network.drivers import driver_for
from silo.network.drivers.base import Driver, Host
from silo.network.fastpath import FastPath
from silo.network.rules import compiler, render
from silo.network.rules.compiler import Part, script
from silo.network.rules.model import EndpointSpec, NetworkSpec, endpoint_spec, network_spec
from silo.network.rules.policy import PortMapping

Doc = dict[str, Any]
log = logging.getLogger(__name__)


class DataPath:
    """Programs networks, endpoints and policies into the kernel.

    Errors: InvalidArgument (a field of a document the data path cannot honour, named by its
    path), AlreadyExists (a host port already mapped on the same VIP/protocol, an endpoint
    attached twice), InvalidState (a network that still has endpoints, a missing bridge),
    NotSupported (a network type or policy it does not do), Internal (the kernel refused).
    A failed call leaves the host as it was before the call.
    """

    def __init__(self, *, prefix: str = "silo", run_dir: str = "/run/silo",
                 netlink: Netlink | None = None, nft: Nft | None = None,
                 host_netns: str | None = None, fast_path: bool = True) -> None:
        """``host_netns``: the network namespace that plays the host (a path; None: the
        caller's). The tests and the benchmark run a whole host inside one. ``fast_path``:
        flows between endpoints of one subnet without ACLs or QOS are not tracked (see
        ``rules/compiler.py``, PORT layer); off, every flow is."""
        self.prefix = names.check_prefix(prefix)
        self.fast_path = fast_path
        self.host_netns = host_netns
        self.run_dir = run_dir.rstrip("/") or "/"
        self._netlink = netlink
        self._nft = nft
        self._given = (netlink, nft)      # the caller's to close, not ours
        self._reaper: LinkReaper | None = None
        self._lock = threading.RLock()
        self._nets: dict[str, NetworkSpec] = {}
        self._net_parts: dict[str, Part] = {}
        self._eps: dict[str, EndpointSpec] = {}
        self._ep_parts: dict[str, Part] = {}
        self._ep_netns: dict[str, tuple[str, str]] = {}   # id -> (netns path, ifname)
        # (v6, protocol, host port) -> the attached endpoints' mappings of it, by endpoint id
        self._mapped: dict[tuple[bool, int, int], dict[str, list[PortMapping]]] = {}
        self._ready = False
        self._v6 = False
        self._fast: FastPath | None = None

    def close(self) -> None:
        """Close the netlink socket and the nft context this instance opened."""
        with self._lock:
            if self._fast is not None:
                self._fast.close()
                self._fast = None
            if self._reaper is not None:       # deletes what it still holds
                self._reaper.close()
                self._reaper = None
            if self._netlink is not None and self._netlink is not self._given[0]:
                self._netlink.close()
                self._netlink = None
            if self._nft is not None and self._nft is not self._given[1]:
                self._nft.close()
                self._nft = None

    def __enter__(self) -> DataPath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def netlink(self) -> Netlink:
        if self._netlink is None:
            self._netlink = Netlink(self.host_netns)
        return self._netlink

    @property
    def fastpath(self) -> FastPath:
        if self._fast is None:
            self._fast = FastPath(self.netlink)
        return self._fast

    def _sync_fast(self, net: NetworkSpec, ep: EndpointSpec) -> None:
        """The endpoint's place on the eBPF fast path as its rules say (``fastpath.py``). A
        refusal leaves it on the bridge's path, with a warning: it changes no verdict."""
        want = compiler.fast_path(net, ep)
        if want == self.fastpath.plugged(ep.id):
            return
        if not want:
            self.fastpath.unplug(ep)
            return
        try:
            self.fastpath.plug(net.id, ep)
        except SiloError as err:
            log.warning("endpoint %s left off the fast path: %s", ep.id, err.describe())

    @property
    def nft(self) -> Nft:
        if self._nft is None:
            self._nft = Nft(self.host_netns)
        return self._nft

    def _host(self, *, defer: bool = False) -> Host:
        """``defer``: host veths go through the reaper (deleted in batches, off the caller's
        path). Only for an endpoint whose namespace is ours and goes next: until its batch
        runs, the peer keeps its name in the namespace."""
        if defer and self._reaper is None and self._given[0] is None and self.prefix.isalnum():
            self._reaper = LinkReaper(self.host_netns, prefix=self.prefix)
        return Host(self.netlink, self.prefix, self.host_netns,
                    self._reaper if defer else None)

    def _owns_netns(self, path: object) -> bool:
        """Whether ``path`` is a namespace :meth:`create_namespace` made."""
        base = os.path.join(self.run_dir, "netns", self.prefix + "-")
        return isinstance(path, str) and path.startswith(base) and \
            "/" not in path[len(base):] and path[len(base):] not in ("", ".", "..")

    def _network(self, net: Doc) -> tuple[Driver, NetworkSpec]:
        if not isinstance(net, dict):
            raise invalid("network", "must be a HostComputeNetwork document")
        driver = driver_for(net.get("Type"))
        spec = network_spec(net, self.prefix, driver.traits)
        spec.fast_path = self.fast_path
        return driver, spec

    def _sysctls(self, v6: bool) -> None:
        host = self._host()
        host.sysctl("net.ipv4.ip_forward", 1)
        if not os.path.exists(netns.sysctl_path("net.bridge.bridge-nf-call-iptables")):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["modprobe", "br_netfilter"], capture_output=True, timeout=10)
        host.sysctl("net.bridge.bridge-nf-call-iptables", 1)
        host.sysctl("net.bridge.bridge-nf-call-ip6tables", 1)
        if v6 and not self._v6:
            host.sysctl("net.ipv6.conf.all.forwarding", 1)
            self._v6 = True

    def _ensure_table(self) -> None:
        """The first change of this instance writes the whole table (its state so far)."""
        if not self._ready:
            self._sysctls(False)
            self.nft.apply(self._full_script())
            self._ready = True

    def _full_script(self) -> str:
        return compiler.full_script(self.prefix, list(self._nets.values()),
                                    list(self._eps.values()))

    def _apply(self, lines: list[str]) -> None:
        if lines:
            self.nft.apply(script(lines))

    # -- networks ------------------------------------------------------------------------------

    def ensure_network(self, net: Doc) -> Doc:
        """Make the network's bridge (and uplink binding) exist and its rules present.
        Idempotent. Returns the Linux facts to persist: ``{"Bridge": ifname, "Gateways": [ip]}``."""
        with self._lock:
            driver, spec = self._network(net)
            self._ensure_table()
            self._sysctls(any(s.version == 6 for s in spec.subnets))
            existed = self.netlink.link(spec.bridge) is not None
            facts = driver.ensure_network(self._host(), spec)
            try:
                self._replace_network(spec)
            except BaseException:
                if not existed:
                    with contextlib.suppress(SiloError):
                        driver.remove_network(self._host(), spec)
                raise
            return facts

    def _replace_network(self, spec: NetworkSpec) -> None:
        """The network's part and its endpoints' parts (network ACLs are compiled into
        them) rewritten in one transaction."""
        new_net = compiler.network_part(spec)
        lines: list[str] = []
        new_eps: dict[str, Part] = {}
        mine = [eid for eid, ep in self._eps.items() if ep.network_id == spec.id]
        for eid in mine:
            new_eps[eid] = compiler.endpoint_part(spec, self._eps[eid])
        # endpoints' old parts out first (they may jump to the network's chains), in last
        halves = [compiler.replace_halves(self.prefix, self._ep_parts[eid], new_eps[eid])
                  for eid in mine]
        for out, _into in halves:
            lines += out
        lines += compiler.replace_lines(self.prefix, self._net_parts.get(spec.id), new_net)
        for _out, into in halves:
            lines += into
        self._apply(lines)
        self._nets[spec.id] = spec
        self._net_parts[spec.id] = new_net
        self._ep_parts.update(new_eps)
        for eid in mine:
            self._sync_fast(spec, self._eps[eid])

    def remove_network(self, net: Doc) -> None:
        """Remove the network's bridge and rules (its endpoints must be detached first)."""
        with self._lock:
            driver, spec = self._network(net)
            left = [e for e in self._eps.values() if e.network_id == spec.id]
            if left:
                raise InvalidState(f"network {spec.id} still has {len(left)} attached "
                                   "endpoint(s)", op="hns::RemoveNetwork", obj=spec.id)
            part = self._net_parts.get(spec.id)
            if part is not None and self._ready:
                self._apply(part.delete_lines(self.prefix))
            self._nets.pop(spec.id, None)
            self._net_parts.pop(spec.id, None)
            if self._fast is not None:
                self._fast.drop_network(spec.id)
            driver.remove_network(self._host(), spec)

    def update_network(self, net: Doc) -> None:
        """A network's policies changed: rewrite that network's part of the rules."""
        self.ensure_network(net)

    # -- endpoints -----------------------------------------------------------------------------

    def _check_mappings(self, ep: EndpointSpec) -> None:
        """A host port is mapped once per VIP and protocol; a mapping on every address
        (no VIP) collides with any VIP's. The nft maps would refuse an exact duplicate; this
        catches the shadowing ones too, and names the policy."""
        mine: list[PortMapping] = []
        for pm in ep.policies.port_mappings:
            targets = ep.v6() if pm.v6 else ep.v4()
            if not targets:
                raise invalid(f"Policies[{pm.index}]",
                              f"a port mapping over IPv{6 if pm.v6 else 4} needs an "
                              "endpoint address of that version")
            holders = self._mapped.get((pm.v6, pm.protocol, pm.external), {})
            clash = [(other, oid) for oid, theirs in holders.items() if oid != ep.id
                     for other in theirs]
            clash += [(other, ep.id) for other in mine]
            for other, oid in clash:
                if (other.v6, other.protocol, other.external) == \
                        (pm.v6, pm.protocol, pm.external) and \
                        (other.vip is None or pm.vip is None or other.vip == pm.vip):
                    proto = "TCP" if pm.protocol == 6 else "UDP"
                    raise AlreadyExists(
                        f"Policies[{pm.index}].Settings.ExternalPort: {proto} port "
                        f"{pm.external} on {pm.vip or 'every host address'} is already "
                        f"mapped to endpoint {oid}", op="hns::PortMapping", obj=ep.id,
                        field=f"Policies[{pm.index}].Settings.ExternalPort")
            mine.append(pm)

    def _remember(self, ep: EndpointSpec, part: Part) -> None:
        """An endpoint is attached with this part: its spec, part and host ports known."""
        self._forget(ep.id)
        self._eps[ep.id] = ep
        self._ep_parts[ep.id] = part
        for pm in ep.policies.port_mappings:
            self._mapped.setdefault((pm.v6, pm.protocol, pm.external), {}) \
                .setdefault(ep.id, []).append(pm)

    def _forget(self, eid: str) -> None:
        old = self._eps.pop(eid, None)
        self._ep_parts.pop(eid, None)
        for pm in old.policies.port_mappings if old else []:
            key = (pm.v6, pm.protocol, pm.external)
            holders = self._mapped.get(key, {})
            holders.pop(eid, None)
            if not holders:
                self._mapped.pop(key, None)

    def _endpoint(self, net: Doc, ep: Doc) -> tuple[Driver, NetworkSpec, EndpointSpec]:
        if not isinstance(ep, dict):
            raise invalid("endpoint", "must be a HostComputeEndpoint document")
        driver, nspec = self._network(net)
        espec = endpoint_spec(ep, self.prefix)
        if espec.network_id != nspec.id:
            raise invalid("HostComputeNetwork", f"{espec.network_id!r} is not network "
                          f"{nspec.id}")
        return driver, nspec, espec

    def attach(self, net: Doc, ep: Doc, netns_path: str, *, ifname: str = "eth0") -> Doc:
        """Plug an endpoint into the network inside the netns at ``netns_path``: veth pair,
        addresses, routes, MTU, MAC, QoS, and its rules. Returns
        ``{"HostInterface": veth, "InterfaceName": ifname}``."""
        with self._lock:
            driver, nspec, espec = self._endpoint(net, ep)
            check_ifname(ifname, "InterfaceName", "hns::Attach")
            if espec.id in self._eps:
                raise AlreadyExists(f"endpoint {espec.id} is already attached",
                                    op="hns::Attach", obj=espec.id)
            self._check_mappings(espec)
            if not isinstance(netns_path, str) or not netns.exists(netns_path):
                raise invalid("NetnsPath", f"{netns_path!r} is not a network namespace")
            if nspec.id not in self._nets or self.netlink.link(nspec.bridge) is None:
                self.ensure_network(net)
            host = self._host()
            try:
                driver.attach(host, nspec, espec, netns_path, ifname)
            except AlreadyExists:
                if self._reaper is None:
                    raise
                self._reaper.flush()   # a peer of a deferred detach may still hold the name
                driver.attach(host, nspec, espec, netns_path, ifname)
            try:
                part = compiler.endpoint_part(self._nets[nspec.id], espec)
                self._apply(part.add_lines(self.prefix))
            except BaseException:
                with contextlib.suppress(SiloError):
                    driver.detach(host, nspec, espec)
                raise
            self._remember(espec, part)
            self._ep_netns[espec.id] = (netns_path, ifname)
            self._sync_fast(self._nets[nspec.id], espec)
            return {"HostInterface": espec.host_veth, "InterfaceName": ifname}

    def detach(self, net: Doc, ep: Doc) -> None:
        """Unplug an endpoint: its veth pair and its rules go. Idempotent."""
        with self._lock:
            driver, nspec, espec = self._endpoint(net, ep)
            if self._fast is not None:       # nothing is redirected to it from now on
                self._fast.unplug(espec, classifier=False)
            part = self._ep_parts.get(espec.id)
            if part is not None:
                self._apply(part.delete_lines(self.prefix))
            self._forget(espec.id)
            path, _ifname = self._ep_netns.pop(espec.id, ("", ""))
            driver.detach(self._host(defer=self._owns_netns(path)), nspec, espec)

    def update_endpoint(self, net: Doc, ep: Doc) -> None:
        """An attached endpoint's policies changed in place: rewrite its rules (one
        transaction), its routes and its QoS."""
        with self._lock:
            _driver, nspec, espec = self._endpoint(net, ep)
            old = self._eps.get(espec.id)
            if old is None:
                raise NotFound(f"endpoint {espec.id} is not attached", op="hns::UpdateEndpoint",
                               obj=espec.id)
            if [a for a, _ in old.addresses] != [a for a, _ in espec.addresses] or \
                    old.mac != espec.mac:
                raise invalid("IpConfigurations", "an attached endpoint's addresses and MAC "
                              "cannot change; detach it first")
            self._check_mappings(espec)
            part = compiler.endpoint_part(self._nets.get(nspec.id, nspec), espec)
            self._apply(compiler.replace_lines(self.prefix, self._ep_parts[espec.id], part))
            self._remember(espec, part)
            self._sync_fast(self._nets.get(nspec.id, nspec), espec)
            path, ifname = self._ep_netns[espec.id]
            self._update_routes(path, ifname, old, espec)

    @staticmethod
    def _update_routes(path: str, ifname: str, old: EndpointSpec, new: EndpointSpec) -> None:
        gone = [r for r in old.policies.routes if r not in new.policies.routes]
        if not gone and new.policies.routes == old.policies.routes:
            return
        with Netlink(path) as inner:
            for r in gone:
                with contextlib.suppress(NotFound):
                    inner.delete_route(str(r.destination), dev=ifname)
            for r in new.policies.routes:
                inner.add_route(str(r.destination), dev=ifname, replace=True,
                                via=str(r.next_hop) if r.next_hop else None)

    def counters(self, ep: Doc) -> Doc:
        """BytesReceived/Sent, PacketsReceived/Sent, DroppedPacketsIncoming/Outgoing of an
        attached endpoint, as seen by the container (the host end's transmit is the
        container's receive). Drops count the link's, and the ACL layer's for an endpoint
        with ACL policies (the shared default chain of the others counts for all of them)."""
        with self._lock:
            espec = endpoint_spec(ep, self.prefix)
            st = self.netlink.stats(espec.host_veth)
            acl_in = acl_out = 0
            part = self._ep_parts.get(espec.id)
            for name in part.counters if part else []:
                if name.endswith("_in"):
                    acl_in += self._counter(name)
                else:
                    acl_out += self._counter(name)
            return {"BytesReceived": st.tx_bytes, "BytesSent": st.rx_bytes,
                    "PacketsReceived": st.tx_packets, "PacketsSent": st.rx_packets,
                    "DroppedPacketsIncoming": st.tx_dropped + acl_in,
                    "DroppedPacketsOutgoing": st.rx_dropped + acl_out}

    def _counter(self, name: str) -> int:
        doc = self.nft.list_json(f"counter inet {self.prefix} {name}")
        for item in doc.get("nftables", []):
            c = item.get("counter") if isinstance(item, dict) else None
            if isinstance(c, dict):
                return int(c.get("packets", 0))
        return 0

    def rules(self, net: Doc | None = None) -> str:
        """The rules in readable layers (vfpctrl /list-rule style), of one network or all."""
        with self._lock:
            nets = list(self._nets.values())
            if net is not None:
                _driver, spec = self._network(net)
                nets = [self._nets.get(spec.id, spec)]
            return render.render(nets, list(self._eps.values()))

    def nft_script(self) -> str:
        """The whole table as this instance would write it at a rebuild (for tests, tools)."""
        with self._lock:
            return self._full_script()

    # -- start ---------------------------------------------------------------------------------

    def rebuild(self, nets: list[Doc], eps: list[Doc], namespaces: list[Doc]) -> None:
        """At silod start: recreate what the documents say in one transaction, and remove
        every interface, netns file and table with our prefix that they do not name.

        An endpoint counts as attached when its ``HostComputeNamespace`` names a namespace
        whose ``Linux.NetnsPath`` exists; its interface is made again if it is missing."""
        with self._lock:
            specs: dict[str, tuple[Driver, NetworkSpec, Doc]] = {}
            for n in nets:
                driver, spec = self._network(n)
                specs[spec.id] = (driver, spec, n)
            paths: dict[str, str] = {}
            for ns in namespaces:
                linux = ns.get("Linux") or {}
                path = linux.get("NetnsPath") if isinstance(linux, dict) else None
                if isinstance(path, str) and isinstance(ns.get("ID"), str):
                    paths[ns["ID"].lower()] = path
            attached: list[tuple[EndpointSpec, str, str]] = []
            for e in eps:
                espec = endpoint_spec(e, self.prefix)
                ns_id = str(e.get("HostComputeNamespace") or "").lower()
                path = paths.get(ns_id)
                if espec.network_id in specs and path and netns.exists(path):
                    linux = e.get("Linux") or {}
                    ifname = linux.get("InterfaceName", "eth0") if isinstance(linux, dict) \
                        else "eth0"
                    attached.append((espec, path, str(ifname)))
            # What the state does not name goes: interfaces, then netns files.
            keep = {s.bridge for _d, s, _n in specs.values()} | \
                {e.host_veth for e, _p, _i in attached}
            for link in self.netlink.links():
                if names.ours(self.prefix, link.name) and link.name not in keep:
                    self.netlink.ensure_link_deleted(link.name)
            kept_paths = set(paths.values())
            ns_dir = os.path.join(self.run_dir, "netns")
            with contextlib.suppress(FileNotFoundError):
                for entry in os.listdir(ns_dir):
                    full = os.path.join(ns_dir, entry)
                    if entry.startswith(self.prefix + "-") and full not in kept_paths:
                        netns.ensure_deleted(full)
            # Links of what is recorded, then the whole table at once.
            self._nets.clear()
            self._net_parts.clear()
            self._eps.clear()
            self._ep_parts.clear()
            self._mapped.clear()
            self._ep_netns.clear()
            self._sysctls(any(sub.version == 6 for _d, spec, _n in specs.values()
                              for sub in spec.subnets))
            # A network or endpoint the host cannot carry any more (an uplink gone) is left
            # out with a warning: the others must come back all the same.
            host = self._host()
            for driver, spec, _doc in specs.values():
                try:
                    driver.ensure_network(host, spec)
                except SiloError as err:
                    log.warning("rebuild: network %s left out: %s", spec.id, err.describe())
                    with contextlib.suppress(SiloError):
                        driver.remove_network(host, spec)
                    continue
                self._nets[spec.id] = spec
                self._net_parts[spec.id] = compiler.network_part(spec)
            for espec, path, ifname in attached:
                driver, nspec, _doc = specs[espec.network_id]
                if nspec.id not in self._nets:
                    continue
                if self.netlink.link(espec.host_veth) is None:
                    with contextlib.suppress(SiloError):
                        _remove_in(path, ifname)
                    try:
                        driver.attach(host, nspec, espec, path, ifname)
                    except SiloError as err:
                        log.warning("rebuild: endpoint %s left out: %s", espec.id,
                                    err.describe())
                        continue
                self._remember(espec, compiler.endpoint_part(nspec, espec))
                self._ep_netns[espec.id] = (path, ifname)
            self.nft.apply(self._full_script())
            self._ready = True
            # The fast path made again: new maps; every veth's classifier replaced or removed.
            self.fastpath.close()
            for espec in self._eps.values():
                if compiler.fast_path(self._nets[espec.network_id], espec):
                    self._sync_fast(self._nets[espec.network_id], espec)
                else:
                    with contextlib.suppress(SiloError):
                        tc.detach_ingress(espec.host_veth, nl=self.netlink)

    def teardown(self) -> None:
        """Remove everything with this prefix: tables, interfaces, netns files (tests, and
        ``silod --reset``)."""
        with self._lock:
            if self._reaper is not None:
                self._reaper.flush()
            self.rebuild([], [], [])
            self.nft.apply(compiler.delete_script(self.prefix))
            self._ready = False

    # -- namespaces ----------------------------------------------------------------------------

    def create_namespace(self, ns_id: str) -> str:
        """A new network namespace bound at ``<run_dir>/netns/<prefix>-<id>``; its path."""
        path = names.netns_file(self.run_dir, self.prefix, str(ns_id).lower())
        netns.create(path)
        return path

    def delete_namespace(self, path: str) -> None:
        """Unbind and remove a namespace made by :meth:`create_namespace`. Idempotent. A path
        outside ``<run_dir>/netns/<prefix>-*`` is refused: it is not ours to remove."""
        if not self._owns_netns(path):
            raise invalid("NetnsPath", f"{path!r} is not a namespace this data path made")
        netns.ensure_deleted(path)


def _remove_in(path: str, ifname: str) -> None:
    """A stale container-side interface (its host end is gone) removed before re-attaching."""
    with Netlink(path) as inner:
        inner.ensure_link_deleted(ifname)

