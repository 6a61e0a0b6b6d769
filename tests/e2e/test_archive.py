"""silo.storage.archive against skopeo (the real tool) and the real ImageStore: what skopeo
writes, silo loads to the same image; what silo saves, skopeo reads and copies with the same
digests; load -> save -> load keeps the image id; a rootfs tarball imports to the same tree.

The source image is an OCI layout written here by hand (three gzip layers, one deleting a file
of an earlier one), so the digests it should keep are known without asking any tool.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests import probes
from tests.unit.storage.imagefactory import tar_entries

from silo.errors import InvalidArgument
from silo.storage import archive, mediatypes
from silo.storage import platform as platforms
from silo.storage.images import Image, ImageStore

SKIP = probes.need_all(probes.need_root(), probes.need_binary("skopeo"))
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(SKIP), reason=SKIP or "")]
BUSYBOX_SKIP = probes.need_busybox_image()

NAME = "example.com/silo-archive-e2e/app:1"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@dataclass
class Source:
    layout: Path
    config_digest: str
    manifest_digest: str
    layer_digests: list[str]
    diff_ids: list[str]


@pytest.fixture
def source(tmp_path: Path) -> Source:
    """An OCI layout of three gzip layers, its one image tagged ``v1``."""
    layers = [
        tar_entries([("etc", None), ("etc/hostname", b"silo\n"), ("etc/old", b"gone later\n"),
                     ("bin", None), ("bin/sh", b"#!not really a shell\n")]),
        tar_entries([("etc", None), ("etc/.wh.old", b""), ("etc/new", b"added\n")]),
        tar_entries([("srv", None), ("srv/data", os.urandom(100_000)), ("srv/link", "data")]),
    ]
    layout = tmp_path / "src"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        (blobs / sha(data).split(":")[1]).write_bytes(data)
        return sha(data)

    descs = []
    for plain in layers:
        blob = gzip.compress(plain, mtime=0)
        descs.append({"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": put(blob),
                      "size": len(blob)})
    diff_ids = [sha(p) for p in layers]
    config = json.dumps({"architecture": platforms.host().architecture, "os": "linux",
                         "created": "2026-01-01T00:00:00Z", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                           "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": put(config),
                                      "size": len(config)}, "layers": descs}).encode()
    put(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    return Source(layout, sha(config), sha(manifest), [d["digest"] for d in descs], diff_ids)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "store"))


def layer_digests(img: Image) -> list[str]:
    return [layer.blob.digest for layer in img.layers]


def oci_dir_manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    data = (layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()
    assert sha(data) == entry["digest"]
    return {"digest": entry["digest"], **json.loads(data)}


def test_oci_archive_from_skopeo_loads_to_the_same_image(tmp_path: Path, source: Source,
                                                         store: ImageStore) -> None:
    arc = tmp_path / "app.oci.tar"
    skopeo("copy", f"oci:{source.layout}:v1", f"oci-archive:{arc}:{NAME}")
    [img] = archive.load(store, str(arc))
    assert img.id == source.config_digest
    assert img.digest == source.manifest_digest
    assert layer_digests(img) == source.layer_digests
    assert [layer.diff_id for layer in img.layers] == source.diff_ids
    assert img.names == (NAME,)
    assert store.get(NAME).id == img.id
    top = store.layers.path(img.layers[-1].chain_id)
    assert os.readlink(os.path.join(top, "srv/link")) == "data"


class Recorder:
    """A Progress that keeps what it was told, per blob."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.bytes: dict[str, int] = {}

    def start(self, desc: Any, what: str) -> None:
        self.events.append((desc.digest, what))

    def advance(self, desc: Any, nbytes: int) -> None:
        self.bytes[desc.digest] = self.bytes.get(desc.digest, 0) + nbytes

    def done(self, desc: Any) -> None:
        self.events.append((desc.digest, "done"))


def test_load_reports_progress_per_layer(tmp_path: Path, source: Source,
                                         store: ImageStore) -> None:
    first, second = Recorder(), Recorder()
    archive.load(store, str(source.layout), progress=first)
    for digest in source.layer_digests:
        assert (digest, "download") in first.events and (digest, "done") in first.events
        size = (source.layout / "blobs" / "sha256" / digest.split(":")[1]).stat().st_size
        assert first.bytes[digest] == size
    archive.load(store, str(source.layout), progress=second)  # all there: nothing is read
    assert {(d, "exists") for d in source.layer_digests} <= set(second.events)


def test_saved_oci_archive_is_read_and_copied_by_skopeo(tmp_path: Path, source: Source,
                                                        store: ImageStore) -> None:
    [img] = archive.load(store, str(source.layout), names=[NAME])
    out = tmp_path / "saved.oci.tar"
    archive.save(store, [NAME], str(out), format="oci-archive")
    info = json.loads(skopeo("inspect", f"oci-archive:{out}"))
    assert info["Digest"] == img.digest
    assert info["Layers"] == source.layer_digests
    raw = json.loads(skopeo("inspect", "--config", "--raw", f"oci-archive:{out}:{NAME}"))
    assert raw["rootfs"]["diff_ids"] == source.diff_ids
    copied = tmp_path / "copied"
    skopeo("copy", f"oci-archive:{out}:{NAME}", f"oci:{copied}:x")
    m = oci_dir_manifest(copied)
    assert m["digest"] == img.digest
    assert m["config"]["digest"] == img.id
    assert [d["digest"] for d in m["layers"]] == source.layer_digests


