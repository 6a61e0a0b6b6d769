"""silo.kernel.tc against the running kernel, in fresh namespaces: a tbf rate limit that
``tc qdisc show`` sees, replaced, read back, cleared, and refused on bad input."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from silo.errors import InvalidArgument, NotFound
from silo.kernel import tc
from silo.kernel.netlink import Netlink
from tests import probes
from tests.kernel.netfixtures import requires_netns

pytestmark = [pytest.mark.kernel, requires_netns]


def tc_show(path: str, dev: str) -> str:
    if reason := probes.need_all(probes.need_binary("tc"), probes.need_binary("nsenter")):
        pytest.skip(reason)
    return subprocess.run(["nsenter", f"--net={path}", "tc", "qdisc", "show", "dev", dev],
                          check=True, capture_output=True, text=True).stdout


def test_egress_rate_set_replace_clear(netns_factory: Callable[[], str]) -> None:
    a, b = netns_factory(), netns_factory()
    with Netlink(a) as nl:
        nl.add_veth("h0", "eth0", peer_netns=b)
    tc.set_egress_rate("h0", 1_000_000, netns=a)  # 8 Mbit/s
    shown = tc_show(a, "h0")
    assert "qdisc tbf 1: root" in shown and "rate 8Mbit" in shown
    assert tc.egress_rate("h0", netns=a) == 1_000_000
    q = next(q for q in tc.qdiscs("h0", netns=a) if q.kind == "tbf")
    assert abs((q.burst or 0) - tc.burst_for(1_000_000)) <= 64  # tick rounding
    tc.set_egress_rate("h0", 125_000, netns=a)  # replaces: 1 Mbit/s
    assert "rate 1Mbit" in tc_show(a, "h0")
    # The container side, in the other namespace, with a caller's socket.
    with Netlink(b) as nb:
        tc.set_egress_rate("eth0", 12_500_000, nl=nb)
        assert tc.egress_rate("eth0", nl=nb) == 12_500_000
    assert "rate 100Mbit" in tc_show(b, "eth0")
    tc.clear_egress_rate("h0", netns=a)
    assert "tbf" not in tc_show(a, "h0")
    assert tc.egress_rate("h0", netns=a) is None
    tc.clear_egress_rate("h0", netns=a)  # quiet when nothing is set


def test_rate_above_32_bits(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0")
        tc.set_egress_rate("br0", 10_000_000_000, nl=nl)  # 80 Gbit/s: needs the 64-bit rate
        assert tc.egress_rate("br0", nl=nl) == 10_000_000_000
    assert "rate 80Gbit" in tc_show(netns_path, "br0")


def test_bad_input(netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_bridge("br0")
        for bad in (0, -5, True, 1.5, 1 << 41):
            with pytest.raises(InvalidArgument) as e:
                tc.set_egress_rate("br0", bad, nl=nl)  # type: ignore[arg-type]
            assert e.value.field == "bytes_per_second"
        with pytest.raises(InvalidArgument):
            tc.set_egress_rate("a/b", 1000, nl=nl)
        with pytest.raises(NotFound):
            tc.set_egress_rate("nope0", 1000, nl=nl)
        assert tc.egress_rate("br0", nl=nl) is None
