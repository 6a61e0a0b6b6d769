"""The shape of a network driver, and the bridge + veth machinery most types share.

A driver turns one network type into links, addresses, routes and sysctls; it never writes
nft rules (the compiler does, from the driver's :class:`Traits`). A later VXLAN ``overlay``
driver fits the same Protocol: its ``ensure_network`` makes a vxlan device as the bridge's
uplink, its ``attach`` is the bridge's, remote-subnet routes come in through
``update_network``.

Every step that makes something records how to undo it; a failure undoes the steps already
done, in reverse order, so a failed call leaves no link, address or route behind.

Imports kernel (netlink, netns), errors and the rules model.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from silo.errors import AlreadyExists, InvalidState, NotFound, invalid
from silo.kernel import netns
from silo.kernel.linkreaper import LinkReaper
from silo.kernel.netlink import Netlink
from silo.network.rules.model import EndpointSpec, NetworkSpec, Traits
from silo.network.rules.policy import Addr, Net

DEFAULT_MTU = 1500


@dataclass
class Host:
    """What a driver works with: the host's netlink socket, the data path's prefix, and the
    host's network namespace (None: the caller's; tests run a whole "host" in a netns)."""

    netlink: Netlink
    prefix: str
    netns: str | None = None
    # deletes host veths in batches off the caller's path (a link deletion waits ~17 ms in
    # the kernel for an RCU grace period); None: delete them here and now
    reaper: LinkReaper | None = None

    def remove_link(self, name: str) -> None:
        """``name`` is gone from service now (idempotent); deleted at once or by the reaper."""
        if self.reaper is None:
            self.netlink.ensure_link_deleted(name)
            return
        try:
            self.reaper.retire(self.netlink, name)
        except NotFound:
            pass

    def sysctl(self, key: str, value: str | int) -> None:
        if self.netns is None:
            host_sysctl(key, value)
        else:
            netns.sysctl_in(self.netns, key, value)


class Driver(Protocol):
    type: str          # the HNS network type it implements
    traits: Traits

    def ensure_network(self, host: Host, net: NetworkSpec) -> dict[str, object]:
        """Links of the network exist (idempotent); the Linux facts to keep."""

    def remove_network(self, host: Host, net: NetworkSpec) -> None:
        """The network's links are gone (idempotent)."""

    def attach(self, host: Host, net: NetworkSpec, ep: EndpointSpec, netns_path: str,
               ifname: str) -> None:
        """The endpoint's interface exists in ``netns_path``, configured; all or nothing."""

    def detach(self, host: Host, net: NetworkSpec, ep: EndpointSpec) -> None:
        """The endpoint's interfaces and host routes are gone (idempotent)."""


