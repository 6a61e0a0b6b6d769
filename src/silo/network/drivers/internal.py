"""Internal: host and containers talk (gateway on the host), nothing leaves or enters the
host's other interfaces (the ISOLATION layer's ``closed`` set)."""

from __future__ import annotations

from silo.network.drivers.base import BridgeDriver
from silo.network.rules.model import Traits


class InternalDriver(BridgeDriver):
    type = "Internal"
    traits = Traits(gateway_on_host=True, way_out=False, host_reach=True, masquerade=False)
