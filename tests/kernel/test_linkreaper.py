"""silo.kernel.linkreaper in fresh namespaces: retired links leave service at once (their
names free), are deleted in batches, and nothing else is touched."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from silo.errors import InvalidArgument, NotFound
from silo.kernel.linkreaper import LinkReaper
from silo.kernel.netlink import Netlink
from tests.kernel.netfixtures import requires_netns

pytestmark = [pytest.mark.kernel, requires_netns]


def test_retire_frees_the_name_and_reaps_in_batches(netns_factory: Callable[[], str],
                                                    net_prefix: str) -> None:
    host, cont = netns_factory(), netns_factory()
    with Netlink(host) as nl, Netlink(cont) as nc, LinkReaper(host, prefix="t") as reaper:
        nl.add_bridge("keep0")
        for i in range(20):
            nl.add_veth(f"h{i}", f"e{i}", peer_netns=cont)
            nl.set_link(f"h{i}", master="keep0", up=True)
        for i in range(20):
            reaper.retire(nl, f"h{i}")
            assert nl.link(f"h{i}") is None  # the name is free at once
        nl.add_veth("h0", "fresh0", peer_netns=cont)  # and can be used again right away
        reaper.flush()
        assert reaper.last_error is None
        assert sorted(x.name for x in nl.links()) == ["h0", "keep0", "lo"]
        assert sorted(x.name for x in nc.links()) == ["fresh0", "lo"]
        nl.add_veth("x1", "e1", peer_netns=cont)  # the peer's name is free now
        with pytest.raises(NotFound):
            reaper.retire(nl, "absent0")
    with Netlink(host) as nl:
        assert sorted(x.name for x in nl.links()) == ["h0", "keep0", "lo", "x1"]


def test_close_reaps_what_is_left_and_a_new_reaper_cleans_old_tombstones(
        netns_path: str) -> None:
    with Netlink(netns_path) as nl:
        nl.add_veth("a0", "a1")
        nl.add_veth("b0", "b1")
        nl.set_link("b0", group=4242)  # as if a crashed run had retired it
        with LinkReaper(netns_path, group=4242):
            assert nl.link("b0") is None
        r = LinkReaper(netns_path, group=4242)
        r.retire(nl, "a0")
        r.close()
        r.flush()  # returns at once once closed
        assert [x.name for x in nl.links()] == ["lo"]


def test_bad_arguments(netns_path: str) -> None:
    for kw in ({"group": 0}, {"group": -1}, {"prefix": "toolongprefix"}, {"prefix": "a/b"},
               {"delay": -1}, {"batch": 0}):
        with pytest.raises(InvalidArgument):
            LinkReaper(netns_path, **kw)  # type: ignore[arg-type]
