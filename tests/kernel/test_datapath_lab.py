"""A network lab for the data path's kernel tests (no tests here; the test_datapath* files use
it): a netns that plays the host, in which the DataPath makes its bridges and its table; a
"LAN" netns behind an uplink veth with a router address; containers' namespaces made by the
DataPath; tiny TCP/UDP servers that answer with the address they saw, clients, ping.

Nothing touches the real host's interfaces or rules: the host of the lab is a namespace, the
containers hang off it, the LAN hangs off it. ``Lab`` is a context manager; leaving it stops
the servers, tears the data path down, checks that nothing of the prefix is left (links,
tables, netns files), then removes the namespaces.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from silo.kernel import netns
from silo.kernel.netlink import Netlink
from silo.kernel.nftables import Nft
from silo.network.datapath import DataPath
from tests import probes
from tests.kernel.netfixtures import need_netns


def _need() -> str | None:
    return probes.need_all(need_netns(), probes.need_binary("nsenter"),
                           probes.need_binary("busybox"), probes.need_binary("nft"))


SKIP = _need()
requires_lab = pytest.mark.skipif(bool(SKIP), reason=SKIP or "")

SERVER = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET6, kind)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", port))
if kind == socket.SOCK_STREAM:
    s.listen(64)
print("ready", flush=True)
while True:
    if kind == socket.SOCK_STREAM:
        c, peer = s.accept()
        try:
            c.recv(100)
            c.sendall(peer[0].removeprefix("::ffff:").encode())
        except OSError:
            pass
        c.close()
    else:
        data, peer = s.recvfrom(100)
        s.sendto(peer[0].removeprefix("::ffff:").encode(), peer)
"""

CLIENT = r"""
import socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(timeout)
try:
    if proto == "tcp":
        s.connect((host, port))
        s.sendall(b"x")
        print(s.recv(100).decode())
    else:
        s.sendto(b"x", (host, port))
        print(s.recvfrom(100)[0].decode())
except OSError as err:
    print("FAIL", err)
    sys.exit(1)
"""

# How long a client waits for an answer before it calls the way blocked. Not a measurement:
# an allowed exchange on veths answers in well under a millisecond.
BLOCKED_AFTER = 1.0


def guid() -> str:
    return str(uuid.uuid4())


@dataclass
class Ep:
    doc: dict[str, Any]
    path: str          # its netns
    ip: str
    ip6: str | None = None


