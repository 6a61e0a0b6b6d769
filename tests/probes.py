"""Probes that decide test skips; each returns None when the thing is there, or a sentence
naming what is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / ".venv" / "bin" / "silo-runtime"
BUSYBOX_IMAGE = Path(os.environ.get("SILO_BUSYBOX_IMAGE", "/var/lib/silo/images/busybox"))


def need_root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (namespaces, mounts, cgroups)"


def need_runtime() -> str | None:
    if not RUNTIME.exists():
        return f"{RUNTIME.relative_to(REPO)} is missing: run scripts/setup"
    return None


def need_busybox_image() -> str | None:
    if not (BUSYBOX_IMAGE / "rootfs" / "bin" / "busybox").exists():
        return f"the embedded busybox image is missing at {BUSYBOX_IMAGE}: run scripts/setup"
    return None


def need_binary(name: str) -> str | None:
    return None if shutil.which(name) else f"{name} is not installed (scripts/setup installs it)"


def need_overlay() -> str | None:
    with open("/proc/filesystems") as f:
        if not any(line.split()[-1] == "overlay" for line in f if line.strip()):
            return "overlayfs is not available in this kernel"
    return None


def need_loop() -> str | None:
    if not os.path.exists("/dev/loop-control"):
        return "/dev/loop-control is missing (no loop device support)"
    return None


def need_all(*reasons: str | None) -> str | None:
    for r in reasons:
        if r:
            return r
    return None
