"""NAT: a bridge with the gateway address on the host, outbound masqueraded, port mappings."""

from __future__ import annotations

from silo.network.drivers.base import BridgeDriver, Host, Undo, bridge_sysctl
from silo.network.rules.model import NetworkSpec, Traits


class NatDriver(BridgeDriver):
    type = "NAT"
    traits = Traits(gateway_on_host=True, way_out=True, host_reach=True, masquerade=True)

    def setup_bridge(self, host: Host, net: NetworkSpec, undo: Undo) -> None:
        super().setup_bridge(host, net, undo)
        # A LocalRoutedVip mapping DNATs 127.0.0.1 to a container: the packet leaves by the
        # bridge with a 127/8 source, which the kernel drops as martian unless allowed here
        # (the postrouting masquerade then gives it the gateway's address).
        bridge_sysctl(host, net.bridge, "ipv4", "route_localnet", 1)
