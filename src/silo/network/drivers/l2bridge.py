"""L2Bridge: container addresses routable on the underlay (the uplink's LAN), every frame
leaving with the host's MAC (reference §3.4), here by routing instead of MAC rewriting:

- containers sit on a bridge that holds no address; the host routes each container address
  (a /32 or /128 to the bridge) and answers ARP for it on the uplink (proxy ARP), so the LAN
  sees the host's MAC for every container address;
- on the bridge the host answers ARP for the LAN's addresses (the gateway included), so the
  containers' frames come to the host, which forwards them out of the uplink with its MAC.

Containers of the network still talk to each other directly on the bridge. The uplink keeps
its addresses (the host stays on its LAN).
"""

from __future__ import annotations

from functools import partial

from silo.network.drivers.base import BridgeDriver, Host, Undo, bridge_sysctl, need_adapter
from silo.network.rules.model import EndpointSpec, NetworkSpec, Traits


class L2BridgeDriver(BridgeDriver):
    type = "L2Bridge"
    traits = Traits(gateway_on_host=False, way_out=True, host_reach=True, masquerade=False)

    def setup_bridge(self, host: Host, net: NetworkSpec, undo: Undo) -> None:
        uplink = need_adapter(net, host)
        for ifname in (net.bridge, uplink):
            bridge_sysctl(host, ifname, "ipv4", "proxy_arp", 1)
            # Answer at once: the kernel's default waits up to 0.8 s at random before a
            # proxied reply, and a container's first packets would wait with it.
            host.sysctl(f"net.ipv4.neigh.{ifname.replace('.', '/')}.proxy_delay", 0)
        if any(s.version == 6 for s in net.subnets):
            bridge_sysctl(host, net.bridge, "ipv6", "proxy_ndp", 1)
            bridge_sysctl(host, uplink, "ipv6", "proxy_ndp", 1)

    def plug(self, host: Host, net: NetworkSpec, ep: EndpointSpec, undo: Undo) -> None:
        nl = host.netlink
        for a, _plen in ep.addresses:
            dst = f"{a}/{32 if a.version == 4 else 128}"
            nl.add_route(dst, dev=net.bridge, replace=True)
            undo.push(partial(nl.delete_route, dst, dev=net.bridge))

    def unplug(self, host: Host, net: NetworkSpec, ep: EndpointSpec) -> None:
        from silo.errors import NotFound

        for a, _plen in ep.addresses:
            try:
                host.netlink.delete_route(f"{a}/{32 if a.version == 4 else 128}",
                                          dev=net.bridge)
            except NotFound:
                pass
