"""rtnetlink: links (bridge, veth, vxlan), addresses, routes, neighbours and FDB entries, link
statistics, on one ``AF_NETLINK`` socket per :class:`Netlink`, optionally opened inside a
named network namespace.

The socket belongs to the namespace it was created in, for its whole life: a Netlink for a
netns path is made on a short-lived thread that enters the namespace, creates the socket and
exits (:func:`silo.kernel.netns.call_in_thread`). Requests are serialised by a lock, so one
Netlink may be shared by threads. Kernel errors are translated here, once: EEXIST →
AlreadyExists, ENODEV/ENOENT/ESRCH/EADDRNOTAVAIL → NotFound, EINVAL/ERANGE → InvalidArgument,
the rest → Internal; each names the operation and the object and carries the kernel's
extended-ack sentence when it gave one. Wire encoding lives in :mod:`silo.kernel._rtnl`.

Imports :mod:`silo.errors`, :mod:`silo.kernel._rtnl` and :mod:`silo.kernel.netns`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any, Literal

from silo.errors import (
    AlreadyExists,
    Internal,
    InvalidArgument,
    NotFound,
    SiloError,
    Unavailable,
    invalid,
)
from silo.kernel import _rtnl as r

IFNAMSIZ = 16


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str            # "bridge", "veth", "vxlan", ... ("" for a plain device such as lo)
    mac: str
    mtu: int
    master: int | None   # ifindex of the bridge this port belongs to
    up: bool             # administratively up (IFF_UP)
    operstate: str       # "up", "down", "lowerlayerdown", "unknown", ...
    peer_ifindex: int | None = None   # veth: the peer's ifindex (in its own namespace)
    group: int = 0       # the device group (0: the default one)


@dataclass(frozen=True)
class Address:
    index: int
    ifname: str
    family: int
    cidr: str            # "10.0.0.2/24"
    address: str         # "10.0.0.2"
    prefixlen: int
    scope: int


@dataclass(frozen=True)
class Route:
    family: int
    dst: str             # "default" or a CIDR
    gateway: str | None
    oif: int | None
    metric: int | None
    src: str | None
    table: int
    protocol: int
    scope: int


@dataclass(frozen=True)
class Neighbour:
    family: int
    ifindex: int
    ip: str | None
    mac: str | None
    state: int
    flags: int


@dataclass(frozen=True)
class LinkStats:
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_dropped: int
    tx_dropped: int
    multicast: int
    collisions: int


# -- argument checks: each names the field and changes nothing ---------------------------------

def check_ifname(name: object, field: str = "name", op: str = "") -> str:
    if not isinstance(name, str) or not name:
        raise invalid(field, f"must be a non-empty interface name, got {name!r}", op=op)
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        raise invalid(field, f"{name!r} is longer than {IFNAMSIZ - 1} bytes", op=op, obj=name)
    if name in (".", "..") or any(c in name for c in "/: \t\n\0"):
        raise invalid(field, f"{name!r} is not a valid interface name", op=op, obj=name)
    return name


_HAS_IPV6 = os.path.isdir("/proc/sys/net/ipv6")


def _bridge_data(op: str, mcast_snooping: bool | None) -> bytes:
    if mcast_snooping is None:
        return b""
    if not isinstance(mcast_snooping, bool):
        raise invalid("mcast_snooping", f"must be true or false, got {mcast_snooping!r}",
                      op=op)
    return r.attr_u8(r.IFLA_BR_MCAST_SNOOPING, int(mcast_snooping))


def _mac(mac: str, field: str, op: str) -> bytes:
    raw = r.parse_mac(mac) if isinstance(mac, str) else None
    if raw is None:
        raise invalid(field, f"{mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)", op=op)
    return raw


def _mtu(mtu: object, op: str) -> int:
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
        raise invalid("mtu", f"must be an integer in 68..65535, got {mtu!r}", op=op)
    return mtu


def _iface(cidr: object, field: str, op: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if not isinstance(cidr, str) or "/" not in cidr:
        raise invalid(field, f"{cidr!r} is not an address with a prefix length (10.0.0.2/24)",
                      op=op)
    try:
        return ipaddress.ip_interface(cidr)
    except ValueError as err:
        raise invalid(field, f"{cidr!r}: {err}", op=op) from err


def _ip(ip: object, field: str, op: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(ip, str):
        raise invalid(field, f"{ip!r} is not an IP address", op=op)
    try:
        return ipaddress.ip_address(ip)
    except ValueError as err:
        raise invalid(field, f"{ip!r} is not an IP address", op=op) from err


def _network(dst: object, op: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if dst == "default":
        return None
    if not isinstance(dst, str):
        raise invalid("dst", f"{dst!r} is neither 'default' nor a CIDR", op=op)
    try:
        return ipaddress.ip_network(dst, strict=True)
    except ValueError as err:
        raise invalid("dst", f"{dst!r}: {err}", op=op) from err


def _u32(value: object, field: str, op: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise invalid(field, f"must be an integer in 0..4294967295, got {value!r}", op=op)
    return value


def _family_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return r.AF_INET if ip.version == 4 else r.AF_INET6


def translate(err: OSError | int, op: str, obj: str, detail: str = "") -> SiloError:
    """The one place a kernel errno becomes a silo error (the OSError kept as the cause by the
    caller's ``raise ... from``)."""
    code = err if isinstance(err, int) else (err.errno or 0)
    text = os.strerror(code) + (f" ({detail})" if detail else "")
    if code == errno.EEXIST:
        return AlreadyExists(f"{obj}: already exists: {text}", op=op, obj=obj)
    if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL):
        return NotFound(f"{obj}: not found: {text}", op=op, obj=obj)
    if code in (errno.EINVAL, errno.ERANGE, errno.EAFNOSUPPORT, errno.EOPNOTSUPP,
                errno.ENETUNREACH, errno.ELOOP):
        return InvalidArgument(f"{obj}: refused by the kernel: {text}", op=op, obj=obj)
    if code in (errno.EBUSY, errno.EAGAIN):
        return Unavailable(f"{obj}: {text}", op=op, obj=obj)
    return Internal(f"{obj}: {text}", op=op, obj=obj)


