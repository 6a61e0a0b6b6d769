"""silo's whole path (CLI, silod, conmon, silo-runtime) against podman with runc, in one run.

Measures, side by side:

- ``silo run --rm busybox true`` against ``podman run --rm --network none IMAGE true`` (podman's
  runtime set to runc): median wall time over ``--runs`` rounds, the two taking turns in an
  order that rotates every round, after one warm-up round that is not counted;
- ``--concurrent`` detached containers (``run -d ... sleep 600``) started at once from as many
  processes: wall time until every one exited and ``ps`` lists them all running (median over
  ``--concurrent-rounds``); removed afterwards;
- host memory per running container while they run: the PSS of each container's conmon, plus
  silod's PSS shared out over them (silo); the PSS of each conmon (podman has no daemon);
- scale: with ``--scale`` silo containers running, p50/p99 of ``silo ps`` (the CLI,
  ``--ps-calls`` calls) and of ``GET /v1/compute-systems/{id}`` through ``silo.client.Client``
  in this process (``--inspect-calls`` calls). If starting them takes over ``--scale-budget``
  seconds, the latencies are taken at the number reached, which is printed.

silod is one of its own: started by this script on temporary data and run directories, with
its own cgroup parent, never the machine's /run/silo/silod.sock. podman is isolated the way the
end-to-end tests isolate it (tests/e2e/peers.py). Everything is removed at the end, on Ctrl-C
too.

    .venv/bin/python bench/run.py [--runs 20] [--concurrent 50] [--scale 200]

This is a measurement, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, Failure, executable, peers, percentile, print_table, pss_kib, timed

try:
    from silo.client import Client
except ImportError:  # run by a Python outside the venv: take the source tree
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from silo.client import Client

VENV_BIN = REPO_ROOT / ".venv" / "bin"
SYSTEM_IMAGES = Path("/var/lib/silo/images")
RUNC = "/usr/sbin/runc"


class Silod:
    """A silod of this script's own: data and run directories under ``workdir``, cgroup parent
    ``/silo-bench-<hex>``, started in the foreground in a session of its own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.run_dir = workdir / "run"
        self.socket = self.run_dir / "silod.sock"
        self.host = f"unix://{self.socket}"
        self.cgroup_parent = f"silo-bench-{uuid.uuid4().hex[:10]}"
        self.log = workdir / "silod.log"
        self.cli = str(VENV_BIN / "silo")
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(self.host, timeout=60)
        self._host = peers.HostPaths(cgroups=[self.cgroup_parent])

    def start(self) -> None:
        (self.data / "images").mkdir(parents=True)
        self.run_dir.mkdir(parents=True)
        for image in SYSTEM_IMAGES.iterdir():
            (self.data / "images" / image.name).symlink_to(image)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "silod"), "--foreground", "--data-dir", str(self.data),
                 "--run-dir", str(self.run_dir), "--cgroup-parent", f"/{self.cgroup_parent}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise peers.PeerError(f"silod exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.client.system_info()
                return True
            except Exception:
                return False

        peers.wait_for(answers, "silod to answer on its socket", timeout=30, interval=0.05)

    def argv(self, *args: str) -> list[str]:
        return [self.cli, "-H", self.host, *args]

    def ids(self) -> list[str]:
        return [str(s["Id"]) for s in self.client.list_systems()]

    def remove_all(self) -> None:
        ids = self.ids()
        for i in range(0, len(ids), 50):
            peers.run(self.argv("rm", "-f", *ids[i:i + 50]), check=False, timeout=300)
        for cid in self.ids():  # whatever the CLI could not remove
            with contextlib.suppress(Exception):
                self.client.delete(cid, force=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> list[str]:
        """Remove every container, stop silod, remove what is left; return what leaked."""
        leaks = peers.LeakCheck("silo")
        try:
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(Exception):
                    self.remove_all()
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            leaks.processes(self.workdir)
            leaks.mounts(self.workdir)
            for parent in peers.cgroup_dirs(self.cgroup_parent):
                for child in sorted(p for p in parent.iterdir() if p.is_dir()):
                    leaks.cgroups(f"{self.cgroup_parent}/{child.name}")
            peers.remove_tree(self.workdir)
            self._host.remove()
        return leaks.leaks


# -- helpers --


def rotated(names: list[str], i: int) -> list[str]:
    k = i % len(names)
    return names[k:] + names[:k]


def start_all(argvs: Sequence[list[str]], env: dict[str, str] | None, what: str,
              parallel: int | None = None, deadline: float | None = None) -> int:
    """Run every argv, ``parallel`` at a time (all at once by default), each with stdout to
    /dev/null; raise Failure if one fails. Stops launching at ``deadline`` (monotonic) and
    returns how many were run."""
    parallel = parallel or len(argvs)
    pending = list(argvs)
    running: list[tuple[subprocess.Popen[bytes], list[str], Any]] = []
    done = 0
    failure: Failure | None = None

    def reap(proc: subprocess.Popen[bytes], argv: list[str], err: Any) -> None:
        nonlocal done, failure
        if proc.returncode != 0 and failure is None:
            err.seek(0)
            failure = Failure(what, argv, proc.returncode, err.read().decode(errors="replace"))
        elif proc.returncode == 0:
            done += 1
        err.close()

    try:
        while pending or running:
            while pending and len(running) < parallel and failure is None and (
                    deadline is None or time.monotonic() < deadline):
                argv = pending.pop(0)
                err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in reap()
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err, env=env)
                running.append((proc, argv, err))
            if not running:
                break
            if not pending or failure is not None:  # nothing more to launch: block on each
                for item in running:
                    item[0].wait()
                    reap(*item)
                running.clear()
                continue
            finished = [item for item in running if item[0].poll() is not None]
            for item in finished:
                running.remove(item)
                reap(*item)
            if not finished:
                time.sleep(0.002)
    finally:
        for proc, _, err in running:
            proc.kill()
            proc.wait()
            err.close()
    if failure is not None:
        raise failure
    return done


