"""The image store: images, their names, and the container root filesystems that use them.

``ImageStore`` owns ``<root>`` (see docs/design/storage.md for the layout): blobs in a
:class:`ContentStore`, unpacked layers in a :class:`LayerStore`, and ``metadata.db``, an SQLite
database in WAL mode that several processes may use at once (each call opens its own
connection; writes are ``BEGIN IMMEDIATE`` transactions).

Imports :mod:`silo.errors`, :mod:`silo.kernel` (through :mod:`silo.storage.rootfs`) and the
storage modules below it; never the service.

Locks (``locks/``, flock: good across threads and processes):

- ``gc``: shared by :meth:`ImageStore.add` and :meth:`ImageStore.create_rootfs` for their whole
  run, exclusive for :meth:`ImageStore.gc`; a layer that an unfinished ``add`` unpacked is
  never collected before the image that uses it is recorded.
- ``layer-<chainid>``: one unpack per layer; a concurrent ``add`` of an image sharing the layer
  waits, then reuses it (so each shared layer is downloaded once).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from silo.errors import (
    AlreadyExists,
    InvalidArgument,
    InvalidState,
    NotFound,
    SiloError,
    Unavailable,
    invalid,
)
from silo.storage import mediatypes, reference, rootfs
from silo.storage.content import ContentStore, Writer, internal
from silo.storage.descriptor import Descriptor, parse_manifest, sha256, validate_digest
from silo.storage.layers import LayerStore, Unpacker, chain_ids, flocked
from silo.storage.platform import Platform
from silo.storage.source import BlobSource, Progress

MAX_CONFIG = 64 << 20
_HEXPREFIX = re.compile(r"[0-9a-f]{4,64}")
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, digest TEXT NOT NULL, media_type TEXT NOT NULL,
    config TEXT NOT NULL, layers TEXT NOT NULL, size INTEGER NOT NULL,
    created TEXT NOT NULL, platform TEXT NOT NULL, added TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id));
CREATE TABLE IF NOT EXISTS repo_digests (
    ref TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id));
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id),
    size INTEGER, created TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS names_image ON names(image_id);
CREATE INDEX IF NOT EXISTS repo_digests_image ON repo_digests(image_id);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
"""


@dataclass(frozen=True)
class Layer:
    diff_id: str
    chain_id: str
    blob: Descriptor


@dataclass(frozen=True)
class Image:
    id: str                         # the config digest (docker's image id)
    digest: str                     # the manifest digest
    media_type: str                 # the manifest's media type
    names: tuple[str, ...]          # normalised "registry/repo:tag", sorted
    repo_digests: tuple[str, ...]   # "registry/repo@sha256:..."
    config: dict[str, Any] = field(hash=False, compare=False)
    layers: tuple[Layer, ...]       # base first
    size: int                       # bytes of all layers, uncompressed
    created: str
    platform: Platform

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]


@dataclass(frozen=True)
class RemoveResult:
    untagged: list[str]
    deleted: list[str]


@dataclass(frozen=True)
class PruneResult:
    deleted: list[str]
    reclaimed_bytes: int


