"""silo.kernel netlink encoding without root: golden bytes of attributes and whole requests,
parsing of replies (dumps, ACKs, errors with the kernel's extended ack), errno translation,
and argument checks that refuse bad input before anything is sent. A recording socket stands
in for the kernel."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from silo.errors import AlreadyExists, Internal, InvalidArgument, NotFound
from silo.kernel import _rtnl as r
from silo.kernel.netlink import Netlink, check_ifname, translate
from silo.kernel.netns import sysctl_path
from silo.kernel.nftables import error_from_nft

pytestmark = pytest.mark.unit


Msg = tuple[int, int, bytes]  # type, flags, body


class RecordingSocket:
    """Records what is sent; answers each request with the datagrams the test queued for it,
    stamped with the request's sequence number (plus one stale message of an earlier sequence
    number first, which the code must skip)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.plan: list[list[list[Msg]]] = []  # per request, per datagram, its messages
        self._out: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        seq = struct.unpack_from("=I", data, 8)[0]
        datagrams = self.plan.pop(0) if self.plan else []
        stale = r.NLMSGHDR.pack(36, r.NLMSG_ERROR, 0, seq + 1000, 0) + b"\xea\xff\xff\xff" + \
            b"\0" * 16
        self._out = [stale] + [
            b"".join(r.NLMSGHDR.pack(16 + len(body), kind, flags, seq, 0) + body +
                     b"\0" * (r.align(len(body)) - len(body)) for kind, flags, body in datagram)
            for datagram in datagrams]
        return len(data)

    def recvmsg(self, size: int) -> tuple[bytes, list[object], int, object]:
        assert self._out, "the code read more than the kernel would have sent"
        data = self._out.pop(0)
        return data[:size], [], socket.MSG_TRUNC if len(data) > size else 0, None

    def close(self) -> None:
        self.closed = True


def ack(code: int = 0, message: str = "") -> Msg:
    flags = r.NLM_F_CAPPED
    body = struct.pack("=i", -code) + r.NLMSGHDR.pack(16, 0, 0, 0, 0)
    if message:
        flags |= r.NLM_F_ACK_TLVS
        body += r.attr(r.NLMSGERR_ATTR_MSG, message.encode() + b"\0")
    return r.NLMSG_ERROR, flags, body


def nl_with(*requests: list[list[Msg]]) -> tuple[Netlink, RecordingSocket]:
    """A Netlink over a RecordingSocket that answers the n-th request with ``requests[n]``."""
    sock = RecordingSocket()
    sock.plan = list(requests)
    return Netlink.from_socket(sock), sock  # type: ignore[arg-type]


# -- attributes ---------------------------------------------------------------------------------

def test_attribute_golden_bytes() -> None:
    assert r.attr_str(r.IFLA_IFNAME, "br0") == bytes.fromhex("08000300 62723000")
    assert r.attr_u32(r.IFLA_MTU, 1400) == bytes.fromhex("08000400 78050000")
    assert r.attr(1, b"\x01\x02\x03\x04\x05") == bytes.fromhex("09000100 01020304 05000000")
    assert r.attr_be16(r.IFLA_VXLAN_PORT, 4789) == bytes.fromhex("06000f00 12b50000")
    assert r.nested(r.IFLA_LINKINFO, r.attr_str(r.IFLA_INFO_KIND, "veth")) == \
        bytes.fromhex("10001200 09000100 76657468 00000000")


def test_parse_attrs_round_trip_and_truncation() -> None:
    data = r.attr_str(3, "eth0") + r.attr_u32(4, 9000) + r.attr(1, b"\xaa" * 6)
    a = r.parse_attrs(data)
    assert r.get_str(a, 3) == "eth0" and r.get_u32(a, 4) == 9000 and a[1] == b"\xaa" * 6
    assert r.parse_attrs(data[:-3]) == {3: a[3], 4: a[4]}  # a cut attribute is dropped
    assert r.parse_attrs(b"\x02\x00\x01\x00") == {}  # a length below the header stops
    nested_flag = struct.pack("=HH", 8, 18 | r.NLA_F_NESTED) + b"abcd"
    assert r.parse_attrs(nested_flag) == {18: b"abcd"}


