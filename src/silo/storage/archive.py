"""Images to and from files: OCI image layouts (a directory, or an oci-archive tar, optionally
gzip'd), docker-archives (``docker save``), and plain root filesystem tarballs
(``docker import``). The formats live in ``archive_oci`` and ``archive_docker``, reading and
writing the files of an archive in ``archive_io``; this module is the public surface.

    load(store, path, *, names=None, platform=None, progress=None) -> list[Image]
    save(store, refs, path, *, format="oci-archive")     # or "docker-archive", "oci-dir"
    import_rootfs(store, tar, name, *, config_changes=None, progress=None) -> Image
    detect(path) -> "oci-dir" | "oci-archive" | "docker-archive"

A load checks every image of the archive (its index, manifests, configs, and that each blob is
there with its size) before it adds any; each add is atomic, and when a later image of the
archive fails (a corrupt layer only unpacking finds), the images this load added are removed
and the names it moved are given back, so a bad archive adds nothing. A save writes to a
temporary name beside ``path`` and renames it at the end; a failure leaves nothing behind.

Imports only ``silo.errors`` and the storage core; must not import the service or commands.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from silo.errors import InvalidArgument, NotFound, SiloError, invalid
from silo.storage import mediatypes
from silo.storage import platform as platforms
from silo.storage.archive_docker import read_docker, write_docker
from silo.storage.archive_io import (
    OP_LOAD,
    OP_SAVE,
    Files,
    TarFiles,
    is_tar_header,
    open_files,
    open_range,
    sniff,
    write_dir,
    write_tar,
)
from silo.storage.archive_oci import Found, Saved, check_names, read_layout, reword, write_layout
from silo.storage.descriptor import parse_manifest
from silo.storage.reference import parse as parse_reference

if TYPE_CHECKING:
    from silo.storage.descriptor import Descriptor
    from silo.storage.images import Image, ImageStore
    from silo.storage.platform import Platform
    from silo.storage.source import Progress

FORMATS = ("oci-archive", "docker-archive", "oci-dir")
OP_IMPORT = "storage::import"
_CHUNK = 1 << 20


class _Source:
    """The blobs of one image found in an archive (a BlobSource)."""

    def __init__(self, files: Files, found: Found) -> None:
        self._files, self._found = files, found

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        member = self._found.members.get(desc.digest)
        if member is None:
            raise invalid(self._found.where, f"names blob {desc.digest}, which the archive "
                          f"does not hold", op=OP_LOAD, obj=self._files.where)
        return self._files.open(member)


def detect(path: str) -> str:
    """The format of the archive at ``path``; InvalidArgument naming it when it is none."""
    files = open_files(path)
    try:
        return _detect(files)
    finally:
        files.close()


def _detect(files: Files) -> str:
    if files.size("index.json") is not None:
        return "oci-archive" if isinstance(files, TarFiles) else "oci-dir"
    if isinstance(files, TarFiles) and (files.size("manifest.json") is not None
                                        or files.size("repositories") is not None):
        return "docker-archive"
    raise invalid("path", "holds neither index.json (an OCI image layout) nor manifest.json "
                  "(docker save); a root filesystem tarball is imported, not loaded",
                  op=OP_LOAD, obj=files.where)


def load(store: ImageStore, path: str, *, names: Sequence[str] | None = None,
         platform: Platform | str | None = None,
         progress: Progress | None = None) -> list[Image]:
    """Add every image of the archive at ``path`` to ``store``.

    Names come from the archive (``io.containerd.image.name``, else
    ``org.opencontainers.image.ref.name`` annotations; ``RepoTags``); ``names``, for an archive
    of one image, replaces them. From an index inside the layout, the manifest for
    ``platform`` (the host's by default) is taken.
    """
    want = platforms.parse(platform) if isinstance(platform, str) else platform
    files = open_files(path)
    try:
        found = (read_docker(files) if _detect(files) == "docker-archive"
                 else read_layout(files, want))
        if names is not None:
            if isinstance(names, str):
                names = [names]
            if len(found) != 1:
                raise invalid("names", f"the archive holds {len(found)} images; names can be "
                              f"given only for an archive of one", op=OP_LOAD, obj=path)
            found[0].names = check_names(names, "names", path)
        existed = {i for i in (parse_manifest(f.manifest, f.media_type).config.digest
                               for f in found) if _owner(store, i)}
        owners = {n: _owner(store, n) for f in found for n in f.names}
        images: list[Image] = []
        for f in found:
            try:
                images.append(store.add(_Source(files, f), f.manifest, f.media_type,
                                        names=f.names, progress=progress))
            except SiloError as e:
                if images:
                    _undo(store, images, existed, owners)
                raise reword(e, f.where, path) from e
        return images
    finally:
        files.close()


def _owner(store: ImageStore, ref: str) -> str | None:
    try:
        return store.get(ref).id
    except NotFound:
        return None


def _undo(store: ImageStore, added: list[Image], existed: set[str],
          owners: dict[str, str | None]) -> None:
    """Put names and images back as they were before a load that failed part way (each add
    is atomic; a load of several images is made so here). Best effort: a step that fails
    leaves at worst a dangling image, which prune removes."""
    for name, owner in owners.items():
        with contextlib.suppress(SiloError):
            if owner is None:
                store.untag(name)
            else:
                store.tag(owner, name)
    for img in added:
        if img.id not in existed:
            with contextlib.suppress(SiloError):
                store.remove(img.id, force=True)


def save(store: ImageStore, refs: Sequence[str], path: str, *,
         format: str = "oci-archive") -> None:
    """Write the images ``refs`` name into one archive at ``path``. An image saved by a name
    carries that name; by id, none (as docker save)."""
    if format not in FORMATS:
        raise invalid("format", f"{format!r} is not one of {', '.join(FORMATS)}", op=OP_SAVE,
                      obj=path)
    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise invalid("refs", "names no image to save", op=OP_SAVE, obj=path)
    saved: dict[str, Saved] = {}
    for ref in refs:
        img = store.get(ref)
        if img.id not in saved:
            data, media_type = store.manifest(img.id)
            m = parse_manifest(data, media_type)
            saved[img.id] = Saved([], data, media_type, img.platform, m.config, list(m.layers))
        name = _name_given(ref, img)
        if name and name not in saved[img.id].names:
            saved[img.id].names.append(name)
    images = list(saved.values())
    if format == "oci-dir":
        with write_dir(path) as w:
            write_layout(w, images, store.open_blob)
    else:
        with write_tar(path) as w:
            if format == "oci-archive":
                write_layout(w, images, store.open_blob)
            else:
                write_docker(w, images, store.open_blob)


def _name_given(ref: str, img: Image) -> str | None:
    try:
        name = str(parse_reference(ref))
    except InvalidArgument:
        return None
    return name if name in img.names else None


# -- import of a root filesystem tarball --

_CHANGES: dict[str, str] = {
    "Cmd": "list", "Entrypoint": "list", "Env": "list", "WorkingDir": "str", "User": "str",
    "StopSignal": "str", "Labels": "map",
}


def _changes(changes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The image config's ``config`` part from the changes asked for, each checked."""
    out: dict[str, Any] = {}
    for key, value in (changes or {}).items():
        fld = f"config_changes.{key}"
        kind = _CHANGES.get(key)
        if kind is None:
            raise invalid(fld, f"is not one of {', '.join(sorted(_CHANGES))}", op=OP_IMPORT)
        if kind == "list" and not (isinstance(value, list)
                                   and all(isinstance(v, str) for v in value)):
            raise invalid(fld, "must be a list of strings", op=OP_IMPORT)
        if kind == "str" and not isinstance(value, str):
            raise invalid(fld, "must be a string", op=OP_IMPORT)
        if kind == "map" and not (isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise invalid(fld, "must map strings to strings", op=OP_IMPORT)
        if key == "Env":
            for i, v in enumerate(value):
                if "=" not in v or v.startswith("="):
                    raise invalid(f"{fld}[{i}]", f"{v!r} is not NAME=value", op=OP_IMPORT)
        if key == "WorkingDir" and not value.startswith("/"):
            raise invalid(fld, f"{value!r} is not an absolute path", op=OP_IMPORT)
        out[key] = list(value) if kind == "list" else dict(value) if kind == "map" else value
    return out


class _Tee(io.RawIOBase):
    """Read a stream (after ``head``, already read from it) while hashing and counting it, and
    copying it to ``copy`` when given."""

    def __init__(self, stream: BinaryIO, head: bytes, copy: BinaryIO | None) -> None:
        self._s, self._head, self._copy = stream, head, copy
        self.hash, self.size = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            data, self._head = self._head[:len(b)], self._head[len(b):]
        else:
            data = self._s.read(len(b))
        memoryview(b)[:len(data)] = data
        self.hash.update(data)
        self.size += len(data)
        if self._copy is not None:
            self._copy.write(data)
        return len(data)


def _decompressor(kind: str, raw: BinaryIO) -> BinaryIO:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)
    if kind == "bzip2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


_KEPT = ("none", "gzip", "zstd")  # compressions OCI has layer types for: stored as they come


def import_rootfs(store: ImageStore, tar: str | BinaryIO, name: str, *,
                  config_changes: Mapping[str, Any] | None = None,
                  progress: Progress | None = None) -> Image:
    """An image of one layer from a root filesystem tarball (a path or a stream; plain, gzip,
    zstd, bzip2 or xz), named ``name``, with a minimal config for the host's platform.

    A plain, gzip'd or zstd tar is stored as it comes; bzip2 and xz (which OCI has no layer
    types for) are stored decompressed. Both digests must be known before the store reads the
    layer, so a stream is spooled to an unlinked temporary file; a path is read in place.
    """
    where = tar if isinstance(tar, str) else "stream"
    names = check_names([name], "name", where)
    settings = _changes(config_changes)
    with contextlib.ExitStack() as stack:
        if isinstance(tar, str):
            try:
                stream: BinaryIO = stack.enter_context(open(tar, "rb"))
            except FileNotFoundError as e:
                raise NotFound(f"{tar} does not exist", op=OP_IMPORT, obj=tar) from e
            except OSError as e:
                raise invalid("tar", f"{tar}: {e.strerror}", op=OP_IMPORT, obj=tar) from e
        else:
            stream = tar
        spool = stack.enter_context(tempfile.TemporaryFile(prefix="silo-import-"))
        head = stream.read(8)
        kind = sniff(head)
        in_place = isinstance(tar, str) and kind in _KEPT
        tee = _Tee(stream, head, None if in_place or kind not in _KEPT else spool)
        diff_id = _diff_id(kind, io.BufferedReader(tee, _CHUNK),
                           None if kind in _KEPT else spool, where)
        if kind in _KEPT:
            fd = stream.fileno() if in_place else spool.fileno()
            digest, size, media_type = ("sha256:" + tee.hash.hexdigest(), tee.size,
                                        mediatypes.layer_type(kind))
        else:
            fd, digest, size, media_type = spool.fileno(), diff_id, spool.tell(), \
                mediatypes.OCI_LAYER
        spool.flush()
        host = platforms.host()
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        config: dict[str, Any] = {
            "created": created, "architecture": host.architecture, "os": host.os,
            "config": settings, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "silo import"}]}
        if host.variant:
            config["variant"] = host.variant
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        config_desc = {"mediaType": mediatypes.OCI_CONFIG, "size": len(config_bytes),
                       "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest()}
        layer = {"mediaType": media_type, "digest": digest, "size": size}
        manifest = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                               "config": config_desc, "layers": [layer]},
                              separators=(",", ":")).encode()
        source = _ImportSource(str(config_desc["digest"]), config_bytes, digest, fd, size,
                               where)
        try:
            return store.add(source, manifest, mediatypes.OCI_MANIFEST, names=names,
                             progress=progress)
        except SiloError as e:
            raise reword(e, where, where) from e