class _Tee:
    """A reader over a blob stream that writes every byte through to an ingest (which hashes
    and counts it) and reports progress: one pass for download + verify + unpack."""

    def __init__(self, stream: BinaryIO, writer: Writer, desc: Descriptor,
                 progress: Progress | None) -> None:
        self.stream, self.writer, self.desc, self.progress = stream, writer, desc, progress

    def read(self, n: int = -1) -> bytes:
        try:
            data = self.stream.read(n)
        except SiloError:
            raise
        except OSError as e:
            raise Unavailable(f"reading blob {self.desc.digest}: {e}", op="images::add",
                              obj=self.desc.digest) from e
        if data:
            self.writer.write(data)
            if self.progress is not None:
                self.progress.advance(self.desc, len(data))
        return data

    def readinto(self, b: bytearray | memoryview) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class ImageStore:
    def __init__(self, root: str, *, unpacker: Unpacker | None = None) -> None:
        self.root = os.path.abspath(root)
        try:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            os.makedirs(os.path.join(self.root, "containers"), mode=0o711, exist_ok=True)
        except OSError as e:
            raise internal("creating", self.root, e) from e
        self.content = ContentStore(self.root)
        self.layers = LayerStore(self.root, unpacker=unpacker)
        self.db_path = os.path.join(self.root, "metadata.db")
        self._gc_lock = os.path.join(self.layers.locks, "gc")
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        os.chmod(self.db_path, 0o600)
        self.content.clean()
        self.layers.clean()

    # -- the database
    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        except sqlite3.Error as e:
            raise internal("opening", self.db_path, OSError(str(e))) from e
        try:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=60000")
            yield db
        finally:
            db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _load(self, db: sqlite3.Connection, image_id: str) -> Image:
        row = db.execute("SELECT id, digest, media_type, config, layers, size, created, "
                         "platform FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFound(f"image {image_id} not found", op="images::get", obj=image_id)
        names = tuple(sorted(r[0] for r in db.execute(
            "SELECT name FROM names WHERE image_id = ?", (image_id,))))
        digests = tuple(sorted(r[0] for r in db.execute(
            "SELECT ref FROM repo_digests WHERE image_id = ?", (image_id,))))
        layers = tuple(Layer(ld["diff_id"], ld["chain_id"], Descriptor.from_dict(ld["blob"]))
                       for ld in json.loads(row[4]))
        plat = json.loads(row[7])
        return Image(row[0], row[1], row[2], names, digests, json.loads(row[3]), layers,
                     row[5], row[6], Platform(plat["os"], plat["architecture"],
                                              plat.get("variant", "")))

    def _resolve(self, db: sqlite3.Connection, ref: str) -> tuple[str, str]:
        """(image id, how) where how is "name:<name>", "digest:<repo@digest>" or "id"."""
        if not isinstance(ref, str) or not ref:
            raise invalid("reference", f"must be a non-empty string, got {ref!r}")
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        id_like = bool(_HEXPREFIX.fullmatch(hexpart))
        if id_like and len(hexpart) == 64:
            row = db.execute("SELECT id FROM images WHERE id = ?",
                             ("sha256:" + hexpart,)).fetchone()
            if row:
                return row[0], "id"
        if not ref.startswith("sha256:") and not (id_like and len(hexpart) == 64):
            try:
                parsed = reference.parse(ref)
            except InvalidArgument:
                if not id_like:
                    raise
                parsed = None
            if parsed is not None and parsed.digest:
                byname = f"{parsed.name}@{parsed.digest}"
                row = db.execute("SELECT image_id FROM repo_digests WHERE ref = ?",
                                 (byname,)).fetchone()
                if row is None:
                    row = db.execute(
                        "SELECT images.id FROM images JOIN names ON names.image_id = images.id"
                        " WHERE images.digest = ? AND substr(names.name, 1, ?) = ?",
                        (parsed.digest, len(parsed.name) + 1, parsed.name + ":")).fetchone()
                if row:
                    return row[0], f"digest:{byname}"
            elif parsed is not None:
                row = db.execute("SELECT image_id FROM names WHERE name = ?",
                                 (str(parsed),)).fetchone()
                if row:
                    return row[0], f"name:{parsed}"
        if id_like:
            rows = db.execute("SELECT id FROM images WHERE substr(id, 1, ?) = ?",
                              (7 + len(hexpart), "sha256:" + hexpart)).fetchall()
            if len(rows) == 1:
                return rows[0][0], "id"
            if len(rows) > 1:
                raise InvalidArgument(f"image id prefix {ref!r} is ambiguous: it matches "
                                      f"{len(rows)} images", op="images::get", obj=ref,
                                      field="reference")
        raise NotFound(f"image {ref!r} not found", op="images::get", obj=ref)

    # -- reading
    def get(self, ref: str) -> Image:
        """By name[:tag], familiar name, id, unique id prefix (>= 4 hex) or repo@digest."""
        with self._db() as db:
            return self._load(db, self._resolve(db, ref)[0])

    def list(self) -> list[Image]:
        with self._db() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY added, id")]
            return [self._load(db, i) for i in ids]

    def manifest(self, ref: str) -> tuple[bytes, str]:
        img = self.get(ref)
        return self.content.read(img.digest), img.media_type

    def open_blob(self, digest: str) -> BinaryIO:
        return self.content.open(digest)

    # -- names
    def tag(self, ref: str, name: str) -> Image:
        full = str(reference.parse_name(name))
        with self._tx() as db:
            image_id, _ = self._resolve(db, ref)
            db.execute("INSERT OR REPLACE INTO names (name, image_id) VALUES (?, ?)",
                       (full, image_id))
            return self._load(db, image_id)

    def untag(self, name: str) -> Image:
        full = str(reference.parse_name(name))
        with self._tx() as db:
            row = db.execute("SELECT image_id FROM names WHERE name = ?", (full,)).fetchone()
            if row is None:
                raise NotFound(f"no image is named {full!r}", op="images::untag", obj=name)
            db.execute("DELETE FROM names WHERE name = ?", (full,))
            return self._load(db, row[0])

    # -- adding
    def add(self, source: BlobSource, manifest: bytes, media_type: str, *,
            names: Sequence[str] = (), repo_digest: str | None = None,
            progress: Progress | None = None, parallel: int = 4) -> Image:
        """Store an image from a single-platform manifest: config and missing layers are read
        from ``source`` (``parallel`` layers at a time), each layer streamed into the content
        store while it is unpacked, all verified; then the image and its names are recorded
        in one transaction. On any error nothing new is named and no temporaries remain."""
        if not isinstance(manifest, bytes):
            raise invalid("manifest", f"must be bytes, got {type(manifest).__name__}")
        m = parse_manifest(manifest, media_type)
        full_names = [str(reference.parse_name(n)) for n in names]
        if isinstance(parallel, bool) or not isinstance(parallel, int) or not \
                1 <= parallel <= 64:
            raise invalid("parallel", f"must be an integer from 1 to 64, got {parallel!r}")
        mdigest = sha256(manifest)
        rd = None
        if repo_digest is not None:
            parsed = reference.parse(repo_digest)
            if parsed.digest != mdigest:
                raise invalid("repo_digest", f"{repo_digest!r} does not name this manifest "
                                             f"({mdigest})")
            rd = f"{parsed.name}@{parsed.digest}"
        with flocked(self._gc_lock, shared=True):
            config_bytes = self._fetch_small(source, m.config)  # no progress: layers only
            config, diff_ids, plat = _parse_config(config_bytes, len(m.layers))
            chains = chain_ids(diff_ids)
            sizes = self._add_layers(source, m.layers, diff_ids, chains, progress, parallel)
            self.content.write_bytes(manifest, mdigest)
            layers = [{"diff_id": d, "chain_id": c, "blob": desc.to_dict()}
                      for d, c, desc in zip(diff_ids, chains, m.layers, strict=True)]
            created = config.get("created")
            now = _now()
            with self._tx() as db:
                db.execute(
                    "INSERT INTO images (id, digest, media_type, config, layers, size, created,"
                    " platform, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO "
                    "UPDATE SET digest = excluded.digest, media_type = excluded.media_type, "
                    "layers = excluded.layers",
                    (m.config.digest, mdigest, m.media_type, config_bytes.decode(),
                     json.dumps(layers), sum(sizes), created if isinstance(created, str)
                     else "", json.dumps(plat.to_dict()), now))
                for n in full_names:
                    db.execute("INSERT OR REPLACE INTO names (name, image_id) VALUES (?, ?)",
                               (n, m.config.digest))
                if rd:
                    db.execute("INSERT OR REPLACE INTO repo_digests (ref, image_id) "
                               "VALUES (?, ?)", (rd, m.config.digest))
                return self._load(db, m.config.digest)

    def _fetch_small(self, source: BlobSource, desc: Descriptor) -> bytes:
        if desc.size > MAX_CONFIG:
            raise invalid("manifest.config.size", f"{desc.size} bytes is more than the "
                                                  f"{MAX_CONFIG} allowed")
        if not self.content.has(desc.digest):
            with self._open(source, desc) as stream, \
                    self.content.ingest(desc.digest, desc.size) as w:
                _Tee(stream, w, desc, None).drain()
                w.commit()
        return self.content.read(desc.digest)

    @staticmethod
    def _open(source: BlobSource, desc: Descriptor) -> BinaryIO:
        try:
            return source.open_blob(desc)
        except SiloError:
            raise
        except OSError as e:
            raise Unavailable(f"opening blob {desc.digest}: {e}", op="images::add",
                              obj=desc.digest) from e

    def _add_layers(self, source: BlobSource, descs: Sequence[Descriptor],
                    diff_ids: Sequence[str], chains: Sequence[str],
                    progress: Progress | None, parallel: int) -> builtins.list[int]:
        stop = threading.Event()

        def one(i: int) -> int:
            if stop.is_set():
                raise InvalidState("another layer failed", op="images::add")
            return self._ensure_layer(source, descs[i], diff_ids[i], chains[i], progress)

        with ThreadPoolExecutor(max_workers=min(parallel, max(1, len(descs))),
                                thread_name_prefix="silo-layer") as pool:
            futures = [pool.submit(one, i) for i in range(len(descs))]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() for f in done):
                stop.set()
                for f in futures:
                    f.cancel()
            wait(futures)
        for f in futures:  # the first failure in layer order, not the "another layer" ones
            exc = f.exception() if not f.cancelled() else None
            if exc is not None and not (isinstance(exc, InvalidState) and
                                        exc.message == "another layer failed"):
                raise exc
        for f in futures:
            if f.cancelled() or f.exception() is not None:
                raise InvalidState("a layer failed", op="images::add")
        return [f.result() for f in futures]

    def _ensure_layer(self, source: BlobSource, desc: Descriptor, diff_id: str, chain: str,
                      progress: Progress | None) -> int:
        with self.layers.lock(chain):
            have_layer = self.layers.has(chain)
            have_blob = self.content.has(desc.digest)
            if have_layer and have_blob:
                if progress is not None:
                    progress.start(desc, "exists")
                    progress.done(desc)
                return self.layers.info(chain).size
            if have_layer:  # unpacked from another compression: fetch the blob only
                self._fetch_blob(source, desc, diff_id, progress)
                return self.layers.info(chain).size
            if have_blob:
                if progress is not None:
                    progress.start(desc, "unpack")
                with self.content.open(desc.digest) as f:
                    info = self.layers._unpack_locked(chain, f, desc.media_type, diff_id, None)
                if progress is not None:
                    progress.done(desc)
                return info.size
            if progress is not None:
                progress.start(desc, "download")
            mediatypes.compression(desc.media_type)
            with self._open(source, desc) as stream, \
                    self.content.ingest(desc.digest, desc.size) as w:
                tee = _Tee(stream, w, desc, progress)

                def verify_blob() -> None:
                    tee.drain()  # what the unpacker left (a tar's zero padding, gzip trailer)
                    w.commit()

                try:
                    info = self.layers._unpack_locked(chain, cast(BinaryIO, tee),
                                                      desc.media_type, diff_id, verify_blob)
                except InvalidArgument as e:
                    if desc.digest in e.message:
                        raise
                    raise InvalidArgument(f"layer blob {desc.digest}: {e.message}",
                                          op="images::add", obj=desc.digest,
                                          field=e.field) from e
            if progress is not None:
                progress.done(desc)
            return info.size

    def _fetch_blob(self, source: BlobSource, desc: Descriptor, diff_id: str,
                    progress: Progress | None) -> None:
        """Store the blob of a layer that is unpacked already. Its digest and size are not
        enough: it must also decompress to the config's ``diff_id``, or save and push would
        export a blob that is not the layer the image names. The uncompressed stream is
        hashed, not extracted, in the same pass as the download; the blob becomes visible only
        once both checks pass."""
        from silo.storage.unpack import _TarStream  # when first used: the decompressors

        mediatypes.compression(desc.media_type)
        if progress is not None:
            progress.start(desc, "download")
        with self._open(source, desc) as stream, \
                self.content.ingest(desc.digest, desc.size) as w:
            tee = _Tee(stream, w, desc, progress)
            try:
                tar = _TarStream(cast(BinaryIO, tee), None)
                tar.drain()
            except InvalidArgument as e:  # not a stream that decompresses, or too long
                if desc.digest in e.message:
                    raise
                raise InvalidArgument(f"layer blob {desc.digest} (diff_id {diff_id}): "
                                      f"{e.message}", op="images::add", obj=desc.digest,
                                      field=e.field) from e
            actual = "sha256:" + tar.digest()
            if actual != diff_id:
                raise InvalidArgument(
                    f"layer blob {desc.digest} decompresses to {actual}, but "
                    f"config.rootfs.diff_ids says {diff_id}: the blob is not that layer",
                    op="images::add", obj=desc.digest, field="config.rootfs.diff_ids")
            w.commit()
        if progress is not None:
            progress.done(desc)

    # -- removing
    def _users(self, db: sqlite3.Connection, image_id: str) -> builtins.list[str]:
        return [r[0] for r in db.execute(
            "SELECT id FROM containers WHERE image_id = ? ORDER BY id", (image_id,))]

    def remove(self, ref: str, *, force: bool = False) -> RemoveResult:
        """docker rmi: by name, untag it and delete the image once nothing names it; by id,
        delete it (with several names only when ``force``). An image a container uses is
        never deleted (InvalidState; ``force`` by name only untags)."""
        with self._tx() as db:
            image_id, how = self._resolve(db, ref)
            users = self._users(db, image_id)
            names = [r[0] for r in db.execute(
                "SELECT name FROM names WHERE image_id = ? ORDER BY name", (image_id,))]
            rds = [r[0] for r in db.execute(
                "SELECT ref FROM repo_digests WHERE image_id = ? ORDER BY ref", (image_id,))]
            if how != "id":
                kind, what = how.split(":", 1)
                left = len(names) + len(rds) - 1
                if left and (kind == "name" or names):
                    self._drop_ref(db, kind, what)
                    return RemoveResult([what], [])
                if users and not force:
                    raise InvalidState(f"image {ref!r} ({image_id}) is in use by container "
                                       f"{users[0]}: remove the container first",
                                       op="images::remove", obj=ref)
                if users:
                    self._drop_ref(db, kind, what)
                    return RemoveResult([what], [])
            else:
                if users:
                    raise InvalidState(f"image {image_id} is in use by container {users[0]}:"
                                       f" remove the container first", op="images::remove",
                                       obj=ref)
                if len(names) > 1 and not force:
                    raise InvalidState(f"image {image_id} has several names "
                                       f"({', '.join(names)}): remove them by name, or force",
                                       op="images::remove", obj=ref)
            untagged = names + rds
            db.execute("DELETE FROM names WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM repo_digests WHERE image_id = ?", (image_id,))
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))
            deleted = [image_id]
        self.gc(wait=False)  # a pull under way holds gc off; the next gc collects then
        return RemoveResult(untagged, deleted)

    @staticmethod
    def _drop_ref(db: sqlite3.Connection, kind: str, what: str) -> None:
        if kind == "name":
            db.execute("DELETE FROM names WHERE name = ?", (what,))
        else:
            db.execute("DELETE FROM repo_digests WHERE ref = ?", (what,))

    def prune(self, *, all: bool = False) -> PruneResult:
        """Delete dangling images (no name, no repo digest), or with ``all`` every image no
        container uses; then :meth:`gc`."""
        with self._tx() as db:
            cond = "" if all else (" AND id NOT IN (SELECT image_id FROM names)"
                                   " AND id NOT IN (SELECT image_id FROM repo_digests)")
            ids = [r[0] for r in db.execute(
                "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM containers)"
                + cond + " ORDER BY id")]
            for i in ids:
                db.execute("DELETE FROM names WHERE image_id = ?", (i,))
                db.execute("DELETE FROM repo_digests WHERE image_id = ?", (i,))
                db.execute("DELETE FROM images WHERE id = ?", (i,))
        return PruneResult(ids, self.gc())

    # -- container root filesystems
    def _container_dir(self, container_id: str) -> str:
        if not isinstance(container_id, str) or not _CONTAINER_ID.fullmatch(container_id):
            raise invalid("container_id", f"{container_id!r} must be 1-128 of [A-Za-z0-9_.-]"
                                          f", starting with a letter or digit")
        return os.path.join(self.root, "containers", container_id)

    def create_rootfs(self, container_id: str, ref: str, *, size: int | None = None) -> str:
        """Mount the image's layers (top first, as the compute system's ``Storage.Layers``)
        under a fresh scratch, capped at ``size`` bytes when given; returns the merged dir.
        Records that the container uses the image (which ``remove`` then refuses)."""
        cdir = self._container_dir(container_id)
        size = rootfs.check_size(size)
        with flocked(self._gc_lock, shared=True):
            with self._tx() as db:
                image_id, _ = self._resolve(db, ref)
                if db.execute("SELECT 1 FROM containers WHERE id = ?",
                              (container_id,)).fetchone() or os.path.lexists(cdir):
                    raise AlreadyExists(f"container {container_id!r} has a root filesystem "
                                        f"already", op="images::create_rootfs",
                                        obj=container_id)
                db.execute("INSERT INTO containers (id, image_id, size, created) "
                           "VALUES (?, ?, ?, ?)", (container_id, image_id, size, _now()))
                img = self._load(db, image_id)
            try:
                top_first = [layer.chain_id for layer in reversed(img.layers)]
                for chain in top_first:
                    if not self.layers.has(chain):
                        raise NotFound(f"layer {chain} of image {img.id} is missing from the "
                                       f"store", op="images::create_rootfs", obj=chain)
                short = [self.layers.ensure_link(c) for c in top_first]
                return rootfs.create(cdir, [self.layers.path(c) for c in top_first],
                                     size=size, short=short)
            except BaseException:
                with self._tx() as db:
                    db.execute("DELETE FROM containers WHERE id = ?", (container_id,))
                raise

    def remove_rootfs(self, container_id: str) -> None:
        """Unmount, free the loop device, remove the dir, forget the use. Idempotent."""
        cdir = self._container_dir(container_id)
        rootfs.destroy(cdir)
        with self._tx() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (container_id,))

    def rootfs_ids(self) -> builtins.list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT id FROM containers ORDER BY id")]

    def rootfs_path(self, container_id: str) -> str:
        """Where :meth:`create_rootfs` mounts (or mounted) the container's root."""
        return os.path.join(self._container_dir(container_id), "merged")

    def gc(self, *, wait: bool = True) -> int:
        """Remove blobs and layers no image references; the bytes freed. It waits for adds
        and rootfs creations under way to finish (they hold the gc lock shared), unless
        ``wait`` is False: then it does nothing while one runs."""
        freed = 0
        with flocked(self._gc_lock, block=wait) as got:
            if not got:
                return 0
            with self._db() as db:
                blobs: set[str] = set()
                chains: set[str] = set()
                for iid, digest, layers in db.execute("SELECT id, digest, layers FROM images"):
                    blobs.update((iid, digest))
                    for ld in json.loads(layers):
                        chains.add(ld["chain_id"])
                        blobs.add(ld["blob"]["digest"])
            for chain in self.layers.chain_ids_on_disk():
                if chain not in chains:
                    freed += self.layers.delete(chain)
            for digest in list(self.content.digests()):
                if digest not in blobs:
                    freed += self.content.delete(digest)
            self.layers.remove_dangling_links()
        return freed


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_config(data: bytes, nlayers: int) -> tuple[dict[str, Any], list[str], Platform]:
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid("config", f"is not JSON: {e}") from e
    if not isinstance(config, dict):
        raise invalid("config", "must be a JSON object")
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise invalid("config.rootfs.type", "must be \"layers\"")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise invalid("config.rootfs.diff_ids", "must be a list")
    for i, d in enumerate(diff_ids):
        validate_digest(d, f"config.rootfs.diff_ids[{i}]")
    if len(diff_ids) != nlayers:
        raise invalid("config.rootfs.diff_ids", f"has {len(diff_ids)} entries, the manifest "
                                                f"has {nlayers} layers")
    if nlayers == 0:
        raise invalid("manifest.layers", "an image needs at least one layer")
    os_, arch = config.get("os") or "linux", config.get("architecture") or "unknown"
    variant = config.get("variant") or ""
    plat = Platform.from_dict({"os": os_, "architecture": arch, "variant": variant}, "config")
    return config, diff_ids, plat
