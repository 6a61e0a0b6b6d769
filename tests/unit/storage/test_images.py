"""The image store on plain files: add (one pass, verified, nothing visible on error), shared
layers unpacked once, names, get, remove with docker rmi semantics, prune and gc, and
concurrent adds from threads and processes."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from silo.errors import InvalidArgument, InvalidState, NotFound, SiloError, Unavailable
from silo.storage import mediatypes as mt
from silo.storage.descriptor import Descriptor, sha256
from silo.storage.images import ImageStore
from silo.storage.layers import chain_ids
from tests.unit.storage.imagefactory import Built, CountingSource, image

pytestmark = pytest.mark.unit

BASE = {"bin/": None, "bin/sh": b"#!shell\n" * 100, "etc/": None, "etc/os": b"base\n"}
MID = {"usr/": None, "usr/lib.so": os.urandom(1000)}


def app(n: int) -> Built:
    return image(BASE, MID, {f"app{n}": f"app {n}\n".encode()}, cmd=f"app{n}")


def leftovers(root: Path) -> list[str]:
    """Temporaries a store holds: ingest files, .tmp- layer dirs."""
    out = [f"ingest/{n}" for n in os.listdir(root / "ingest") if n != ".lock"]
    out += [f"layers/{n}" for n in os.listdir(root / "layers") if n.startswith(".")]
    return out


def visible(root: Path) -> tuple[list[str], list[str]]:
    return (sorted(os.listdir(root / "blobs" / "sha256")),
            sorted(n for n in os.listdir(root / "layers") if not n.startswith(".")))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "store"))


def test_add_and_get(store: ImageStore) -> None:
    b = app(1)
    src = CountingSource(b)
    img = store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:1", "quay.io/x/app"],
                    repo_digest=f"quay.io/x/app@{b.digest}")
    assert img.id == b.id and img.digest == b.digest and img.media_type == mt.OCI_MANIFEST
    assert img.names == ("docker.io/library/app:1", "quay.io/x/app:latest")
    assert img.repo_digests == (f"quay.io/x/app@{b.digest}",)
    assert img.config["config"]["Cmd"] == ["app1"]
    assert [layer.diff_id for layer in img.layers] == b.diff_ids
    assert [layer.chain_id for layer in img.layers] == chain_ids(b.diff_ids)
    assert img.platform.architecture == "amd64" and img.size > 0
    # every blob was read once, and is in the store, verified
    assert all(src.count(d) == 1 for d in b.blobs)
    for d, data in b.blobs.items():
        assert store.content.read(d) == data
    assert store.content.read(b.digest) == b.manifest
    top = store.layers.path(img.layers[-1].chain_id)
    assert Path(top, "app1").read_bytes() == b"app 1\n"
    assert Path(store.layers.short(img.layers[0].chain_id), "etc/os").read_bytes() == b"base\n"
    # lookups
    hexid = b.id.split(":")[1]
    for ref in ["app:1", "docker.io/library/app:1", "quay.io/x/app", "quay.io/x/app:latest",
                b.id, hexid, hexid[:4], "sha256:" + hexid[:12], f"quay.io/x/app@{b.digest}",
                f"app@{b.digest}"]:
        assert store.get(ref).id == b.id, ref
    assert store.manifest("app:1") == (b.manifest, mt.OCI_MANIFEST)
    with store.open_blob(b.id) as f:
        assert f.read() == b.config
    assert [i.id for i in store.list()] == [b.id]


@pytest.mark.parametrize("ref", ["app:2", "nothere", "abcdef0", f"app@sha256:{'0' * 64}",
                                 "sha256:" + "f" * 64])
def test_get_unknown_names_the_reference(store: ImageStore, ref: str) -> None:
    b = app(1)
    store.add(CountingSource(b), b.manifest, mt.OCI_MANIFEST, names=["app:1"])
    with pytest.raises(NotFound) as e:
        store.get(ref)
    assert repr(ref) in str(e.value)


def test_get_malformed_reference(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="'Bad Name'"):
        store.get("Bad Name")


def test_a_second_image_unpacks_only_its_own_layer(store: ImageStore) -> None:
    a, b = app(1), app(2)
    src = CountingSource(a, b)
    store.add(src, a.manifest, mt.OCI_MANIFEST, names=["app:1"])
    events: list[tuple[str, str]] = []

    class Rec:
        def start(self, desc: Descriptor, what: str) -> None:
            events.append((desc.digest, what))

        def advance(self, desc: Descriptor, nbytes: int) -> None:
            pass

        def done(self, desc: Descriptor) -> None:
            pass

    store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:2"], progress=Rec())
    shared = [sha256(x) for x in a.layers[:2]]
    assert [src.count(d) for d in shared] == [1, 1]
    assert src.count(sha256(b.layers[2])) == 1
    assert sorted(events) == sorted([(shared[0], "exists"), (shared[1], "exists"),
                                     (sha256(b.layers[2]), "download")])
    assert len(visible(Path(store.root))[1]) == 4  # 2 shared + 2 tops


def _corrupt(data: bytes) -> bytes:
    """The same size, still a good gzip of the same tar, another digest: a changed mtime in
    the gzip header."""
    return data[:4] + b"\x01\x02\x03\x04" + data[8:]


@pytest.mark.parametrize(("tamper", "words"), [
    ("truncate", "truncated"), ("corrupt", "its content has digest"),
    ("extra", "more than"), ("garbage", "gzip"),
])
def test_a_bad_layer_blob_makes_nothing_visible(store: ImageStore, tamper: str,
                                                words: str) -> None:
    b = app(1)
    src = CountingSource(b)
    top = b.layers[2]
    src.tamper[sha256(top)] = {"truncate": top[:-3], "corrupt": _corrupt(top),
                               "extra": top + b"more",
                               "garbage": b"\x1f\x8b" + bytes(len(top) - 2)}[tamper]
    before = visible(Path(store.root))
    with pytest.raises(SiloError) as e:
        store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:1"])
    assert words in str(e.value)
    assert sha256(top) in str(e.value)
    assert leftovers(Path(store.root)) == []
    with pytest.raises(NotFound):
        store.get("app:1")
    blobs, layers = visible(Path(store.root))
    assert sha256(top).split(":")[1] not in blobs
    assert chain_ids(b.diff_ids)[2].split(":")[1] not in layers
    assert store.list() == [] and before[0] == []


def test_a_diff_id_that_does_not_match_is_refused(store: ImageStore) -> None:
    b = app(1)
    cfg = json.loads(b.config)
    cfg["rootfs"]["diff_ids"][1] = sha256(b"something else")
    config = json.dumps(cfg).encode()
    man = json.loads(b.manifest)
    man["config"] = {"mediaType": mt.OCI_CONFIG, "digest": sha256(config), "size": len(config)}
    src = CountingSource(b)
    src.blobs[sha256(config)] = config
    with pytest.raises(InvalidArgument) as e:
        store.add(src, json.dumps(man).encode(), mt.OCI_MANIFEST, names=["app:1"])
    assert "rootfs.diff_ids" in str(e.value) and e.value.field == "config.rootfs.diff_ids"
    assert leftovers(Path(store.root)) == []
    assert sha256(b.layers[1]).split(":")[1] not in visible(Path(store.root))[0]
    assert store.list() == []


@pytest.mark.parametrize(("change", "words"), [
    ({"rootfs": {"type": "layers", "diff_ids": []}}, "has 0 entries"),
    ({"rootfs": {"type": "other"}}, "config.rootfs.type"),
    ({"rootfs": {"type": "layers", "diff_ids": ["x", "y", "z"]}}, "diff_ids[0]"),
])
def test_bad_configs(store: ImageStore, change: dict[str, object], words: str) -> None:
    b = image(BASE, MID, {"x": b"x"}, config_extra=change)
    with pytest.raises(InvalidArgument) as e:
        store.add(CountingSource(b), b.manifest, mt.OCI_MANIFEST)
    assert words in str(e.value)
    assert store.list() == [] and leftovers(Path(store.root)) == []


@pytest.mark.parametrize(("kw", "words"), [
    ({"names": ["Bad"]}, "'Bad'"),
    ({"names": [f"x@sha256:{'1' * 64}"]}, "digest"),
    ({"repo_digest": f"x@sha256:{'1' * 64}"}, "repo_digest"),
    ({"parallel": 0}, "parallel"),
])
def test_bad_arguments_change_nothing(store: ImageStore, kw: dict[str, object],
                                      words: str) -> None:
    b = app(1)
    src = CountingSource(b)
    with pytest.raises(InvalidArgument) as e:
        store.add(src, b.manifest, mt.OCI_MANIFEST, **kw)  # type: ignore[arg-type]
    assert words in str(e.value)
    assert src.opens == {} and visible(Path(store.root)) == ([], [])


def test_an_index_is_refused(store: ImageStore) -> None:
    idx = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
    with pytest.raises(InvalidArgument, match="select a platform"):
        store.add(CountingSource(), idx.encode(), mt.OCI_INDEX)


def test_tag_untag(store: ImageStore) -> None:
    a, b = app(1), app(2)
    src = CountingSource(a, b)
    store.add(src, a.manifest, mt.OCI_MANIFEST, names=["app:1"])
    store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:2"])
    assert store.tag("app:1", "app:latest").names == ("docker.io/library/app:1",
                                                      "docker.io/library/app:latest")
    # a tag moves from one image to another
    store.tag("app:2", "app:latest")
    assert store.get("app").id == b.id and store.get("app:1").names == \
        ("docker.io/library/app:1",)
    assert store.untag("app:latest").id == b.id
    with pytest.raises(NotFound):
        store.get("app:latest")
    with pytest.raises(NotFound, match="app:latest"):
        store.untag("app:latest")
    with pytest.raises(InvalidArgument, match="digest"):
        store.tag("app:1", f"app@sha256:{'1' * 64}")
    with pytest.raises(NotFound):
        store.tag("nothere", "x:1")


def _use(store: ImageStore, cid: str, image_id: str) -> None:
    """Record a container using the image, as create_rootfs does (no mount: unit tier)."""
    with sqlite3.connect(store.db_path) as db:
        db.execute("INSERT INTO containers (id, image_id, created) VALUES (?, ?, '')",
                   (cid, image_id))


def test_remove_semantics(store: ImageStore) -> None:
    a, b = app(1), app(2)
    src = CountingSource(a, b)
    store.add(src, a.manifest, mt.OCI_MANIFEST, names=["app:1", "app:one"])
    store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:2"])
    # by id with several names: refused unless forced
    with pytest.raises(InvalidState, match="several names"):
        store.remove(a.id)
    # by name: untag only while another name is left
    r = store.remove("app:one")
    assert r.untagged == ["docker.io/library/app:one"] and r.deleted == []
    assert store.get(a.id).names == ("docker.io/library/app:1",)
    # in use by a container: refused, by name and by id
    _use(store, "c1", a.id)
    with pytest.raises(InvalidState, match="in use by container c1"):
        store.remove("app:1")
    with pytest.raises(InvalidState, match="in use by container c1"):
        store.remove(a.id, force=True)
    # forced by name: untagged, kept (dangling) while the container uses it
    r = store.remove("app:1", force=True)
    assert r.deleted == [] and store.get(a.id).names == ()
    assert store.prune().deleted == []  # dangling but in use
    with sqlite3.connect(store.db_path) as db:
        db.execute("DELETE FROM containers")
    assert store.prune().deleted == [a.id]
    # the last name: deleted, and its own layer and blobs collected; shared ones stay
    r = store.remove("app:2")
    assert r.untagged == ["docker.io/library/app:2"] and r.deleted == [b.id]
    assert store.list() == []
    assert store.gc() == 0
    assert visible(Path(store.root)) == ([], [])
    assert os.listdir(Path(store.root) / "l") == []
    with pytest.raises(NotFound):
        store.remove("app:2")


def test_remove_keeps_shared_layers(store: ImageStore) -> None:
    a, b = app(1), app(2)
    src = CountingSource(a, b)
    store.add(src, a.manifest, mt.OCI_MANIFEST, names=["app:1"])
    store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:2"])
    store.remove(a.id)
    img = store.get("app:2")
    for layer in img.layers:
        assert os.path.isdir(store.layers.path(layer.chain_id))
        assert store.content.has(layer.blob.digest)
    assert not store.layers.has(chain_ids(a.diff_ids)[2])
    assert not store.content.has(a.id) and not store.content.has(a.digest)


def test_prune_all(store: ImageStore) -> None:
    a, b = app(1), app(2)
    src = CountingSource(a, b)
    store.add(src, a.manifest, mt.OCI_MANIFEST, names=["app:1"])
    store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:2"])
    _use(store, "c1", b.id)
    assert store.prune().deleted == []
    r = store.prune(all=True)
    assert r.deleted == [a.id] and r.reclaimed_bytes > 0
    assert [i.id for i in store.list()] == [b.id]


def test_crash_leftovers_are_removed_at_open(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ImageStore(str(root))
    (root / "ingest" / "half").write_bytes(b"partial")
    (root / "layers" / f".tmp-{'a' * 64}-xyz" / "diff").mkdir(parents=True)
    ImageStore(str(root))
    assert leftovers(root) == []


def test_gc_removes_unreferenced(store: ImageStore) -> None:
    stray = store.content.write_bytes(b"stray blob")
    assert store.gc() == len(b"stray blob")
    assert not store.content.has(stray)


def _add_in_thread(store: ImageStore, src: CountingSource, b: Built, name: str,
                   errors: list[BaseException]) -> None:
    try:
        store.add(src, b.manifest, mt.OCI_MANIFEST, names=[name], parallel=2)
    except BaseException as e:
        errors.append(e)


def test_concurrent_adds_share_layers_threads(store: ImageStore) -> None:
    imgs = [app(i) for i in range(6)]
    src = CountingSource(*imgs)
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_add_in_thread, args=(store, src, b, f"app:{i}", errors))
               for i, b in enumerate(imgs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for d in (sha256(imgs[0].layers[0]), sha256(imgs[0].layers[1])):
        assert src.count(d) == 1  # each shared layer downloaded once
    assert sorted(i.id for i in store.list()) == sorted(b.id for b in imgs)
    assert leftovers(Path(store.root)) == []


def _add_in_process(root: str, n: int, seed_layer: bytes) -> None:
    b = image(BASE, {"usr/": None, "usr/lib.so": seed_layer}, {f"app{n}": b"x"})
    opened: list[str] = []

    class Src(CountingSource):
        def open_blob(self, desc: Descriptor):  # type: ignore[no-untyped-def]
            opened.append(desc.digest)
            return super().open_blob(desc)

    ImageStore(root).add(Src(b), b.manifest, mt.OCI_MANIFEST, names=[f"app:{n}"])
    with open(os.path.join(root, f"opened-{n}"), "w") as f:
        f.write("\n".join(opened))


def test_concurrent_adds_share_layers_processes(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    ImageStore(root)
    seed = os.urandom(200_000)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_in_process, args=(root, n, seed)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = ImageStore(root)
    assert len(store.list()) == 4
    shared = [layer.blob.digest for layer in store.get("app:0").layers[:2]]
    opened = [Path(root, f"opened-{n}").read_text().split() for n in range(4)]
    for d in shared:
        assert sum(o.count(d) for o in opened) == 1, "a shared layer was downloaded twice"
    assert leftovers(Path(root)) == []


def test_remove_does_not_wait_for_an_add_under_way(store: ImageStore) -> None:
    from silo.storage.layers import flocked

    b = app(1)
    store.add(CountingSource(b), b.manifest, mt.OCI_MANIFEST, names=["app:1"])
    with flocked(os.path.join(store.layers.locks, "gc"), shared=True):  # as add holds it
        assert store.remove("app:1").deleted == [b.id]
        assert store.content.has(b.id)  # not collected yet
    assert store.gc() > 0
    assert not store.content.has(b.id) and visible(Path(store.root)) == ([], [])


def test_a_blob_the_source_lacks(store: ImageStore) -> None:
    from silo.storage.source import MemorySource

    b = app(1)
    blobs = dict(b.blobs)
    del blobs[sha256(b.layers[1])]
    with pytest.raises(NotFound, match=sha256(b.layers[1])):
        store.add(MemorySource(blobs), b.manifest, mt.OCI_MANIFEST, names=["app:1"])
    assert store.list() == [] and leftovers(Path(store.root)) == []


def test_a_source_that_breaks_midway_is_unavailable(store: ImageStore) -> None:
    b = app(1)
    top = b.layers[2]

    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
            if self.sent >= len(top) // 2:
                raise ConnectionResetError(104, "Connection reset by peer")
            n = min(len(buf), 7, len(top) // 2 - self.sent)
            buf[:n] = top[self.sent:self.sent + n]
            self.sent += n
            return n

    class Src(CountingSource):
        def open_blob(self, desc: Descriptor) -> BinaryIO:
            if desc.digest == sha256(top):
                return io.BufferedReader(Broken())  # type: ignore[return-value]
            return super().open_blob(desc)

    with pytest.raises(Unavailable) as e:
        store.add(Src(b), b.manifest, mt.OCI_MANIFEST, names=["app:1"])
    assert sha256(top) in str(e.value) and "reset" in str(e.value)
    assert store.list() == [] and leftovers(Path(store.root)) == []
    assert sha256(top).split(":")[1] not in visible(Path(store.root))[0]


def test_a_live_unpack_survives_a_store_opened_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "store"
    b = app(1)
    started, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def slow_unpack(stream: BinaryIO, dest: str, media_type: str) -> object:
        from silo.storage.unpack import unpack

        started.set()
        release.wait(60)
        return unpack(stream, dest, media_type)

    store = ImageStore(str(root), unpacker=slow_unpack)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            store.add(CountingSource(b), b.manifest, mt.OCI_MANIFEST, names=["app:1"],
                      parallel=1)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert started.wait(60)
    ImageStore(str(root))  # its clean() must leave the live .tmp- dir and ingest file alone
    seen.append(leftovers(root))
    release.set()
    t.join()
    assert errors == [] and store.get("app:1").id == b.id
    assert len(seen[0]) == 2  # one .tmp- layer dir, one ingest file, both kept
    assert leftovers(root) == []


def _add_and_die(root: str) -> None:
    """An add killed (SIGKILL) in the middle of unpacking its second layer."""
    import signal

    calls = []

    def dying_unpack(stream: BinaryIO, dest: str, media_type: str) -> object:
        from silo.storage.unpack import unpack

        calls.append(dest)
        if len(calls) == 2:
            stream.read(100)  # the ingest file has bytes, the .tmp- dir exists
            os.kill(os.getpid(), signal.SIGKILL)
        return unpack(stream, dest, media_type)

    b = app(1)
    ImageStore(root, unpacker=dying_unpack).add(  # type: ignore[arg-type]
        CountingSource(b), b.manifest, mt.OCI_MANIFEST, names=["app:1"], parallel=1)


def test_a_killed_add_leaves_temporaries_the_next_open_removes(tmp_path: Path) -> None:
    root = tmp_path / "store"
    ImageStore(str(root))
    p = multiprocessing.get_context("fork").Process(target=_add_and_die, args=(str(root),))
    p.start()
    p.join()
    assert p.exitcode == -9
    assert len(leftovers(root)) == 2  # what the crash left: an ingest file, a .tmp- dir
    store = ImageStore(str(root))
    assert leftovers(root) == [] and store.list() == []
    b = app(1)
    assert store.add(CountingSource(b), b.manifest, mt.OCI_MANIFEST, names=["app:1"]).id == b.id


def _tag_many(root: str, n: int) -> None:
    store = ImageStore(root)
    for i in range(15):
        store.tag("app:1", f"proc{n}:t{i}")
        if i % 3 == 0:
            store.untag(f"proc{n}:t{i}")


def test_metadata_from_several_processes(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    b = app(1)
    ImageStore(root).add(CountingSource(b), b.manifest, mt.OCI_MANIFEST, names=["app:1"])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_tag_many, args=(root, n)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    names = ImageStore(root).get(b.id).names
    want = {"docker.io/library/app:1"} | {f"docker.io/library/proc{n}:t{i}"
                                          for n in range(4) for i in range(15) if i % 3}
    assert set(names) == want


def test_adding_again_reads_nothing(store: ImageStore) -> None:
    b = app(1)
    src = CountingSource(b)
    store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:1"])
    before = dict(src.opens)
    again = store.add(src, b.manifest, mt.OCI_MANIFEST, names=["app:again"])
    assert src.opens == before
    assert again.names == ("docker.io/library/app:1", "docker.io/library/app:again")


def test_the_same_image_with_other_compression(store: ImageStore) -> None:
    """Same config (so same id) from uncompressed layers: the layers are reused, only the
    new blobs are fetched, and gc drops the old ones."""
    gz = image(BASE, MID)
    raw = image(BASE, MID, compress=False)
    assert gz.id == raw.id and gz.digest != raw.digest
    store.add(CountingSource(gz), gz.manifest, mt.OCI_MANIFEST, names=["x:1"])
    src = CountingSource(raw)
    img = store.add(src, raw.manifest, mt.OCI_MANIFEST)
    assert img.digest == raw.digest and [ly.blob.digest for ly in img.layers] == \
        [sha256(x) for x in raw.layers]
    assert all(src.count(sha256(x)) == 1 for x in raw.layers)
    assert store.gc() == sum(len(x) for x in gz.layers) + len(gz.manifest)
    assert all(store.content.has(sha256(x)) for x in raw.layers)
    assert all(store.layers.has(ly.chain_id) for ly in img.layers)


@pytest.mark.parametrize(("blob_of", "words"), [
    ("gzip", "decompresses to"), ("plain", "decompresses to"), ("garbage", "corrupt gzip"),
])
def test_a_blob_for_a_layer_already_unpacked_must_match_its_diff_id(
        store: ImageStore, blob_of: str, words: str) -> None:
    """The layer is unpacked already (from another compression), so only the blob is fetched:
    it must still decompress to the config's diff_id, or save/push would export a blob that
    is not the layer the image names."""
    import gzip

    from tests.unit.storage.imagefactory import tar_bytes

    gz = image(BASE, MID)
    store.add(CountingSource(gz), gz.manifest, mt.OCI_MANIFEST, names=["x:1"])
    other = tar_bytes({"evil": b"not the layer\n"})
    bad = {"gzip": gzip.compress(other, mtime=0), "plain": other,
           "garbage": b"\x1f\x8b" + bytes(100)}[blob_of]
    media = mt.OCI_LAYER if blob_of == "plain" else mt.OCI_LAYER_GZIP
    man = json.loads(gz.manifest)
    man["layers"][1] = {"mediaType": media, "digest": sha256(bad), "size": len(bad)}
    manifest = json.dumps(man).encode()
    src = CountingSource(gz)
    src.blobs[sha256(bad)] = bad
    before = visible(Path(store.root))
    with pytest.raises(InvalidArgument) as e:
        store.add(src, manifest, mt.OCI_MANIFEST, names=["x:evil"])
    msg = str(e.value)
    assert sha256(bad) in msg and words in msg, msg
    assert gz.diff_ids[1] in msg
    if blob_of != "garbage":
        assert sha256(other) in msg
    assert src.count(sha256(bad)) == 1
    assert visible(Path(store.root)) == before  # neither the blob nor the manifest
    assert leftovers(Path(store.root)) == []
    with pytest.raises(NotFound):
        store.get("x:evil")
    assert store.get(gz.id).digest == gz.digest