def count_lines(argv: list[str], env: dict[str, str] | None = None) -> int:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)
    return len(proc.stdout.split()) if proc.returncode == 0 else -1


def timed_call(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


# -- the measurements --


class Bench:
    def __init__(self, silod: Silod, podman: peers.Podman, image: str) -> None:
        self.silod = silod
        self.podman = podman
        self.image = image
        self.env = podman.env
        self.notes: list[str] = []

    def run_rm(self, name: str) -> float:
        if name == "silo":
            return timed(self.silod.argv("run", "--rm", "busybox", "true"), what="silo run --rm")
        return timed(self.podman.argv("run", "--rm", "--network", "none", self.image, "true"),
                     what="podman run --rm", env=self.env)

    def run_rm_rounds(self, runs: int) -> dict[str, float]:
        samples: dict[str, list[float]] = {"silo": [], "podman": []}
        for i in range(runs + 1):
            for name in rotated(list(samples), i):
                seconds = self.run_rm(name)
                if i > 0:
                    samples[name].append(seconds)
        return {name: statistics.median(s) for name, s in samples.items()}

    def detached(self, name: str, n: int, memory: dict[str, dict[str, float]] | None) -> float:
        """Start n sleeping containers at once; the wall time until all are listed running.
        Takes the memory figures while they run when ``memory`` is given; removes them."""
        if name == "silo":
            argv = self.silod.argv("run", "-d", "busybox", "sleep", "600")
            env = None
            listing = self.silod.argv("ps", "-q")
        else:
            argv = self.podman.argv("run", "-d", "--network", "none", self.image, "sleep", "600")
            env = self.env
            listing = self.podman.argv("ps", "-q", "--filter", "status=running")
        try:
            started = time.perf_counter()
            start_all([argv] * n, env, f"{name} run -d")
            peers.wait_for(lambda: count_lines(listing, env) >= n,
                           f"{n} {name} containers to be listed running", timeout=300,
                           interval=0.01)
            elapsed = time.perf_counter() - started
            if memory is not None:
                memory[name] = self.memory(name, n)
        finally:
            self.remove_all(name)
        return elapsed

    def remove_all(self, name: str) -> None:
        if name == "silo":
            self.silod.remove_all()
        else:
            self.podman.podman("rm", "-f", "-a", "-t", "0", check=False, timeout=300)

    def memory(self, name: str, n: int) -> dict[str, float]:
        top = self.silod.run_dir if name == "silo" else self.podman.workdir
        from silod_host import conmons_mentioning  # beside peers, in tests/e2e

        monitors = [kib for kib in map(pss_kib, conmons_mentioning(str(top).rstrip("/") + "/"))
                    if kib is not None]
        if len(monitors) != n:
            self.notes.append(f"{name}: found {len(monitors)} conmon for {n} containers")
        figures = {"monitors": len(monitors),
                   "conmon_kib": sum(monitors) / len(monitors) if monitors else 0.0,
                   "daemon_kib": 0.0}
        if name == "silo":
            assert self.silod.proc is not None
            figures["daemon_kib"] = float(pss_kib(self.silod.proc.pid) or 0)
        figures["per_container_kib"] = figures["conmon_kib"] + figures["daemon_kib"] / n
        return figures

    def scale(self, n: int, budget: float, ps_calls: int, inspect_calls: int,
              parallel: int) -> dict[str, float]:
        argv = self.silod.argv("run", "-d", "busybox", "sleep", "600")
        started = time.monotonic()
        try:
            reached = start_all([argv] * n, None, "silo run -d", parallel=parallel,
                                deadline=started + budget)
            start_seconds = time.monotonic() - started
            ids = [str(s["Id"]) for s in self.silod.client.list_systems(state="Running")]
            ps = [timed(self.silod.argv("ps"), what="silo ps") for _ in range(ps_calls)]
            client = Client(self.silod.host, timeout=60)
            rng = random.Random(0)
            inspect = [timed_call(lambda: client.get_system(rng.choice(ids)))
                       for _ in range(inspect_calls)]
        finally:
            self.silod.remove_all()
        return {"asked": n, "reached": reached, "running": len(ids),
                "start_seconds": start_seconds,
                "ps_p50": percentile(ps, 50), "ps_p99": percentile(ps, 99),
                "inspect_p50": percentile(inspect, 50), "inspect_p99": percentile(inspect, 99)}


def version(argv: list[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          stdin=subprocess.DEVNULL)
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else "(no version)"


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="rounds of run --rm (medians)")
    parser.add_argument("--concurrent", type=int, default=50, help="containers started at once")
    parser.add_argument("--concurrent-rounds", type=int, default=3,
                        help="rounds of the concurrent start (median)")
    parser.add_argument("--scale", type=int, default=200, help="silo containers for ps/inspect")
    parser.add_argument("--scale-budget", type=float, default=300,
                        help="seconds allowed for starting the --scale containers")
    parser.add_argument("--scale-parallel", type=int, default=8,
                        help="run -d processes at once while filling up to --scale")
    parser.add_argument("--ps-calls", type=int, default=30)
    parser.add_argument("--inspect-calls", type=int, default=100)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run.py needs root (it starts silod and podman containers)", file=sys.stderr)
        return 2
    missing = [what for what, ok in (
        ("silod (scripts/setup)", executable(VENV_BIN / "silod")),
        ("silo (scripts/setup)", executable(VENV_BIN / "silo")),
        (RUNC, executable(RUNC)),
        ("podman", shutil.which("podman") is not None),
        ("conmon", shutil.which("conmon") is not None),
        (f"{SYSTEM_IMAGES}/busybox", (SYSTEM_IMAGES / "busybox").is_dir()),
    ) if not ok]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="silo-bench-"))
    silod = Silod(workdir / "silod")
    podman = peers.Podman(workdir / "podman", RUNC)
    leaks: list[str] = []
    results: dict[str, object] = {}
    bench: Bench | None = None
    try:
        silod.start()
        podman.start()
        rootfs = peers.build_busybox_rootfs(workdir / "rootfs")
        image = podman.load_image(peers.write_oci_archive(rootfs, workdir / "busybox.oci.tar"))
        bench = Bench(silod, podman, image)
        print(f"silo   {silod.client.system_info().get('Runtime', {}).get('Version', '')}")
        print(f"podman {version(['podman', '--version'])}, "
              f"runtime {RUNC}: {version([RUNC, '--version'])}")
        print(f"conmon {version(['conmon', '--version'])}\n", flush=True)

        print(f"run --rm: {args.runs} rounds (+1 warm-up), alternating ...", flush=True)
        results["run"] = bench.run_rm_rounds(args.runs)

        print(f"{args.concurrent} detached at once: {args.concurrent_rounds} rounds, "
              "alternating ...", flush=True)
        memory: dict[str, dict[str, float]] = {}
        concurrent: dict[str, list[float]] = {"silo": [], "podman": []}
        for i in range(args.concurrent_rounds):
            for name in rotated(list(concurrent), i):
                concurrent[name].append(
                    bench.detached(name, args.concurrent, memory if i == 0 else None))
        results["concurrent"] = {k: statistics.median(v) for k, v in concurrent.items()}
        results["memory"] = memory

        if args.scale > 0:
            print(f"scale: filling silod up to {args.scale} containers ...\n", flush=True)
            results["scale"] = bench.scale(args.scale, args.scale_budget, args.ps_calls,
                                           args.inspect_calls, args.scale_parallel)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except (Failure, peers.PeerError) as failure:
        print(f"failed: {failure}", file=sys.stderr)
        if isinstance(failure, Failure):
            print(failure.stderr[-2000:], file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            leaks += silod.stop()
            try:
                podman.stop()
            except peers.PeerError as err:
                leaks.append(str(err))
        finally:
            peers.remove_tree(workdir)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for leak in leaks:
            print(f"leak (removed): {leak}", file=sys.stderr)

    report(results, args, bench.notes if bench else [])
    return 0


def report(results: dict[str, object], args: argparse.Namespace, notes: list[str]) -> None:
    run: dict[str, float] = results["run"]  # type: ignore[assignment]
    concurrent: dict[str, float] = results["concurrent"]  # type: ignore[assignment]
    memory: dict[str, dict[str, float]] = results["memory"]  # type: ignore[assignment]
    scale: dict[str, float] = results.get("scale") or {}  # type: ignore[assignment]
    n = args.concurrent
    rows = [
        [f"run --rm busybox true (median of {args.runs})", ms(run["silo"]), ms(run["podman"]),
         ratio(run["silo"], run["podman"])],
        [f"{n} run -d at once, until all running (median of {args.concurrent_rounds})",
         ms(concurrent["silo"]), ms(concurrent["podman"]),
         ratio(concurrent["silo"], concurrent["podman"])],
    ]
    print_table(["", "silo ms", "podman ms", "ratio silo/podman"], rows)
    print()
    silo_mem, podman_mem = memory.get("silo", {}), memory.get("podman", {})
    print_table(
        [f"host memory, {n} running (PSS, KiB)", "silo", "podman", "ratio silo/podman"],
        [["conmon, mean per container", f"{silo_mem.get('conmon_kib', 0):.0f}",
          f"{podman_mem.get('conmon_kib', 0):.0f}",
          ratio(silo_mem.get("conmon_kib"), podman_mem.get("conmon_kib"))],
         [f"daemon (silod) / {n}", f"{silo_mem.get('daemon_kib', 0) / n:.0f}", "0", "-"],
         ["per container", f"{silo_mem.get('per_container_kib', 0):.0f}",
          f"{podman_mem.get('per_container_kib', 0):.0f}",
          ratio(silo_mem.get("per_container_kib"), podman_mem.get("per_container_kib"))]])
    print(f"(silod PSS {silo_mem.get('daemon_kib', 0):.0f} KiB; conmon counted: silo "
          f"{silo_mem.get('monitors', 0):.0f}, podman {podman_mem.get('monitors', 0):.0f})\n")
    reached = int(scale.get("running", 0))
    if not scale:
        pass
    elif reached < scale["asked"]:
        notes.append(f"scale: {reached} of {int(scale['asked'])} containers within "
                     f"{args.scale_budget:.0f} s; latencies below are at {reached}")
    if scale:
        print(f"scale: {reached} silo containers running (started in "
              f"{scale['start_seconds']:.1f} s, {args.scale_parallel} run -d at a time)")
        print_table(["call", "p50 ms", "p99 ms"], [
            [f"silo ps (CLI, {args.ps_calls} calls)", ms(scale["ps_p50"]),
             ms(scale["ps_p99"])],
            [f"Client.get_system (GET inspect, {args.inspect_calls} calls)",
             ms(scale["inspect_p50"]), ms(scale["inspect_p99"])]])
    print(f"\nissue's floor for run --rm: ratio silo/podman <= 0.5; "
          f"measured {ratio(run['silo'], run['podman'])}")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
