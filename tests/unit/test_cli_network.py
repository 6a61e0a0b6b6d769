"""silo network and silo endpoint against silod's real network routes (HostNetworkService over
a recording fake data path): what they send, what they print, their exit statuses."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from silo.cli.main import main
from silo.network.hns import HostNetworkService
from silo.network.store import MemoryStore
from tests.unit.fake_datapath import FakeDataPath
from tests.unit.served import serving

pytestmark = pytest.mark.unit


@pytest.fixture
def svc() -> HostNetworkService:
    return HostNetworkService(MemoryStore(), FakeDataPath())


@pytest.fixture
def host(tmp_path: Path, svc: HostNetworkService) -> Iterator[str]:
    with serving(tmp_path, network=svc) as sock:
        yield "unix://" + sock


@pytest.fixture
def silo(host: str, capfd: pytest.CaptureFixture[str]) -> Any:
    def call(*argv: str) -> tuple[int, str, str]:
        capfd.readouterr()
        code = main(["-H", host, *argv])
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = capfd.readouterr()
        return code, out, err
    return call


def test_network_create_ls_inspect_rm(silo: Any, svc: HostNetworkService) -> None:
    code, out, _ = silo("network", "create", "--subnet", "10.33.0.0/24", "--subnet",
                        "fd00:33::/64", "--mac-pool", "02-00-00-00-01-00-02-00-00-00-01-ff",
                        "--dns", "10.33.0.1", "web")
    assert code == 0
    net_id = out.strip()
    net = svc.get("network", "web")
    assert net["ID"] == net_id and net["Type"] == "NAT"
    assert [s["IpAddressPrefix"] for s in net["Ipams"][0]["Subnets"]] == ["10.33.0.0/24",
                                                                           "fd00:33::/64"]
    assert net["MacPool"]["Ranges"] == [{"StartMacAddress": "02-00-00-00-01-00",
                                         "EndMacAddress": "02-00-00-00-01-FF"}]
    svc.create_endpoint({"HostComputeNetwork": "web"})
    code, out, _ = silo("network", "ls")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["NETWORK", "ID", "NAME", "TYPE"]
    assert lines[1].split() == [net_id[:12], "web", "NAT", "10.33.0.0/24,fd00:33::/64",
                                "tstbr" + net_id[:8], "1"]
    code, out, _ = silo("network", "ls", "-q", "--filter", "Name=web")
    assert out.split() == [net_id]
    code, out, _ = silo("network", "inspect", "web", "nope")
    assert code == 1 and json.loads(out)[0]["ID"] == net_id
    code, out, _ = silo("network", "rules", "web")
    assert code == 0 and out.startswith("Layer ACL")
    code, _, err = silo("network", "rm", "web")
    assert code == 1 and "endpoint" in err and "force" in err
    code, out, _ = silo("network", "rm", "-f", "web")
    assert code == 0 and out.strip() == "web"
    assert svc.query("network") == []


def test_network_create_refusals(silo: Any, svc: HostNetworkService) -> None:
    code, _, err = silo("network", "create", "--subnet", "10.33.0.0/40", "web")
    assert code == 1 and "Ipams[0].Subnets[0].IpAddressPrefix" in err
    code, _, err = silo("network", "create", "-d", "overlay", "web")
    assert code == 125 and "--driver" in err
    code, _, err = silo("network", "create")
    assert code == 125
    code, _, err = silo("network", "frobnicate")
    assert code == 125 and "unknown command" in err
    assert svc.query("network") == []


def test_network_create_from_a_file(silo: Any, svc: HostNetworkService, tmp_path: Path) -> None:
    doc = tmp_path / "net.json"
    doc.write_text(json.dumps({"Name": "x", "Type": "Internal", "Ipams": [
        {"Subnets": [{"IpAddressPrefix": "10.34.0.0/24", "Flags": 1}]}]}))
    code, _, _ = silo("network", "create", "-f", str(doc), "renamed")
    assert code == 0
    net = svc.get("network", "renamed")
    assert net["Type"] == "Internal" and net["Linux"]["Gateways"] == []


def test_endpoint_ls_inspect_stats(silo: Any, svc: HostNetworkService) -> None:
    svc.create_network({"Name": "web", "Ipams": [{"Subnets": [
        {"IpAddressPrefix": "10.35.0.0/24"}]}]})
    ep = svc.create_endpoint({"Name": "e1", "HostComputeNetwork": "web"})
    ns = svc.create_namespace({})
    svc.attach(ns["ID"], "e1")
    code, out, _ = silo("endpoint", "ls", "--stats")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("ENDPOINT ID")
    cells = lines[1].split()
    assert cells[:4] == [ep["ID"][:12], "e1", "web", "10.35.0.2/24"]
    assert cells[-6:] == ["10", "20", "1", "2", "0", "3"]
    code, out, _ = silo("endpoint", "ls", "-q", "--network", "web")
    assert out.split() == [ep["ID"]]
    code, out, _ = silo("endpoint", "ls", "-q", "--network", "nope")
    assert code == 0 and out == ""
    code, out, _ = silo("endpoint", "inspect", "e1")
    doc = json.loads(out)[0]
    assert doc["ID"] == ep["ID"] and doc["Statistics"]["BytesSent"] == 20
    code, out, _ = silo("endpoint", "stats", "e1")
    assert out.splitlines()[1].split() == ["e1", "10", "20", "1", "2", "0", "3"]
    code, _, err = silo("endpoint", "inspect", "ghost")
    assert code == 1 and "ghost" in err
