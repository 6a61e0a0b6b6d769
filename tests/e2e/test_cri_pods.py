"""Pods through containerd's CRI, as kubelet makes them: containerd 1.6 with its CRI plugin,
silo-runtime as the runc v2 shim's ``BinaryName`` and silo-cni in front of a real silod (its
own network prefix). Two pods reach each other by address, a pod's containers share
localhost, a hostPort answers from the node and from another pod, the pod's DNS config is its
resolv.conf, removing a pod frees its address and leaves nothing, and silod killed and started
again changes nothing for running pods."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cri.node import Node, build_images, missing

pytestmark = pytest.mark.e2e

SERVER = ("nc", "-ll", "-p", "80", "-e", "/bin/hostname")
IDLE = ("sleep", "2147483647")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    return build_images(tmp_path_factory.mktemp("cri-images"))


@pytest.fixture
def node(images: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("node"), images)
    try:
        yield n
    finally:
        n.close()


def ask(node: Node, cid: str, address: str, port: int = 80, tries: int = 50) -> str:
    """What a TCP server at address:port says, read with nc in container ``cid`` (a server
    just started may not listen yet: asked again, up to ``tries`` times)."""
    out = ""
    for _ in range(tries):
        code, out, err = node.cri.exec_sync(cid, ["nc", "-w", "3", address, str(port)])
        if code == 0 and out.strip():
            return out.strip()
        time.sleep(0.1)
    raise AssertionError(f"nothing from {address}:{port} in {cid}: {out!r} {err!r}")


def ask_from_node(address: str, port: int, tries: int = 50) -> str:
    last: Exception | None = None
    for _ in range(tries):
        try:
            with socket.create_connection((address, port), timeout=5) as s:
                data = s.recv(100).decode().strip()
                if data:
                    return data
        except OSError as err:
            last = err
        time.sleep(0.1)
    raise AssertionError(f"nothing from {address}:{port} on the node: {last}")


def test_pods_reach_each_other_and_containers_share_localhost(node: Node) -> None:
    a, a_conf = node.pod("pod-a")
    node.container(a, a_conf, "server", *SERVER)
    a_client = node.container(a, a_conf, "client", *IDLE)
    b, b_conf = node.pod("pod-b")
    b_client = node.container(b, b_conf, "client", *IDLE)
    ip_a, ip_b = node.ip_of(a), node.ip_of(b)
    assert ip_a != ip_b and ip_a.rsplit(".", 1)[0] == node.subnet.rsplit(".", 1)[0]
    assert ask(node, b_client, ip_a) == "pod-a"
    assert ask(node, a_client, "127.0.0.1") == "pod-a"          # the pod's own localhost
    code, out, _ = node.cri.exec_sync(b_client, ["ip", "-o", "-4", "addr", "show", "eth0"])
    assert code == 0 and f"{ip_b}/24" in out
    pods = {p.metadata.name: p for p in node.cri.list_pods()}
    assert set(pods) == {"pod-a", "pod-b"}
    assert all(p.state == node.cri.pb.SANDBOX_READY for p in pods.values())
    assert node.cri.container_status(a_client).state == node.cri.pb.CONTAINER_RUNNING
    assert node.silod is not None
    names = sorted(e["Name"] for e in node.silod.client().list_endpoints())
    assert names == sorted(f"{p.id}_{node.network}" for p in pods.values())


def test_a_host_port_from_the_node_and_from_another_pod(node: Node) -> None:
    port = 20000 + int(uuid.uuid4().hex[:4], 16) % 20000
    web, web_conf = node.pod("web", ports=[(80, port)])
    node.container(web, web_conf, "server", *SERVER)
    other, other_conf = node.pod("other")
    client = node.container(other, other_conf, "client", *IDLE)
    assert ask_from_node("127.0.0.1", port) == "web"
    gateway = node.subnet.rsplit(".", 1)[0] + ".1"  # the node's address on the pods' network
    assert ask(node, client, gateway, port) == "web"


def test_the_pods_dns_config_is_its_resolv_conf(node: Node) -> None:
    pod, conf = node.pod("dns", dns=(["10.96.0.10", "10.96.0.11"],
                                     ["default.svc.cluster.local", "svc.cluster.local"],
                                     ["ndots:5", "timeout:2"]))
    cid = node.container(pod, conf, "c", *IDLE)
    code, out, _ = node.cri.exec_sync(cid, ["cat", "/etc/resolv.conf"])
    assert code == 0
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    assert "nameserver 10.96.0.10" in lines and "nameserver 10.96.0.11" in lines
    assert "search default.svc.cluster.local svc.cluster.local" in lines
    assert "options ndots:5 timeout:2" in lines


def _links() -> set[str]:
    import subprocess

    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def test_removing_a_pod_frees_its_address_and_leaves_nothing(node: Node) -> None:
    assert node.silod is not None
    client = node.silod.client()
    pod, conf = node.pod("gone")
    node.container(pod, conf, "c", *IDLE)
    ip = node.ip_of(pod)
    netns = node.netns_of(pod)
    [ep] = client.list_endpoints()
    veth = ep["Linux"]["HostInterface"]
    assert veth in _links()
    rules_before = client.network_rules(node.network)["Text"]
    assert ip in rules_before
    node.remove(pod)
    assert client.list_endpoints() == [] and client.list_namespaces() == []
    assert veth not in _links()
    assert not Path(netns).exists()
    assert ip not in client.network_rules(node.network)["Text"]
    # the address was given back: silod hands it out again when asked for it
    ep = client.create_endpoint({"HostComputeNetwork": node.network,
                                 "IpConfigurations": [{"IpAddress": ip}]})
    client.delete_endpoint(ep["ID"])


def test_silod_killed_and_started_again_changes_nothing_for_pods(node: Node) -> None:
    assert node.silod is not None
    a, a_conf = node.pod("pod-a")
    node.container(a, a_conf, "server", *SERVER)
    b, b_conf = node.pod("pod-b")
    b_client = node.container(b, b_conf, "client", *IDLE)
    ip_a = node.ip_of(a)
    assert ask(node, b_client, ip_a) == "pod-a"
    before = sorted((e["Name"], e["IpConfigurations"][0]["IpAddress"])
                    for e in node.silod.client().list_endpoints())
    node.silod.kill9()
    assert ask(node, b_client, ip_a) == "pod-a"
    node.silod.start()
    assert ask(node, b_client, ip_a) == "pod-a"
    after = sorted((e["Name"], e["IpConfigurations"][0]["IpAddress"])
                   for e in node.silod.client().list_endpoints())
    assert after == before
    assert node.cri.container_status(b_client).state == node.cri.pb.CONTAINER_RUNNING


def test_a_pod_silod_refuses_leaves_nothing(node: Node) -> None:
    """A second pod asking for a host port that is taken: RunPodSandbox fails with silod's
    reason, and neither an endpoint nor a network namespace of it is left."""
    assert node.silod is not None
    port = 20000 + int(uuid.uuid4().hex[:4], 16) % 20000
    node.pod("first", ports=[(80, port)])
    netns_before = set(Path("/var/run/netns").iterdir())
    links_before = _links()
    config = node.cri.pod_config("second", cgroup_parent=node.cgroup_parent,
                                 log_directory=str(node.logs / "second"), ports=[(80, port)])
    import grpc  # there: the node fixture's probe asked for it

    with pytest.raises(grpc.RpcError) as refused:
        node.cri.run_pod(config)
    assert "port already exists" in str(refused.value)
    assert [p.metadata.name for p in node.cri.list_pods()] == ["first"]
    assert len(node.silod.client().list_endpoints()) == 1
    assert set(Path("/var/run/netns").iterdir()) == netns_before
    assert _links() == links_before


def test_a_pod_while_silod_is_down_fails_cleanly_and_works_once_it_is_back(node: Node) -> None:
    import grpc

    assert node.silod is not None
    netns_before = set(Path("/var/run/netns").iterdir())
    node.silod.stop()
    config = node.cri.pod_config("early", cgroup_parent=node.cgroup_parent,
                                 log_directory=str(node.logs / "early"))
    with pytest.raises(grpc.RpcError) as refused:
        node.cri.run_pod(config)
    assert "silod is not running" in str(refused.value)
    assert node.cri.list_pods() == []
    assert set(Path("/var/run/netns").iterdir()) == netns_before
    node.silod.start()
    pod, conf = node.pod("early")
    cid = node.container(pod, conf, "c", *IDLE)
    code, out, _ = node.cri.exec_sync(cid, ["ip", "-o", "-4", "addr", "show", "eth0"])
    assert code == 0 and node.ip_of(pod) in out
