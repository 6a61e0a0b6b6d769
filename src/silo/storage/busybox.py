"""The embedded default image: a root filesystem built from Debian's ``busybox-static``.

Built once at setup (``python -m silo.storage.busybox DEST [--store ROOT]``) and used by the
demo and the tests: an unpacked rootfs plus an image config with the usual defaults under
DEST, and (with ``--store``) the same tree imported into the image store as
``busybox:latest`` (``docker.io/library/busybox:latest``).

The import is content-addressed and deterministic (entries sorted, mtimes 0, owner 0:0, a
gzip stream without a timestamp, no ``created``), so the same busybox gives the same image id
every time and a second import changes nothing.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"
DEFAULT_DIR = "/var/lib/silo/images/busybox"
DEFAULT_STORE = "/var/lib/silo/storage"
IMAGE_NAME = "busybox:latest"

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


def layer_tar(rootfs: str) -> bytes:
    """The tree under ``rootfs`` as a deterministic tar: sorted, mtime 0, owner 0:0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(top, name)
                info = tar.gettarinfo(path, os.path.relpath(path, rootfs))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def import_into(store_root: str = DEFAULT_STORE, image_dir: str = DEFAULT_DIR) -> str:
    """Import ``image_dir``/rootfs (built by :func:`build`) into the image store at
    ``store_root`` as busybox:latest; returns the image id. Idempotent."""
    from silo.storage import mediatypes, platform
    from silo.storage.descriptor import sha256
    from silo.storage.images import ImageStore
    from silo.storage.source import MemorySource

    raw = layer_tar(os.path.join(image_dir, "rootfs"))
    blob = gzip.compress(raw, compresslevel=6, mtime=0)
    host = platform.host()
    config = dict(CONFIG, architecture=host.architecture,
                  rootfs={"type": "layers", "diff_ids": [sha256(raw)]})
    if host.variant:
        config["variant"] = host.variant
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha256(config_bytes),
                   "size": len(config_bytes)},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": sha256(blob),
                    "size": len(blob)}],
    }, sort_keys=True, separators=(",", ":")).encode()
    source = MemorySource({sha256(config_bytes): config_bytes, sha256(blob): blob})
    image = ImageStore(store_root).add(source, manifest, mediatypes.OCI_MANIFEST,
                                       names=[IMAGE_NAME])
    return image.id


def main(argv: list[str]) -> None:
    args = list(argv)
    store = None
    if "--store" in args:
        i = args.index("--store")
        if i + 1 >= len(args):
            raise SystemExit("--store needs the image store's root directory")
        store = args[i + 1]
        del args[i:i + 2]
    dest = args[0] if args else DEFAULT_DIR
    print(build(dest))
    if store is not None:
        print(import_into(store, dest))


if __name__ == "__main__":
    main(sys.argv[1:])