def _netns_fd(netns: str | int, field: str, op: str) -> tuple[int, bool]:
    """(fd, whether we opened it) for a namespace given as a path or an fd."""
    if isinstance(netns, bool) or not isinstance(netns, (str, int)):
        raise invalid(field, f"must be a netns path or fd, got {netns!r}", op=op)
    if isinstance(netns, int):
        if netns < 0:
            raise invalid(field, f"must be a netns path or fd, got {netns!r}", op=op)
        return netns, False
    from silo.kernel import netns as ns

    return ns.open_fd(netns), True


class Netlink:
    """One rtnetlink socket (in the namespace at ``netns``, or the caller's); a context
    manager. Methods raise silo errors only."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._lock = threading.Lock()
        self._seq = 0
        if netns is None:
            self._sock = self._open()
        else:
            from silo.kernel import netns as ns

            self._sock = ns.call_in_thread(netns, self._open)
        self._names: dict[int, str] = {}

    @classmethod
    def from_socket(cls, sock: socket.socket) -> Netlink:
        """A Netlink over a socket made elsewhere (a test's recording double, or an rtnetlink
        socket received from another process)."""
        self = cls.__new__(cls)
        self.netns = None
        self._lock = threading.Lock()
        self._seq = 0
        self._sock = sock
        self._names = {}
        return self

    @staticmethod
    def _open() -> socket.socket:
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                              r.NETLINK_ROUTE)
        except OSError as err:
            raise Internal(f"netlink socket: {err.strerror}", op="netlink::open") from err
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((0, 0))
            for opt in (r.NETLINK_EXT_ACK, r.NETLINK_CAP_ACK):
                try:
                    s.setsockopt(r.SOL_NETLINK, opt, 1)
                except OSError:
                    pass  # older kernels: plain errno without the kernel's sentence
        except OSError as err:
            s.close()
            raise Internal(f"netlink socket: {err.strerror}", op="netlink::open") from err
        return s

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the exchange ---------------------------------------------------------------------------

    def dump(self, kind: int, head: struct.Struct, body: bytes, *, op: str, obj: str = "",
             index_at: int | None = None, want: int | None = None,
             ) -> list[tuple[tuple[Any, ...], dict[int, bytes]]]:
        """A ``RTM_GET*`` dump: each answer's fixed header (``head`` unpacked) and attributes.
        With ``want``, only the answers whose header field ``index_at`` (an ifindex) is it."""
        out = []
        for rkind, data in self.request(kind, r.NLM_F_DUMP, body, op=op, obj=obj):
            if rkind != kind - 2:              # RTM_GETx is answered by RTM_NEWx
                continue
            fields = head.unpack_from(data)
            if want is not None and index_at is not None and fields[index_at] != want:
                continue
            out.append((fields, r.parse_attrs(data, head.size)))
        return out

    def request(self, kind: int, flags: int, body: bytes, *, op: str,
                obj: str) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, body) of each reply message (a dump's entries,
        or an answer to a GET); raise the translated error on NLMSG_ERROR. Other kernel
        modules (tc) speak rtnetlink through this. A dump the kernel marks as interrupted
        (the table changed while it was read) is read again."""
        for _ in range(5):
            out, interrupted = self._exchange(kind, flags, body, op=op, obj=obj)
            if not interrupted:
                break
        return out

    def _exchange(self, kind: int, flags: int, body: bytes, *, op: str,
                  obj: str) -> tuple[list[tuple[int, bytes]], bool]:
        interrupted = False
        with self._lock:
            self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
            seq = self._seq
            msg = r.message(kind, flags, seq, body)
            try:
                self._sock.send(msg)
            except OSError as err:
                raise translate(err, op, obj) from err
            out: list[tuple[int, bytes]] = []
            dump = bool(flags & r.NLM_F_DUMP) and kind % 4 == 2  # RTM_GET* with DUMP
            while True:
                try:
                    buf, _anc, msg_flags, _addr = self._sock.recvmsg(1 << 16)
                except OSError as err:
                    raise translate(err, op, obj) from err
                if msg_flags & socket.MSG_TRUNC:
                    # The kernel sizes a dump's datagrams to the reader's buffer (<= 32 KiB);
                    # only a single huge message could overflow 64 KiB.
                    raise Internal(f"{obj}: a netlink reply did not fit in 64 KiB", op=op,
                                   obj=obj)
                for mkind, mflags, mseq, mbody in r.split_messages(buf):
                    if mseq != seq:
                        continue  # a late answer to an earlier, abandoned request
                    interrupted |= bool(mflags & r.NLM_F_DUMP_INTR)
                    if mkind == r.NLMSG_ERROR:
                        code, text = r.parse_error(mbody, mflags)
                        if code:
                            raise translate(code, op, obj, text) from OSError(code, text)
                        return out, interrupted
                    if mkind == r.NLMSG_DONE:
                        return out, interrupted
                    out.append((mkind, mbody))
                    if not dump and not mflags & r.NLM_F_MULTI and not flags & r.NLM_F_ACK:
                        return out, interrupted

    def _do(self, kind: int, body: bytes, *, op: str, obj: str, create: bool = False,
            replace: bool = False, append: bool = False) -> None:
        flags = r.NLM_F_ACK
        if create:
            flags |= r.NLM_F_CREATE | (r.NLM_F_REPLACE if replace else
                                        r.NLM_F_APPEND if append else r.NLM_F_EXCL)
        self.request(kind, flags, body, op=op, obj=obj)

    # -- links ----------------------------------------------------------------------------------

    def _parse_link(self, body: bytes) -> Link:
        _family, _type, index, flags, _change = r.IFINFOMSG.unpack_from(body)
        a = r.parse_attrs(body, r.IFINFOMSG.size)
        info = r.parse_attrs(a.get(r.IFLA_LINKINFO, b""))
        kind = r.get_str(info, r.IFLA_INFO_KIND) or ""
        oper = r.get_u8(a, r.IFLA_OPERSTATE)
        name = r.get_str(a, r.IFLA_IFNAME) or ""
        self._names[index] = name
        return Link(
            index=index,
            name=name,
            kind=kind,
            mac=r.format_mac(a.get(r.IFLA_ADDRESS, b"")),
            mtu=r.get_u32(a, r.IFLA_MTU) or 0,
            master=r.get_u32(a, r.IFLA_MASTER) or None,
            up=bool(flags & r.IFF_UP),
            operstate=r.OPERSTATES[oper] if oper is not None and oper < len(r.OPERSTATES)
            else "unknown",
            peer_ifindex=r.get_u32(a, r.IFLA_LINK) if kind == "veth" else None,
            group=r.get_u32(a, r.IFLA_GROUP) or 0,
        )

    def link(self, name: str) -> Link | None:
        """The link called ``name``, or None."""
        op = "netlink::link"
        check_ifname(name, op=op)
        body = r.ifinfomsg() + r.attr_str(r.IFLA_IFNAME, name) + \
            r.attr_u32(r.IFLA_EXT_MASK, r.RTEXT_FILTER_SKIP_STATS)
        try:
            replies = self.request(r.RTM_GETLINK, 0, body, op=op, obj=name)
        except NotFound:
            return None
        return self._parse_link(replies[0][1]) if replies else None

    def _index(self, name: str, op: str, field: str = "name") -> int:
        check_ifname(name, field, op)
        found = self.link(name)
        if found is None:
            raise NotFound(f"{field} {name!r}: no such interface", op=op, obj=name)
        return found.index

    def links(self) -> list[Link]:
        body = r.ifinfomsg() + r.attr_u32(r.IFLA_EXT_MASK, r.RTEXT_FILTER_SKIP_STATS)
        replies = self.request(r.RTM_GETLINK, r.NLM_F_DUMP, body, op="netlink::links", obj="")
        return [self._parse_link(b) for k, b in replies if k == r.RTM_NEWLINK]

    def _new_link(self, name: str, kind: str, op: str, *, mtu: int | None, mac: str | None,
                  data: bytes = b"", extra: bytes = b"") -> None:
        check_ifname(name, op=op)
        attrs = [r.attr_str(r.IFLA_IFNAME, name)]
        if mtu is not None:
            attrs.append(r.attr_u32(r.IFLA_MTU, _mtu(mtu, op)))
        if mac is not None:
            attrs.append(r.attr(r.IFLA_ADDRESS, _mac(mac, "mac", op)))
        info = [r.attr_str(r.IFLA_INFO_KIND, kind)]
        if data:
            info.append(r.attr(r.IFLA_INFO_DATA, data))
        attrs.append(r.nested(r.IFLA_LINKINFO, *info))
        self._do(r.RTM_NEWLINK, r.ifinfomsg() + b"".join(attrs) + extra, op=op, obj=name,
                 create=True)

    def add_bridge(self, name: str, *, mtu: int | None = None, mac: str | None = None,
                   mcast_snooping: bool | None = None) -> None:
        """``mcast_snooping`` False: multicast goes to every port, and adding a port does not
        rescan every other port's multicast state (the kernel's default is on)."""
        self._new_link(name, "bridge", "netlink::add_bridge", mtu=mtu, mac=mac,
                       data=_bridge_data("netlink::add_bridge", mcast_snooping))

    def set_bridge(self, name: str, *, mcast_snooping: bool | None = None) -> None:
        """Options of an existing bridge (see :meth:`add_bridge`)."""
        op = "netlink::set_bridge"
        check_ifname(name, op=op)
        info = r.nested(r.IFLA_LINKINFO, r.attr_str(r.IFLA_INFO_KIND, "bridge"),
                        r.attr(r.IFLA_INFO_DATA, _bridge_data(op, mcast_snooping)))
        self._do(r.RTM_NEWLINK, r.ifinfomsg() + r.attr_str(r.IFLA_IFNAME, name) + info,
                 op=op, obj=name)

    def add_veth(self, name: str, peer: str, *, peer_netns: str | int | None = None,
                 mtu: int | None = None, mac: str | None = None,
                 peer_mac: str | None = None) -> None:
        """A veth pair ``name`` (here) and ``peer`` (here, or created directly inside
        ``peer_netns``, a path or an fd: it never appears in this namespace)."""
        op = "netlink::add_veth"
        check_ifname(name, op=op)
        check_ifname(peer, "peer", op)
        if peer == name and peer_netns is None:
            raise invalid("peer", f"must differ from name {name!r}", op=op, obj=name)
        pattrs = [r.attr_str(r.IFLA_IFNAME, peer)]
        if mtu is not None:
            pattrs.append(r.attr_u32(r.IFLA_MTU, _mtu(mtu, op)))
        if peer_mac is not None:
            pattrs.append(r.attr(r.IFLA_ADDRESS, _mac(peer_mac, "peer_mac", op)))
        if mac is not None:
            _mac(mac, "mac", op)
        fd, opened = (-1, False)
        if peer_netns is not None:
            fd, opened = _netns_fd(peer_netns, "peer_netns", op)
            pattrs.append(r.attr_u32(r.IFLA_NET_NS_FD, fd))
        try:
            data = r.attr(r.VETH_INFO_PEER, r.ifinfomsg() + b"".join(pattrs))
            self._new_link(name, "veth", op, mtu=mtu, mac=mac, data=data)
        finally:
            if opened:
                os.close(fd)

    def add_vxlan(self, name: str, *, vni: int, port: int = 4789, local: str | None = None,
                  dev: str | None = None, learning: bool = False,
                  mtu: int | None = None, mac: str | None = None) -> None:
        op = "netlink::add_vxlan"
        check_ifname(name, op=op)
        if not isinstance(vni, int) or isinstance(vni, bool) or not 0 <= vni < 1 << 24:
            raise invalid("vni", f"must be an integer in 0..16777215, got {vni!r}", op=op,
                          obj=name)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise invalid("port", f"must be an integer in 1..65535, got {port!r}", op=op,
                          obj=name)
        data = [r.attr_u32(r.IFLA_VXLAN_ID, vni), r.attr_be16(r.IFLA_VXLAN_PORT, port),
                r.attr_u8(r.IFLA_VXLAN_LEARNING, 1 if learning else 0)]
        if local is not None:
            ip = _ip(local, "local", op)
            data.append(r.attr(r.IFLA_VXLAN_LOCAL if ip.version == 4 else r.IFLA_VXLAN_LOCAL6,
                               ip.packed))
        if dev is not None:
            data.append(r.attr_u32(r.IFLA_VXLAN_LINK, self._index(dev, op, "dev")))
        self._new_link(name, "vxlan", op, mtu=mtu, mac=mac, data=b"".join(data))

    def set_link(self, name: str, *, up: bool | None = None,
                 master: str | Literal[False] | None = None, mtu: int | None = None,
                 mac: str | None = None, netns: str | int | None = None,
                 rename: str | None = None, group: int | None = None,
                 link_local6: bool | None = None) -> None:
        """Change what is given: ``up``; ``master`` a bridge name, or False to leave it;
        ``mtu``; ``mac``; ``netns`` (path or fd: the link moves there, and the other changes
        apply to it there); ``rename``; ``group`` (device group, see :meth:`delete_group`);
        ``link_local6`` False: no IPv6 link-local address (nor its duplicate detection,
        listener reports and router solicitations) when it goes up; the kernel applies ``up``
        first, so a link that should never have one gets this in a message before its first
        ``up``. Ignored on a kernel without IPv6. One message, so the kernel applies it
        whole or not."""
        op = "netlink::set_link"
        check_ifname(name, op=op)
        attrs = []
        if link_local6 is not None and _HAS_IPV6:
            mode = r.IN6_ADDR_GEN_MODE_EUI64 if link_local6 else r.IN6_ADDR_GEN_MODE_NONE
            attrs.append(r.nested(r.IFLA_AF_SPEC, r.nested(
                r.AF_INET6, r.attr_u8(r.IFLA_INET6_ADDR_GEN_MODE, mode))))
        if group is not None:
            attrs.append(r.attr_u32(r.IFLA_GROUP, _u32(group, "group", op)))
        if mtu is not None:
            attrs.append(r.attr_u32(r.IFLA_MTU, _mtu(mtu, op)))
        if mac is not None:
            attrs.append(r.attr(r.IFLA_ADDRESS, _mac(mac, "mac", op)))
        if rename is not None:
            attrs.append(r.attr_str(r.IFLA_IFNAME, check_ifname(rename, "rename", op)))
        if master is False:
            attrs.append(r.attr_u32(r.IFLA_MASTER, 0))
        elif master is not None:
            attrs.append(r.attr_u32(r.IFLA_MASTER, self._index(master, op, "master")))
        if up is not None and not isinstance(up, bool):
            raise invalid("up", f"must be true or false, got {up!r}", op=op, obj=name)
        # Found by name in the message itself, except for a rename (IFLA_IFNAME is then the
        # new name): one round trip fewer.
        index = 0
        if rename is not None:
            index = self._index(name, op)
        else:
            attrs.append(r.attr_str(r.IFLA_IFNAME, name))
        fd, opened = (-1, False)
        if netns is not None:
            fd, opened = _netns_fd(netns, "netns", op)
            attrs.append(r.attr_u32(r.IFLA_NET_NS_FD, fd))
        try:
            head = r.ifinfomsg(index, flags=r.IFF_UP if up else 0,
                               change=r.IFF_UP if up is not None else 0)
            self._do(r.RTM_NEWLINK, head + b"".join(attrs), op=op, obj=name)
        finally:
            if opened:
                os.close(fd)

    def set_bridge_port(self, name: str, *, hairpin: bool | None = None,
                        learning: bool | None = None, unicast_flood: bool | None = None,
                        isolated: bool | None = None) -> None:
        """Options of ``name`` as a port of its bridge: ``hairpin`` (a frame may leave by the
        port it came in: a container reaching its own published port through the host),
        ``learning`` (source MACs learnt), ``unicast_flood`` (unknown unicast flooded to it),
        ``isolated`` (no traffic to other isolated ports). InvalidArgument if it is not a
        bridge port."""
        op = "netlink::set_bridge_port"
        check_ifname(name, op=op)
        opts = []
        for attr, value, field in ((r.IFLA_BRPORT_MODE, hairpin, "hairpin"),
                                   (r.IFLA_BRPORT_LEARNING, learning, "learning"),
                                   (r.IFLA_BRPORT_UNICAST_FLOOD, unicast_flood,
                                    "unicast_flood"),
                                   (r.IFLA_BRPORT_ISOLATED, isolated, "isolated")):
            if value is None:
                continue
            if not isinstance(value, bool):
                raise invalid(field, f"must be true or false, got {value!r}", op=op, obj=name)
            opts.append(r.attr_u8(attr, 1 if value else 0))
        if not opts:
            return
        info = r.nested(r.IFLA_LINKINFO, r.attr_str(r.IFLA_INFO_SLAVE_KIND, "bridge"),
                        r.attr(r.IFLA_INFO_SLAVE_DATA, b"".join(opts)))
        self._do(r.RTM_NEWLINK, r.ifinfomsg() + r.attr_str(r.IFLA_IFNAME, name) + info, op=op,
                 obj=name)

    def delete_link(self, name: str) -> None:
        """Delete ``name`` (a veth takes its peer with it). NotFound if absent."""
        op = "netlink::delete_link"
        check_ifname(name, op=op)
        self._do(r.RTM_DELLINK, r.ifinfomsg() + r.attr_str(r.IFLA_IFNAME, name), op=op,
                 obj=name)

    def delete_group(self, group: int) -> None:
        """Delete every link in device ``group`` (not 0, the group of every other device) in
        one kernel batch. Deleting a link waits for an RCU barrier (~17 ms on this kind of
        VM); a batch pays it once: put links to be removed in a group with
        ``set_link(group=)`` and reap them together, off the hot path."""
        op = "netlink::delete_group"
        g = _u32(group, "group", op)
        if g == 0:
            raise invalid("group", "0 is the default group of every device", op=op)
        self._do(r.RTM_DELLINK, r.ifinfomsg() + r.attr_u32(r.IFLA_GROUP, g), op=op,
                 obj=f"group {g}")

    def ensure_link_deleted(self, name: str) -> None:
        try:
            self.delete_link(name)
        except NotFound:
            pass

    def stats(self, name: str) -> LinkStats:
        op = "netlink::stats"
        check_ifname(name, op=op)
        body = r.ifinfomsg() + r.attr_str(r.IFLA_IFNAME, name)
        replies = self.request(r.RTM_GETLINK, 0, body, op=op, obj=name)
        if not replies:
            raise NotFound(f"{name}: no such interface", op=op, obj=name)
        a = r.parse_attrs(replies[0][1], r.IFINFOMSG.size)
        raw = a.get(r.IFLA_STATS64, b"")
        if len(raw) < r.STATS64.size:
            raise Internal(f"{name}: the kernel sent no 64-bit statistics", op=op, obj=name)
        return LinkStats(*r.STATS64.unpack_from(raw))

    # -- addresses ------------------------------------------------------------------------------

    def _addr_body(self, name: str, cidr: str, op: str, *, nodad: bool) -> bytes:
        iface = _iface(cidr, "cidr", op)
        index = self._index(name, op)
        family = r.AF_INET if iface.version == 4 else r.AF_INET6
        packed = iface.ip.packed
        attrs = [r.attr(r.IFA_LOCAL, packed), r.attr(r.IFA_ADDRESS, packed)]
        if iface.version == 4 and iface.network.prefixlen < 31:
            attrs.append(r.attr(r.IFA_BROADCAST, iface.network.broadcast_address.packed))
        flags = r.IFA_F_NODAD if nodad and iface.version == 6 else 0
        if flags:
            attrs.append(r.attr_u32(r.IFA_FLAGS, flags))
        return r.IFADDRMSG.pack(family, iface.network.prefixlen, flags & 0xFF, 0, index) + \
            b"".join(attrs)

    def add_address(self, name: str, cidr: str, *, nodad: bool = True) -> None:
        """Add ``cidr`` (v4 or v6) to ``name``. IPv6 addresses skip duplicate address
        detection by default (``nodad``): the address is usable at once, as an endpoint's
        IPAM-assigned address must be."""
        op = "netlink::add_address"
        self._do(r.RTM_NEWADDR, self._addr_body(name, cidr, op, nodad=nodad), op=op,
                 obj=f"{name} {cidr}", create=True)

    def delete_address(self, name: str, cidr: str) -> None:
        op = "netlink::delete_address"
        self._do(r.RTM_DELADDR, self._addr_body(name, cidr, op, nodad=False), op=op,
                 obj=f"{name} {cidr}")

    def addresses(self, name: str | None = None, family: int = 0) -> list[Address]:
        op = "netlink::addresses"
        want = self._index(name, op) if name is not None else None
        out = []
        for (fam, plen, _flags, scope, index), a in self.dump(
                r.RTM_GETADDR, r.IFADDRMSG, r.IFADDRMSG.pack(family, 0, 0, 0, 0), op=op,
                obj=name or "", index_at=4, want=want):
            raw = a.get(r.IFA_LOCAL) or a.get(r.IFA_ADDRESS)
            if raw is None or fam not in (r.AF_INET, r.AF_INET6):
                continue
            ip = str(ipaddress.ip_address(raw))
            out.append(Address(index, self._name_of(index), fam, f"{ip}/{plen}", ip, plen,
                               scope))
        return out

    def _name_of(self, index: int) -> str:
        if index not in self._names:
            for _ in self.links():
                pass
        return self._names.get(index, "")

    # -- routes ---------------------------------------------------------------------------------

    def _route_body(self, dst: str, op: str, *, via: str | None, dev: str | None,
                    metric: int | None, src: str | None, table: int | None,
                    deleting: bool) -> tuple[bytes, str]:
        net = _network(dst, op)
        gw = _ip(via, "via", op) if via is not None else None
        psrc = _ip(src, "src", op) if src is not None else None
        versions = {x.version for x in (net, gw, psrc) if x is not None}
        if len(versions) > 1:
            raise invalid("via" if gw else "src", "mixes IPv4 and IPv6", op=op, obj=dst)
        version = versions.pop() if versions else 4
        family = r.AF_INET if version == 4 else r.AF_INET6
        if gw is None and dev is None and not deleting:
            raise invalid("via", "a route needs a gateway (via) or a device (dev)", op=op,
                          obj=dst)
        tbl = r.RT_TABLE_MAIN if table is None else _u32(table, "table", op)
        if deleting:
            scope = r.RT_SCOPE_NOWHERE
        elif gw is None and version == 4:
            scope = r.RT_SCOPE_LINK
        else:
            scope = r.RT_SCOPE_UNIVERSE
        dst_len = 0 if net is None else net.prefixlen
        head = r.RTMSG.pack(family, dst_len, 0, 0, tbl if tbl < 256 else r.RT_TABLE_UNSPEC,
                            0 if deleting else r.RTPROT_STATIC, scope,
                            0 if deleting else r.RTN_UNICAST, 0)
        attrs = [r.attr_u32(r.RTA_TABLE, tbl)]
        if net is not None:
            attrs.append(r.attr(r.RTA_DST, net.network_address.packed))
        if gw is not None:
            attrs.append(r.attr(r.RTA_GATEWAY, gw.packed))
        if dev is not None:
            attrs.append(r.attr_u32(r.RTA_OIF, self._index(dev, op, "dev")))
        if metric is not None:
            attrs.append(r.attr_u32(r.RTA_PRIORITY, _u32(metric, "metric", op)))
        if psrc is not None:
            attrs.append(r.attr(r.RTA_PREFSRC, psrc.packed))
        obj = dst + (f" via {via}" if via else "") + (f" dev {dev}" if dev else "")
        return head + b"".join(attrs), obj

    def add_route(self, dst: str, *, via: str | None = None, dev: str | None = None,
                  metric: int | None = None, src: str | None = None,
                  table: int | None = None, replace: bool = False) -> None:
        """A unicast route to ``dst`` ("default" or a CIDR) via a gateway and/or out of a
        device; ``replace`` overwrites one with the same key instead of AlreadyExists."""
        op = "netlink::add_route"
        body, obj = self._route_body(dst, op, via=via, dev=dev, metric=metric, src=src,
                                     table=table, deleting=False)
        self._do(r.RTM_NEWROUTE, body, op=op, obj=obj, create=True, replace=replace)

    def delete_route(self, dst: str, *, via: str | None = None, dev: str | None = None,
                     metric: int | None = None, src: str | None = None,
                     table: int | None = None) -> None:
        op = "netlink::delete_route"
        body, obj = self._route_body(dst, op, via=via, dev=dev, metric=metric, src=src,
                                     table=table, deleting=True)
        self._do(r.RTM_DELROUTE, body, op=op, obj=obj)

    def routes(self, family: int = 0, *, table: int | None = r.RT_TABLE_MAIN) -> list[Route]:
        """The routes of ``table`` (main by default; None for every table)."""
        out = []
        for (fam, dst_len, _sl, _tos, tbl, proto, scope, _rtype, _f), a in self.dump(
                r.RTM_GETROUTE, r.RTMSG, r.RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0),
                op="netlink::routes"):
            tbl = r.get_u32(a, r.RTA_TABLE) or tbl
            if table is not None and tbl != table:
                continue
            if fam not in (r.AF_INET, r.AF_INET6):
                continue
            dst = "default"
            if r.RTA_DST in a:
                dst = f"{ipaddress.ip_address(a[r.RTA_DST])}/{dst_len}"
            gw = a.get(r.RTA_GATEWAY)
            ps = a.get(r.RTA_PREFSRC)
            out.append(Route(fam, dst, str(ipaddress.ip_address(gw)) if gw else None,
                             r.get_u32(a, r.RTA_OIF), r.get_u32(a, r.RTA_PRIORITY),
                             str(ipaddress.ip_address(ps)) if ps else None, tbl, proto, scope))
        return out

    # -- neighbours and FDB ---------------------------------------------------------------------

    def add_neighbour(self, ip: str, mac: str, dev: str, *, permanent: bool = True) -> None:
        """An ARP/ND entry ``ip`` → ``mac`` on ``dev``, replacing one for the same ip."""
        op = "netlink::add_neighbour"
        addr = _ip(ip, "ip", op)
        lladdr = _mac(mac, "mac", op)
        index = self._index(dev, op, "dev")
        state = r.NUD_PERMANENT if permanent else r.NUD_REACHABLE
        body = r.NDMSG.pack(_family_of(addr), index, state, 0, 0) + \
            r.attr(r.NDA_DST, addr.packed) + r.attr(r.NDA_LLADDR, lladdr)
        self._do(r.RTM_NEWNEIGH, body, op=op, obj=f"{ip} dev {dev}", create=True, replace=True)

    def delete_neighbour(self, ip: str, dev: str) -> None:
        op = "netlink::delete_neighbour"
        addr = _ip(ip, "ip", op)
        index = self._index(dev, op, "dev")
        body = r.NDMSG.pack(_family_of(addr), index, 0, 0, 0) + r.attr(r.NDA_DST, addr.packed)
        self._do(r.RTM_DELNEIGH, body, op=op, obj=f"{ip} dev {dev}")

    def neighbours(self, dev: str | None = None, family: int = 0) -> list[Neighbour]:
        """ARP/ND entries (family AF_INET/AF_INET6/0) or FDB entries (family AF_BRIDGE)."""
        op = "netlink::neighbours"
        want = self._index(dev, op, "dev") if dev is not None else None
        out = []
        for (fam, index, state, flags, _type), a in self.dump(
                r.RTM_GETNEIGH, r.NDMSG, r.NDMSG.pack(family, 0, 0, 0, 0), op=op,
                obj=dev or "", index_at=1, want=want):
            dst, ll = a.get(r.NDA_DST), a.get(r.NDA_LLADDR)
            out.append(Neighbour(fam, index,
                                 str(ipaddress.ip_address(dst)) if dst else None,
                                 r.format_mac(ll) if ll else None, state, flags))
        return out

    def _fdb_body(self, mac: str, dev: str, dst: str | None, op: str) -> bytes:
        lladdr = _mac(mac, "mac", op)
        index = self._index(dev, op, "dev")
        body = r.NDMSG.pack(r.AF_BRIDGE, index, r.NUD_PERMANENT | r.NUD_NOARP, r.NTF_SELF, 0)
        body += r.attr(r.NDA_LLADDR, lladdr)
        if dst is not None:
            body += r.attr(r.NDA_DST, _ip(dst, "dst", op).packed)
        return body

    def add_fdb(self, mac: str, dev: str, *, dst: str | None = None,
                append: bool = False) -> None:
        """A forwarding entry on a vxlan (or bridge port) device: frames for ``mac`` go to
        the remote VTEP ``dst``. ``append`` adds another destination for the same MAC (the
        all-zero MAC with several VTEPs floods broadcast to each)."""
        op = "netlink::add_fdb"
        self._do(r.RTM_NEWNEIGH, self._fdb_body(mac, dev, dst, op), op=op,
                 obj=f"{mac} dev {dev}", create=True, replace=not append, append=append)

    def delete_fdb(self, mac: str, dev: str, *, dst: str | None = None) -> None:
        op = "netlink::delete_fdb"
        self._do(r.RTM_DELNEIGH, self._fdb_body(mac, dev, dst, op), op=op,
                 obj=f"{mac} dev {dev}")


__all__ = ["Address", "Link", "LinkStats", "Neighbour", "Netlink", "Route", "check_ifname",
           "translate"]
