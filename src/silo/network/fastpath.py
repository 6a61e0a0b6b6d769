"""The PORT layer's fast path in eBPF: frames between endpoints that need no state go from one
host veth straight to the other.

Each network with the fast path has a BPF hash map per IP version, ``dst MAC . dst IP ->
host veth ifindex``, of its endpoints that need no state (no ACL of their own or of their
network, no QOS: see ``rules/compiler.fast_path``); each such endpoint's host veth runs a
classifier on its ingress (``kernel/bpf.redirect_program``) that redirects a frame from the
endpoint's own MAC and (first) address of each version, over the protocols the default
inbound filter passes, to the veth the map names. What it redirects is what the inet layers
would have passed without state; it never meets the bridge, br_netfilter or conntrack (the
bridge table's ``notrack`` path still takes the rest between such endpoints). Everything
else passes on to the bridge, whose PORT chain checks the source. The maps are per network:
a frame can only be redirected to an endpoint of its own network.

Nothing here is persistent: the maps live as long as this process keeps their fds, the
programs as long as their veths; a rebuild makes them again. Where bpf(2) is refused (another
architecture, no privilege) the fast path is left to the bridge table, with a warning.

May import kernel and the rules model.
"""

from __future__ import annotations

import contextlib
import logging
import os

from silo.errors import SiloError
from silo.kernel import bpf, tc
from silo.kernel.netlink import Netlink
from silo.network.rules.compiler import fast_protocols
from silo.network.rules.model import EndpointSpec

log = logging.getLogger(__name__)


class FastPath:
    """The maps of the networks and the classifiers of the endpoints, on one host."""

    def __init__(self, netlink: Netlink) -> None:
        self._netlink = netlink
        self._maps: dict[tuple[str, int], int] = {}     # (network id, IP version) -> fd
        self._plugged: dict[str, list[tuple[int, bytes]]] = {}   # endpoint id -> map, key
        self._broken = False

    def _map(self, net_id: str, version: int) -> int | None:
        if self._broken:
            return None
        fd = self._maps.get((net_id, version))
        if fd is None:
            try:
                fd = bpf.create_fwd_map(version)
            except SiloError as err:
                log.warning("network fast path off (frames take the bridge): %s",
                            err.describe())
                self._broken = True
                return None
            self._maps[(net_id, version)] = fd
        return fd

    def plugged(self, ep_id: str) -> bool:
        return ep_id in self._plugged

    def plug(self, net_id: str, ep: EndpointSpec) -> None:
        """Give the endpoint its classifier and its keys in its network's map. Raises
        (leaving neither) if the kernel refuses either."""
        sources: dict[int, tuple[str, int, tuple[int, ...]]] = {}
        keys: list[tuple[int, bytes]] = []
        for version, addrs in ((4, ep.v4()), (6, ep.v6())):
            fd = self._map(net_id, version) if addrs else None
            if fd is None:
                continue
            sources[version] = (str(addrs[0]), fd, fast_protocols(version))
            keys += [(fd, bpf.fwd_key(ep.mac, str(a))) for a in addrs]
        veth = self._netlink.link(ep.host_veth)
        if not sources or veth is None:
            return
        prog = bpf.load_classifier(bpf.redirect_program(ep.mac, sources))
        try:
            tc.attach_ingress_bpf(ep.host_veth, prog, nl=self._netlink)
        finally:
            os.close(prog)          # the filter holds the program now
        try:
            for fd, key in keys:
                bpf.map_set(fd, key, veth.index)
        except SiloError:
            for fd, key in keys:
                bpf.map_delete(fd, key)
            with contextlib.suppress(SiloError):
                tc.detach_ingress(ep.host_veth, nl=self._netlink)
            raise
        self._plugged[ep.id] = keys

    def unplug(self, ep: EndpointSpec, *, classifier: bool = True) -> None:
        """Its keys out of the map (nothing is redirected to it any more) and, unless its
        veth goes next anyway (``classifier`` False), its classifier off. Idempotent."""
        keys = self._plugged.pop(ep.id, None)
        if keys is None:
            return
        for fd, key in keys:
            bpf.map_delete(fd, key)
        if classifier:
            with contextlib.suppress(SiloError):
                tc.detach_ingress(ep.host_veth, nl=self._netlink)

    def drop_network(self, net_id: str) -> None:
        for version in (4, 6):
            fd = self._maps.pop((net_id, version), None)
            if fd is not None:
                bpf.close_map(fd)

    def close(self) -> None:
        """Forget everything (the programs stay on their veths until those go)."""
        for fd in self._maps.values():
            bpf.close_map(fd)
        self._maps.clear()
        self._plugged.clear()
