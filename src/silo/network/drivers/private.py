"""Private: containers among themselves only. The bridge holds no address, the host neither
routes to it nor accepts from it (the ISOLATION and filter layers' ``hostless`` set), and
containers get no default route."""

from __future__ import annotations

from silo.network.drivers.base import BridgeDriver, Host, Undo, bridge_sysctl
from silo.network.rules.model import EndpointSpec, NetworkSpec, Traits
from silo.network.rules.policy import Addr


class PrivateDriver(BridgeDriver):
    type = "Private"
    traits = Traits(gateway_on_host=False, way_out=False, host_reach=False, masquerade=False)

    def setup_bridge(self, host: Host, net: NetworkSpec, undo: Undo) -> None:
        # Not even an IPv6 link-local address: the host has no presence on this network.
        bridge_sysctl(host, net.bridge, "ipv6", "disable_ipv6", 1)

    def default_gateways(self, net: NetworkSpec, ep: EndpointSpec) -> list[Addr]:
        return []
