"""silo-cni against Debian's reference CNI plugins, in one run.

Measures, side by side, median wall time over ``--runs`` rounds (after one warm-up round that
is not counted, the plugins taking turns in an order that rotates every round):

- start-up: VERSION, which reaches neither silod nor the kernel, against the bridge plugin's;
- ADD then DEL of one container: ``silo-cni`` (a silod of this script's own, its own network
  prefix) against the ``bridge`` plugin with ``host-local`` IPAM;
- the same with one port mapping (``runtimeConfig.portMappings``): ``silo-cni`` against the
  plugin list ``bridge`` + ``portmap``, run as libcni runs a list (ADD in order, each given the
  previous result; DEL in reverse order);
- with ``--cri``: RunPodSandbox → StopPodSandbox → RemovePodSandbox through containerd's CRI
  plugin, with silo-runtime + silo-cni against runc + the reference plugins (bridge +
  portmap), each in a containerd of its own (tests/e2e/cri).

Each round's container gets a network namespace of its own (``ip netns add``), removed after.
Everything made is removed at the end, on Ctrl-C too: silod's network, the reference bridge,
the reference portmap's chains when this run made them.

    .venv/bin/python bench/cni.py [--runs 30] [--cri]

This is a measurement, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, Failure, median_ms, print_table

sys.path.insert(0, str(REPO_ROOT))
from silod_host import Silod  # tests/e2e, put on the path by _common

PLUGIN = REPO_ROOT / ".venv" / "bin" / "silo-cni"
CNI_BIN = Path("/usr/lib/cni")
PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")


def cni_exec(binary: Path, command: str, conf: dict[str, Any], cid: str, netns: str,
             ) -> tuple[float, dict[str, Any] | None]:
    """One plugin call: its wall seconds and its result."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
           "CNI_IFNAME": "eth0", "CNI_PATH": str(CNI_BIN)}
    data = json.dumps(conf).encode()
    started = time.perf_counter()
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate(data, timeout=120)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise Failure(f"{binary.name} {command}", [str(binary)], proc.returncode,
                      (out + err).decode(errors="replace"))
    return elapsed, (json.loads(out) if out.strip() else None)


def run_list(plugins: list[dict[str, Any]], version: str, name: str, command: str, cid: str,
             netns: str, cached: list[dict[str, Any] | None]) -> tuple[float, list[Any]]:
    """A plugin list as libcni runs it; ``cached``: each plugin's ADD result (for DEL)."""
    total = 0.0
    results: list[Any] = []
    order = list(range(len(plugins)))
    if command == "DEL":
        order.reverse()
    prev: dict[str, Any] | None = None
    for i in order:
        conf = {"cniVersion": version, "name": name, **plugins[i]}
        if command == "ADD" and prev is not None:
            conf["prevResult"] = prev
        if command == "DEL" and cached and cached[-1] is not None:
            conf["prevResult"] = cached[-1]
        seconds, result = cni_exec(CNI_BIN / plugins[i]["type"], command, conf, cid, netns)
        total += seconds
        if command == "ADD":
            prev = result
        results.append(result)
    return total, results


class Netns:
    def __init__(self) -> None:
        self.name = f"cnibench-{uuid.uuid4().hex[:10]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = f"/run/netns/{self.name}"

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


def subnet() -> str:
    return f"10.{random.randint(150, 250)}.{random.randint(0, 255)}.0/24"


class Bench:
    def __init__(self, workdir: Path, silod: Silod) -> None:
        self.samples: dict[tuple[str, str], list[float]] = {}
        self.silod = silod
        self.workdir = workdir
        tag = uuid.uuid4().hex[:4]
        self.bridge_name = f"cb{tag}br0"
        port = 20000 + random.randint(0, 20000)
        self.maps = [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]
        self.silo = {"cniVersion": "1.0.0", "name": "benchcni", "type": "silo-cni",
                     "host": silod.host, "ipam": {"subnet": subnet()}}
        self.silo_pm = {**self.silo, "capabilities": {"portMappings": True},
                        "runtimeConfig": {"portMappings": self.maps}}
        self.bridge = {"type": "bridge", "bridge": self.bridge_name, "isGateway": True,
                       "ipMasq": True, "ipam": {"type": "host-local", "subnet": subnet(),
                                                "dataDir": str(workdir / "host-local")}}
        self.portmap = {"type": "portmap", "capabilities": {"portMappings": True},
                        "snat": True, "runtimeConfig": {"portMappings": self.maps}}
        self.ref_name = f"benchref{tag}"

    def note(self, key: tuple[str, str], seconds: float, record: bool) -> None:
        if record:
            self.samples.setdefault(key, []).append(seconds)

    def version_round(self, record: bool) -> None:
        """Start-up: VERSION, which reaches neither silod nor the kernel."""
        for name, binary in (("silo", PLUGIN), ("ref", CNI_BIN / "bridge")):
            seconds, _ = cni_exec(binary, "VERSION", {"cniVersion": "1.0.0"}, "", "")
            self.note(("VERSION (start-up)", name), seconds, record)

    def silo_round(self, conf: dict[str, Any], row: str, record: bool) -> None:
        ns = Netns()
        cid = f"silo{uuid.uuid4().hex[:12]}"
        try:
            add, _ = cni_exec(PLUGIN, "ADD", conf, cid, ns.path)
            rm, _ = cni_exec(PLUGIN, "DEL", conf, cid, ns.path)
        finally:
            ns.remove()
        self.note((row + " ADD", "silo"), add, record)
        self.note((row + " DEL", "silo"), rm, record)
        self.note((row, "silo"), add + rm, record)

    def ref_round(self, plugins: list[dict[str, Any]], row: str, record: bool) -> None:
        ns = Netns()
        cid = f"ref{uuid.uuid4().hex[:12]}"
        try:
            add, results = run_list(plugins, "1.0.0", self.ref_name, "ADD", cid, ns.path, [])
            rm, _ = run_list(plugins, "1.0.0", self.ref_name, "DEL", cid, ns.path, results)
        finally:
            ns.remove()
        self.note((row + " ADD", "ref"), add, record)
        self.note((row + " DEL", "ref"), rm, record)
        self.note((row, "ref"), add + rm, record)