def test_docker_archive_from_skopeo_loads_and_what_silo_saves_skopeo_reads(
        tmp_path: Path, source: Source, store: ImageStore) -> None:
    arc = tmp_path / "app.docker.tar"
    skopeo("copy", f"oci:{source.layout}:v1", f"docker-archive:{arc}:{NAME}")
    [img] = archive.load(store, str(arc))
    assert img.id == source.config_digest
    assert img.names == (NAME,)
    # skopeo writes the layers uncompressed: silo keeps them so, as plain tar layers
    assert [layer.blob.media_type for layer in img.layers] == [mediatypes.OCI_LAYER] * 3
    assert layer_digests(img) == source.diff_ids
    out = tmp_path / "saved.docker.tar"
    archive.save(store, [NAME], str(out), format="docker-archive")
    info = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    assert info["Layers"] == source.diff_ids
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{out}"))
    assert raw["config"]["digest"] == img.id
    copied = tmp_path / "copied"
    skopeo("copy", f"docker-archive:{out}", f"oci:{copied}:x")  # converts the config to OCI
    config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{copied}:x"))
    assert config["rootfs"]["diff_ids"] == source.diff_ids


def test_docker_archive_saved_from_gzip_layers_keeps_them_and_skopeo_reads_it(
        tmp_path: Path, source: Source, store: ImageStore) -> None:
    [img] = archive.load(store, str(source.layout), names=[NAME])
    out = tmp_path / "saved.docker.tar"
    archive.save(store, [NAME], str(out), format="docker-archive")
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{out}"))
    assert raw["config"]["digest"] == img.id
    # skopeo reads the gzip layers and reports their uncompressed digests
    assert json.loads(skopeo("inspect", f"docker-archive:{out}"))["Layers"] == source.diff_ids
    copied = tmp_path / "copied"
    skopeo("copy", f"docker-archive:{out}", f"oci:{copied}:x")
    config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{copied}:x"))
    assert config["rootfs"]["diff_ids"] == source.diff_ids
    again = ImageStore(str(tmp_path / "again"))
    [back] = archive.load(again, str(out))
    assert back.id == img.id and layer_digests(back) == source.layer_digests
    assert back.names == (NAME,)


def test_oci_dir_both_ways(tmp_path: Path, source: Source, store: ImageStore) -> None:
    [img] = archive.load(store, str(source.layout), names=[NAME])
    assert img.digest == source.manifest_digest
    out = tmp_path / "saved-dir"
    archive.save(store, [img.id[:19], NAME], str(out), format="oci-dir")
    info = json.loads(skopeo("inspect", f"oci:{out}:{NAME}"))
    assert info["Digest"] == img.digest and info["Layers"] == source.layer_digests
    copied = tmp_path / "copied"
    skopeo("copy", f"oci:{out}:{NAME}", f"oci:{copied}:x")
    assert oci_dir_manifest(copied)["digest"] == img.digest


@pytest.mark.parametrize("fmt", archive.FORMATS)
def test_load_save_load_keeps_the_image_id(tmp_path: Path, source: Source, store: ImageStore,
                                           fmt: str) -> None:
    [img] = archive.load(store, str(source.layout), names=[NAME])
    out = tmp_path / f"out.{fmt}"
    archive.save(store, [NAME], str(out), format=fmt)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    again = ImageStore(str(tmp_path / "again"))
    [back] = archive.load(again, str(out))
    assert (back.id, back.names, layer_digests(back)) == (img.id, img.names,
                                                          layer_digests(img))


