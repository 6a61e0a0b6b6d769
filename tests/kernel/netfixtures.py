"""Network fixtures for kernel tests: each test gets fresh named network namespaces and a
unique name prefix, and teardown removes them (and fails the test if any is left).

tests/kernel/conftest.py imports the fixtures, so every kernel test can ask for them.

``netns_path`` is one fresh namespace (``lo`` up) at a path under ``/run/silo-test-netns``;
``netns_factory()`` makes more. Traffic stays inside them: a test wires them together with
veth pairs it creates inside the namespaces, never on the host. ``net_prefix`` is a short
prefix (``t`` + 5 hex) unique to the test, to put in the names of interfaces, nft tables and
anything else a test makes on the host, so that tests never collide with each other or with a
running silod; at teardown, a host interface or nft table whose name starts with it fails
the test (after being removed).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from silo.kernel import netns
from tests import probes

RUN_DIR = "/run/silo-test-netns"


def need_netns() -> str | None:
    if reason := probes.need_root():
        return reason
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces (/proc/self/ns/net)"
    return None


SKIP_NET = need_netns()
requires_netns = pytest.mark.skipif(bool(SKIP_NET), reason=SKIP_NET or "")


def unique_prefix() -> str:
    return "t" + secrets.token_hex(3)[:5]


def host_leftovers(prefix: str) -> list[str]:
    """Host interfaces and nft tables named with ``prefix``, removed; their names."""
    from silo.kernel.netlink import Netlink
    from silo.kernel.nftables import Nft, library

    left = []
    with Netlink() as nl:
        for link in nl.links():
            if link.name.startswith(prefix):
                left.append(f"interface {link.name}")
                nl.ensure_link_deleted(link.name)
    if library() is not None:
        with Nft() as nft:
            for line in nft.run("list tables").splitlines():
                parts = line.split()  # "table <family> <name>"
                if len(parts) == 3 and parts[2].startswith(prefix):
                    left.append(f"nft table {parts[1]} {parts[2]}")
                    nft.apply(f"delete table {parts[1]} {parts[2]}")
    return left


@pytest.fixture
def net_prefix() -> Iterator[str]:
    prefix = unique_prefix()
    yield prefix
    if not SKIP_NET:
        left = host_leftovers(prefix)
        assert not left, f"left on the host: {left}"


@pytest.fixture
def netns_factory(net_prefix: str) -> Iterator[Callable[[], str]]:
    """A function making a fresh netns per call; all of them are deleted at teardown."""
    if SKIP_NET:
        pytest.skip(SKIP_NET)
    made: list[str] = []

    def make() -> str:
        path = os.path.join(RUN_DIR, f"{net_prefix}-{os.getpid()}-{len(made)}")
        netns.create(path)
        made.append(path)
        return path

    yield make
    left = []
    for path in made:
        netns.ensure_deleted(path)
        if os.path.exists(path):
            left.append(path)
    assert not left, f"network namespaces left behind: {left}"


@pytest.fixture
def netns_path(netns_factory: Callable[[], str]) -> str:
    return netns_factory()