def rotated(items: list[Callable[[bool], None]], i: int) -> list[Callable[[bool], None]]:
    k = i % len(items)
    return items[k:] + items[:k]


def iptables_chains() -> set[str]:
    out = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                         check=False).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("-N ")}


def remove_portmap_chains(before: set[str]) -> None:
    """portmap leaves its generic chains (and the jumps to them) behind; remove those this run
    made."""
    made = [c for c in PORTMAP_CHAINS if c in iptables_chains() - before]
    if not made:
        return
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                           check=False).stdout.splitlines()
    for rule in rules:
        parts = shlex.split(rule)
        if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] in made \
                and parts[1] not in made:
            subprocess.run(["iptables", "-t", "nat", "-D", *parts[1:]], check=False)
    for chain in made:
        subprocess.run(["iptables", "-t", "nat", "-F", chain], check=False)
    for chain in made:
        subprocess.run(["iptables", "-t", "nat", "-X", chain], check=False)


def cri_rows(runs: int) -> list[list[str]]:
    """RunPodSandbox → StopPodSandbox → RemovePodSandbox through containerd's CRI plugin."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))
    from cri.bench import pod_cycle_samples

    samples = pod_cycle_samples(runs)
    rows = []
    s, r = median_ms(samples.get("silo", [])), median_ms(samples.get("ref", []))
    rows.append(["RunPodSandbox+Stop+Remove (containerd CRI)", _ms(s), _ms(r), _ratio(s, r)])
    return rows


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds to take medians over")
    parser.add_argument("--cri", action="store_true",
                        help="also pods through containerd's CRI (slower)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("cni.py needs root (network namespaces, bridges, nftables)", file=sys.stderr)
        return 2
    for need in (PLUGIN, CNI_BIN / "bridge", CNI_BIN / "host-local", CNI_BIN / "portmap"):
        if not need.exists():
            print(f"{need} is missing (scripts/setup: containernetworking-plugins, the "
                  "silo-cni launcher)", file=sys.stderr)
            return 2
    if shutil.which("ip") is None:
        print("ip (iproute2) is missing", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="silo-bench-cni-"))
    chains_before = iptables_chains()
    silod = Silod(workdir / "silod")
    bench: Bench | None = None
    try:
        silod.start()
        bench = Bench(workdir, silod)
        b = bench
        rounds: list[Callable[[bool], None]] = [
            lambda rec: b.silo_round(b.silo, "ADD+DEL", rec),
            lambda rec: b.ref_round([b.bridge], "ADD+DEL", rec),
            lambda rec: b.silo_round(b.silo_pm, "ADD+DEL, 1 port mapping", rec),
            lambda rec: b.ref_round([b.bridge, b.portmap], "ADD+DEL, 1 port mapping", rec),
            b.version_round,
        ]
        print(f"{args.runs} rounds (+1 warm-up), medians in ms; order rotates every round\n",
              flush=True)
        for i in range(args.runs + 1):
            for fn in rotated(rounds, i):
                fn(i > 0)
    finally:
        leaks = silod.finish()
        subprocess.run(["ip", "link", "delete", bench.bridge_name] if bench else ["true"],
                       capture_output=True, check=False)
        remove_portmap_chains(chains_before)
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for row in ("VERSION (start-up)", "ADD+DEL", "ADD+DEL ADD", "ADD+DEL DEL",
                "ADD+DEL, 1 port mapping", "ADD+DEL, 1 port mapping ADD",
                "ADD+DEL, 1 port mapping DEL"):
        s = median_ms(bench.samples.get((row, "silo"), []))
        r = median_ms(bench.samples.get((row, "ref"), []))
        rows.append([row.replace("ADD+DEL ", "  ").replace("mapping ", "mapping: "),
                     _ms(s), _ms(r), _ratio(s, r)])
    if args.cri:
        rows += cri_rows(args.runs)
    print_table(["what", "silo ms", "reference ms", "ratio silo/ref"], rows)
    print("\nreference: bridge + host-local (+ portmap for the port-mapping rows; runc + "
          "bridge + portmap for the CRI row)")
    if leaks:
        print(f"note: silod left this behind (removed): {leaks}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