class Lab:
    def __init__(self) -> None:
        if SKIP:
            pytest.skip(SKIP)
        self.prefix = "t" + secrets.token_hex(2)
        self.tmp = tempfile.mkdtemp(prefix="silo-dp-")
        self.host = os.path.join(self.tmp, "host.netns")
        self.extra: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.closing: list[Callable[[], None]] = []
        netns.create(self.host)
        self.dp = DataPath(prefix=self.prefix, run_dir=self.tmp, host_netns=self.host)
        self.nets: list[dict[str, Any]] = []
        self.eps: list[Ep] = []
        # A /16 of 10.x for the lab's networks: each test its own, by chance.
        self.octet = 100 + secrets.randbelow(150)
        self._subnets = 0

    # -- context ----------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        for close in self.closing:
            close()
        problems: list[str] = []
        try:
            self.dp.teardown()
            self.dp.close()
            problems = self.leftovers()
        finally:
            for path in [*self.extra, self.host]:
                with contextlib.suppress(Exception):
                    netns.ensure_deleted(path)
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problems and exc[0] is None:
            pytest.fail("the data path left behind: " + "; ".join(problems), pytrace=False)

    def leftovers(self) -> list[str]:
        out = []
        with Netlink(self.host) as nl:
            out += [f"link {ln.name}" for ln in nl.links() if ln.name.startswith(self.prefix)
                    and not ln.name.startswith(self.prefix + "u")]
        with Nft(self.host) as nft:
            for fam in ("inet", "bridge"):
                if nft.table_exists(fam, self.prefix):
                    out.append(f"table {fam} {self.prefix}")
        ns_dir = os.path.join(self.tmp, "netns")
        if os.path.isdir(ns_dir):
            out += [f"netns file {n}" for n in os.listdir(ns_dir)]
        return out

    # -- objects ----------------------------------------------------------------------------

    def subnet(self) -> str:
        self._subnets += 1
        return f"10.{self.octet}.{self._subnets}.0/24"

    def network(self, kind: str = "NAT", subnet: str | None = None, *,
                v6: str | None = None, gateway: str | None = None,
                policies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        subnet = subnet or self.subnet()
        sub: dict[str, Any] = {"IpAddressPrefix": subnet}
        if gateway:
            sub["Routes"] = [{"NextHop": gateway, "DestinationPrefix": "0.0.0.0/0"}]
        subnets = [sub]
        if v6:
            subnets.append({"IpAddressPrefix": v6})
        doc = {"ID": guid(), "Name": f"{self.prefix}-{len(self.nets)}", "Type": kind,
               "Ipams": [{"Type": "Static", "Subnets": subnets}], "Policies": policies or []}
        doc["Linux"] = self.dp.ensure_network(doc)
        self.nets.append(doc)
        return doc

    def endpoint(self, net: dict[str, Any], host_part: int, *,
                 policies: list[dict[str, Any]] | None = None,
                 ip6: str | None = None) -> Ep:
        ipam = net["Ipams"][0]["Subnets"]
        base = ipam[0]["IpAddressPrefix"].split("/")[0].rsplit(".", 1)[0]
        plen = int(ipam[0]["IpAddressPrefix"].split("/")[1])
        ip = f"{base}.{host_part}"
        configs = [{"IpAddress": ip, "PrefixLength": plen}]
        if ip6:
            configs.append({"IpAddress": ip6, "PrefixLength": 64})
        eid = guid()
        doc = {"ID": eid, "Name": f"ep{host_part}", "HostComputeNetwork": net["ID"],
               "IpConfigurations": configs, "Policies": policies or []}
        path = self.dp.create_namespace(eid)
        try:
            doc["Linux"] = self.dp.attach(net, doc, path)
        except BaseException:
            self.dp.delete_namespace(path)
            raise
        ep = Ep(doc, path, ip, ip6)
        self.eps.append(ep)
        return ep

    def remove(self, net: dict[str, Any], ep: Ep) -> None:
        self.dp.detach(net, ep.doc)
        self.dp.delete_namespace(ep.path)
        self.eps.remove(ep)

    def lan(self, host_cidr: str | None, lan_cidr: str, *,
            host6: str | None = None, lan6: str | None = None) -> tuple[str, str]:
        """A LAN netns joined to the lab's host by a veth: the host's end (the uplink,
        ``<prefix>u<n>``) gets ``host_cidr`` (or nothing), the LAN's end ``lan0`` gets
        ``lan_cidr`` (the LAN's router/server). Returns (uplink name, LAN netns path)."""
        path = os.path.join(self.tmp, f"lan{len(self.extra)}.netns")
        netns.create(path)
        self.extra.append(path)
        uplink = f"{self.prefix}u{len(self.extra)}"
        # No duplicate address detection on the LAN's link: until it ends, neither side has a
        # link-local address and the first IPv6 packets wait for it.
        for where, ifname in ((path, "default"), (self.host, "default")):
            netns.sysctl_in(where, f"net.ipv6.conf.{ifname}.accept_dad", 0)
        with Netlink(self.host) as nl:
            nl.add_veth(uplink, "lan0", peer_netns=path)
            if host_cidr:
                nl.add_address(uplink, host_cidr)
            if host6:
                nl.add_address(uplink, host6)
            nl.set_link(uplink, up=True)
        with Netlink(path) as nl:
            nl.add_address("lan0", lan_cidr)
            if lan6:
                nl.add_address("lan0", lan6)
            nl.set_link("lan0", up=True)
        if lan6:
            self.wait_ready(self.host, lan6.split("/")[0])
        return uplink, path

    # -- traffic ----------------------------------------------------------------------------

    def run(self, where: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", f"--net={where}", *argv], capture_output=True,
                              text=True, timeout=60)

    def serve(self, where: str, port: int, proto: str = "tcp") -> None:
        p = subprocess.Popen(["nsenter", f"--net={where}", sys.executable, "-c", SERVER,
                              proto, str(port)], stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", f"server on {port}/{proto} never started"

    def reach(self, where: str, host: str, port: int, proto: str = "tcp") -> str | None:
        """What the server at host:port saw as our address, or None if it never answered."""
        r = self.run(where, sys.executable, "-c", CLIENT, proto, host, str(port),
                     str(BLOCKED_AFTER))
        return r.stdout.strip() if r.returncode == 0 else None

    def wait_ready(self, where: str, host: str, deadline: float = 20) -> None:
        """Wait until ``host`` answers a ping from ``where``. IPv6 sends nothing on a new
        veth until the kernel's link watch has seen its carrier (up to a second later); a
        test must not mistake that for a blocked way. The deadline only stops a hang."""
        end = time.monotonic() + deadline
        while not self.ping(where, host):
            if time.monotonic() > end:
                raise AssertionError(f"{host} never answered from {where}")

    def ping(self, where: str, host: str) -> bool:
        r = self.run(where, "busybox", "ping", "-c", "1", "-W", "1", host)
        return r.returncode == 0
