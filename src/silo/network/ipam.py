"""Address management of the networks: static subnets, gateways, endpoint addresses, MACs.

Owns which address and which MAC each endpoint of a network holds. Per subnet the first host
address is the gateway (reserved unless the subnet's ``Flags & 1``, DoNotReserveGatewayAddress);
the network address and, for IPv4, the broadcast address are never handed out. An endpoint gets
one address per family the network has (IPv4, IPv6, or both: dual-stack), taken from the first
subnet of that family with room, or the static one it asked for. MACs come from the network's
``MacPool.Ranges``, else from the locally administered range :data:`DEFAULT_MAC_RANGE`.

Every method takes the pool's lock: the same address or MAC is never given twice, however many
threads create endpoints at once. A failed allocation takes nothing.

Imports :mod:`silo.schema.hns` (address parsing) and :mod:`silo.errors`.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Any

from silo.errors import InvalidArgument, NotFound, Unavailable, invalid
from silo.schema import hns

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Locally administered, unicast (0x02 in the first byte); "5A" for silo.
DEFAULT_MAC_RANGE = (0x025A00000000, 0x025AFFFFFFFF)


@dataclass
class Subnet:
    network: IPNetwork
    reserve_gateway: bool
    taken: set[int] = field(default_factory=set)
    cursor: int = 0  # where the next search starts (offset into the subnet)

    @property
    def gateway(self) -> IPAddress:
        return self.network[1]

    def first_last(self) -> tuple[int, int]:
        """The offsets an endpoint may get: not the network address, nor IPv4's broadcast."""
        last = self.network.num_addresses - (2 if self.network.version == 4 else 1)
        return 1, last

    def usable(self, addr: IPAddress) -> str:
        """Why ``addr`` cannot be given to an endpoint ("" when it can)."""
        offset = int(addr) - int(self.network.network_address)
        lo, hi = self.first_last()
        if not lo <= offset <= hi:
            return f"{addr} is the network or broadcast address of {self.network}"
        if self.reserve_gateway and offset == 1:
            return f"{addr} is the gateway of {self.network}"
        if offset in self.taken:
            return f"{addr} is taken by another endpoint"
        return ""

    def next_free(self) -> IPAddress | None:
        lo, hi = self.first_last()
        span = hi - lo + 1
        start = max(self.cursor, lo)
        for step in range(span):
            offset = lo + (start - lo + step) % span
            if self.reserve_gateway and offset == 1:
                continue
            if offset not in self.taken:
                return self.network[offset]
            if len(self.taken) >= span:
                break
        return None

    def take(self, addr: IPAddress) -> None:
        offset = int(addr) - int(self.network.network_address)
        self.taken.add(offset)
        self.cursor = offset + 1

    def give_back(self, addr: IPAddress) -> None:
        self.taken.discard(int(addr) - int(self.network.network_address))


@dataclass
class Pool:
    """One network's subnets and MACs."""

    subnets: list[Subnet]
    mac_ranges: list[tuple[int, int]]
    macs: set[int] = field(default_factory=set)
    mac_cursor: int = 0

    def families(self) -> list[int]:
        seen: list[int] = []
        for s in self.subnets:
            if s.network.version not in seen:
                seen.append(s.network.version)
        return seen

    def subnet_of(self, addr: IPAddress) -> Subnet | None:
        for s in self.subnets:
            if addr in s.network:
                return s
        return None


