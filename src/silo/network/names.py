"""Names of everything the data path creates on the host: interfaces, netns files, nft tables.

Every name carries the data path's prefix (default ``silo``; tests use their own), so that a
rebuild can tell its own leftovers from anyone else's and two instances never collide. Linux
interface names fit 15 bytes, hence the short hex slices of the object ids.

Imports nothing of silo but errors.
"""

from __future__ import annotations

import re

from silo.errors import invalid

IFNAMSIZ = 15  # bytes of an interface name, without the NUL
_PREFIX = re.compile(r"[a-z][a-z0-9]{0,4}\Z")
_HEX = re.compile(r"[0-9a-f]+")


def check_prefix(prefix: str) -> str:
    """The prefix itself, if it can start every name: 1-5 lowercase letters/digits, a letter
    first (the bridge name ``<prefix>br<8 hex>`` must fit 15 bytes)."""
    if not _PREFIX.match(prefix):
        raise invalid("prefix", f"{prefix!r} must be 1-5 lowercase letters or digits, "
                      "starting with a letter")
    return prefix


def _hex(obj_id: str, n: int, field: str) -> str:
    digits = "".join(_HEX.findall(obj_id.lower()))
    if len(digits) < n:
        raise invalid(field, f"{obj_id!r} has fewer than {n} hex digits to name an interface")
    return digits[:n]


def bridge(prefix: str, network_id: str) -> str:
    """The bridge of a network: ``<prefix>br<8 hex of the network id>``."""
    return f"{prefix}br{_hex(network_id, 8, 'ID')}"


def host_veth(prefix: str, endpoint_id: str) -> str:
    """The host end of an endpoint's veth pair: ``<prefix><10 hex of the endpoint id>``."""
    return f"{prefix}{_hex(endpoint_id, 10, 'ID')}"


def peer_veth(prefix: str, endpoint_id: str) -> str:
    """The temporary name of the container end before it moves into its netns and is renamed
    (``<prefix>p<9 hex>``): unique on the host for the moment it lives there."""
    return f"{prefix}p{_hex(endpoint_id, 9, 'ID')}"


def netns_file(run_dir: str, prefix: str, namespace_id: str) -> str:
    """Where the network namespace of a HostComputeNamespace is bound."""
    if not namespace_id or "/" in namespace_id or namespace_id in (".", ".."):
        raise invalid("ID", f"{namespace_id!r} cannot name a netns file")
    return f"{run_dir}/netns/{prefix}-{namespace_id}"


def table(prefix: str) -> str:
    """The nft table of the data path (``inet <prefix>`` and ``bridge <prefix>``)."""
    return prefix


def ours(prefix: str, ifname: str) -> bool:
    """Whether an interface name is one the data path with this prefix makes."""
    rest = ifname[len(prefix):]
    if not ifname.startswith(prefix) or not rest:
        return False
    if rest.startswith("br") and len(rest) == 10 and _HEX.fullmatch(rest[2:]):
        return True
    if rest.startswith("p") and len(rest) == 10 and _HEX.fullmatch(rest[1:]):
        return True
    return len(rest) == 10 and bool(_HEX.fullmatch(rest))


def short(obj_id: str, n: int = 10) -> str:
    """The hex slice of an id that names its chains and sets in the nft table."""
    return _hex(obj_id, n, "ID")
