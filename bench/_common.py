"""What the benchmark scripts share: the repo root, the peers helpers of the end-to-end tier
(busybox rootfs, isolated containerd), timing of one command, and the result table.

Benchmarks measure silo and its peers side by side in one run and print ratios; they assert
nothing about time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "e2e"))

import peers  # noqa: E402  (found through the path above)

__all__ = ["REPO_ROOT", "Failure", "peers", "percentile", "print_table", "pss_kib", "timed"]


class Failure(Exception):
    """A command under measurement failed; carries its argv, status and stderr."""

    def __init__(self, what: str, argv: Sequence[str], status: int, stderr: str) -> None:
        self.argv = list(argv)
        self.status = status
        self.stderr = stderr.strip()
        self.last_line = self.stderr.splitlines()[-1] if self.stderr else "(no stderr)"
        super().__init__(f"`{what}` exited {status}: {self.last_line}")


def timed(argv: Sequence[str], *, what: str = "", cwd: str | Path | None = None,
          timeout: float = 60, env: dict[str, str] | None = None) -> float:
    """Wall seconds of one command, with stdio that never blocks it.

    stdout goes to /dev/null and stderr to a file, never a pipe: a runtime's ``create`` hands
    its stdio to the container's init, and a pipe would hold the caller until the init exits.
    The wait blocks in waitpid; ``subprocess``'s own timeout would poll with a doubling sleep
    and round every result up to 1, 3, 7, 15, 31, 63 ms.
    """
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, cwd=cwd, env=env)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            proc.wait()
        finally:
            watchdog.cancel()
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            err.seek(0)
            raise Failure(what or Path(argv[0]).name, argv, proc.returncode,
                          err.read().decode(errors="replace"))
    return elapsed


def median_ms(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) * 1000 if samples else None


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least 1
    return ordered[int(rank) - 1]


def pss_kib(pid: int) -> int | None:
    """A process's proportional set size (kB), from /proc/PID/smaps_rollup; None if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).rjust(w) if i else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def executable(path: str | Path | None) -> bool:
    return bool(path) and os.path.isfile(str(path)) and os.access(str(path), os.X_OK)