def test_mac() -> None:
    assert r.parse_mac("02:00:AB:cd:00:01") == bytes.fromhex("0200abcd0001")
    assert r.parse_mac("02-00-ab-cd-00-01") == bytes.fromhex("0200abcd0001")
    for bad in ("02:00:ab:cd:00", "02:00:ab:cd:00:zz", "0200abcd0001", "2:0:ab:cd:0:1"):
        assert r.parse_mac(bad) is None
    assert r.format_mac(bytes.fromhex("0200abcd0001")) == "02:00:ab:cd:00:01"


# -- whole requests -------------------------------------------------------------------------------

def test_add_bridge_golden_request() -> None:
    nl, sock = nl_with([[ack()]])
    nl.add_bridge("br0")
    assert sock.sent == [bytes.fromhex(
        "38000000 1000 0506 01000000 00000000"           # len 56, RTM_NEWLINK, REQ|ACK|EXCL|CREATE
        "00000000 00000000 00000000 00000000"            # ifinfomsg
        "08000300 62723000"                              # IFLA_IFNAME "br0"
        "10001200 0b000100 62726964 67650000")]          # IFLA_LINKINFO { KIND "bridge" }


def test_add_veth_puts_the_peer_in_info_data() -> None:
    nl, sock = nl_with([[ack()]])
    nl.add_veth("h0", "eth0", peer_netns=7, mtu=1450)
    body = sock.sent[0][16:]
    a = r.parse_attrs(body, r.IFINFOMSG.size)
    assert r.get_str(a, r.IFLA_IFNAME) == "h0" and r.get_u32(a, r.IFLA_MTU) == 1450
    info = r.parse_attrs(a[r.IFLA_LINKINFO])
    assert r.get_str(info, r.IFLA_INFO_KIND) == "veth"
    peer = r.parse_attrs(info[r.IFLA_INFO_DATA])[r.VETH_INFO_PEER]
    pa = r.parse_attrs(peer, r.IFINFOMSG.size)
    assert r.get_str(pa, r.IFLA_IFNAME) == "eth0"
    assert r.get_u32(pa, r.IFLA_NET_NS_FD) == 7 and r.get_u32(pa, r.IFLA_MTU) == 1450


def test_route_request() -> None:
    link = r.IFINFOMSG.pack(0, 0, 5, 0, 0) + r.attr_str(r.IFLA_IFNAME, "br0")
    nl, sock = nl_with([[(r.RTM_NEWLINK, 0, link)]], [[ack()]])  # dev lookup, then the add
    nl.add_route("10.99.0.0/16", via="10.0.0.1", dev="br0", metric=7)
    body = sock.sent[1][16:]
    fam, dst_len, _s, _t, table, proto, scope, rtype, _f = r.RTMSG.unpack_from(body)
    assert (fam, dst_len, table, proto, scope, rtype) == (r.AF_INET, 16, 254, r.RTPROT_STATIC,
                                                          r.RT_SCOPE_UNIVERSE, r.RTN_UNICAST)
    a = r.parse_attrs(body, r.RTMSG.size)
    assert a[r.RTA_DST] == bytes([10, 99, 0, 0]) and a[r.RTA_GATEWAY] == bytes([10, 0, 0, 1])
    assert r.get_u32(a, r.RTA_OIF) == 5 and r.get_u32(a, r.RTA_PRIORITY) == 7


def test_dump_across_datagrams_skips_stale_answers() -> None:
    def link(i: int, name: str) -> bytes:
        return r.IFINFOMSG.pack(0, 0, i, r.IFF_UP, 0) + r.attr_str(r.IFLA_IFNAME, name) + \
            r.attr_u32(r.IFLA_MTU, 1500)

    nl, sock = nl_with([[(r.RTM_NEWLINK, r.NLM_F_MULTI, link(1, "lo")),
                         (r.RTM_NEWLINK, r.NLM_F_MULTI, link(2, "eth0"))],
                        [(r.NLMSG_DONE, r.NLM_F_MULTI, b"\0\0\0\0")]])
    links = nl.links()
    assert [(x.index, x.name, x.up, x.mtu) for x in links] == [(1, "lo", True, 1500),
                                                               (2, "eth0", True, 1500)]
    hdr = r.NLMSGHDR.unpack_from(sock.sent[0])
    assert hdr[1] == r.RTM_GETLINK and hdr[2] & r.NLM_F_DUMP == r.NLM_F_DUMP


