"""The silo-cni command against a real silod (its own network prefix): pods' namespaces made
here as containerd makes them (``ip netns add``), ADD/CHECK/DEL/GC/STATUS through the real
command, traffic between two pods and to a host port, what the kernel holds afterwards, and
silod gone (try again later)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from silod_host import REPO, Silod
from test_network_silod import exchange, in_netns, links, subnet
from tests import probes

pytestmark = pytest.mark.e2e

PLUGIN = REPO / ".venv" / "bin" / "silo-cni"


@pytest.fixture(autouse=True)
def _needs() -> None:
    reason = probes.need_all(probes.need_root(), probes.need_binary("ip"),
                             probes.need_binary("nsenter"))
    if not reason and not PLUGIN.exists():
        reason = ".venv/bin/silo-cni is missing: run scripts/setup"
    if reason:
        pytest.skip(reason)


@pytest.fixture
def netns() -> Iterator[Any]:
    """Makes named network namespaces (``ip netns add``, as containerd's are bind mounts);
    removes them all at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"cnitest-{uuid.uuid4().hex[:10]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return f"/run/netns/{name}"

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def need_reference_plugin(name: str) -> str | None:
    path = Path("/usr/lib/cni") / name
    return None if path.exists() else f"{path} is missing (Debian's containernetworking-plugins)"


def plugin(command: str, conf: dict[str, Any], cid: str, netns: str = "",
           ifname: str = "eth0") -> tuple[int, Any]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
           "CNI_PATH": "/usr/lib/cni"}
    proc = subprocess.run([str(PLUGIN)], input=json.dumps(conf), env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, doc


def conf_for(silod: Silod, name: str = "pods", **more: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "type": "silo-cni", "host": silod.host,
            "ipam": {"subnet": subnet()}, **more}


def test_two_pods_reach_each_other_and_del_leaves_nothing(silod: Silod, netns: Any) -> None:
    conf = conf_for(silod)
    path_a, path_b = netns(), netns()
    code, a = plugin("ADD", conf, "pod-a", path_a)
    assert code == 0, a
    code, b = plugin("ADD", conf, "pod-b", path_b)
    assert code == 0, b
    addr_a = a["ips"][0]["address"].split("/")[0]
    addr_b = b["ips"][0]["address"].split("/")[0]
    host_veth = a["interfaces"][0]["name"]
    assert host_veth.startswith(silod.network_prefix) and host_veth in links()
    shown = in_netns(path_a, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert a["ips"][0]["address"] in shown
    assert exchange(path_b, path_a, "0.0.0.0", addr_b, 7781) == f"hello {addr_a}"
    # CHECK: silod's record and the namespace agree with the result
    assert plugin("CHECK", {**conf, "prevResult": a}, "pod-a", path_a) == (0, None)
    in_netns(path_a, "ip", "route", "del", "default")
    code, doc = plugin("CHECK", {**conf, "prevResult": a}, "pod-a", path_a)
    assert code == 1 and "no default route" in doc["msg"], doc
    # DEL: the interface, the endpoint and the namespace document go; the netns is the
    # runtime's and stays
    assert plugin("DEL", conf, "pod-a", path_a) == (0, None)
    assert host_veth not in links()
    assert in_netns(path_a, "ip", "-o", "link", "show", "eth0", check=False).returncode != 0
    client = silod.client()
    assert [e["Name"] for e in client.list_endpoints()] == ["pod-b_pods"]
    assert all(ns["Linux"]["NetnsPath"] != path_a for ns in client.list_namespaces())
    assert os.path.exists(path_a)
    assert plugin("DEL", conf, "pod-a", path_a) == (0, None)
    assert plugin("DEL", conf, "pod-a", "") == (0, None)
    # GC with pod-b not valid any more
    gc = {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": []}
    assert plugin("GC", gc, "") == (0, None)
    assert client.list_endpoints() == [] and client.list_namespaces() == []
    client.delete_network("pods")


def test_a_host_port_from_the_node_and_from_another_pod(silod: Silod, netns: Any) -> None:
    port = 20000 + int(uuid.uuid4().hex[:4], 16) % 20000
    conf = conf_for(silod, capabilities={"portMappings": True})
    web = {**conf, "runtimeConfig": {"portMappings": [
        {"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}}
    path_web, path_other = netns(), netns()
    code, result = plugin("ADD", web, "web", path_web)
    assert code == 0, result
    code, other = plugin("ADD", conf, "other", path_other)
    assert code == 0, other
    assert exchange(path_web, None, "0.0.0.0", "127.0.0.1", 80, to_port=port).startswith(
        "hello ")
    gateway = other["ips"][0]["gateway"]  # the node, as a pod reaches it
    assert exchange(path_web, path_other, "0.0.0.0", gateway, 80, to_port=port).startswith(
        "hello ")
    for cid in ("web", "other"):
        assert plugin("DEL", conf, cid) == (0, None)
    silod.client().delete_network("pods")


def test_bad_netns_and_silod_down(silod: Silod, netns: Any, tmp_path: Path) -> None:
    conf = conf_for(silod)
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    code, doc = plugin("ADD", conf, "pod-x", str(plain))
    assert code == 1 and doc["code"] == 4 and "not a network namespace" in doc["msg"], doc
    code, doc = plugin("ADD", conf, "pod-x", "/run/netns/none-such-cnitest")
    assert code == 1 and doc["code"] == 3, doc
    client = silod.client()
    assert client.list_endpoints() == [] and client.list_namespaces() == []
    path_z = netns()
    code, result = plugin("ADD", conf, "pod-z", path_z)
    assert code == 0, result
    before = links()
    path = netns()
    silod.stop()
    code, doc = plugin("ADD", conf, "pod-y", path)
    assert code == 1 and doc["code"] == 11, doc
    # DEL while silod is down: nothing of pod-y is in its netns, so it succeeds (containerd
    # would otherwise keep that netns); pod-z's interface is, so try again later
    assert plugin("DEL", conf, "pod-y", path) == (0, None)
    code, doc = plugin("DEL", conf, "pod-z", path_z)
    assert code == 1 and doc["code"] == 11, doc
    code, doc = plugin("STATUS", {**conf, "cniVersion": "1.1.0"}, "")
    assert code == 1 and doc["code"] == 50, doc
    silod.start()
    assert plugin("STATUS", {**conf, "cniVersion": "1.1.0"}, "") == (0, None)
    assert [e["Name"] for e in silod.client().list_endpoints()] == ["pod-z_pods"]
    assert links() == before
    assert plugin("DEL", conf, "pod-z", path_z) == (0, None)
    assert silod.client().list_endpoints() == []
    for name in [n["Name"] for n in silod.client().list_networks()]:
        silod.client().delete_network(name)


def test_concurrent_adds_on_a_network_not_made_yet(silod: Silod, netns: Any) -> None:
    """Eight pods at once, the first ADDs racing to make the network: every one gets its own
    address, and the DELs at once leave nothing."""
    from concurrent.futures import ThreadPoolExecutor

    conf = conf_for(silod)
    paths = [netns() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: plugin("ADD", conf, f"pod-{i}", paths[i]), range(8)))
    assert all(code == 0 for code, _ in results), results
    addresses = {doc["ips"][0]["address"] for _, doc in results}
    assert len(addresses) == 8
    client = silod.client()
    assert len(client.list_networks()) == 1 and len(client.list_endpoints()) == 8
    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda i: plugin("DEL", conf, f"pod-{i}", paths[i]), range(8)))
    assert done == [(0, None)] * 8
    assert client.list_endpoints() == [] and client.list_namespaces() == []
    client.delete_network("pods")


def test_delegated_host_local_ipam(silod: Silod, netns: Any, tmp_path: Path) -> None:
    """``ipam.type`` names the reference host-local plugin: its address is the endpoint's, and
    DEL gives it back to host-local."""
    reason = need_reference_plugin("host-local")
    if reason:
        pytest.skip(reason)
    prefix = subnet()
    data = tmp_path / "host-local"
    conf = conf_for(silod, ipam={"type": "host-local", "subnet": prefix,
                                 "dataDir": str(data)})
    path = netns()
    code, result = plugin("ADD", conf, "pod-h", path)
    assert code == 0, result
    address = result["ips"][0]["address"]
    held = sorted(p.name for p in (data / "pods").iterdir() if p.name[0].isdigit())
    assert held == [address.split("/")[0]]
    client = silod.client()
    [ep] = client.list_endpoints()
    assert f"{ep['IpConfigurations'][0]['IpAddress']}/24" == address
    assert client.get_network("pods")["Ipams"][0]["Subnets"][0]["IpAddressPrefix"] == prefix
    assert address in in_netns(path, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert plugin("DEL", conf, "pod-h", path) == (0, None)
    assert not [p for p in (data / "pods").iterdir() if p.name[0].isdigit()]
    assert client.list_endpoints() == []
    client.delete_network("pods")
