"""silo.kernel.nftables against the running kernel, inside a fresh network namespace per test
(the host's ruleset is never touched): atomic apply, listing as JSON and text, a failing
transaction that changes nothing, errors carrying nft's words and the failing line, and the
``nft`` command fallback behaving the same."""

from __future__ import annotations

import subprocess

import pytest

from silo.errors import AlreadyExists, InvalidArgument, NotFound
from silo.kernel.nftables import Nft, library
from tests import probes
from tests.kernel.netfixtures import requires_netns

pytestmark = [pytest.mark.kernel, requires_netns]

BASE = """\
add table inet t
add chain inet t fw { type filter hook forward priority 0; policy accept; }
add map inet t ep { type ipv4_addr : verdict; }
add chain inet t ep1
add element inet t ep { 10.0.0.2 : jump ep1 }
add rule inet t fw ip saddr vmap @ep
add rule inet t ep1 tcp dport 22 drop
"""


def need_lib() -> str | None:
    return None if library() is not None else "libnftables.so.1 is not installed"


def nft_text(path: str) -> str:
    """The ruleset as the nft command prints it inside the namespace: the independent
    witness."""
    return subprocess.run(["nsenter", f"--net={path}", "nft", "list", "ruleset"], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(params=["library", "command"])
def nft(request: pytest.FixtureRequest, netns_path: str) -> Nft:
    if request.param == "library" and (reason := need_lib()):
        pytest.skip(reason)
    if request.param == "command" and (reason := probes.need_all(
            probes.need_binary("nft"), probes.need_binary("nsenter"))):
        pytest.skip(reason)
    n = Nft(netns_path, use_library=request.param == "library")
    request.addfinalizer(n.close)
    return n


def test_apply_and_list(nft: Nft, netns_path: str) -> None:
    nft.apply(BASE)
    doc = nft.list_json("table inet t")
    kinds = [next(iter(o)) for o in doc["nftables"]]
    assert kinds.count("chain") == 2 and "map" in kinds and kinds.count("rule") == 2
    emap = next(o["map"] for o in doc["nftables"] if "map" in o)
    assert emap["name"] == "ep" and emap["elem"][0][0] == "10.0.0.2"
    text = nft.run("list chain inet t ep1")
    assert "tcp dport 22 drop" in text
    assert "tcp dport 22 drop" in nft_text(netns_path)
    assert nft.table_exists("inet", "t") and not nft.table_exists("inet", "nope")


def test_failed_transaction_changes_nothing(nft: Nft, netns_path: str) -> None:
    nft.apply(BASE)
    before = nft_text(netns_path)
    script = ("add element inet t ep { 10.0.0.3 : jump ep1 }\n"
              "add chain inet t ep2\n"
              "add rule inet t ep2 tcp dport 80 frobnicate\n")
    with pytest.raises(InvalidArgument) as e:
        nft.apply(script)
    assert "line 3: add rule inet t ep2 tcp dport 80 frobnicate" in str(e.value)
    assert e.value.field == "script"
    # A script the parser accepts but the kernel refuses half-way is also all or nothing.
    with pytest.raises(NotFound):
        nft.apply("add element inet t ep { 10.0.0.4 : jump ep1 }\n"
                  "add rule inet t missing_chain drop\n")
    assert nft_text(netns_path) == before


def test_errors(nft: Nft) -> None:
    nft.apply(BASE)
    with pytest.raises(NotFound):
        nft.apply("delete table inet absent")
    with pytest.raises(AlreadyExists):
        nft.apply("add element inet t ep { 10.0.0.2 : jump ep1 }\n"
                  "create element inet t ep { 10.0.0.2 : jump ep1 }\n")
    with pytest.raises(InvalidArgument):
        nft.apply("add table inet t\x00x")
    for bad in ("ruleset\nflush ruleset", "table inet t; flush ruleset", ""):
        with pytest.raises(InvalidArgument) as e:
            nft.list_json(bad)
        assert e.value.field == "what"
    assert nft.table_exists("inet", "t")


def test_namespaced_context_never_touches_the_host(nft: Nft, net_prefix: str) -> None:
    name = f"{net_prefix}host"
    nft.apply(f"add table inet {name}")
    host = subprocess.run(["nft", "list", "tables"], check=True, capture_output=True,
                          text=True).stdout
    assert name not in host


def test_small_change_on_a_big_map(nft: Nft, netns_path: str) -> None:
    """1,000 endpoints' elements in one transaction, then one more endpoint as a small one
    (the data path's incremental change); both land, the rest stays."""
    elems = ", ".join(f"10.1.{i // 250}.{i % 250 + 1} : jump ep1" for i in range(1000))
    nft.apply(BASE + f"add element inet t ep {{ {elems} }}\n")
    nft.apply("add chain inet t ep1001\n"
              "add rule inet t ep1001 udp dport 53 accept\n"
              "add element inet t ep { 10.2.0.1 : jump ep1001 }\n")
    doc = nft.list_json("map inet t ep")
    emap = next(o["map"] for o in doc["nftables"] if "map" in o)
    assert len(emap["elem"]) == 1002