def test_an_interrupted_dump_is_read_again() -> None:
    def link(i: int) -> bytes:
        return r.IFINFOMSG.pack(0, 0, i, 0, 0) + r.attr_str(r.IFLA_IFNAME, f"e{i}")

    multi_intr = r.NLM_F_MULTI | r.NLM_F_DUMP_INTR
    nl, sock = nl_with([[(r.RTM_NEWLINK, multi_intr, link(1))], [(r.NLMSG_DONE, multi_intr,
                                                                   b"\0\0\0\0")]],
                       [[(r.RTM_NEWLINK, r.NLM_F_MULTI, link(1)),
                         (r.RTM_NEWLINK, r.NLM_F_MULTI, link(2)),
                         (r.NLMSG_DONE, r.NLM_F_MULTI, b"\0\0\0\0")]])
    assert [x.name for x in nl.links()] == ["e1", "e2"]
    assert len(sock.sent) == 2


def test_a_truncated_reply_is_an_error_not_a_short_list() -> None:
    huge = r.IFINFOMSG.pack(0, 0, 1, 0, 0) + r.attr(r.IFLA_IFNAME, b"eth0\0") + \
        r.attr(99, b"x" * 40000) + r.attr(98, b"y" * 40000)  # one 80 KB message
    nl, _ = nl_with([[(r.RTM_NEWLINK, r.NLM_F_MULTI, huge)]])
    with pytest.raises(Internal, match="did not fit"):
        nl.links()


def test_kernel_error_carries_the_extended_ack() -> None:
    nl, _ = nl_with([[ack(errno.EEXIST, "A link with that name exists")]])
    with pytest.raises(AlreadyExists) as e:
        nl.add_bridge("br0")
    assert e.value.op == "netlink::add_bridge" and e.value.obj == "br0"
    assert "A link with that name exists" in str(e.value)
    assert isinstance(e.value.__cause__, OSError)


def test_link_absent_is_none() -> None:
    nl, _ = nl_with([[ack(errno.ENODEV)]])
    assert nl.link("nope") is None


@pytest.mark.parametrize(("code", "cls"), [
    (errno.EEXIST, AlreadyExists), (errno.ENODEV, NotFound), (errno.ENOENT, NotFound),
    (errno.ESRCH, NotFound), (errno.EINVAL, InvalidArgument), (errno.ERANGE, InvalidArgument),
    (errno.EPERM, Internal), (errno.ENOBUFS, Internal)])
def test_translate(code: int, cls: type[Exception]) -> None:
    err = translate(code, "netlink::x", "obj0")
    assert isinstance(err, cls) and err.op == "netlink::x" and "obj0" in str(err)


# -- bad input is refused before anything is sent -----------------------------------------------

