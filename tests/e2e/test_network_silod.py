"""The network service end to end: a real silod (its own prefix for interfaces, netns files and
nft tables), the silo command and the client; what the kernel then holds, traffic between
namespaces this test makes, records surviving a restart, and leftovers removed at start."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from silod_host import Silod  # noqa: E402
from tests import probes  # noqa: E402

from silo.errors import AlreadyExists, InvalidArgument, InvalidState  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _needs() -> None:
    reason = probes.need_all(probes.need_root(), probes.need_binary("ip"),
                             probes.need_binary("nsenter"))
    if reason:
        pytest.skip(reason)


def subnet() -> str:
    """A /24 nobody else's test is likely to use at the same moment."""
    return f"10.{random.randint(150, 250)}.{random.randint(0, 255)}.0/24"


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def in_netns(path: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *argv], capture_output=True, text=True,
                          timeout=30, check=check)


SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last test's TIME_WAIT
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print('ready', flush=True)
c, peer = s.accept()
c.sendall(('hello ' + peer[0]).encode())
c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(c.recv(100).decode())
"""


def exchange(server_ns: str | None, client_ns: str | None, listen: str, connect: str,
             port: int, to_port: int = 0) -> str:
    """A TCP server in ``server_ns`` answers one connection from ``client_ns`` (None: the
    host), connecting to ``to_port`` (default: the same port); what the client read."""
    def argv(ns: str | None, code: str, *args: str) -> list[str]:
        pre = ["nsenter", f"--net={ns}"] if ns else []
        return [*pre, sys.executable, "-c", code, *args]

    with subprocess.Popen(argv(server_ns, SERVER, listen, str(port)), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready", server.communicate()
            got = subprocess.run(argv(client_ns, CLIENT, connect, str(to_port or port)),
                                 capture_output=True, text=True, timeout=30)
            assert got.returncode == 0, got.stderr
            return got.stdout.strip()
        finally:
            server.kill()


def attach(silod: Silod, network: str, **endpoint: Any) -> tuple[dict[str, Any], str]:
    client = silod.client()
    ep = client.create_endpoint({"HostComputeNetwork": network, **endpoint})
    ns = client.create_namespace()
    client.attach_endpoint(ns["ID"], ep["ID"])
    return client.get_endpoint(ep["ID"]), ns["Linux"]["NetnsPath"]


def test_a_network_two_endpoints_and_traffic_between_them(silod: Silod) -> None:
    prefix = subnet()
    done = silod.cli("network", "create", "--subnet", prefix, "tnet")
    assert done.returncode == 0, done.stderr
    client = silod.client()
    net = client.get_network("tnet")
    bridge = net["Linux"]["Bridge"]
    assert bridge.startswith(silod.network_prefix) and bridge in links()
    a, path_a = attach(silod, "tnet", Name="a")
    b, path_b = attach(silod, "tnet", Name="b")
    addr_b = b["IpConfigurations"][0]["IpAddress"]
    assert a["Linux"]["HostInterface"] in links()
    shown = in_netns(path_a, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert a["IpConfigurations"][0]["IpAddress"] + "/24" in shown
    addr_a = a["IpConfigurations"][0]["IpAddress"]
    assert exchange(path_b, path_a, "0.0.0.0", addr_b, 7777) == f"hello {addr_a}"
    stats = client.endpoint_stats("a")
    assert stats["PacketsSent"] > 0 and stats["BytesSent"] > 0, stats
    listed = silod.cli("endpoint", "ls", "--network", "tnet", "--stats")
    assert listed.returncode == 0 and " a " in listed.stdout, listed.stdout
    rules = silod.cli("network", "rules", "tnet")
    assert rules.returncode == 0 and rules.stdout.strip(), rules.stderr

    with pytest.raises(InvalidArgument) as over:
        client.create_network({"Name": "other", "Ipams": [{"Subnets": [
            {"IpAddressPrefix": prefix}]}]})
    assert over.value.field == "Ipams[0].Subnets[0].IpAddressPrefix"
    with pytest.raises(InvalidState):
        client.attach_endpoint(client.create_namespace()["ID"], "a")
    refused = silod.cli("network", "rm", "tnet")
    assert refused.returncode == 1 and "endpoint" in refused.stderr
    assert bridge in links()

    for ns in client.list_namespaces():
        client.delete_namespace(ns["ID"])
    assert not os.path.exists(path_a)
    assert a["Linux"]["HostInterface"] not in links()
    done = silod.cli("network", "rm", "-f", "tnet")
    assert done.returncode == 0, done.stderr
    assert bridge not in links()
    assert client.list_endpoints() == []


def test_records_survive_a_restart_and_strays_are_removed(silod: Silod) -> None:
    client = silod.client()
    client.create_network({"Name": "keep", "Ipams": [{"Subnets": [
        {"IpAddressPrefix": subnet()}]}]})
    ep, path = attach(silod, "keep", Name="e", Policies=[
        # Flags 1, LocalRoutedVip: reachable from the host itself too (127.0.0.1)
        {"Type": "PortMapping", "Settings": {"ExternalPort": random.randint(20000, 30000),
                                             "InternalPort": 80, "Flags": 1}}])
    port = ep["Policies"][0]["Settings"]["ExternalPort"]
    assert exchange(path, None, "0.0.0.0", "127.0.0.1", 80, port).startswith("hello ")
    stray = f"{silod.network_prefix}br{random.randbytes(4).hex()}"
    subprocess.run(["ip", "link", "add", stray, "type", "bridge"], check=True)
    try:
        silod.kill9()
        silod.start()
        assert stray not in links()
        client = silod.client()
        assert client.get_endpoint("e") == ep
        assert ep["Linux"]["HostInterface"] in links()
        assert in_netns(path, "ip", "-o", "addr", "show", "dev", "eth0").returncode == 0
        # the mapping is back after the restart (the rebuild from the records)
        assert exchange(path, None, "0.0.0.0", "127.0.0.1", 80, port).startswith("hello ")
        with pytest.raises(AlreadyExists) as taken:
            client.create_endpoint({"HostComputeNetwork": "keep", "Policies": [
                {"Type": "PortMapping", "Settings": {"ExternalPort": port}}]})
        assert "port already exists" in taken.value.message
        nxt = client.create_endpoint({"HostComputeNetwork": "keep"})
        assert nxt["IpConfigurations"][0]["IpAddress"] != ep["IpConfigurations"][0]["IpAddress"]
        client.delete_network("keep", force=True)
        for ns in client.list_namespaces():
            client.delete_namespace(ns["ID"])
        assert not os.path.exists(path)
    finally:
        subprocess.run(["ip", "link", "del", stray], capture_output=True, check=False)


def test_a_namespace_a_client_made(silod: Silod) -> None:
    """containerd's and CNI's way: the netns exists; the namespace document names it."""
    name = f"silotest-{random.randbytes(4).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    path = f"/run/netns/{name}"
    try:
        client = silod.client()
        client.create_network({"Name": "cni", "Type": "NAT", "Ipams": [{"Subnets": [
            {"IpAddressPrefix": subnet()}]}]})
        with pytest.raises(InvalidArgument) as own:
            client.create_namespace({"Linux": {"NetnsPath": "/proc/1/ns/net"}})
        assert own.value.field == "Linux.NetnsPath"
        ns = client.create_namespace({"Linux": {"NetnsPath": path}})
        assert ns["Linux"] == {"NetnsPath": path, "Managed": False}
        ep = client.create_endpoint({"HostComputeNetwork": "cni"})
        client.attach_endpoint(ns["ID"], ep["ID"])
        shown = in_netns(path, "ip", "-o", "addr", "show", "dev", "eth0").stdout
        assert ep["IpConfigurations"][0]["IpAddress"] in shown
        client.delete_namespace(ns["ID"])
        assert os.path.exists(path)  # not silod's to remove
        assert in_netns(path, "ip", "link", "show", "eth0", check=False).returncode != 0
        client.delete_network("cni", force=True)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_concurrent_creates_and_attaches_through_silod(silod: Silod) -> None:
    """Six clients at once (each call its own connection): every endpoint gets its own
    address, MAC and interface; the records and the host agree."""
    import threading

    client = silod.client()
    client.create_network({"Name": "busy", "Ipams": [{"Subnets": [
        {"IpAddressPrefix": subnet()}]}]})
    made: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def worker() -> None:
        start.wait()
        for _ in range(5):
            try:
                ep, _path = attach(silod, "busy")
            except BaseException as err:  # reported below, with the others
                with lock:
                    failures.append(err)
                return
            with lock:
                made.append(ep)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    addrs = {e["IpConfigurations"][0]["IpAddress"] for e in made}
    macs = {e["MacAddress"] for e in made}
    assert len(made) == 30 and len(addrs) == 30 and len(macs) == 30
    host = links()
    assert all(e["Linux"]["HostInterface"] in host for e in made)
    for ns in client.list_namespaces():
        client.delete_namespace(ns["ID"])
    client.delete_network("busy", force=True)
    assert not any(e["Linux"]["HostInterface"] in links() for e in made)
