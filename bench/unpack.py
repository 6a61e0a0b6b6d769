"""silo's layer unpacking against GNU tar, side by side in one run.

Builds one synthetic layer (by default ~50 MB of tar: thousands of small files in a few
hundred directories, some symlinks and hardlinks, and a few big files; the content is half
random, half text-like, so it compresses about as real layers do), compresses it with gzip and
zstd, and measures the median wall time over ``--runs`` rounds of:

- ``silo``: ``silo.storage.unpack.unpack`` in this process (decompress, sha256 the tar for the
  diff_id, extract with the no-escape rules), from an in-memory blob;
- ``tar``: ``tar -x`` of the same blob from a file (GNU tar + gzip/zstd, no hashing, the
  page cache hot), which is what docker's and containerd's unpackers are usually compared
  with.

Each run extracts into a fresh directory under ``--dir``, removed after; on a slow disk both
are bound by file creation, so ``--dir /dev/shm`` shows the unpackers' own cost. Throughput is
uncompressed tar bytes per second. This is a measurement, not a test.

    python bench/unpack.py [--runs 5] [--size-mb 50] [--dir /dev/shm] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import pstats
import random
import shutil
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import zstandard

from _common import print_table, timed
from silo.storage.unpack import unpack

MEDIA = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
TAR_FLAG = {"gzip": "--gzip", "zstd": "--zstd"}


def make_layer(size_mb: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    words = [rnd.randbytes(rnd.randint(2, 9)).hex().encode() for _ in range(2000)]

    def content(n: int) -> bytes:
        half = rnd.randbytes(n // 2)
        text = b" ".join(rnd.choice(words) for _ in range(n // 10 + 1))
        return (half + text)[:n]

    buf = io.BytesIO()
    target = size_mb * 1024 * 1024
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE,
                link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mtime = kind, link, 1_600_000_000
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            ti.size = len(data) if data is not None else 0
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)

        for i in range(4):   # a few big files: ~30% of the bytes
            add(f"opt/big{i}.bin", content(target * 3 // 40))
        n = 0
        while buf.tell() < target:
            d = f"usr/lib/pkg{n // 40:04d}"
            if n % 40 == 0:
                add(d, kind=tarfile.DIRTYPE)
            add(f"{d}/f{n:06d}.txt", content(int(rnd.paretovariate(1.2) * 1500) % 65536))
            if n % 50 == 0:
                add(f"{d}/link{n}", kind=tarfile.SYMTYPE, link=f"f{n:06d}.txt")
                add(f"{d}/hard{n}", kind=tarfile.LNKTYPE, link=f"{d}/f{n:06d}.txt")
            n += 1
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--profile", action="store_true", help="print silo's top functions")
    ap.add_argument("--dir", default="/var/tmp",
                    help="where to extract (a tmpfs such as /dev/shm leaves the disk out)")
    args = ap.parse_args()

    tar = make_layer(args.size_mb)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        members = t.getmembers()
    files = sum(1 for m in members if m.isreg())
    blobs = {"gzip": gzip.compress(tar, compresslevel=6, mtime=0),
             "zstd": zstandard.ZstdCompressor(level=3).compress(tar)}
    mb = len(tar) / 1e6
    print(f"layer: {mb:.1f} MB of tar, {len(members)} entries ({files} files); "
          f"gzip {len(blobs['gzip']) / 1e6:.1f} MB, zstd {len(blobs['zstd']) / 1e6:.1f} MB")

    work = Path(tempfile.mkdtemp(prefix="silo-bench-unpack-", dir=args.dir))
    try:
        times: dict[tuple[str, str], list[float]] = {}
        for comp, data in blobs.items():
            path = work / f"layer.{comp}"
            path.write_bytes(data)
            for r in range(args.runs + 1):   # the first round warms up and is not counted
                for who in (("silo", "tar") if r % 2 else ("tar", "silo")):
                    dest = work / f"{who}-{r}"
                    dest.mkdir()
                    if who == "silo":
                        started = time.perf_counter()
                        unpack(io.BytesIO(data), str(dest), MEDIA[comp])
                        elapsed = time.perf_counter() - started
                    else:
                        elapsed = timed(["tar", "-x", TAR_FLAG[comp], "-f", str(path),
                                         "-C", str(dest)], what="tar")
                    if r:
                        times.setdefault((comp, who), []).append(elapsed)
                    shutil.rmtree(dest)
        rows = []
        for comp in blobs:
            silo = statistics.median(times[(comp, "silo")])
            peer = statistics.median(times[(comp, "tar")])
            rows.append([comp, f"{silo * 1000:.0f}", f"{mb / silo:.0f}",
                         f"{peer * 1000:.0f}", f"{mb / peer:.0f}", f"{silo / peer:.2f}"])
        print_table(["blob", "silo ms", "silo MB/s", "tar ms", "tar MB/s", "silo/tar"], rows)
        if args.profile:
            dest = work / "profile"
            dest.mkdir()
            prof = cProfile.Profile()
            prof.runcall(unpack, io.BytesIO(blobs["gzip"]), str(dest), MEDIA["gzip"])
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
