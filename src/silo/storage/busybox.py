"""The embedded default image: a root filesystem built from Debian's ``busybox-static``.

Built once at setup (``python -m silo.storage.busybox DEST``) and used by the demo and the
tests. The image store (a later part of silo.storage) will hold it as an OCI image; until then
it is an unpacked rootfs plus an image config with the usual defaults.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

BUSYBOX = "/bin/busybox"
DEFAULT_DIR = "/var/lib/silo/images/busybox"

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n"

CONFIG = {
    "architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
               "Cmd": ["sh"], "WorkingDir": "/"},
}


def applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def build(dest: str, busybox: str = BUSYBOX) -> str:
    """Build (or rebuild) the image under ``dest``; returns the rootfs path. Idempotent:
    the rootfs is built beside and renamed into place, so a reader never sees half of it."""
    if not os.path.exists(busybox):
        raise SystemExit(f"{busybox} is missing: install Debian's busybox-static")
    os.makedirs(dest, exist_ok=True)
    tmp = os.path.join(dest, ".rootfs.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "var/tmp", "run", "home"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    os.chmod(os.path.join(tmp, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(tmp, "bin/busybox"))
    for applet in applets(busybox):
        path = os.path.join(tmp, applet.lstrip("/"))
        if os.path.lexists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink("/bin/busybox", path)
    with open(os.path.join(tmp, "etc/passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(tmp, "etc/group"), "w") as f:
        f.write(GROUP)
    with open(os.path.join(tmp, "etc/hostname"), "w") as f:
        f.write("silo\n")
    rootfs = os.path.join(dest, "rootfs")
    old = os.path.join(dest, ".rootfs.old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(rootfs):
        os.rename(rootfs, old)
    os.rename(tmp, rootfs)
    shutil.rmtree(old, ignore_errors=True)
    with open(os.path.join(dest, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    return rootfs


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DIR))