def tree(root: str) -> dict[str, tuple[Any, ...]]:
    """Every entry under root: type, permission bits, owner, and content or link target."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                what: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, what)
    return out


@pytest.mark.skipif(bool(BUSYBOX_SKIP), reason=BUSYBOX_SKIP or "")
def test_import_rootfs_of_busybox_unpacks_to_the_same_tree(tmp_path: Path,
                                                           store: ImageStore) -> None:
    rootfs = probes.BUSYBOX_IMAGE / "rootfs"
    tarball = tmp_path / "busybox.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for child in sorted(rootfs.iterdir()):
            tar.add(child, arcname=child.name)
    img = archive.import_rootfs(store, str(tarball), "silo-archive-e2e/busybox:imported",
                                config_changes={"Cmd": ["sh"], "WorkingDir": "/root"})
    assert img.names == ("docker.io/silo-archive-e2e/busybox:imported",)
    assert img.config["config"] == {"Cmd": ["sh"], "WorkingDir": "/root"}
    [layer] = img.layers
    assert layer.blob.media_type == mediatypes.OCI_LAYER_GZIP
    assert layer.blob.digest == sha(tarball.read_bytes())
    assert tree(store.layers.path(layer.chain_id)) == tree(str(rootfs))
    out = tmp_path / "imported.tar"
    archive.save(store, [img.names[0]], str(out))
    info = json.loads(skopeo("inspect", f"oci-archive:{out}"))
    assert info["Layers"] == [layer.blob.digest]
    assert info["Architecture"] == platforms.host().architecture


def add_cut_image(source: Source) -> tuple[bytes, str]:
    """Put into the source layout an image on the source's first two layers whose third layer
    (new content) has its gzip stream cut short, with a digest and size that match the cut
    blob, so only unpacking finds it. Returns its manifest and the cut blob's digest."""
    blobs = source.layout / "blobs" / "sha256"

    def put(data: bytes) -> str:
        (blobs / sha(data).split(":")[1]).write_bytes(data)
        return sha(data)

    manifest = json.loads((blobs / source.manifest_digest.split(":")[1]).read_bytes())
    config = json.loads((blobs / source.config_digest.split(":")[1]).read_bytes())
    plain = tar_entries([("big", os.urandom(200_000))])
    cut = gzip.compress(plain)[:-300]
    config["rootfs"]["diff_ids"][2] = sha(plain)
    config_bytes = json.dumps(config).encode()
    manifest["config"].update(digest=put(config_bytes), size=len(config_bytes))
    manifest["layers"][2].update(digest=put(cut), size=len(cut))
    data = json.dumps(manifest).encode()
    put(data)
    return data, sha(cut)


def write_index(source: Source, *entries: tuple[bytes, str]) -> None:
    (source.layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": sha(m), "size": len(m),
         "annotations": {"org.opencontainers.image.ref.name": name}} for m, name in entries]}))


def test_a_corrupt_layer_adds_nothing_to_the_real_store(tmp_path: Path, source: Source,
                                                        store: ImageStore) -> None:
    """The error names the blob; the store holds no image, no name and no temporaries."""
    bad, cut = add_cut_image(source)
    write_index(source, (bad, NAME))
    arc = tmp_path / "bad.tar"
    skopeo("copy", f"oci:{source.layout}:{NAME}", f"oci-archive:{arc}")
    with pytest.raises(InvalidArgument, match=rf"index\.json manifests\[0\].*{cut}"):
        archive.load(store, str(arc))
    assert store.list() == []
    root = tmp_path / "store"
    assert [n for n in os.listdir(root / "ingest") if n != ".lock"] == []
    assert [n for n in os.listdir(root / "layers") if n.startswith(".")] == []
    # the layers that did unpack are kept for a retry, and nothing holds them: gc takes them
    store.gc()
    assert os.listdir(root / "blobs" / "sha256") == []


def test_a_load_failing_at_its_second_image_undoes_the_first(tmp_path: Path, source: Source,
                                                             store: ImageStore) -> None:
    """The first image (new, named NAME, which an older image had) is added, the second fails:
    the first is removed again and NAME names the older image as before."""
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(tar_entries([("hello", b"old image\n")]))
    old = archive.import_rootfs(store, str(rootfs), NAME)
    good = (source.layout / "blobs" / "sha256" / source.manifest_digest.split(":")[1]
            ).read_bytes()
    bad, _ = add_cut_image(source)
    write_index(source, (good, NAME), (bad, "example.com/silo-archive-e2e/app:2"))
    with pytest.raises(InvalidArgument, match=r"index\.json manifests\[1\]"):
        archive.load(store, str(source.layout))
    assert [(i.id, i.names) for i in store.list()] == [(old.id, (NAME,))]


PODMAN_SKIP = probes.need_binary("podman")


@pytest.fixture
def podman_dir() -> Iterator[Path]:
    """podman's root and runroot (which must be under 50 characters: not in tmp_path)."""
    top = Path(tempfile.mkdtemp(prefix="silo-arc-"))
    try:
        yield top
    finally:
        shutil.rmtree(top)


@pytest.mark.skipif(bool(PODMAN_SKIP), reason=PODMAN_SKIP or "")
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_loads_what_silo_saves_and_silo_loads_what_podman_saves(
        tmp_path: Path, source: Source, store: ImageStore, podman_dir: Path, fmt: str) -> None:
    """podman on its own storage (vfs: plain directories, no mounts)."""
    base = ["podman", "--root", str(podman_dir / "root"), "--runroot", str(podman_dir / "run"),
            "--storage-driver", "vfs", "--events-backend", "none"]

    def podman(*args: str) -> str:
        proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    [img] = archive.load(store, str(source.layout), names=[NAME])
    out = tmp_path / "silo.tar"
    archive.save(store, [NAME], str(out), format=fmt)
    podman("load", "-i", str(out))
    assert podman("image", "inspect", NAME, "--format", "{{.Id}}").strip() == \
        img.id.split(":")[1]
    back = tmp_path / "podman.tar"
    podman("save", "--format", fmt, "-o", str(back), NAME)
    again = ImageStore(str(tmp_path / "again"))
    [loaded] = archive.load(again, str(back))
    assert loaded.id == img.id
    assert loaded.names == (NAME,)
    assert [layer.diff_id for layer in loaded.layers] == source.diff_ids