class Ipam:
    """The pools of every network, by network ID."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, Pool] = {}

    # -- networks ---------------------------------------------------------------------------

    def add_network(self, network: dict[str, Any]) -> None:
        """Make the pool of a validated HostComputeNetwork (replacing one of the same ID)."""
        subnets = [
            Subnet(ipaddress.ip_network(s["IpAddressPrefix"]),
                   not s.get("Flags", 0) & hns.SUBNET_DO_NOT_RESERVE_GATEWAY)
            for ipam in network.get("Ipams", []) for s in ipam.get("Subnets", [])
        ]
        ranges = [(hns.mac_int(r["StartMacAddress"]), hns.mac_int(r["EndMacAddress"]))
                  for r in network.get("MacPool", {}).get("Ranges", [])]
        with self._lock:
            self._pools[network["ID"]] = Pool(subnets, ranges or [DEFAULT_MAC_RANGE])

    def remove_network(self, network_id: str) -> None:
        with self._lock:
            self._pools.pop(network_id, None)

    def overlapping(self, network: dict[str, Any]) -> tuple[str, str, str] | None:
        """(field of ``network``, the other network's ID, its subnet) of the first subnet of
        ``network`` that overlaps a subnet of another network; None when none does."""
        with self._lock:
            for i, ipam in enumerate(network.get("Ipams", [])):
                for j, s in enumerate(ipam.get("Subnets", [])):
                    net = ipaddress.ip_network(s["IpAddressPrefix"])
                    for other_id, pool in self._pools.items():
                        if other_id == network["ID"]:
                            continue
                        for o in pool.subnets:
                            if o.network.version == net.version and o.network.overlaps(net):
                                return (f"Ipams[{i}].Subnets[{j}].IpAddressPrefix", other_id,
                                        str(o.network))
        return None

    def free_subnet(self, pool: str, prefixlen: int) -> str:
        """The first ``/prefixlen`` of ``pool`` that overlaps no network's subnet; Unavailable
        when every one does."""
        whole = ipaddress.ip_network(pool)
        with self._lock:
            taken = [s.network for p in self._pools.values() for s in p.subnets
                     if s.network.version == whole.version]
            for candidate in whole.subnets(new_prefix=prefixlen):
                if not any(candidate.overlaps(t) for t in taken):
                    return str(candidate)
        raise Unavailable(f"Ipams: no free /{prefixlen} left in {pool} for a network without "
                          "subnets; give one", field="Ipams")

    def gateways(self, network_id: str) -> list[str]:
        """The reserved gateway of each subnet (the data path puts them on the bridge)."""
        with self._lock:
            pool = self._pool(network_id)
            return [str(s.gateway) for s in pool.subnets if s.reserve_gateway]

    def prefixes(self, network_id: str) -> list[str]:
        with self._lock:
            return [str(s.network) for s in self._pool(network_id).subnets]

    # -- endpoints --------------------------------------------------------------------------

    def allocate(self, network_id: str, endpoint: dict[str, Any]) -> None:
        """Fill ``endpoint``'s IpConfigurations (static ones checked and taken, one address per
        missing family allocated) and MacAddress; all or nothing. InvalidArgument naming the
        field for a static request that cannot be had; Unavailable when a subnet is full."""
        with self._lock:
            pool = self._pool(network_id)
            taken_ips: list[tuple[Subnet, IPAddress]] = []
            taken_mac: int | None = None
            try:
                configs = endpoint.setdefault("IpConfigurations", [])
                families = set()
                for i, ipc in enumerate(configs):
                    where = f"IpConfigurations[{i}].IpAddress"
                    addr = ipaddress.ip_address(ipc["IpAddress"])
                    subnet = pool.subnet_of(addr)
                    if subnet is None:
                        have = ", ".join(str(s.network) for s in pool.subnets) or "none"
                        raise invalid(where, f"{addr} is outside the network's subnets "
                                      f"({have})")
                    why = subnet.usable(addr)
                    if why:
                        raise invalid(where, why)
                    if ipc.get("PrefixLength", subnet.network.prefixlen) \
                            != subnet.network.prefixlen:
                        raise invalid(f"IpConfigurations[{i}].PrefixLength",
                                      f"must be the subnet's, {subnet.network.prefixlen}")
                    subnet.take(addr)
                    taken_ips.append((subnet, addr))
                    ipc["PrefixLength"] = subnet.network.prefixlen
                    families.add(addr.version)
                for family in pool.families():
                    if family in families:
                        continue
                    got = None
                    for subnet in pool.subnets:
                        if subnet.network.version != family:
                            continue
                        got = subnet.next_free()
                        if got is not None:
                            subnet.take(got)
                            taken_ips.append((subnet, got))
                            configs.append({"IpAddress": str(got),
                                            "PrefixLength": subnet.network.prefixlen})
                            break
                    if got is None:
                        raise Unavailable(f"IpConfigurations: no IPv{family} address left in "
                                          "the network's subnets", obj=network_id,
                                          field="IpConfigurations")
                taken_mac = self._mac(pool, endpoint)
            except BaseException:
                for subnet, addr in taken_ips:
                    subnet.give_back(addr)
                if taken_mac is not None:
                    pool.macs.discard(taken_mac)
                raise

    def _mac(self, pool: Pool, endpoint: dict[str, Any]) -> int:
        if "MacAddress" in endpoint:
            mac = hns.mac_int(endpoint["MacAddress"])
            if mac in pool.macs:
                raise invalid("MacAddress", f"{endpoint['MacAddress']} is taken by another "
                              "endpoint of the network")
            pool.macs.add(mac)
            return mac
        total = sum(hi - lo + 1 for lo, hi in pool.mac_ranges)
        index = pool.mac_cursor
        for _ in range(min(total, len(pool.macs) + 1)):
            mac = _nth_mac(pool.mac_ranges, index % total)
            index += 1
            if mac not in pool.macs:
                pool.macs.add(mac)
                pool.mac_cursor = index
                endpoint["MacAddress"] = hns.mac_text(mac)
                return mac
        raise Unavailable("MacAddress: the network's MacPool has no MAC left",
                          field="MacAddress")

    def reserve(self, network_id: str, endpoint: dict[str, Any]) -> None:
        """Take what a recorded endpoint holds (silod's start), without the checks of a new
        request; a record that contradicts another is InvalidArgument."""
        with self._lock:
            pool = self._pool(network_id)
            for i, ipc in enumerate(endpoint.get("IpConfigurations", [])):
                addr = ipaddress.ip_address(ipc["IpAddress"])
                subnet = pool.subnet_of(addr)
                if subnet is None or subnet.usable(addr):
                    raise InvalidArgument(
                        f"IpConfigurations[{i}].IpAddress: {addr} cannot be restored",
                        obj=endpoint.get("ID", ""), field=f"IpConfigurations[{i}].IpAddress")
                subnet.take(addr)
            if "MacAddress" in endpoint:
                pool.macs.add(hns.mac_int(endpoint["MacAddress"]))

    def release(self, network_id: str, endpoint: dict[str, Any]) -> None:
        """Give back an endpoint's addresses and MAC (nothing happens for unknown ones)."""
        with self._lock:
            pool = self._pools.get(network_id)
            if pool is None:
                return
            for ipc in endpoint.get("IpConfigurations", []):
                addr = ipaddress.ip_address(ipc["IpAddress"])
                subnet = pool.subnet_of(addr)
                if subnet is not None:
                    subnet.give_back(addr)
            if "MacAddress" in endpoint:
                pool.macs.discard(hns.mac_int(endpoint["MacAddress"]))

    def in_use(self, network_id: str) -> int:
        with self._lock:
            return sum(len(s.taken) for s in self._pool(network_id).subnets)

    def _pool(self, network_id: str) -> Pool:
        pool = self._pools.get(network_id)
        if pool is None:
            raise NotFound(f"network {network_id} has no address pool", obj=network_id)
        return pool


def _nth_mac(ranges: list[tuple[int, int]], n: int) -> int:
    for lo, hi in ranges:
        size = hi - lo + 1
        if n < size:
            return lo + n
        n -= size
    raise IndexError(n)
