"""Netlink wire format: message headers, attributes (TLVs) and the rtnetlink structs, as bytes.

Pure functions over ``bytes`` with no socket and no kernel state, so they are tested with
golden bytes and no root. :mod:`silo.kernel.netlink` builds requests from these and sends
them. Numbers come from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>,
<linux/if_addr.h>, <linux/neighbour.h> and <linux/pkt_sched.h>. Imports only the stdlib.
"""

from __future__ import annotations

import struct

# -- netlink (linux/netlink.h) ------------------------------------------------------------------
NETLINK_ROUTE = 0
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT, NLM_F_MATCH = 0x100, 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # on NLMSG_ERROR replies
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = ~(0x8000 | 0x4000) & 0xFFFF
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
SOL_NETLINK = 270
NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS = 1, 2

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid

# -- rtnetlink message types ----------------------------------------------------------------------
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38

AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6 = 0, 2, 7, 10

# -- links (linux/if_link.h, linux/if.h) ----------------------------------------------------------
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 2, 3, 4, 5
IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_PID = 10, 16, 18, 19
IFLA_NET_NS_FD, IFLA_EXT_MASK, IFLA_STATS64, IFLA_LINK_NETNSID = 28, 29, 23, 37
IFLA_GROUP, IFLA_AF_SPEC = 27, 26
IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_EUI64, IN6_ADDR_GEN_MODE_NONE = 8, 0, 1
IFLA_BR_MCAST_SNOOPING = 23
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
IFLA_BRPORT_MODE, IFLA_BRPORT_LEARNING, IFLA_BRPORT_UNICAST_FLOOD = 4, 8, 9
IFLA_BRPORT_ISOLATED = 33
VETH_INFO_PEER = 1
IFLA_VXLAN_ID, IFLA_VXLAN_GROUP, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL = 1, 2, 3, 4
IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT, IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6 = 7, 15, 16, 17
RTEXT_FILTER_SKIP_STATS = 1 << 3
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

# struct rtnl_link_stats64: the first 10 of its u64 counters, in kernel order.
STATS64 = struct.Struct("=10Q")
STATS64_FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
                  "rx_dropped", "tx_dropped", "multicast", "collisions")

# -- addresses (linux/if_addr.h) ----------------------------------------------------------------
IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 3, 4, 8
IFA_F_NODAD, IFA_F_PERMANENT = 0x02, 0x80

# -- routes (linux/rtnetlink.h) -----------------------------------------------------------------
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
#                                     type, flags
RTA_DST, RTA_SRC, RTA_IIF, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC = 1, 2, 3, 4, 5, 6, 7
RTA_TABLE = 15
RT_TABLE_UNSPEC, RT_TABLE_MAIN, RT_TABLE_LOCAL = 0, 254, 255
RTPROT_BOOT, RTPROT_STATIC = 3, 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, RT_SCOPE_NOWHERE = 0, 253, 254, 255
RTN_UNICAST = 1

# -- neighbours (linux/neighbour.h) -------------------------------------------------------------
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
NDA_DST, NDA_LLADDR, NDA_MASTER = 1, 2, 9
NUD_REACHABLE, NUD_STALE, NUD_NOARP, NUD_PERMANENT = 0x02, 0x04, 0x40, 0x80
NTF_SELF, NTF_MASTER = 0x02, 0x04

# -- traffic control (linux/rtnetlink.h, linux/pkt_sched.h) ------------------------------------
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
TC_H_ROOT = 0xFFFFFFFF
TC_H_CLSACT, TC_H_INGRESS_FILTERS, CLSACT_HANDLE = 0xFFFFFFF1, 0xFFFFFFF2, 0xFFFF0000
RTM_NEWTFILTER = 44
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT = 6, 7, 8, 1
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST = 1, 4, 6
TC_LINKLAYER_ETHERNET = 1
# struct tc_tbf_qopt: rate and peakrate (struct tc_ratespec: cell_log, linklayer, overhead,
# cell_align, mpu, rate), limit, buffer, mtu.
TBF_QOPT = struct.Struct("=BBHhHI BBHhHI III")
PSCHED_SHIFT = 6  # the kernel's tick: buffer (in ticks) << 6 is nanoseconds


# -- building -----------------------------------------------------------------------------------

def align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute: u16 length (header + payload), u16 type, payload, padding to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (align(length) - length)


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def attr_be16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!H", value))


