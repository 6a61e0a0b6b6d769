"""silo-runtime against runc and crun, side by side in one run.

Measures, for every runtime found, the median wall time over ``--runs`` rounds of:

- ``run`` of /bin/true in a busybox bundle (create + start + wait + delete in one call);
- each verb on its own: ``create``, ``start``, ``state``, ``exec`` (of /bin/true, attached,
  from a ``--process`` file), ``kill`` (SIGKILL) and ``delete``;
- ``ctr run --rm`` of /bin/true through containerd and its runc v2 shim, with the shim's
  ``--runc-binary`` set to each runtime.

The runtimes take turns within each round, in an order that rotates every round, so that drift
on the machine spreads over all of them. One warm-up round is not counted. A runtime that fails
(crun refuses hybrid cgroup hosts) is reported and left out of the rest.

    python bench/runtime.py [--runs 30] [--silo PATH] [--no-containerd]

This is a measurement, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

from _common import REPO_ROOT, Failure, executable, median_ms, peers, print_table, timed

VERBS = ("create", "start", "state", "exec", "kill", "delete")
TRUE_PROCESS = {
    "terminal": False,
    "user": {"uid": 0, "gid": 0},
    "args": ["/bin/true"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "cwd": "/",
}


class Bench:
    def __init__(self, runtimes: dict[str, str], workdir: Path) -> None:
        self.runtimes = runtimes
        self.workdir = workdir
        self.samples: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.failures: dict[str, str] = {}
        self._live: list[tuple[str, str]] = []  # (runtime name, container id) to clean up

    # -- bundles --

    def prepare(self, reference_runtime: str) -> None:
        self.rootfs = peers.build_busybox_rootfs(self.workdir / "rootfs")
        self.true_bundle = self._bundle("true-bundle", ["/bin/true"], reference_runtime)
        self.sleep_bundle = self._bundle("sleep-bundle", ["sleep", "3600"], reference_runtime)
        self.process_file = self.workdir / "process-true.json"
        self.process_file.write_text(json.dumps(TRUE_PROCESS))

    def _bundle(self, name: str, args: list[str], reference_runtime: str) -> Path:
        """A bundle whose config.json is ``runc spec``'s (the de-facto default), made
        non-interactive and pointed at the shared rootfs."""
        bundle = self.workdir / name
        bundle.mkdir()
        peers.run([reference_runtime, "spec", "--bundle", str(bundle)])
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        config["root"] = {"path": str(self.rootfs), "readonly": True}
        (bundle / "config.json").write_text(json.dumps(config, indent=2))
        return bundle

    def root(self, name: str) -> str:
        return str(self.workdir / f"state-{name}")

    def argv(self, name: str, *args: str) -> list[str]:
        return [self.runtimes[name], "--root", self.root(name), *args]

    # -- one round for one runtime --

    def round(self, name: str, record: bool) -> None:
        try:
            self._run_once(name, record)
            self._verbs_once(name, record)
        except Failure as failure:
            self.failures[name] = str(failure)
        finally:
            self.cleanup()

    def _note(self, verb: str, name: str, seconds: float, record: bool) -> None:
        if record:
            self.samples[(verb, name)].append(seconds)

    def _run_once(self, name: str, record: bool) -> None:
        cid = f"bench-run-{uuid.uuid4().hex[:12]}"
        self._live.append((name, cid))
        seconds = timed(self.argv(name, "run", "--bundle", str(self.true_bundle), cid),
                        what=f"{name} run")
        self._note("run", name, seconds, record)

    def _verbs_once(self, name: str, record: bool) -> None:
        cid = f"bench-verbs-{uuid.uuid4().hex[:12]}"
        self._live.append((name, cid))
        steps: list[tuple[str, list[str]]] = [
            ("create", ["create", "--bundle", str(self.sleep_bundle), cid]),
            ("start", ["start", cid]),
            ("state", ["state", cid]),
            ("exec", ["exec", "--process", str(self.process_file), cid]),
            ("kill", ["kill", cid, "9"]),
        ]
        for verb, args in steps:
            self._note(verb, name, timed(self.argv(name, *args), what=f"{name} {verb}"), record)
        peers.wait_for(lambda: self._status(name, cid) == "stopped", f"{cid} to stop")
        seconds = timed(self.argv(name, "delete", cid), what=f"{name} delete")
        self._note("delete", name, seconds, record)

    def _status(self, name: str, cid: str) -> str | None:
        proc = peers.run(self.argv(name, "state", cid), check=False)
        try:
            return str(json.loads(proc.stdout)["status"]) if proc.returncode == 0 else None
        except (ValueError, KeyError):
            return None

    def cleanup(self) -> None:
        for name, cid in self._live:
            if self._status(name, cid) is not None:
                peers.run(self.argv(name, "delete", "--force", cid), check=False)
        self._live.clear()

    # -- containerd --

    def containerd_rounds(self, runs: int) -> None:
        archive = peers.write_oci_archive(self.rootfs, self.workdir / "busybox.oci.tar")
        first = next(iter(self.runtimes.values()))
        with peers.Containerd(self.workdir / "containerd", first) as ctrd:
            ctrd.import_image(archive)
            names = [n for n in self.runtimes if n not in self.failures]
            failed: dict[str, str] = {}
            for i in range(runs + 1):
                for name in rotated(names, i):
                    if name in failed:
                        continue
                    cid = f"bench-ctr-{uuid.uuid4().hex[:12]}"
                    argv = ctrd.ctr_argv(
                        "run", "--rm", *ctrd.runtime_flags(self.runtimes[name]),
                        peers.IMAGE_REF, cid, "/bin/true")
                    try:
                        seconds = timed(argv, what=f"ctr run --rm (--runc-binary {name})",
                                        timeout=120)
                        self._note("ctr run --rm", name, seconds, i > 0)
                    except Failure as failure:
                        failed[name] = str(failure)
                        ctrd.ctr("tasks", "delete", "--force", cid, check=False)
                        ctrd.ctr("containers", "delete", cid, check=False)
            for name, why in failed.items():
                self.failures.setdefault(name, why)


def rotated(names: list[str], i: int) -> list[str]:
    k = i % len(names) if names else 0
    return names[k:] + names[:k]


def version(path: str) -> str:
    proc = peers.run([path, "--version"], check=False)
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0] if first else "(no --version)"


def find_silo(explicit: str | None) -> tuple[str | None, str]:
    candidate = explicit or str(REPO_ROOT / ".venv" / "bin" / "silo-runtime")
    if executable(candidate):
        return os.path.abspath(candidate), ""
    where = explicit or str(Path(".venv") / "bin" / "silo-runtime")
    return None, f"silo-runtime not found ({where}); showing the peers only"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds to take medians over")
    parser.add_argument("--silo", help="path of silo-runtime (default: the repo's .venv)")
    parser.add_argument("--no-containerd", action="store_true",
                        help="skip the ctr run --rm rows")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("runtime.py needs root (it creates containers)", file=sys.stderr)
        return 2

    notes: list[str] = []
    runtimes: dict[str, str] = {}
    silo, why = find_silo(args.silo)
    if silo:
        runtimes["silo"] = silo
    else:
        notes.append(why)
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            runtimes[name] = path
        else:
            notes.append(f"{name}: not installed")
    if "runc" not in runtimes:
        print("runc is needed (reference config and ratios); install Debian's runc",
              file=sys.stderr)
        return 2
    missing = peers.missing_commands("containerd", "ctr", "containerd-shim-runc-v2")
    with_containerd = not args.no_containerd and missing is None
    if not args.no_containerd and missing:
        notes.append(f"containerd rows skipped: {missing}")

    for name, path in runtimes.items():
        print(f"{name:5} {path}: {version(path)}")
    print(f"{args.runs} rounds (+1 warm-up), medians in ms; order rotates every round\n",
          flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="silo-bench-"))
    try:
        bench = Bench(runtimes, workdir)
        bench.prepare(runtimes["runc"])
        for i in range(args.runs + 1):
            for name in rotated(list(runtimes), i):
                if name not in bench.failures:
                    bench.round(name, record=i > 0)
        if with_containerd:
            bench.containerd_rounds(args.runs)
    finally:
        peers.remove_tree(workdir)

    columns = ["silo", "runc", "crun"]
    rows = []
    for verb in ("run", *VERBS, *(("ctr run --rm",) if with_containerd else ())):
        cells = [verb]
        values = {}
        for name in columns:
            value = median_ms(bench.samples.get((verb, name), []))
            values[name] = value
            if value is not None:
                cells.append(f"{value:.1f}")
            elif name in bench.failures:
                cells.append("failed")
            else:
                cells.append("-")
        silo_ms, runc_ms = values["silo"], values["runc"]
        cells.append(f"{silo_ms / runc_ms:.2f}" if silo_ms and runc_ms else "-")
        rows.append(cells)
    print_table(["verb", "silo ms", "runc ms", "crun ms", "ratio silo/runc"], rows)
    for name, why in bench.failures.items():
        notes.append(f"{name} failed: {why}")
    if notes:
        print()
        for note in notes:
            print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