@pytest.mark.parametrize(("call", "field"), [
    (lambda nl: nl.add_bridge("x" * 16), "name"),
    (lambda nl: nl.add_bridge(""), "name"),
    (lambda nl: nl.add_bridge("a b"), "name"),
    (lambda nl: nl.add_bridge("br0", mtu=0), "mtu"),
    (lambda nl: nl.add_bridge("br0", mac="02:00"), "mac"),
    (lambda nl: nl.add_veth("v0", "v0"), "peer"),
    (lambda nl: nl.add_veth("v0", "v1", peer_netns=-1), "peer_netns"),
    (lambda nl: nl.add_veth("v0", "v1", peer_mac="x"), "peer_mac"),
    (lambda nl: nl.add_vxlan("vx0", vni=-1), "vni"),
    (lambda nl: nl.add_vxlan("vx0", vni=1, port=0), "port"),
    (lambda nl: nl.add_vxlan("vx0", vni=1, local="nope"), "local"),
    (lambda nl: nl.add_address("eth0", "10.0.0.1"), "cidr"),
    (lambda nl: nl.add_address("eth0", "10.0.0.256/24"), "cidr"),
    (lambda nl: nl.add_route("10.0.0.0/33", dev="eth0"), "dst"),
    (lambda nl: nl.add_route("10.0.0.5/24", dev="eth0"), "dst"),
    (lambda nl: nl.add_route("10.0.0.0/24"), "via"),
    (lambda nl: nl.add_route("10.0.0.0/24", via="fd00::1"), "via"),
    (lambda nl: nl.add_route("10.0.0.0/24", via="10.0.0.1", metric=-1), "metric"),
    (lambda nl: nl.add_neighbour("10.0.0.1", "zz", "eth0"), "mac"),
    (lambda nl: nl.add_neighbour("10.0.0.x", "02:00:00:00:00:01", "eth0"), "ip"),
    (lambda nl: nl.set_link("eth0", rename="x" * 20), "rename"),
    (lambda nl: nl.set_link("eth0", up=1), "up"),
])
def test_bad_input_sends_nothing(call: object, field: str) -> None:
    nl, sock = nl_with()
    with pytest.raises(InvalidArgument) as e:
        call(nl)  # type: ignore[operator]
    assert e.value.field == field
    assert sock.sent == []


def test_check_ifname() -> None:
    assert check_ifname("eth0.100") == "eth0.100"
    for bad in ("..", ".", "a/b", "a:b", "x" * 16, ""):
        with pytest.raises(InvalidArgument):
            check_ifname(bad)


# -- tbf, sysctl paths, nft errors ----------------------------------------------------------------

def test_tbf_options() -> None:
    opts = r.parse_attrs(r.tbf_options(125_000, 15_140, 21_390))
    inner = r.parse_attrs(opts[r.TCA_OPTIONS])
    q = r.TBF_QOPT.unpack(inner[r.TCA_TBF_PARMS])
    rate, limit, buffer = q[5], q[12], q[13]
    assert (q[1], rate, limit) == (r.TC_LINKLAYER_ETHERNET, 125_000, 21_390)
    assert buffer == 15_140 * 1_000_000_000 // 125_000 >> 6  # 121.12 ms in 64 ns ticks
    assert r.get_u32(inner, r.TCA_TBF_BURST) == 15_140
    assert r.TCA_TBF_RATE64 not in inner
    big = r.parse_attrs(r.parse_attrs(r.tbf_options(10**10, 10**6, 10**7))[r.TCA_OPTIONS])
    assert struct.unpack("=Q", big[r.TCA_TBF_RATE64])[0] == 10**10


def test_sysctl_path() -> None:
    assert sysctl_path("net.ipv4.ip_forward") == "/proc/sys/net/ipv4/ip_forward"
    assert sysctl_path("net.ipv4.conf.eth0/100.proxy_arp") == \
        "/proc/sys/net/ipv4/conf/eth0.100/proxy_arp"
    for bad in ("", "net..x", "net.ipv4.conf.../x", "net.ipv4.conf.x/../y"):
        with pytest.raises(InvalidArgument):
            sysctl_path(bad)


def test_error_from_nft_names_the_line() -> None:
    script = "add table inet t\nadd chain inet t c\nadd rule inet t c frob\n"
    text = ("/proc/self/fd/3:3:19-22: Error: syntax error, unexpected string\n"
            "add rule inet t c frob\n                  ^^^^\n")
    err = error_from_nft(text, script, op="nft::apply")
    assert isinstance(err, InvalidArgument) and err.field == "script"
    assert str(err).startswith("line 3: add rule inet t c frob: syntax error")
    missing = error_from_nft("/dev/stdin:1:1-6: Error: No such file or directory\n",
                             "delete table inet x\n", op="nft::apply")
    assert isinstance(missing, NotFound)
    exists = error_from_nft("Error: Could not process rule: File exists\n", "x", op="o")
    assert isinstance(exists, AlreadyExists)
    assert isinstance(error_from_nft("", "x", op="o"), InvalidArgument)
