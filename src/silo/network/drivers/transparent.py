"""Transparent: the bridge takes the uplink named by the NetAdapterName policy as a port, so
containers sit on the uplink's LAN with their own MAC and address (reference §3.4).

The uplink must hold no addresses: a bridge port's addresses stop working, and moving them
(with the routes through them) is the administrator's call, not a side effect of a create.
"""

from __future__ import annotations

from silo.errors import InvalidState
from silo.network.drivers.base import BridgeDriver, Host, Undo, need_adapter
from silo.network.rules.model import NetworkSpec, Traits


class TransparentDriver(BridgeDriver):
    type = "Transparent"
    traits = Traits(gateway_on_host=False, way_out=True, host_reach=True, masquerade=False)

    def setup_bridge(self, host: Host, net: NetworkSpec, undo: Undo) -> None:
        nl = host.netlink
        uplink = need_adapter(net, host)
        link = nl.link(uplink)
        bridge = nl.link(net.bridge)
        assert link is not None and bridge is not None
        if link.master == bridge.index:
            return
        if link.master is not None:
            raise InvalidState(f"Policies.NetAdapterName: {uplink} is already a port of "
                               "another bridge", op="hns::EnsureNetwork", obj=net.id)
        held = [a.cidr for a in nl.addresses(uplink)
                if not a.address.startswith("fe80:")]
        if held:
            raise InvalidState(f"Policies.NetAdapterName: {uplink} holds {', '.join(held)}; "
                               "a Transparent network takes the whole adapter",
                               op="hns::EnsureNetwork", obj=net.id)
        nl.set_link(uplink, master=net.bridge, up=True)
        undo.push(lambda: nl.set_link(uplink, master=False))

    def release_uplink(self, host: Host, net: NetworkSpec) -> None:
        uplink = net.policies.adapter
        link = host.netlink.link(uplink) if uplink else None
        bridge = host.netlink.link(net.bridge)
        if link is not None and bridge is not None and link.master == bridge.index:
            host.netlink.set_link(link.name, master=False)
