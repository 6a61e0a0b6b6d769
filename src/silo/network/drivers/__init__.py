"""One driver per HNS network type; :func:`driver_for` picks it by the network's ``Type``."""

from __future__ import annotations

from silo.errors import NotSupported
from silo.network.drivers.base import Driver
from silo.network.drivers.internal import InternalDriver
from silo.network.drivers.l2bridge import L2BridgeDriver
from silo.network.drivers.nat import NatDriver
from silo.network.drivers.private import PrivateDriver
from silo.network.drivers.transparent import TransparentDriver

DRIVERS: dict[str, Driver] = {d.type.lower(): d for d in (
    NatDriver(), InternalDriver(), PrivateDriver(), TransparentDriver(), L2BridgeDriver())}


def driver_for(net_type: object) -> Driver:
    """The driver of a network type (case-insensitive; a missing type means NAT, as in HNS)."""
    name = str(net_type or "NAT")
    found = DRIVERS.get(name.lower())
    if found is None:
        raise NotSupported(f"Type: the data path has no driver for {name!r} "
                           f"(it has {', '.join(sorted(d.type for d in DRIVERS.values()))})",
                           field="Type")
    return found


__all__ = ["DRIVERS", "Driver", "driver_for"]
