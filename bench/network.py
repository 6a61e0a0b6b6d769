"""The network data path against its Linux peers, side by side in one run.

Measures:

- endpoint attach + detach through ``DataPath`` (veth pair into an existing netns, addresses,
  default route, its nft part in and out) against the CNI ``bridge`` plugin's ADD + DEL with
  ``host-local`` IPAM (Debian's containernetworking-plugins) on an equivalent bridge network:
  median wall ms over ``--runs`` rounds, the two taking turns in an order that alternates, one
  warm-up round not counted. The plugin is a process per call (that is how CNI runs); the data
  path is a call in this process (that is how silod runs it);
- iperf3 TCP, container to container: a hand-built bridge + veth pairs with no rules at all,
  against a silo NAT network, and against the same with ``--acl-rules`` ACL rules installed on
  the server endpoint. Median Gbit/s over ``--iperf-runs`` runs of ``--iperf-seconds``; run
  before the scale part, on a host that has not been through it;
- scale: ``--endpoints`` endpoints, each with a TCP port mapping, on one NAT network: the
  median time of an attach in each block of 100 and of its nft transaction, and the median of
  five policy changes on the first endpoint (its port mapping moved) at each hundred. The rule
  side must stay flat; the rest of an attach is the kernel's link work (veth, bridge port).

Everything happens inside network namespaces this script creates: one plays the host (the data
path's bridges and table, the CNI plugin's bridge), one per container; all of it is removed at
the end, on Ctrl-C too. Nothing touches the real host's interfaces or rules.

    .venv/bin/python bench/network.py [--runs 30] [--endpoints 1000] [--acl-rules 1000]

This is a measurement, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, print_table

try:
    from silo.network.datapath import DataPath
except ImportError:  # run by a Python outside the venv: take the source tree
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from silo.network.datapath import DataPath

from silo.kernel import libc, netns
from silo.kernel.netlink import Netlink
from silo.kernel.nftables import Nft

CNI_DIR = "/usr/lib/cni"
CLONE_NEWNET = 0x40000000


def guid() -> str:
    return str(uuid.uuid4())


class Lab:
    """Namespaces of this run, all under one temporary directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.made: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def netns(self, name: str) -> str:
        path = str(self.workdir / "ns" / name)
        netns.create(path)
        self.made.append(path)
        return path

    def drop(self, paths: list[str]) -> None:
        """Delete some of this run's namespaces now."""
        for path in paths:
            with contextlib.suppress(Exception):
                netns.ensure_deleted(path)
            self.made.remove(path)

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
        for path in reversed(self.made):
            with contextlib.suppress(Exception):
                netns.ensure_deleted(path)


def in_netns(path: str) -> Callable[[], None]:
    """A preexec_fn: the child (only) moves into the netns before it runs the command."""
    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        libc.setns(fd, CLONE_NEWNET)
        os.close(fd)
    return enter


# -- attach + detach against the CNI bridge plugin ----------------------------------------------

def cni_call(host: str, command: str, conf: bytes, container_ns: str, cid: str) -> float:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": container_ns,
           "CNI_IFNAME": "eth0", "CNI_PATH": CNI_DIR, "PATH": os.environ.get("PATH", "")}
    started = time.perf_counter()
    done = subprocess.run([f"{CNI_DIR}/bridge"], input=conf, env=env, capture_output=True,
                          preexec_fn=in_netns(host))
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"CNI bridge {command}: {done.stdout.decode()} {done.stderr.decode()}")
    return elapsed


def bench_attach(lab: Lab, dp: DataPath, host: str, runs: int) -> list[list[str]]:
    net = {"ID": guid(), "Type": "NAT", "Policies": [],
           "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.250.0.0/24"}]}]}
    dp.ensure_network(net)
    ep = {"ID": guid(), "HostComputeNetwork": net["ID"], "Policies": [],
          "IpConfigurations": [{"IpAddress": "10.250.0.2", "PrefixLength": 24}]}
    silo_ns, cni_ns = lab.netns("attach-silo"), lab.netns("attach-cni")
    conf = json.dumps({
        "cniVersion": "1.0.0", "name": "silobench", "type": "bridge", "bridge": "cnibench0",
        "isGateway": True, "ipMasq": False,
        "ipam": {"type": "host-local", "dataDir": str(lab.workdir / "cni-ipam"),
                 "ranges": [[{"subnet": "10.251.0.0/24"}]]}}).encode()

    def silo_round() -> float:
        started = time.perf_counter()
        dp.attach(net, ep, silo_ns)
        dp.detach(net, ep)
        return time.perf_counter() - started

    def cni_round() -> float:
        return cni_call(host, "ADD", conf, cni_ns, "bench") + \
            cni_call(host, "DEL", conf, cni_ns, "bench")

    samples: dict[str, list[float]] = {"silo": [], "cni": []}
    for r in range(runs + 1):
        order = [("silo", silo_round), ("cni", cni_round)]
        if r % 2:
            order.reverse()
        for name, fn in order:
            t = fn()
            if r:
                samples[name].append(t)
    dp.remove_network(net)
    s, c = (statistics.median(samples[k]) * 1000 for k in ("silo", "cni"))
    return [["endpoint attach + detach (silo DataPath)", f"{s:.1f}", f"{s / c:.2f}"],
            ["CNI bridge ADD + DEL (host-local)", f"{c:.1f}", "1.00"]]


