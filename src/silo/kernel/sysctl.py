"""Network sysctls, on the host or inside a named network namespace: forwarding, per-interface
``route_localnet`` / ``proxy_arp`` / ``disable_ipv6``, and bridge netfilter.

``/proc/sys/net`` shows the namespace of the thread that opens the file, so a value inside a
namespace is read or written by a short-lived thread that entered it
(:func:`silo.kernel.netns.sysctl_in`). Writing a value that is already there is skipped:
``ensure_*`` calls are cheap to repeat.

Imports :mod:`silo.errors`, :mod:`silo.kernel.netns`, :mod:`silo.kernel.netlink` (the
interface name check).
"""

from __future__ import annotations

from silo.kernel import netns as ns
from silo.kernel.netlink import check_ifname


def _key_of(ifname: str, family: int, leaf: str, op: str) -> str:
    check_ifname(ifname, "ifname", op)
    # sysctl(8)'s convention: a dot inside an interface name is written as a slash.
    return f"net.ipv{family}.conf.{ifname.replace('.', '/')}.{leaf}"


def read(key: str, *, netns: str | None = None) -> str:
    """The value of a sysctl (``net.ipv4.ip_forward``), in ``netns`` if given."""
    if netns is not None:
        return ns.sysctl_get_in(netns, key)
    return ns.read_sysctl_file(ns.sysctl_path(key), key)


def write(key: str, value: str | int, *, netns: str | None = None) -> None:
    """Set a sysctl unless it already holds ``value``."""
    text = str(value)
    if read(key, netns=netns) == text:
        return
    if netns is not None:
        ns.sysctl_in(netns, key, text)
    else:
        ns.write_sysctl_file(ns.sysctl_path(key), key, text)


def _flag(on: bool) -> str:
    return "1" if on else "0"


def ensure_ip_forward(on: bool = True, *, netns: str | None = None) -> None:
    write("net.ipv4.ip_forward", _flag(on), netns=netns)


def ensure_ipv6_forwarding(on: bool = True, *, netns: str | None = None) -> None:
    write("net.ipv6.conf.all.forwarding", _flag(on), netns=netns)


def set_route_localnet(ifname: str, on: bool = True, *, netns: str | None = None) -> None:
    """Let ``ifname`` route 127.0.0.0/8 (a host port mapping reached on localhost)."""
    write(_key_of(ifname, 4, "route_localnet", "sysctl::route_localnet"), _flag(on),
          netns=netns)


def set_proxy_arp(ifname: str, on: bool = True, *, netns: str | None = None) -> None:
    write(_key_of(ifname, 4, "proxy_arp", "sysctl::proxy_arp"), _flag(on), netns=netns)


def set_ipv4_forwarding(ifname: str, on: bool = True, *, netns: str | None = None) -> None:
    write(_key_of(ifname, 4, "forwarding", "sysctl::forwarding"), _flag(on), netns=netns)


def set_disable_ipv6(ifname: str, disabled: bool = True, *, netns: str | None = None) -> None:
    write(_key_of(ifname, 6, "disable_ipv6", "sysctl::disable_ipv6"), _flag(disabled),
          netns=netns)


def set_accept_dad(ifname: str, value: int, *, netns: str | None = None) -> None:
    """0 turns IPv6 duplicate address detection off on ``ifname`` (addresses usable at
    once)."""
    write(_key_of(ifname, 6, "accept_dad", "sysctl::accept_dad"), value, netns=netns)


def ensure_bridge_nf_call(on: bool = True, *, netns: str | None = None) -> None:
    """Bridged IPv4/IPv6 traffic passes the inet hooks (br_netfilter), so one ``inet`` table
    filters what crosses a bridge as well as what is routed."""
    write("net.bridge.bridge-nf-call-iptables", _flag(on), netns=netns)
    write("net.bridge.bridge-nf-call-ip6tables", _flag(on), netns=netns)


__all__ = ["ensure_bridge_nf_call", "ensure_ip_forward", "ensure_ipv6_forwarding", "read",
           "set_accept_dad", "set_disable_ipv6", "set_ipv4_forwarding", "set_proxy_arp",
           "set_route_localnet", "write"]
