"""``silo run`` on silod's network service, end to end: the default NAT network, a web server
published with ``-p``, a client container reaching it by address, the host reaching it through
the mapped port (its own address and 127.0.0.1), a refused mapping that changes nothing, and a
container's endpoint and namespace gone with it (also after silod was killed)."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from silod_host import Silod  # noqa: E402
from tests import probes  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _needs() -> None:
    reason = probes.need_all(probes.need_root(), probes.need_binary("ip"))
    if reason:
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ok(silod: Silod, *args: str) -> str:
    r = silod.cli(*args)
    assert r.returncode == 0, f"silo {' '.join(args)}: {r.returncode}: {r.stderr}"
    return r.stdout


def inspect(silod: Silod, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(ok(silod, "inspect", name))[0]
    return doc


def http_get(host: str, port: int, deadline: float = 15) -> str:
    """The body busybox httpd answers on host:port (retried while the server starts)."""
    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection((host, port), timeout=3) as s:
                s.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            return data.split(b"\r\n\r\n", 1)[-1].decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def host_address() -> str:
    """An address of the host that is not loopback (the gateway of some network is fine)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    pytest.skip("the host has no IPv4 address besides loopback")


WEB = "echo served-by-silo > /www/index.html && exec httpd -f -p 80 -h /www"


def fetch_from_container(silod: Silod, host: str, port: int) -> subprocess.CompletedProcess[str]:
    """busybox nc in a fresh container (busybox-static's wget crashes in glibc's NSS)."""
    return silod.cli("run", "--rm", "busybox", "sh", "-c",
                     f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port}")


def test_a_published_web_server_answers_the_host_and_a_client_container(silod: Silod) -> None:
    port = free_port()
    ok(silod, "run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c",
       "mkdir -p /www && " + WEB)
    settings = inspect(silod, "web")["NetworkSettings"]
    addr = settings["IPAddress"]
    [ep] = settings["Endpoints"]
    assert ep["PortMappings"][0]["ExternalPort"] == port
    networks = json.loads(ok(silod, "network", "inspect", "nat"))   # the default, made now
    assert networks[0]["Type"] == "NAT" and ep["Network"] == networks[0]["ID"]
    subnet = networks[0]["Ipams"][0]["Subnets"][0]["IpAddressPrefix"]
    assert ipaddress.ip_address(addr) in ipaddress.ip_network(subnet), (addr, subnet)
    # a client container, by address
    r = fetch_from_container(silod, addr, 80)
    assert r.returncode == 0 and r.stdout.endswith("\n\nserved-by-silo\n"), r
    # the host, through the mapped port: 127.0.0.1 and an address of its own
    assert http_get("127.0.0.1", port) == "served-by-silo\n"
    assert http_get(host_address(), port) == "served-by-silo\n"
    # another container through the host's address (hairpin)
    gateway = networks[0]["Linux"]["Gateways"][0]
    r = fetch_from_container(silod, gateway, port)
    assert r.returncode == 0 and r.stdout.endswith("\n\nserved-by-silo\n"), r
    # gone with the container
    ok(silod, "rm", "-f", "web")
    with pytest.raises(OSError):
        http_get("127.0.0.1", port, deadline=0)
    client = silod.client()
    assert client.list_endpoints() == []
    assert client.list_namespaces() == []


def test_a_host_port_mapped_twice_is_refused_and_leaves_nothing(silod: Silod) -> None:
    port = free_port()
    ok(silod, "run", "-d", "--name", "first", "-p", f"{port}:80", "busybox", "sleep", "300")
    client = silod.client()
    before = (client.list_endpoints(), client.list_namespaces())
    r = silod.cli("run", "-d", "--name", "second", "-p", f"{port}:81", "busybox", "sleep", "1")
    assert r.returncode == 125
    assert "PortMappings" in r.stderr and str(port) in r.stderr, r.stderr
    assert [s["Name"] for s in client.list_systems()] == ["first"]
    assert (client.list_endpoints(), client.list_namespaces()) == before


def test_an_unknown_network_is_refused_naming_it(silod: Silod) -> None:
    r = silod.cli("run", "--rm", "--network", "no-such-net", "busybox", "true")
    assert r.returncode == 125
    assert "Networking.Network" in r.stderr and "no-such-net" in r.stderr, r.stderr
    assert silod.client().list_systems() == []


def test_network_none_has_only_loopback(silod: Silod) -> None:
    r = silod.cli("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert r.returncode == 0, r.stderr
    assert [line.split(": ")[1] for line in r.stdout.splitlines()] == ["lo"]


def test_a_container_keeps_its_network_across_a_silod_kill(silod: Silod) -> None:
    port = free_port()
    ok(silod, "run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c",
       "mkdir -p /www && " + WEB)
    assert http_get("127.0.0.1", port) == "served-by-silo\n"
    [ns] = silod.client().list_namespaces()
    silod.kill9()
    silod.start()
    assert http_get("127.0.0.1", port) == "served-by-silo\n"
    assert inspect(silod, "web")["NetworkSettings"]["Namespace"] == ns["ID"]
    ok(silod, "rm", "-f", "web")
    assert silod.client().list_namespaces() == []
    assert not Path(ns["Linux"]["NetnsPath"]).exists()