# -- scale: 1,000 endpoints with port mappings ---------------------------------------------------

class TimedNft(Nft):
    """The data path's nft context, timing each transaction it applies."""

    last = 0.0

    def apply(self, script: str) -> None:
        started = time.perf_counter()
        super().apply(script)
        self.last = time.perf_counter() - started


def bench_scale(lab: Lab, host: str, count: int) -> list[list[str]]:
    nft = TimedNft(host)
    dp = DataPath(prefix="b" + secrets.token_hex(2), run_dir=str(lab.workdir / "run-scale"),
                  host_netns=host, nft=nft)
    before = len(lab.made)
    try:
        return _scale(lab, dp, nft, count)
    finally:
        dp.teardown()
        dp.close()
        nft.close()
        lab.drop(lab.made[before:])


def _scale(lab: Lab, dp: DataPath, nft: TimedNft, count: int) -> list[list[str]]:
    net = {"ID": guid(), "Type": "NAT", "Policies": [],
           "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.240.0.0/20"}]}]}
    dp.ensure_network(net)
    rows = []
    block: list[float] = []
    block_rules: list[float] = []
    first: dict[str, Any] | None = None
    for i in range(count):
        ns = lab.netns(f"scale-{i}")
        ep = {"ID": guid(), "HostComputeNetwork": net["ID"],
              "IpConfigurations": [{"IpAddress": f"10.240.{(i + 2) // 256}.{(i + 2) % 256}",
                                    "PrefixLength": 20}],
              "Policies": [{"Type": "PortMapping", "Settings": {
                  "Protocol": 6, "InternalPort": 80, "ExternalPort": 20000 + i}}]}
        started = time.perf_counter()
        dp.attach(net, ep, ns)
        block.append(time.perf_counter() - started)
        block_rules.append(nft.last)
        if first is None:
            first = ep
        n = i + 1
        if n in (1, 10) or n % 100 == 0:
            changes = []
            for k in range(5):
                first["Policies"][0]["Settings"]["ExternalPort"] = 40000 + 10 * n + k
                started = time.perf_counter()
                dp.update_endpoint(net, first)
                changes.append(time.perf_counter() - started)
            rows.append([str(n), f"{statistics.median(block) * 1000:.1f}",
                         f"{statistics.median(block_rules) * 1000:.2f}",
                         f"{statistics.median(changes) * 1000:.2f}"])
            block, block_rules = [], []
    return rows


# -- iperf3 ---------------------------------------------------------------------------------------

def iperf(lab: Lab, server_ns: str, client_ns: str, ip: str, seconds: int) -> float:
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", "5201"], preexec_fn=in_netns(server_ns),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab.procs.append(server)
    try:
        for _ in range(200):   # until the server listens (the loop only stops a hang)
            done = subprocess.run(["iperf3", "-c", ip, "-t", str(seconds), "-J"],
                                  preexec_fn=in_netns(client_ns), capture_output=True)
            try:
                doc = json.loads(done.stdout)
            except ValueError:
                doc = {}
            received = doc.get("end", {}).get("sum_received", {}).get("bits_per_second")
            if done.returncode == 0 and received:
                return float(received) / 1e9
            time.sleep(0.05)
        raise RuntimeError(f"iperf3 to {ip}: {doc.get('error') or done.stdout.decode()[-300:]}")
    finally:
        server.kill()
        server.wait()
        lab.procs.remove(server)


def plain_pair(lab: Lab) -> tuple[str, str, str]:
    """A hand-built bridge and two veth pairs in a host netns of their own, no rules."""
    host = lab.netns("plain-host")
    a, b = lab.netns("plain-a"), lab.netns("plain-b")
    with Netlink(host) as nl:
        nl.add_bridge("plainbr0")
        nl.set_link("plainbr0", up=True)
        for name, ns, ip in (("plaina", a, "10.252.0.2/24"), ("plainb", b, "10.252.0.3/24")):
            nl.add_veth(name, "eth0", peer_netns=ns)
            nl.set_link(name, master="plainbr0", up=True)
            with Netlink(ns) as inner:
                inner.add_address("eth0", ip)
                inner.set_link("eth0", up=True)
    return a, b, "10.252.0.3"