def _diff_id(kind: str, raw: io.BufferedReader, copy: BinaryIO | None, where: str) -> str:
    """The sha256 of the decompressed tar, checking it opens like a tar; the decompressed bytes
    go to ``copy`` when given. Reads ``raw`` to its end (its digest is hashed on the way)."""
    diff = hashlib.sha256()
    head = b""
    try:
        plain = _decompressor(kind, raw)
        with contextlib.closing(plain) if plain is not raw else contextlib.nullcontext():
            while chunk := plain.read(_CHUNK):
                if len(head) < tarfile.BLOCKSIZE:
                    head += chunk[:tarfile.BLOCKSIZE]
                    if len(head) >= tarfile.BLOCKSIZE and not is_tar_header(head):
                        break
                diff.update(chunk)
                if copy is not None:
                    copy.write(chunk)
        while raw.read(_CHUNK):  # what the decompressor left unread (gzip's trailing zeros)
            pass
    except (OSError, EOFError, ValueError, lzma.LZMAError) as e:
        raise invalid("tar", f"the {kind} stream is corrupt or truncated ({e})",
                      op=OP_IMPORT, obj=where) from e
    if not is_tar_header(head):
        raise invalid("tar", "is not a tar archive (plain, gzip, zstd, bzip2 or xz)" if head
                      else "is empty", op=OP_IMPORT, obj=where)
    return "sha256:" + diff.hexdigest()


class _ImportSource:
    def __init__(self, config_digest: str, config: bytes, layer_digest: str, fd: int,
                 size: int, where: str) -> None:
        self._config_digest, self._config = config_digest, config
        self._layer_digest, self._fd, self._size, self._where = layer_digest, fd, size, where

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        if desc.digest == self._config_digest:
            return io.BytesIO(self._config)
        if desc.digest == self._layer_digest:
            return open_range(self._fd, 0, self._size, "layer", self._where)
        raise invalid("digest", f"{desc.digest} is not a blob of this import", op=OP_IMPORT)


__all__ = ["FORMATS", "detect", "import_rootfs", "load", "save"]