class Undo:
    """Steps to undo, run in reverse order if the block fails."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def push(self, step: Callable[[], None]) -> None:
        self.steps.append(step)

    def run(self) -> None:
        for step in reversed(self.steps):
            with contextlib.suppress(Exception):
                step()
        self.steps.clear()


@contextlib.contextmanager
def undo_on_error() -> Iterator[Undo]:
    undo = Undo()
    try:
        yield undo
    except BaseException:
        undo.run()
        raise


def host_sysctl(key: str, value: str | int) -> None:
    """Write a sysctl of the host (the caller's network namespace)."""
    path = netns.sysctl_path(key)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except FileNotFoundError as err:
        raise NotFound(f"no sysctl {key}", op="sysctl::set", obj=key) from err


def bridge_sysctl(host: Host, ifname: str, family: str, key: str, value: str | int) -> None:
    """A per-interface sysctl (``net.<family>.conf.<ifname>.<key>``); a dot in the name (a
    VLAN uplink, ``eth0.100``) is written as sysctl(8) writes it."""
    host.sysctl(f"net.{family}.conf.{ifname.replace('.', '/')}.{key}", value)


class BridgeDriver:
    """A Linux bridge per network, a veth pair per endpoint: the container's end is made
    directly inside its netns under its final name, the host's end joins the bridge."""

    type = "bridge"
    traits = Traits(gateway_on_host=True, way_out=True, host_reach=True, masquerade=True)

    # -- networks -----------------------------------------------------------------------------

    def ensure_network(self, host: Host, net: NetworkSpec) -> dict[str, object]:
        nl = host.netlink
        with undo_on_error() as undo:
            # Multicast snooping off: with it, each new port rescans every port's multicast
            # state (an attach grows with the port count); no querier runs here anyway.
            if nl.link(net.bridge) is None:
                nl.add_bridge(net.bridge, mcast_snooping=False)
                undo.push(lambda: nl.ensure_link_deleted(net.bridge))
            else:
                nl.set_bridge(net.bridge, mcast_snooping=False)
            self.setup_bridge(host, net, undo)
            nl.set_link(net.bridge, up=True)
        return {"Bridge": net.bridge, "Gateways": [str(g) for g in net.gateways]}

    def setup_bridge(self, host: Host, net: NetworkSpec, undo: Undo) -> None:
        """The type's own settings of a new or existing bridge (addresses, uplink, sysctls)."""
        if not net.traits.gateway_on_host:
            return
        self.check_routes(host, net)
        have = {a.cidr for a in host.netlink.addresses(net.bridge)}
        for gw, subnet in self.gateway_cidrs(net):
            cidr = f"{gw}/{subnet.prefixlen}"
            if cidr not in have:
                try:
                    host.netlink.add_address(net.bridge, cidr)
                except AlreadyExists:
                    continue

    @staticmethod
    def check_routes(host: Host, net: NetworkSpec) -> None:
        """The host must not route any of the subnets elsewhere already (another network's
        bridge, a LAN): its gateway address would be unreachable, its containers too."""
        bridge = host.netlink.link(net.bridge)
        index = bridge.index if bridge else None
        for route in host.netlink.routes():
            if route.dst == "default" or route.oif == index:
                continue
            dst = ipaddress.ip_network(route.dst, strict=False)
            for subnet in net.subnets:
                if subnet.version == dst.version and subnet.overlaps(dst) and \
                        dst.prefixlen > 0:
                    names = {ln.index: ln.name for ln in host.netlink.links()}
                    where = names.get(route.oif or 0, f"interface {route.oif}")
                    raise InvalidState(
                        f"Ipams: subnet {subnet} overlaps {dst}, which the host already "
                        f"routes through {where}",
                        op="hns::EnsureNetwork", obj=net.id, field="Ipams")

    @staticmethod
    def gateway_cidrs(net: NetworkSpec) -> list[tuple[Addr, Net]]:
        out = []
        for gw in net.gateways:
            for subnet in net.subnets:
                if subnet.version == gw.version and gw in subnet:
                    out.append((gw, subnet))
                    break
        return out

    def remove_network(self, host: Host, net: NetworkSpec) -> None:
        self.release_uplink(host, net)
        host.netlink.ensure_link_deleted(net.bridge)

    def release_uplink(self, host: Host, net: NetworkSpec) -> None:
        """Give back what the network took from the host (nothing, for a plain bridge)."""

    # -- endpoints ----------------------------------------------------------------------------

    def attach(self, host: Host, net: NetworkSpec, ep: EndpointSpec, netns_path: str,
               ifname: str) -> None:
        nl = host.netlink
        if nl.link(net.bridge) is None:
            raise InvalidState(f"network {net.id}: its bridge {net.bridge} is missing",
                               op="hns::Attach", obj=ep.id)
        mtu = DEFAULT_MTU - ep.policies.encap_overhead
        with undo_on_error() as undo:
            nl.add_veth(ep.host_veth, ifname, peer_netns=netns_path, mtu=mtu,
                        peer_mac=ep.mac)
            undo.push(lambda: nl.ensure_link_deleted(ep.host_veth))
            # No IPv6 link-local on the host end (a bridge port needs none), nor on an
            # IPv4-only container: each one's duplicate detection, listener reports and
            # router solicitations are multicast the bridge floods to every port, work for
            # every namespace on the bridge that grows with the count of endpoints.
            nl.set_link(ep.host_veth, master=net.bridge, up=True, link_local6=False)
            with Netlink(netns_path) as inner:
                if not ep.v6():
                    inner.set_link(ifname, link_local6=False)
                inner.set_link(ifname, up=True)
                for a, plen in ep.addresses:
                    inner.add_address(ifname, f"{a}/{plen}")
                for gw in self.default_gateways(net, ep):
                    inner.add_route("default", via=str(gw), dev=ifname)
                for route in ep.policies.routes:
                    hop = str(route.next_hop) if route.next_hop else None
                    inner.add_route(str(route.destination), via=hop, dev=ifname,
                                    replace=True)
            self.plug(host, net, ep, undo)

    def default_gateways(self, net: NetworkSpec, ep: EndpointSpec) -> list[Addr]:
        """The default routes of an endpoint: one per family it has an address of."""
        out = []
        for gw in net.gateways:
            if any(a.version == gw.version and a != gw and
                   gw in ipaddress.ip_network(f"{a}/{plen}", strict=False)
                   for a, plen in ep.addresses):
                out.append(gw)
        return out

    def plug(self, host: Host, net: NetworkSpec, ep: EndpointSpec, undo: Undo) -> None:
        """The type's host-side steps for a new endpoint (host routes, for L2Bridge)."""

    def detach(self, host: Host, net: NetworkSpec, ep: EndpointSpec) -> None:
        self.unplug(host, net, ep)
        host.remove_link(ep.host_veth)

    def unplug(self, host: Host, net: NetworkSpec, ep: EndpointSpec) -> None:
        """Undo :meth:`plug` (idempotent)."""


def need_adapter(net: NetworkSpec, host: Host) -> str:
    """The uplink named by the network's NetAdapterName policy; it must exist."""
    name = net.policies.adapter
    if not name:
        raise invalid("Policies", f"a {net.type} network needs a NetAdapterName policy "
                      "naming its uplink")
    link = host.netlink.link(name)
    if link is None:
        raise invalid("Policies.NetAdapterName", f"no interface {name!r} on the host")
    return name