def bench_iperf(lab: Lab, dp: DataPath, runs: int, seconds: int,
                acl_rules: int) -> list[list[str]]:
    net = {"ID": guid(), "Type": "NAT", "Policies": [],
           "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.253.0.0/24"}]}]}
    dp.ensure_network(net)
    eps = {}
    for name, host_part in (("client", 2), ("server", 3), ("server-acl", 4)):
        ns = lab.netns(f"iperf-{name}")
        ep = {"ID": guid(), "HostComputeNetwork": net["ID"], "Policies": [],
              "IpConfigurations": [{"IpAddress": f"10.253.0.{host_part}", "PrefixLength": 24}]}
        dp.attach(net, ep, ns)
        eps[name] = (ep, ns)
    # ACL rules on the second server: blocks of ports iperf does not use, from many remotes.
    rules = [{"Type": "ACL", "Settings": {
        "Action": "Block", "Direction": "In", "Protocols": "6", "Priority": 1000 + i,
        "LocalPorts": str(10000 + i), "RemoteAddresses": f"198.18.{i // 256}.{i % 256}"}}
        for i in range(acl_rules)]
    acl_ep = eps["server-acl"][0]
    acl_ep["Policies"] = rules
    dp.update_endpoint(net, acl_ep)
    plain_a, plain_b, plain_ip = plain_pair(lab)
    client = eps["client"][1]
    cases = {
        "hand-built bridge + veth (no rules)": lambda: iperf(lab, plain_b, plain_a, plain_ip,
                                                             seconds),
        "silo NAT network": lambda: iperf(lab, eps["server"][1], client, "10.253.0.3", seconds),
        f"silo NAT network, {acl_rules} ACL rules": lambda: iperf(
            lab, eps["server-acl"][1], client, "10.253.0.4", seconds),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(runs):
        for name in names[r % 3:] + names[:r % 3]:
            samples[name].append(cases[name]())
    base = statistics.median(samples[names[0]])
    return [[name, f"{statistics.median(s):.2f}", f"{statistics.median(s) / base:.3f}"]
            for name, s in samples.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="attach/detach rounds")
    parser.add_argument("--endpoints", type=int, default=1000, help="endpoints for the scale "
                        "part (0 skips it)")
    parser.add_argument("--acl-rules", type=int, default=1000)
    parser.add_argument("--iperf-runs", type=int, default=3, help="0 skips iperf")
    parser.add_argument("--iperf-seconds", type=int, default=5)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("network.py needs root (it creates namespaces, bridges, rules)", file=sys.stderr)
        return 2
    for tool in (f"{CNI_DIR}/bridge", f"{CNI_DIR}/host-local"):
        if not os.access(tool, os.X_OK):
            print(f"{tool} is missing: install containernetworking-plugins (scripts/setup)",
                  file=sys.stderr)
            return 2
    if args.iperf_runs and not shutil.which("iperf3"):
        print("iperf3 is missing (scripts/setup installs it)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="silo-bench-net-"))
    lab = Lab(workdir)
    dp: DataPath | None = None
    try:
        host = lab.netns("host")
        dp = DataPath(prefix="b" + secrets.token_hex(2), run_dir=str(workdir / "run"),
                      host_netns=host)
        print(f"attach + detach: {args.runs} rounds (+1 warm-up), medians in ms", flush=True)
        print_table(["case", "ms", "ratio"], bench_attach(lab, dp, host, args.runs))
        if args.iperf_runs:
            print(f"\niperf3 TCP container to container: median of {args.iperf_runs} runs of "
                  f"{args.iperf_seconds} s, Gbit/s", flush=True)
            print_table(["case", "Gbit/s", "ratio"],
                        bench_iperf(lab, dp, args.iperf_runs, args.iperf_seconds,
                                    args.acl_rules))
        if args.endpoints:
            print(f"\nscale: {args.endpoints} endpoints with port mappings on one NAT network;"
                  " medians over the block of 100: a further attach, its nft transaction; "
                  "a policy change of the first endpoint (5 of them)", flush=True)
            print_table(["endpoints", "attach ms", "of it nft ms", "change ms"],
                        bench_scale(lab, host, args.endpoints))
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        if dp is not None:
            with contextlib.suppress(Exception):
                dp.teardown()
            dp.close()
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
