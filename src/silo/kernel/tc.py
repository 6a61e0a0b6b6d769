"""Traffic control over rtnetlink, no ``tc`` process: an egress rate limit on an interface as
a root tbf qdisc, and an eBPF classifier on an interface's ingress (a ``clsact`` qdisc with one
direct-action ``bpf`` filter: the network's fast path, ``network/fastpath.py``).

A tbf rate on the host side of an endpoint's veth limits what reaches the container; on the
container side (``netns``), what it sends. The data path polices HNS's QOS policy
(``MaximumOutgoingBandwidthInBytes``) with an nft ``limit`` in the bridge table instead: a
police action on what the host end receives would keep it out of a CAP_NET_ADMIN container's
reach too, but this kernel builds neither ``police`` nor ``matchall``.

The bucket holds 10 ms at the rate (at least ten full-size frames), the queue 50 ms more, so
bursts pass smoothly and the delay stays bounded.

Imports :mod:`silo.errors`, :mod:`silo.kernel._rtnl`, :mod:`silo.kernel.netlink`.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass

from silo.errors import InvalidArgument, NotFound, invalid
from silo.kernel import _rtnl as r
from silo.kernel.netlink import Netlink, check_ifname

ROOT_HANDLE = 0x10000  # 1:0
ETH_P_ALL = 0x0003
MIN_BURST = 10 * 1514
LATENCY_NS = 50_000_000


@dataclass(frozen=True)
class Qdisc:
    ifindex: int
    kind: str
    handle: int
    parent: int
    rate: int | None    # tbf: bytes per second
    burst: int | None   # tbf: bucket size in bytes


def _check_rate(bytes_per_second: object) -> int:
    if not isinstance(bytes_per_second, int) or isinstance(bytes_per_second, bool) \
            or not 1 <= bytes_per_second <= 1 << 40:
        raise invalid("bytes_per_second", f"must be an integer in 1..{1 << 40}, got "
                      f"{bytes_per_second!r}", op="tc::set_egress_rate")
    return bytes_per_second


def burst_for(bytes_per_second: int) -> int:
    return max(bytes_per_second // 100, MIN_BURST)


def set_egress_rate(ifname: str, bytes_per_second: int, *, netns: str | None = None,
                    nl: Netlink | None = None) -> None:
    """Limit what ``ifname`` sends to ``bytes_per_second`` (replacing any root qdisc). Pass an
    open ``nl`` to reuse its socket (then ``netns`` is ignored)."""
    op = "tc::set_egress_rate"
    check_ifname(ifname, "ifname", op)
    rate = _check_rate(bytes_per_second)
    burst = burst_for(rate)
    limit = min(burst + rate * LATENCY_NS // 1_000_000_000, 0xFFFFFFFF)
    with _netlink(nl, netns) as link:
        index = _index(link, ifname, op)
        body = r.TCMSG.pack(0, index, ROOT_HANDLE, r.TC_H_ROOT, 0) + \
            r.attr_str(r.TCA_KIND, "tbf") + r.tbf_options(rate, burst, limit)
        link.request(r.RTM_NEWQDISC, r.NLM_F_ACK | r.NLM_F_CREATE | r.NLM_F_REPLACE, body,
                     op=op, obj=ifname)


def clear_egress_rate(ifname: str, *, netns: str | None = None,
                      nl: Netlink | None = None) -> None:
    """Remove the root qdisc (back to the default); quiet when there is none."""
    op = "tc::clear_egress_rate"
    check_ifname(ifname, "ifname", op)
    with _netlink(nl, netns) as link:
        index = _index(link, ifname, op)
        body = r.TCMSG.pack(0, index, 0, r.TC_H_ROOT, 0)
        try:
            link.request(r.RTM_DELQDISC, r.NLM_F_ACK, body, op=op, obj=ifname)
        except (NotFound, InvalidArgument):
            # ENOENT / EINVAL: nothing of ours at the root (the default qdisc cannot go).
            pass


def qdiscs(ifname: str | None = None, *, netns: str | None = None,
           nl: Netlink | None = None) -> list[Qdisc]:
    op = "tc::qdiscs"
    with _netlink(nl, netns) as link:
        want = _index(link, ifname, op) if ifname is not None else None
        replies = link.dump(r.RTM_GETQDISC, r.TCMSG, r.TCMSG.pack(0, 0, 0, 0, 0), op=op,
                            obj=ifname or "", index_at=1, want=want)
    out = []
    for (_fam, index, handle, parent, _info), a in replies:
        qkind = r.get_str(a, r.TCA_KIND) or ""
        rate = burst = None
        if qkind == "tbf":
            opts = r.parse_attrs(a.get(r.TCA_OPTIONS, b""))
            parms = opts.get(r.TCA_TBF_PARMS)
            if parms and len(parms) >= r.TBF_QOPT.size:
                q = r.TBF_QOPT.unpack_from(parms)
                rate = q[5]
                r64 = opts.get(r.TCA_TBF_RATE64)
                if r64 and len(r64) >= 8:
                    rate = int.from_bytes(r64[:8], "little")
                # The kernel answers with the bucket as time (ticks); bytes = time * rate.
                burst = (q[13] << r.PSCHED_SHIFT) * rate // 1_000_000_000
        out.append(Qdisc(index, qkind, handle, parent, rate, burst))
    return out


def egress_rate(ifname: str, *, netns: str | None = None,
                nl: Netlink | None = None) -> int | None:
    """The tbf rate at the root of ``ifname`` in bytes per second, or None."""
    for q in qdiscs(ifname, netns=netns, nl=nl):
        if q.parent == r.TC_H_ROOT and q.kind == "tbf":
            return q.rate
    return None


def attach_ingress_bpf(ifname: str, prog_fd: int, *, name: str = "silo",
                       netns: str | None = None, nl: Netlink | None = None) -> None:
    """A ``clsact`` qdisc on ``ifname`` and the ``sched_cls`` program ``prog_fd`` (direct
    action) as its only ingress filter, replacing what was there."""
    op = "tc::attach_ingress_bpf"
    check_ifname(ifname, "ifname", op)
    with _netlink(nl, netns) as link:
        index = _index(link, ifname, op)
        clsact = r.TCMSG.pack(0, index, r.CLSACT_HANDLE, r.TC_H_CLSACT, 0)
        with contextlib.suppress(NotFound, InvalidArgument):
            link.request(r.RTM_DELQDISC, r.NLM_F_ACK, clsact, op=op, obj=ifname)
        link.request(r.RTM_NEWQDISC, r.NLM_F_ACK | r.NLM_F_CREATE | r.NLM_F_EXCL,
                     clsact + r.attr_str(r.TCA_KIND, "clsact"), op=op, obj=ifname)
        info = (1 << 16) | socket.htons(ETH_P_ALL)       # priority 1, every protocol
        body = r.TCMSG.pack(0, index, 0, r.TC_H_INGRESS_FILTERS, info) + \
            r.attr_str(r.TCA_KIND, "bpf") + r.nested(
                r.TCA_OPTIONS, r.attr_u32(r.TCA_BPF_FD, prog_fd), r.attr_str(r.TCA_BPF_NAME, name),
                r.attr_u32(r.TCA_BPF_FLAGS, r.TCA_BPF_FLAG_ACT_DIRECT))
        link.request(r.RTM_NEWTFILTER, r.NLM_F_ACK | r.NLM_F_CREATE | r.NLM_F_EXCL, body,
                     op=op, obj=ifname)


def detach_ingress(ifname: str, *, netns: str | None = None, nl: Netlink | None = None) -> None:
    """Remove the ``clsact`` qdisc (and its filters); quiet when there is none or no link."""
    op = "tc::detach_ingress"
    check_ifname(ifname, "ifname", op)
    with _netlink(nl, netns) as link:
        found = link.link(ifname)
        if found is None:
            return
        clsact = r.TCMSG.pack(0, found.index, r.CLSACT_HANDLE, r.TC_H_CLSACT, 0)
        with contextlib.suppress(NotFound, InvalidArgument):
            link.request(r.RTM_DELQDISC, r.NLM_F_ACK, clsact, op=op, obj=ifname)


class _Borrowed:
    """A context manager over a Netlink the caller owns (not closed on exit)."""

    def __init__(self, nl: Netlink) -> None:
        self.nl = nl

    def __enter__(self) -> Netlink:
        return self.nl

    def __exit__(self, *exc: object) -> None:
        pass


def _netlink(nl: Netlink | None, netns: str | None) -> Netlink | _Borrowed:
    return _Borrowed(nl) if nl is not None else Netlink(netns)


def _index(nl: Netlink, ifname: str, op: str) -> int:
    link = nl.link(check_ifname(ifname, "ifname", op))
    if link is None:
        raise NotFound(f"ifname {ifname!r}: no such interface", op=op, obj=ifname)
    return link.index


__all__ = ["Qdisc", "attach_ingress_bpf", "burst_for", "clear_egress_rate", "detach_ingress",
           "egress_rate", "qdiscs", "set_egress_rate"]
