"""silo.storage touches Linux only through silo.kernel (ARCHITECTURE.md's layer table): no
module of it loads ctypes, issues an ioctl or a raw syscall, or reads /proc or /sys itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

STORAGE = Path(__file__).resolve().parents[3] / "src" / "silo" / "storage"
FORBIDDEN = re.compile(r"\bctypes\b|\bfcntl\.ioctl\b|\blibc\.syscall\b|\.syscall\(|"
                       r"""["'](?:/proc|/sys)/""")


def offences(text: str) -> list[str]:
    return [f"{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
            if FORBIDDEN.search(line)]


def test_the_pattern_finds_what_it_forbids() -> None:
    bad = ("import ctypes\n"
           "n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)\n"
           "ret = libc.libc().syscall(430, b'overlay', 1)\n"
           "ok = libc.syscall(1)\n"
           "with open('/proc/self/mountinfo') as f:\n"
           "    p = f\"/sys/block/{dev}/loop/backing_file\"\n"
           "fcntl.flock(fd, fcntl.LOCK_EX)\n"
           "# the loop device ioctls live in silo.kernel.loop\n")
    assert [o.split(":")[0] for o in offences(bad)] == ["1", "2", "3", "4", "5", "6"]


def test_storage_makes_no_syscalls_of_its_own() -> None:
    files = sorted(STORAGE.glob("*.py"))
    assert len(files) > 10 and STORAGE.joinpath("rootfs.py") in files
    found = {f.name: offences(f.read_text()) for f in files}
    assert {name: lines for name, lines in found.items() if lines} == {}
