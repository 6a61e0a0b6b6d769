"""silo.storage.archive without root: the formats read and written against a small in-memory
store that checks every blob it reads (digest and size) before it records an image, as the
real ImageStore does. Archives are built here by hand, byte by byte, so each test says exactly
what is in them; tests/e2e/test_archive.py runs the same formats against skopeo and the real
store."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from silo.errors import Internal, InvalidArgument, NotFound, NotSupported, SiloError
from silo.storage import archive, mediatypes, reference
from silo.storage import platform as platforms
from silo.storage.descriptor import Descriptor, parse_manifest

pytestmark = pytest.mark.unit

NAME = "example.com/silo-archive-test/app:1"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- a hand-made image and the archives that hold it --


@dataclass
class Built:
    blobs: dict[str, bytes]
    manifest: bytes
    config: bytes
    layers: list[bytes]      # the layer blobs, as stored
    diff_ids: list[str]

    @property
    def id(self) -> str:
        return sha(self.config)

    @property
    def digest(self) -> str:
        return sha(self.manifest)


def build(n_layers: int = 2, *, compress: bool = True, tag: str = "") -> Built:
    blobs: dict[str, bytes] = {}
    layers, diff_ids, descs = [], [], []
    for i in range(n_layers):
        plain = layer_tar({f"f{i}{tag}": f"layer {i} {tag}\n".encode()})
        blob = gzip.compress(plain, mtime=0) if compress else plain
        layers.append(blob)
        diff_ids.append(sha(plain))
        blobs[sha(blob)] = blob
        descs.append({"mediaType": mediatypes.OCI_LAYER_GZIP if compress
                      else mediatypes.OCI_LAYER, "digest": sha(blob), "size": len(blob)})
    config = json.dumps({"architecture": platforms.host().architecture, "os": "linux",
                         "config": {"Cmd": ["sh"]}, "created": "2026-01-01T00:00:00Z",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    blobs[sha(config)] = config
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                           "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha(config),
                                      "size": len(config)}, "layers": descs}).encode()
    blobs[sha(manifest)] = manifest
    return Built(blobs, manifest, config, layers, diff_ids)


def index_of(*entries: tuple[Built, str | None]) -> bytes:
    manifests = []
    for b, name in entries:
        d: dict[str, Any] = {"mediaType": mediatypes.OCI_MANIFEST, "digest": b.digest,
                             "size": len(b.manifest)}
        if name:
            d["annotations"] = {"org.opencontainers.image.ref.name": name}
        manifests.append(d)
    return json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()


def layout_members(*entries: tuple[Built, str | None], index: bytes | None = None
                   ) -> dict[str, bytes]:
    members = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
               "index.json": index if index is not None else index_of(*entries)}
    for b, _ in entries:
        for d, data in b.blobs.items():
            members[f"blobs/sha256/{d.split(':')[1]}"] = data
    return members


def write_tar(path: Path, members: dict[str, bytes], *, links: dict[str, str] | None = None,
              gz: bool = False) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_dir(path: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def docker_members(b: Built, tags: list[str], *, legacy: bool = True,
                   ) -> tuple[dict[str, bytes], dict[str, str]]:
    """A docker save of ``b`` with uncompressed layers: legacy (``<id>/layer.tar`` symlinks to
    ``<diffid>.tar``, as skopeo writes) or newer (``blobs/sha256/<hex>``)."""
    members: dict[str, bytes] = {}
    links: dict[str, str] = {}
    layer_names = []
    for i, diff_id in enumerate(b.diff_ids):
        plain = gzip.decompress(b.layers[i]) if b.layers[i][:2] == b"\x1f\x8b" else b.layers[i]
        hexd = diff_id.split(":")[1]
        if legacy:
            members[f"{hexd}.tar"] = plain
            links[f"id{i}/layer.tar"] = f"../{hexd}.tar"
            layer_names.append(f"id{i}/layer.tar")
        else:
            members[f"blobs/sha256/{hexd}"] = plain
            layer_names.append(f"blobs/sha256/{hexd}")
    cfg = f"{b.id.split(':')[1]}.json" if legacy else f"blobs/sha256/{b.id.split(':')[1]}"
    members[cfg] = b.config
    members["manifest.json"] = json.dumps(
        [{"Config": cfg, "RepoTags": tags, "Layers": layer_names}]).encode()
    return members, links


# -- a store that checks what it reads, like ImageStore.add --


@dataclass
class FakeImage:
    id: str
    digest: str
    media_type: str
    names: tuple[str, ...]
    platform: platforms.Platform
    layers: tuple[Descriptor, ...]
    config: dict[str, Any] = field(default_factory=dict)


class FakeStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.images: dict[str, FakeImage] = {}

    def add(self, source: Any, manifest: bytes, media_type: str, *,
            names: tuple[str, ...] | list[str] = (), progress: Any = None) -> FakeImage:
        m = parse_manifest(manifest, media_type)
        got = {}
        for desc in [m.config, *m.layers]:
            with source.open_blob(desc) as f:
                data = f.read()
            if len(data) != desc.size or sha(data) != desc.digest:
                raise InvalidArgument(f"blob {desc.digest} does not match its digest or size",
                                      field="digest")
            got[desc.digest] = data
        config = json.loads(got[m.config.digest])
        if len(config["rootfs"]["diff_ids"]) != len(m.layers):
            raise InvalidArgument("diff_ids do not match the layers", field="config")
        self.blobs.update(got)
        self.blobs[sha(manifest)] = manifest
        norm = tuple(sorted(reference.normalize(n) for n in names))
        for img in self.images.values():
            img.names = tuple(n for n in img.names if n not in norm)
        img = FakeImage(m.config.digest, sha(manifest), media_type, norm,
                        platforms.Platform(config["os"], config["architecture"]), m.layers,
                        config)
        if img.id in self.images:
            img.names = tuple(sorted(set(img.names) | set(self.images[img.id].names)))
        self.images[img.id] = img
        return img

    def get(self, ref: str) -> FakeImage:
        for img in self.images.values():
            if ref in (img.id, img.id.split(":")[1]):
                return img
        norm = reference.normalize(ref)
        for img in self.images.values():
            if norm in img.names:
                return img
        raise NotFound(f"no image {ref}")

    def manifest(self, ref: str) -> tuple[bytes, str]:
        img = self.get(ref)
        return self.blobs[img.digest], img.media_type

    def open_blob(self, digest: str) -> BinaryIO:
        return io.BytesIO(self.blobs[digest])


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def check_loaded(img: Any, b: Built) -> None:
    assert img.id == b.id
    assert [d.digest for d in img.layers] == [sha(x) for x in b.layers]


# -- detection --


def test_detect_each_format(tmp_path: Path) -> None:
    b = build()
    members = layout_members((b, NAME))
    assert archive.detect(str(write_dir(tmp_path / "dir", members))) == "oci-dir"
    assert archive.detect(str(write_tar(tmp_path / "a.tar", members))) == "oci-archive"
    assert archive.detect(str(write_tar(tmp_path / "a.tgz", members, gz=True))) == "oci-archive"
    dm, links = docker_members(b, [NAME])
    assert archive.detect(str(write_tar(tmp_path / "d.tar", dm, links=links))) == \
        "docker-archive"


def test_not_a_tar_is_refused_naming_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not an archive at all" * 40)
    with pytest.raises(InvalidArgument, match="not a tar") as e:
        archive.detect(str(junk))
    assert e.value.obj == str(junk)


def test_a_tar_with_neither_index_nor_manifest_is_refused(tmp_path: Path, store: FakeStore
                                                          ) -> None:
    path = write_tar(tmp_path / "rootfs.tar", {"bin/sh": b"x"})
    with pytest.raises(InvalidArgument, match=r"neither index\.json .* nor manifest\.json"):
        archive.load(store, str(path))
    assert store.images == {}


def test_missing_path_is_not_found(tmp_path: Path, store: FakeStore) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        archive.load(store, str(tmp_path / "nope.tar"))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path,
                                                        store: FakeStore) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgument, match="neither a regular file nor a directory"):
        archive.load(store, str(fifo))


# -- OCI layouts --


@pytest.mark.parametrize("kind", ["dir", "tar", "tar.gz"])
def test_load_an_oci_layout(tmp_path: Path, store: FakeStore, kind: str) -> None:
    b = build(3)
    members = layout_members((b, NAME))
    path = (write_dir(tmp_path / "layout", members) if kind == "dir"
            else write_tar(tmp_path / f"x.{kind}", members, gz=kind == "tar.gz"))
    [img] = archive.load(store, str(path))
    check_loaded(img, b)
    assert img.names == (NAME,)
    assert store.blobs[img.digest] == b.manifest  # the manifest as it was, not rewritten


def test_containerd_name_annotation_wins_over_a_bare_ref_name(tmp_path: Path,
                                                              store: FakeStore) -> None:
    b = build(1)
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": b.digest, "size": len(b.manifest),
         "annotations": {"org.opencontainers.image.ref.name": "1",
                         "io.containerd.image.name": NAME}}]}).encode()
    [img] = archive.load(store, str(write_tar(tmp_path / "x.tar",
                                              layout_members((b, None), index=index))))
    assert img.names == (NAME,)


def test_several_images_and_names_in_one_layout(tmp_path: Path, store: FakeStore) -> None:
    a, b = build(1, tag="a"), build(2, tag="b")
    other = "example.com/silo-archive-test/app:2"
    members = layout_members((a, NAME), (b, other), (a, "example.com/silo-archive-test/a:x"))
    imgs = archive.load(store, str(write_tar(tmp_path / "x.tar", members)))
    assert [i.id for i in imgs] == [a.id, b.id]
    assert imgs[0].names == ("example.com/silo-archive-test/a:x", NAME)
    with pytest.raises(InvalidArgument, match="holds 2 images") as e:
        archive.load(FakeStore(), str(tmp_path / "x.tar"), names=["x:y"])
    assert e.value.field == "names"


def test_names_argument_replaces_the_archive_names(tmp_path: Path, store: FakeStore) -> None:
    b = build(1)
    path = write_tar(tmp_path / "x.tar", layout_members((b, NAME)))
    [img] = archive.load(store, str(path), names=["busybox:mine"])
    assert img.names == ("docker.io/library/busybox:mine",)


def test_a_nested_index_gives_the_platform_asked_for(tmp_path: Path, store: FakeStore) -> None:
    host, other = build(1, tag="host"), build(1, tag="other")
    nested = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": other.digest,
         "size": len(other.manifest), "platform": {"os": "linux", "architecture": "s390x"}},
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": host.digest,
         "size": len(host.manifest), "platform": platforms.host().to_dict()}]}).encode()
    top = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mediatypes.OCI_INDEX, "digest": sha(nested), "size": len(nested),
         "annotations": {"org.opencontainers.image.ref.name": NAME}}]}).encode()
    members = layout_members((host, None), (other, None), index=top)
    members[f"blobs/sha256/{sha(nested).split(':')[1]}"] = nested
    path = write_tar(tmp_path / "multi.tar", members)
    [img] = archive.load(store, str(path))
    assert img.id == host.id and img.names == (NAME,)
    [img] = archive.load(store, str(path), platform="linux/s390x")
    assert img.id == other.id
    with pytest.raises(NotFound, match=r"index\.json manifests\[0\].*linux/s390x"):
        archive.load(FakeStore(), str(path), platform="linux/riscv64")


def test_a_manifest_naming_a_missing_blob(tmp_path: Path, store: FakeStore) -> None:
    b = build(2)
    members = layout_members((b, NAME))
    gone = f"blobs/sha256/{sha(b.layers[1]).split(':')[1]}"
    del members[gone]
    path = write_tar(tmp_path / "x.tar", members)
    with pytest.raises(InvalidArgument, match=rf"layers\[1\].*{gone} is missing") as e:
        archive.load(store, str(path))
    assert e.value.obj == str(path)
    assert store.images == {} and store.blobs == {}


def test_a_layer_that_does_not_match_its_digest(tmp_path: Path, store: FakeStore) -> None:
    b = build(2)
    members = layout_members((b, NAME))
    member = f"blobs/sha256/{sha(b.layers[0]).split(':')[1]}"
    members[member] = bytes([members[member][0] ^ 1]) + members[member][1:]
    with pytest.raises(InvalidArgument, match=rf"manifests\[0\].*{sha(b.layers[0])}"):
        archive.load(store, str(write_tar(tmp_path / "x.tar", members)))
    assert store.images == {}


def test_a_manifest_that_does_not_match_the_index(tmp_path: Path, store: FakeStore) -> None:
    b = build(1)
    members = layout_members((b, NAME))
    member = f"blobs/sha256/{b.digest.split(':')[1]}"
    members[member] = members[member].replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
    with pytest.raises(InvalidArgument, match=rf"{member} is {len(b.manifest) + 1} bytes"):
        archive.load(store, str(write_tar(tmp_path / "x.tar", members)))
    members[member] = members[member].replace(b'"schemaVersion":  2', b'"schemaVersion": 3')
    with pytest.raises(InvalidArgument, match=rf"{member} does not match its digest"):
        archive.load(store, str(write_tar(tmp_path / "y.tar", members)))
    assert store.images == {}


def test_a_truncated_archive_names_the_member(tmp_path: Path, store: FakeStore) -> None:
    b = build(1)
    big = os.urandom(200_000)
    b.layers[0] = big  # not a valid layer, but the truncation is found first
    members = layout_members((b, NAME))
    member = f"blobs/sha256/{sha(big).split(':')[1]}"
    members[member] = big
    path = write_tar(tmp_path / "x.tar", {k: v for k, v in members.items() if k != member}
                     | {member: big})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 100_000])
    with pytest.raises(InvalidArgument, match=rf"{member} is truncated"):
        archive.load(store, str(path))
    assert store.images == {}


def test_a_truncated_gzip_archive(tmp_path: Path, store: FakeStore) -> None:
    path = write_tar(tmp_path / "x.tgz", layout_members((build(1), NAME)), gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InvalidArgument, match="gzip stream is corrupt or truncated"):
        archive.load(store, str(path))


def test_an_unsupported_layer_media_type(tmp_path: Path, store: FakeStore) -> None:
    b = build(1)
    doc = json.loads(b.manifest)
    doc["layers"][0]["mediaType"] = "application/vnd.example.squashfs"
    b.manifest = json.dumps(doc).encode()
    b.blobs = {k: v for k, v in b.blobs.items() if v is not b.manifest} | {sha(b.manifest):
                                                                             b.manifest}
    with pytest.raises(InvalidArgument, match=r"layers\[0\]\.mediaType.*squashfs") as e:
        archive.load(store, str(write_tar(tmp_path / "x.tar", layout_members((b, NAME)))))
    assert "index.json manifests[0]" in str(e.value)
    assert store.images == {}


def test_an_index_entry_that_is_no_image(tmp_path: Path, store: FakeStore) -> None:
    b = build(1)
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.example.sbom", "digest": b.digest,
         "size": len(b.manifest)}]}).encode()
    with pytest.raises(InvalidArgument, match=r"manifests\[0\]\.mediaType.*sbom"):
        archive.load(store, str(write_tar(tmp_path / "x.tar",
                                          layout_members((b, None), index=index))))


def test_a_bad_name_annotation_is_named(tmp_path: Path, store: FakeStore) -> None:
    b = build(1)
    with pytest.raises(InvalidArgument, match=r"manifests\[0\]\.annotations.*Not/Valid"):
        archive.load(store, str(write_tar(tmp_path / "x.tar",
                                          layout_members((b, "Not/Valid:tag")))))


@pytest.mark.parametrize("bad", ["../evil", "/abs/path"])
def test_an_archive_member_climbing_out_is_refused(tmp_path: Path, store: FakeStore,
                                                   bad: str) -> None:
    members = layout_members((build(1), NAME))
    members[bad] = b"x"
    with pytest.raises(InvalidArgument, match=f"member {bad!r}"):
        archive.load(store, str(write_tar(tmp_path / "x.tar", members)))
    assert store.images == {}


def test_a_member_twice_is_refused(tmp_path: Path, store: FakeStore) -> None:
    members = layout_members((build(1), NAME))
    path = write_tar(tmp_path / "x.tar", members, links={"./index.json": "oci-layout"})
    with pytest.raises(InvalidArgument, match=r"index\.json appears twice"):
        archive.load(store, str(path))


def test_a_layout_without_oci_layout_or_of_another_version(tmp_path: Path,
                                                           store: FakeStore) -> None:
    members = layout_members((build(1), NAME))
    members["oci-layout"] = b'{"imageLayoutVersion":"2.0.0"}'
    with pytest.raises(NotSupported, match=r"2\.0\.0"):
        archive.load(store, str(write_tar(tmp_path / "x.tar", members)))
    del members["oci-layout"]
    with pytest.raises(InvalidArgument, match="oci-layout is missing"):
        archive.load(store, str(write_tar(tmp_path / "y.tar", members)))


def test_a_layout_dir_symlink_out_of_it_is_not_followed(tmp_path: Path,
                                                        store: FakeStore) -> None:
    b = build(1)
    layout = write_dir(tmp_path / "layout", layout_members((b, NAME)))
    member = layout / "blobs/sha256" / sha(b.layers[0]).split(":")[1]
    outside = tmp_path / "outside"
    outside.write_bytes(member.read_bytes())
    member.unlink()
    member.symlink_to(outside)
    with pytest.raises(InvalidArgument, match=r"layers\[0\].*missing"):
        archive.load(store, str(layout))


# -- docker-archive --


@pytest.mark.parametrize("legacy", [True, False])
def test_load_a_docker_archive(tmp_path: Path, store: FakeStore, legacy: bool) -> None:
    b = build(2, compress=False)
    members, links = docker_members(b, ["silo-archive-test/app:1"], legacy=legacy)
    [img] = archive.load(store, str(write_tar(tmp_path / "d.tar", members, links=links)))
    assert img.id == b.id
    assert img.names == ("docker.io/silo-archive-test/app:1",)
    m = parse_manifest(store.blobs[img.digest], img.media_type)
    assert m.media_type == mediatypes.OCI_MANIFEST
    assert [d.media_type for d in m.layers] == [mediatypes.OCI_LAYER] * 2
    assert [d.digest for d in m.layers] == b.diff_ids  # checked by the store as it read them


def test_a_docker_archive_with_gzip_layers(tmp_path: Path, store: FakeStore) -> None:
    b = build(2, compress=True)
    members, _ = docker_members(b, [NAME], legacy=True)
    members = {k: v for k, v in members.items() if not k.endswith(".tar")}
    names = []
    for i, blob in enumerate(b.layers):
        members[f"l{i}/layer.tar"] = blob
        names.append(f"l{i}/layer.tar")
    doc = json.loads(members["manifest.json"])
    doc[0]["Layers"] = names
    members["manifest.json"] = json.dumps(doc).encode()
    [img] = archive.load(store, str(write_tar(tmp_path / "d.tar", members)))
    check_loaded(img, b)
    assert [d.media_type for d in img.layers] == [mediatypes.OCI_LAYER_GZIP] * 2


def test_docker_archive_layer_with_a_wrong_diff_id(tmp_path: Path, store: FakeStore) -> None:
    b = build(1, compress=False)
    members, links = docker_members(b, [NAME])
    members[next(k for k in members if k.endswith(".tar"))] = layer_tar({"other": b"x"})
    with pytest.raises(InvalidArgument, match=r"manifest\.json\[0\]: blob sha256:"):
        archive.load(store, str(write_tar(tmp_path / "d.tar", members, links=links)))
    assert store.images == {}


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: d[0].update(Layers=["../../etc/passwd"]), r"Layers\[0\].*climbs out"),
    (lambda d: d[0].update(Layers=["nope/layer.tar"]), r"Layers\[0\].*nope/layer.tar is missing"),
    (lambda d: d[0].update(Config="missing.json"), r"Config.*missing.json is missing"),
    (lambda d: d[0].update(Layers=[]), r"lists 0 layers, the config .* has 1 diff_ids"),
    (lambda d: d[0].update(RepoTags=["app:-bad"]), r"RepoTags.*app:-bad"),
    (lambda d: d[0].update(RepoTags="app:1"), r"RepoTags: must be a list of strings"),
    (lambda d: d.clear(), r"manifest\.json: must be a non-empty list"),
])
def test_bad_docker_manifests(tmp_path: Path, store: FakeStore, change: Any,
                              match: str) -> None:
    b = build(1, compress=False)
    members, links = docker_members(b, [NAME])
    doc = json.loads(members["manifest.json"])
    change(doc)
    members["manifest.json"] = json.dumps(doc).encode()
    with pytest.raises(InvalidArgument, match=match):
        archive.load(store, str(write_tar(tmp_path / "d.tar", members, links=links)))
    assert store.images == {}


def test_docker_layer_compressed_with_xz_is_not_supported(tmp_path: Path,
                                                          store: FakeStore) -> None:
    b = build(1, compress=False)
    members, links = docker_members(b, [NAME])
    tar_name = next(k for k in members if k.endswith(".tar"))
    members[tar_name] = lzma.compress(members[tar_name])
    with pytest.raises(NotSupported, match=r"Layers\[0\].*xz-compressed"):
        archive.load(store, str(write_tar(tmp_path / "d.tar", members, links=links)))


def test_docker_layer_link_that_leads_nowhere(tmp_path: Path, store: FakeStore) -> None:
    b = build(1, compress=False)
    members, links = docker_members(b, [NAME])
    links = {k: "../elsewhere.tar" for k in links}
    with pytest.raises(InvalidArgument, match="does not lead to a file"):
        archive.load(store, str(write_tar(tmp_path / "d.tar", members, links=links)))


# -- save --


@pytest.mark.parametrize("fmt", archive.FORMATS)
def test_save_then_load_gives_the_same_image(tmp_path: Path, store: FakeStore,
                                             fmt: str) -> None:
    b = build(3)
    [img] = archive.load(store, str(write_tar(tmp_path / "in.tar", layout_members((b, NAME)))))
    out = tmp_path / "out" / "saved"
    out.parent.mkdir()
    archive.save(store, [NAME], str(out), format=fmt)
    assert archive.detect(str(out)) == fmt
    assert leftovers(out.parent) == []
    again = FakeStore()
    [back] = archive.load(again, str(out))
    check_loaded(back, b)
    assert back.names == (NAME,)
    if fmt != "docker-archive":
        assert back.digest == img.digest  # the manifest travels as is


def test_save_by_id_carries_no_name_and_several_refs_share_blobs(tmp_path: Path,
                                                                 store: FakeStore) -> None:
    a, b = build(2, tag="a"), build(2, tag="b")
    archive.load(store, str(write_tar(tmp_path / "a.tar", layout_members((a, NAME)))))
    archive.load(store, str(write_tar(tmp_path / "b.tar", layout_members((b, "other:1")))))
    out = tmp_path / "both.tar"
    archive.save(store, [a.id, "other:1", "other:1"], str(out))
    with tarfile.open(out) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = tar.getnames()
    assert [m.get("annotations") for m in index["manifests"]] == [
        None, {"org.opencontainers.image.ref.name": "docker.io/library/other:1",
               "io.containerd.image.name": "docker.io/library/other:1"}]
    assert len(names) == len(set(names))


def test_save_of_an_unknown_image_writes_nothing(tmp_path: Path, store: FakeStore) -> None:
    with pytest.raises(NotFound):
        archive.save(store, ["nothing:here"], str(tmp_path / "x.tar"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", archive.FORMATS)
def test_save_of_a_corrupt_blob_leaves_nothing(tmp_path: Path, store: FakeStore,
                                               fmt: str) -> None:
    b = build(2)
    archive.load(store, str(write_tar(tmp_path / "in.tar", layout_members((b, NAME)))))
    digest = sha(b.layers[1])
    store.blobs[digest] = b"\0" + store.blobs[digest][1:]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Internal, match=f"{digest} does not match"):
        archive.save(store, [NAME], str(out / "x"), format=fmt)
    assert list(out.iterdir()) == []


def test_save_refuses_bad_arguments(tmp_path: Path, store: FakeStore) -> None:
    with pytest.raises(InvalidArgument, match="format: 'zip' is not one of") as e:
        archive.save(store, [NAME], str(tmp_path / "x"), format="zip")
    assert e.value.field == "format"
    with pytest.raises(InvalidArgument, match="refs: names no image"):
        archive.save(store, [], str(tmp_path / "x"))
    b = build(1)
    archive.load(store, str(write_tar(tmp_path / "in.tar", layout_members((b, NAME)))))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("mine")
    with pytest.raises(InvalidArgument, match="not an empty directory"):
        archive.save(store, [NAME], str(full), format="oci-dir")
    assert [p.name for p in full.iterdir()] == ["keep"]
    with pytest.raises(NotFound, match="does not exist"):
        archive.save(store, [NAME], str(tmp_path / "no" / "dir.tar"))
    with pytest.raises(InvalidArgument, match="is a directory"):
        archive.save(store, [NAME], str(full), format="docker-archive")
    assert [p.name for p in full.iterdir()] == ["keep"]


# -- import of a root filesystem tarball --


ROOTFS = {"bin/sh": b"#!shell\n", "etc/hostname": b"silo\n"}


@pytest.mark.parametrize(("how", "kind"), [
    ("path", "none"), ("path", "gzip"), ("stream", "none"), ("stream", "gzip"),
    ("path", "xz"), ("stream", "bzip2"), ("path", "zstd")])
def test_import_rootfs(tmp_path: Path, store: FakeStore, how: str, kind: str) -> None:
    plain = layer_tar(ROOTFS)
    data = {"none": lambda x: x, "gzip": gzip.compress, "xz": lzma.compress,
            "bzip2": bz2.compress, "zstd": _zstd}[kind](plain)
    path = tmp_path / "rootfs.tar"
    path.write_bytes(data)
    with open(path, "rb") as f:
        img = archive.import_rootfs(store, str(path) if how == "path" else f, "imported:1",
                                    config_changes={"Cmd": ["/bin/sh"], "Env": ["A=b"],
                                                    "WorkingDir": "/root"})
    assert img.names == ("docker.io/library/imported:1",)
    assert img.config["rootfs"]["diff_ids"] == [sha(plain)]
    assert img.config["config"] == {"Cmd": ["/bin/sh"], "Env": ["A=b"], "WorkingDir": "/root"}
    assert (img.config["os"], img.config["architecture"]) == ("linux",
                                                              platforms.host().architecture)
    [layer] = img.layers
    stored = kind if kind in ("none", "gzip", "zstd") else "none"
    assert layer.media_type == mediatypes.layer_type(stored)
    assert store.blobs[layer.digest] == (data if stored == kind else plain)


def _zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize(("data", "match"), [
    (b"", "is empty"), (b"hello, not a tar" * 100, "is not a tar"),
    (gzip.compress(b"plain text, gzip'd" * 100), "is not a tar"),
    (gzip.compress(layer_tar(ROOTFS))[:-30], "gzip stream is corrupt or truncated"),
])
def test_import_rootfs_refuses_what_is_no_tarball(tmp_path: Path, store: FakeStore,
                                                  data: bytes, match: str) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(data)
    with pytest.raises(InvalidArgument, match=match) as e:
        archive.import_rootfs(store, str(path), "imported:1")
    assert e.value.field == "tar"
    assert store.images == {}


@pytest.mark.parametrize(("name", "changes", "match"), [
    ("Bad:Name", None, "name: .*Bad:Name"),
    ("ok:1", {"Volumes": {}}, r"config_changes\.Volumes: is not one of"),
    ("ok:1", {"Cmd": "sh"}, r"config_changes\.Cmd: must be a list of strings"),
    ("ok:1", {"Env": ["=x"]}, r"config_changes\.Env\[0\]: '=x' is not NAME=value"),
    ("ok:1", {"WorkingDir": "rel"}, r"config_changes\.WorkingDir: 'rel' is not an absolute path"),
    ("ok:1", {"Labels": {"a": 1}}, r"config_changes\.Labels: must map strings to strings"),
])
def test_import_rootfs_refuses_bad_arguments(tmp_path: Path, store: FakeStore, name: str,
                                             changes: Any, match: str) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(layer_tar(ROOTFS))
    with pytest.raises(InvalidArgument, match=match):
        archive.import_rootfs(store, str(path), name, config_changes=changes)
    assert store.images == {}


def test_import_rootfs_of_a_missing_file(tmp_path: Path, store: FakeStore) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        archive.import_rootfs(store, str(tmp_path / "nope.tar"), "x:1")


def test_errors_are_silo_errors_with_op(tmp_path: Path, store: FakeStore) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 10)
    with pytest.raises(SiloError) as e:
        archive.load(store, str(junk))
    assert e.value.op == "storage::load"


def test_a_docker_25_save_is_read_as_its_oci_layout(tmp_path: Path, store: FakeStore) -> None:
    """docker save since 25 writes an OCI layout and a manifest.json side by side; the layout
    keeps the manifest as pushed, and containerd's annotation carries the full name (the
    OCI ref.name there is only the tag)."""
    b = build(2, compress=False)
    index = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": b.digest, "size": len(b.manifest),
         "annotations": {"io.containerd.image.name": "docker.io/library/app:1",
                         "org.opencontainers.image.ref.name": "1"}}]}).encode()
    members = layout_members((b, None), index=index)
    docker, _ = docker_members(b, ["app:1"], legacy=False)
    path = write_tar(tmp_path / "d25.tar", members | {"manifest.json": docker["manifest.json"]})
    assert archive.detect(str(path)) == "oci-archive"
    [img] = archive.load(store, str(path))
    assert (img.id, img.digest, img.names) == (b.id, b.digest, ("docker.io/library/app:1",))


def test_a_gzipped_docker_archive(tmp_path: Path, store: FakeStore) -> None:
    b = build(1, compress=False)
    members, links = docker_members(b, ["app:1"])
    path = write_tar(tmp_path / "d.tar.gz", members, links=links, gz=True)
    assert archive.detect(str(path)) == "docker-archive"
    [img] = archive.load(store, str(path))
    assert img.id == b.id


def test_an_index_of_no_image(tmp_path: Path, store: FakeStore) -> None:
    members = layout_members(index=b'{"schemaVersion": 2, "manifests": []}')
    with pytest.raises(InvalidArgument, match=r"index\.json: names no image"):
        archive.load(store, str(write_tar(tmp_path / "x.tar", members)))


def test_manifests_for_several_platforms_under_one_name_give_the_one_asked_for(
        tmp_path: Path, store: FakeStore) -> None:
    """A multi-platform layout written without a nested index: each top-level entry is a
    manifest with its platform, all under one name. One image is loaded, not one per
    platform each taking the name from the last."""
    host, other = build(1, tag="host"), build(1, tag="other")
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mediatypes.OCI_MANIFEST, "digest": b.digest, "size": len(b.manifest),
         "platform": p, "annotations": {"org.opencontainers.image.ref.name": NAME}}
        for b, p in [(host, platforms.host().to_dict()),
                     (other, {"os": "linux", "architecture": "s390x"})]]}).encode()
    path = write_tar(tmp_path / "multi.tar", layout_members((host, None), (other, None),
                                                           index=index))
    [img] = archive.load(store, str(path))
    assert (img.id, img.names) == (host.id, (NAME,))
    [img] = archive.load(store, str(path), platform="linux/s390x")
    assert img.id == other.id
    with pytest.raises(NotFound, match=r"index\.json: .*riscv64"):
        archive.load(FakeStore(), str(path), platform="linux/riscv64")
