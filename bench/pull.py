"""silo's pull against skopeo + umoci and against podman, side by side in one run.

Builds its own multi-layer image (``--layers`` layers, ``--mb`` MB in all: half of them one
big random file each, incompressible, the other half ``--files`` small files each, half random,
half text-like), pushes it with skopeo into a docker-registry of its own on a free loopback
port (plain http), then measures over ``--rounds`` rounds (taking turns, in an order that
rotates every round, each into fresh directories) the wall time of:

- ``silo``: ``silo.storage.pull.pull`` into a fresh ``ImageStore`` in a fresh Python process
  (download, verify and unpack every layer, ``--parallel`` at a time; what ``silo pull``
  does in silod);
- ``skopeo+umoci``: ``skopeo copy docker://... oci:DIR:tag`` then
  ``umoci unpack --image DIR:tag BUNDLE`` (download + verify, then unpack);
- ``podman``: ``podman pull --tls-verify=false`` on a temporary ``--root``/``--runroot``
  (removed after each round), isolated as the end-to-end tests isolate it.

Then, for a 20-layer image already in a store: the median time of
``ImageStore.create_rootfs`` + ``remove_rootfs`` (the overlay a container starts from), over
``--rootfs-runs`` runs.

Prints a table of medians and the ratios silo/peer. This is a measurement, not a test.

    .venv/bin/python bench/pull.py [--rounds 5] [--layers 8] [--mb 48] [--files 1500]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import REPO_ROOT, Failure, peers, print_table, timed

try:
    from silo.storage.images import ImageStore
    from silo.storage.pull import pull
except ImportError:  # run by a Python outside the venv: take the source tree
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from silo.storage.images import ImageStore
    from silo.storage.pull import pull

import registry as reg  # tests/e2e/registry.py, on the path _common sets

PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
RUNC = "/usr/sbin/runc"
PULL = """
import sys
from silo.storage.images import ImageStore
from silo.storage.pull import pull
pull(ImageStore(sys.argv[1]), sys.argv[2], insecure=True, parallel=int(sys.argv[3]))
"""
WORDS = [b"lorem", b"ipsum", b"container", b"layer", b"registry", b"silo", b"overlay",
         b"namespace", b"cgroup", b"manifest", b"digest", b"blob", b"\n"]


def text_like(rng: random.Random, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS) + b" "
    return bytes(out[:n])


def build_image(layout: reg.Layout, *, layers: int, mb: int, files: int,
                seed: int = 7) -> dict[str, object]:
    """The benchmark image: big random files in half the layers, many small files in the
    others; returns its manifest descriptor."""
    rng = random.Random(seed)
    per_layer = (mb << 20) // max(1, layers)
    contents: list[dict[str, bytes]] = []
    for i in range(layers):
        if i % 2 == 0:
            contents.append({f"big/layer{i}.bin": os.urandom(per_layer)})
            continue
        size = max(64, per_layer // max(1, files))
        layer = {}
        for j in range(files):
            data = os.urandom(size // 2) + text_like(rng, size - size // 2)
            layer[f"small{i}/d{j % 40}/f{j}.dat"] = data
        contents.append(layer)
    return layout.image(contents)


def median_s(samples: list[float]) -> float:
    return statistics.median(samples)


class Bench:
    def __init__(self, workdir: Path, registry: reg.Registry, ref: str, parallel: int) -> None:
        self.workdir = workdir
        self.parallel = parallel
        self.registry = registry
        self.ref = ref  # host/repo:tag
        self.n = 0

    def fresh(self, what: str) -> Path:
        self.n += 1
        d = Path(tempfile.mkdtemp(prefix=f"sbp-{what}-", dir=self.workdir))
        return d

    def silo(self) -> float:
        d = self.fresh("silo")
        try:
            return timed([str(PYTHON), "-c", PULL, str(d / "store"), self.ref,
                          str(self.parallel)],
                         what="silo pull", timeout=600)
        finally:
            peers.remove_tree(d)

    def skopeo_umoci(self) -> float:
        d = self.fresh("umoci")
        try:
            copy = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                          f"docker://{self.ref}", f"oci:{d / 'oci'}:bench"],
                         what="skopeo copy", timeout=600)
            unpack = timed(["umoci", "unpack", "--image", f"{d / 'oci'}:bench",
                            str(d / "bundle")], what="umoci unpack", timeout=600)
            return copy + unpack
        finally:
            peers.remove_tree(d)

    def podman(self) -> float:
        d = self.fresh("podman")
        pm = peers.Podman(d, RUNC)
        try:
            pm.start()
            return timed(pm.argv("pull", "--quiet", "--tls-verify=false", self.ref),
                         what="podman pull", env=pm.env, timeout=600)
        finally:
            pm.podman("rmi", "--all", "--force", check=False, timeout=120)
            pm.stop()
            peers.remove_tree(d)


def push_start_images(workdir: Path, registry: reg.Registry) -> dict[int, str]:
    """Images of 1 and 20 layers, busybox in the first, small files in the others; their
    references by layer count."""
    layout = reg.Layout(workdir / "layout-start")
    base = {"bin/busybox": peers.BUSYBOX.read_bytes()}
    refs = {}
    for count in (1, 20):
        layers = [base, *reg.small_layers(f"l{count}", count=count - 1, files=5, size=8192)]
        layout.tag(layout.image(layers, cmd=["/bin/busybox", "true"]), f"v{count}")
        registry.push_layout(layout.path, f"v{count}", f"bench/start:v{count}")
        refs[count] = f"{registry.host}/bench/start:v{count}"
    return refs


def rootfs_times(workdir: Path, ref: str, runs: int) -> tuple[float, float]:
    """(median create_rootfs s, median remove_rootfs s) of the image ``ref`` (pulled first)."""
    store = ImageStore(str(workdir / "store-20"))
    pull(store, ref, insecure=True)
    create: list[float] = []
    remove: list[float] = []
    for i in range(runs + 1):
        cid = f"bench-{uuid.uuid4().hex[:12]}"
        t0 = time.perf_counter()
        merged = store.create_rootfs(cid, ref)
        t1 = time.perf_counter()
        assert os.path.isfile(os.path.join(merged, "bin", "busybox"))
        store.remove_rootfs(cid)
        t2 = time.perf_counter()
        if i:  # the first is a warm-up
            create.append(t1 - t0)
            remove.append(t2 - t1)
    return median_s(create), median_s(remove)


def start_times(workdir: Path, refs: dict[int, str], runs: int) -> None:
    """``silo run --rm`` (silod, pulled through it) against ``podman run --rm`` (runc) of the
    1- and 20-layer images: medians over ``runs`` rounds after a warm-up, taking turns."""
    from run import Silod  # bench/run.py: a silod of this script's own

    silod = Silod(workdir / "silod")
    pm = peers.Podman(Path(tempfile.mkdtemp(prefix="sbp-pm-", dir=workdir)), RUNC)
    samples: dict[tuple[str, int], list[float]] = {}
    try:
        silod.start()
        pm.start()
        for ref in refs.values():
            peers.run(silod.argv("pull", "--insecure", ref), timeout=300)
            pm.podman("pull", "--quiet", "--tls-verify=false", ref, timeout=300)
        argvs = {}
        for count, ref in refs.items():
            argvs[("silo", count)] = (silod.argv("run", "--rm", ref), None)
            argvs[("podman", count)] = (pm.argv("run", "--rm", "--network", "none", ref),
                                        pm.env)
        keys = list(argvs)
        for r in range(runs + 1):
            for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                argv, env = argvs[key]
                t = timed(argv, what=f"{key[0]} run --rm ({key[1]} layers)", env=env)
                if r:
                    samples.setdefault(key, []).append(t)
    finally:
        leaks = silod.stop()
        pm.stop()
        if leaks:
            print(f"silod left behind: {leaks}", file=sys.stderr)
    rows = []
    for count in refs:
        silo_ms = median_s(samples[("silo", count)]) * 1000
        podman_ms = median_s(samples[("podman", count)]) * 1000
        rows.append([f"{count} layer{'s' if count > 1 else ''}", f"{silo_ms:.0f}",
                     f"{podman_ms:.0f}", f"{silo_ms / podman_ms:.2f}"])
    print(f"\nrun --rm from a pulled image, {runs} rounds (+1 warm-up):")
    print_table(["image", "silo ms", "podman ms", "silo/podman"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per tool (medians)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--mb", type=int, default=48, help="image size in MB (uncompressed)")
    parser.add_argument("--files", type=int, default=1500, help="files per small-file layer")
    parser.add_argument("--rootfs-runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=4,
                        help="layers silo fetches and unpacks at once (pull's parallel=)")
    parser.add_argument("--no-podman", action="store_true")
    parser.add_argument("--start-runs", type=int, default=10,
                        help="rounds of run --rm from the pulled 1- and 20-layer images, "
                             "silod against podman (0: skip)")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the stores, bundles and podman roots go (a disk or "
                             "/dev/shm: file creation dominates on a slow disk)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("pull.py needs root (unpacking keeps owners; podman and umoci as root)",
              file=sys.stderr)
        return 2
    missing = reg.missing() or peers.missing_commands("umoci", "podman")
    if missing:
        print(f"missing: {missing}", file=sys.stderr)
        return 2

    # short: podman refuses a run root path longer than 50 characters
    workdir = Path(tempfile.mkdtemp(prefix="sbp-", dir=args.dir))
    registry = reg.Registry(Path(tempfile.mkdtemp(prefix="silo-bench-registry-")))
    try:
        registry.start()
        layout = reg.Layout(workdir / "layout")
        desc = build_image(layout, layers=args.layers, mb=args.mb, files=args.files)
        layout.tag(desc, "bench")
        registry.push_layout(layout.path, "bench", "bench/pull:bench")
        compressed = sum(p.stat().st_size for p in (layout.path / "blobs" / "sha256").iterdir())
        ref = f"{registry.host}/bench/pull:bench"
        print(f"image: {args.layers} layers, {args.mb} MB unpacked, {compressed / 1e6:.1f} MB "
              f"of blobs; registry {ref}; {args.rounds} rounds (+1 warm-up); into "
              f"{args.dir}", flush=True)

        bench = Bench(workdir, registry, ref, args.parallel)
        tools = {"silo": bench.silo, "skopeo+umoci": bench.skopeo_umoci}
        if not args.no_podman:
            tools["podman"] = bench.podman
        samples: dict[str, list[float]] = {k: [] for k in tools}
        names = list(tools)
        for r in range(args.rounds + 1):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                t = tools[name]()
                # What the last one removed is written back now, not in the next one's time.
                os.sync()
                if r:
                    samples[name].append(t)
            if r:
                print(f"  round {r}: " + ", ".join(
                    f"{k} {samples[k][-1] * 1000:.0f} ms" for k in names), flush=True)

        rows = []
        silo_ms = median_s(samples["silo"]) * 1000
        for name in names:
            ms = median_s(samples[name]) * 1000
            rows.append([name, f"{ms:.0f}", f"{min(samples[name]) * 1000:.0f}",
                         f"{max(samples[name]) * 1000:.0f}",
                         f"{args.mb / (ms / 1000):.0f}",
                         "" if name == "silo" else f"{silo_ms / ms:.2f}"])
        print()
        print_table(["pull", "median ms", "min ms", "max ms", "MB/s", "silo/peer"], rows)

        refs = push_start_images(workdir, registry)
        create, remove = rootfs_times(workdir, refs[20], args.rootfs_runs)
        print(f"\n20-layer image, {args.rootfs_runs} runs: create_rootfs median "
              f"{create * 1000:.1f} ms, remove_rootfs median {remove * 1000:.1f} ms", flush=True)
        if args.start_runs:
            start_times(workdir, refs, args.start_runs)
    except Failure as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1
    finally:
        registry.stop()  # removes its directory
        peers.remove_tree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