def attr_str(kind: int, value: str) -> bytes:
    """A NUL-terminated string attribute (interface names, kinds)."""
    return attr(kind, value.encode() + b"\0")


def nested(kind: int, *attrs: bytes) -> bytes:
    """A nest of attributes. Without NLA_F_NESTED, as iproute2 sends them: rtnetlink parses
    its old attributes leniently, and some (VETH_INFO_PEER) are not declared as nests."""
    return attr(kind, b"".join(attrs))


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """A whole netlink message: the 16-byte header and ``body`` (struct + attributes)."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body


def ifinfomsg(index: int = 0, *, family: int = AF_UNSPEC, flags: int = 0,
              change: int = 0) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


# -- parsing ------------------------------------------------------------------------------------

def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """The attributes from ``offset`` on, by type (nested/byte-order flags cleared; the last of
    a repeated type wins). Stops at a truncated attribute instead of reading past the end."""
    out: dict[int, bytes] = {}
    view = memoryview(data)
    end = len(view)
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", view, offset)
        if length < 4 or offset + length > end:
            break
        out[kind & NLA_TYPE_MASK] = bytes(view[offset + 4: offset + length])
        offset += align(length)
    return out


def split_messages(buf: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, body) of each message in one datagram from the kernel."""
    out = []
    offset = 0
    while offset + NLMSGHDR.size <= len(buf):
        length, kind, flags, seq, _pid = NLMSGHDR.unpack_from(buf, offset)
        if length < NLMSGHDR.size or offset + length > len(buf):
            break
        out.append((kind, flags, seq, buf[offset + NLMSGHDR.size: offset + length]))
        offset += align(length)
    return out


def parse_error(body: bytes, flags: int) -> tuple[int, str]:
    """(errno, extended-ack message or "") of an NLMSG_ERROR body; errno 0 is an ACK.

    The body is an int (minus the errno), the request's header (with its payload unless
    NLM_F_CAPPED), then, with NLM_F_ACK_TLVS, attributes of which NLMSGERR_ATTR_MSG is the
    kernel's sentence about what it refused."""
    if len(body) < 4:
        return 0, ""
    (neg,) = struct.unpack_from("=i", body)
    text = ""
    if flags & NLM_F_ACK_TLVS and len(body) >= 4 + NLMSGHDR.size:
        req_len = NLMSGHDR.unpack_from(body, 4)[0]
        start = 4 + (NLMSGHDR.size if flags & NLM_F_CAPPED else align(req_len))
        msg = parse_attrs(body, start).get(NLMSGERR_ATTR_MSG)
        if msg:
            text = msg.rstrip(b"\0").decode(errors="replace")
    return -neg, text


def get_str(attrs: dict[int, bytes], kind: int) -> str | None:
    v = attrs.get(kind)
    return None if v is None else v.split(b"\0", 1)[0].decode(errors="replace")


def get_u32(attrs: dict[int, bytes], kind: int) -> int | None:
    v = attrs.get(kind)
    return None if v is None or len(v) < 4 else int(struct.unpack_from("=I", v)[0])


def get_u8(attrs: dict[int, bytes], kind: int) -> int | None:
    v = attrs.get(kind)
    return None if not v else v[0]


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_mac(mac: str) -> bytes | None:
    """Six bytes from ``aa:bb:cc:dd:ee:ff`` (or ``-`` separated), or None when malformed."""
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        return None


def tbf_options(bytes_per_second: int, burst: int, limit: int) -> bytes:
    """TCA_OPTIONS of a tbf qdisc: rate, bucket size ``burst`` (bytes) and queue ``limit``
    (bytes). The bucket goes to the kernel as the time to send it at ``rate``, in ticks of
    64 ns. Link layer "ethernet" spares the rate table old kernels wanted."""
    rate32 = min(bytes_per_second, 0xFFFFFFFF)
    buffer_ticks = min(burst * 1_000_000_000 // bytes_per_second >> PSCHED_SHIFT, 0xFFFFFFFF)
    parms = TBF_QOPT.pack(0, TC_LINKLAYER_ETHERNET, 0, -1, 0, rate32,
                          0, 0, 0, 0, 0, 0,
                          limit, buffer_ticks, 0)
    out = [attr(TCA_TBF_PARMS, parms), attr_u32(TCA_TBF_BURST, burst)]
    if bytes_per_second > 0xFFFFFFFF - 1:
        out.append(attr(TCA_TBF_RATE64, struct.pack("=Q", bytes_per_second)))
    return nested(TCA_OPTIONS, *out)
