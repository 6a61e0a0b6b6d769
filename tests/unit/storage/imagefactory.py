"""Build small OCI images in memory for the storage tests: deterministic layer tars, their
config and manifest, and a MemorySource that serves the blobs (and counts what it served)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from silo.storage import mediatypes as mt
from silo.storage.descriptor import Descriptor, sha256


def tar_bytes(files: dict[str, bytes | str | None]) -> bytes:
    """A tar of ``files``, in name order: bytes -> a file, str -> a symlink to it, None -> a
    directory."""
    return tar_entries(sorted(files.items()))


def tar_entries(entries: Iterable[tuple[str, bytes | str | None]]) -> bytes:
    """A tar of ``entries`` in the order given, as :func:`tar_bytes` makes its members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@dataclass
class Built:
    manifest: bytes
    config: bytes
    layers: list[bytes]           # the blobs (gzip)
    diff_ids: list[str]
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def id(self) -> str:
        return sha256(self.config)


def image(*layer_files: dict[str, bytes | str | None], cmd: str = "sh",
          compress: bool = True, config_extra: dict[str, object] | None = None) -> Built:
    layers, diff_ids, descs = [], [], []
    for files in layer_files:
        raw = tar_bytes(files)
        blob = gzip.compress(raw, mtime=0) if compress else raw
        layers.append(blob)
        diff_ids.append(sha256(raw))
        descs.append(Descriptor(mt.OCI_LAYER_GZIP if compress else mt.OCI_LAYER,
                                sha256(blob), len(blob)).to_dict())
    cfg: dict[str, object] = {
        "architecture": "amd64", "os": "linux", "config": {"Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cfg.update(config_extra or {})
    config = json.dumps(cfg, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": descs}).encode()
    built = Built(manifest, config, layers, diff_ids)
    built.blobs = {sha256(config): config, **{sha256(b): b for b in layers}}
    return built


class CountingSource:
    """Serves blobs from memory; counts the opens of each digest (thread-safe); can serve a
    corrupted or truncated copy of one blob, and can wait on a barrier before serving."""

    def __init__(self, *built: Built) -> None:
        self.blobs: dict[str, bytes] = {}
        for b in built:
            self.blobs.update(b.blobs)
        self.opens: dict[str, int] = {}
        self.lock = threading.Lock()
        self.tamper: dict[str, bytes] = {}
        self.barrier: threading.Barrier | None = None

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        with self.lock:
            self.opens[desc.digest] = self.opens.get(desc.digest, 0) + 1
        data = self.tamper.get(desc.digest, self.blobs[desc.digest])
        return io.BytesIO(data)

    def count(self, digest: str) -> int:
        return self.opens.get(digest, 0)


def digest_of_tree(path: str) -> str:
    """A digest of the files and links under ``path`` (names, contents, link targets)."""
    import os

    h = hashlib.sha256()
    for top, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(top, name)
            h.update(os.path.relpath(p, path).encode())
            if os.path.islink(p):
                h.update(b"->" + os.readlink(p).encode())
            else:
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()
