"""silo's kernel networking against its peers, side by side in one run.

Everything happens inside network namespaces this script creates and removes (a "host"
namespace holding a bridge, and a "container" namespace), never on the real host.

- endpoint: a veth created with its peer inside the container namespace, an address and a
  default route there, both ends up, the host end on the bridge; then the veth deleted.
  ``silo`` does it over rtnetlink in this process (``silo.kernel.netlink``); ``ip`` does the
  same steps with iproute2 commands (one process each); ``cni-bridge`` is the CNI bridge
  plugin's ADD then DEL (with host-local IPAM) for the same container namespace.
  ``silo, LinkReaper`` retires the veth instead of deleting it (down, renamed, deleted with
  others in one batch on a background thread), which takes the kernel's RCU barrier off the
  path.
- nft: a table with a verdict map of 1,000 endpoint elements, then a small change (one
  endpoint's chain, rule and element) as one transaction: libnftables in process against
  ``nft -f -``.

Prints medians in ms and the ratios; a measurement, not a test.

    python bench/netkernel.py [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from silo.kernel import netns
from silo.kernel.linkreaper import LinkReaper
from silo.kernel.netlink import Netlink
from silo.kernel.nftables import Nft

RUN = "/run/silo-bench-netns"
CNI_PATH = "/usr/lib/cni"


def median_ms(fn: Callable[[int], None], runs: int) -> float:
    times = []
    for i in range(runs):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def sh(*argv: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def endpoint_silo(host: str, cont: str, reaper: LinkReaper | None = None,
                  peer_prefix: str = "eth") -> Callable[[int], None]:
    nl = Netlink(host)

    def once(i: int) -> None:
        name = f"sb{i}"
        # With a reaper, the peer in the container namespace lives on until the batch goes:
        # a fresh peer name each round (the data path would flush before reusing one).
        peer = f"{peer_prefix}{i}" if reaper else "eth0"
        nl.add_veth(name, peer, peer_netns=cont)
        with Netlink(cont) as c:
            c.add_address(peer, "10.88.0.2/16")
            c.set_link(peer, up=True)
            c.add_route("default", via="10.88.0.1", replace=True)
        nl.set_link(name, master="br0", up=True)
        if reaper:
            reaper.retire(nl, name)
        else:
            nl.delete_link(name)

    return once


def endpoint_ip(host: str, cont: str) -> Callable[[int], None]:
    def once(i: int) -> None:
        name = f"ib{i}"
        h = ["nsenter", f"--net={host}", "ip"]
        c = ["nsenter", f"--net={cont}", "ip"]
        sh(*h, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", cont)
        sh(*c, "addr", "add", "10.88.0.2/16", "dev", "eth0")
        sh(*c, "link", "set", "eth0", "up")
        sh(*c, "route", "add", "default", "via", "10.88.0.1")
        sh(*h, "link", "set", name, "master", "br0", "up")
        sh(*h, "link", "del", name)

    return once


def endpoint_cni(host: str, cont: str, data_dir: str) -> Callable[[int], None]:
    conf = json.dumps({
        "cniVersion": "1.0.0", "name": "silobench", "type": "bridge", "bridge": "cnibr0",
        "isGateway": True, "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": "10.89.0.0/16", "dataDir": data_dir},
    })

    def once(i: int) -> None:
        for cmd in ("ADD", "DEL"):
            env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": cont,
                   "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH, "PATH": os.environ["PATH"]}
            sh("nsenter", f"--net={host}", f"{CNI_PATH}/bridge", stdin=conf, env=env)

    return once


def nft_small_change(nft: Nft, use_command: str | None) -> Callable[[int], None]:
    def once(i: int) -> None:
        script = (f"add chain inet bench ep{i}\n"
                  f"add rule inet bench ep{i} tcp dport 80 accept\n"
                  f"add element inet bench ep {{ 10.3.{i // 250}.{i % 250 + 1} : jump ep{i} }}\n")
        if use_command:
            sh("nsenter", f"--net={use_command}", "nft", "-f", "-", stdin=script)
        else:
            nft.apply(script)

    return once


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    tag = f"b{os.getpid()}"
    host, cont = f"{RUN}/{tag}-host", f"{RUN}/{tag}-cont"
    data_dir = tempfile.mkdtemp(prefix="silo-bench-cni-")
    results: list[tuple[str, str, float]] = []
    try:
        netns.create(host)
        netns.create(cont)
        with Netlink(host) as nl:
            nl.add_bridge("br0")
            nl.add_address("br0", "10.88.0.1/16")
            nl.set_link("br0", up=True)
        results.append(("endpoint create+attach+delete", "silo",
                        median_ms(endpoint_silo(host, cont), args.runs)))
        with LinkReaper(host, prefix="bench") as reaper:
            results.append(("endpoint create+attach+delete", "silo, LinkReaper",
                            median_ms(endpoint_silo(host, cont, reaper), args.runs)))
        if shutil.which("ip") and shutil.which("nsenter"):
            results.append(("endpoint create+attach+delete", "ip",
                            median_ms(endpoint_ip(host, cont), args.runs)))
        if os.path.exists(f"{CNI_PATH}/bridge"):
            results.append(("endpoint create+attach+delete", "cni-bridge ADD+DEL",
                            median_ms(endpoint_cni(host, cont, data_dir), args.runs)))

        with Nft(host) as nft:
            elems = ", ".join(f"10.1.{i // 250}.{i % 250 + 1} : jump ep0" for i in range(1000))
            t = time.perf_counter()
            nft.apply("add table inet bench\n"
                      "add chain inet bench fw { type filter hook forward priority 0; }\n"
                      "add chain inet bench ep0\n"
                      "add map inet bench ep { type ipv4_addr : verdict; }\n"
                      "add rule inet bench fw ip saddr vmap @ep\n"
                      f"add element inet bench ep {{ {elems} }}\n")
            results.append(("nft table with 1,000 map elements (once)", "silo",
                            (time.perf_counter() - t) * 1000))
            small = median_ms(nft_small_change(nft, None), args.runs)
            results.append(("nft small change on 1,000 elements", "silo", small))
            if shutil.which("nft"):
                offset = args.runs + 1000
                results.append(("nft small change on 1,000 elements", "nft -f -", median_ms(
                    lambda i: nft_small_change(nft, host)(i + offset), args.runs)))
    finally:
        netns.ensure_deleted(cont)
        netns.ensure_deleted(host)
        shutil.rmtree(data_dir, ignore_errors=True)

    base: dict[str, float] = {}
    print(f"{'what':44} {'who':20} {'median ms':>10} {'vs silo':>8}")
    for what, who, ms in results:
        base.setdefault(what, ms)
        print(f"{what:44} {who:20} {ms:10.2f} {ms / base[what]:7.2f}x")


if __name__ == "__main__":
    main()
