"""OCI image layouts (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``), in a directory or
a tar: find the images a layout holds, and write one.

Reading checks everything that can be checked without reading a layer: the layout version,
the index, each manifest's digest and size, that every blob the manifests name is in the
layout with the right size. The layers' digests are checked by the store as it reads them.
Imports only ``silo.errors`` and the storage core (descriptor, mediatypes, platform, reference).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from silo.errors import InvalidArgument, NotSupported, SiloError, invalid
from silo.storage import mediatypes, reference
from silo.storage import platform as platforms
from silo.storage.archive_io import OP_LOAD, Files, Writer, read_small
from silo.storage.descriptor import Descriptor, Index, hex_of, parse_index, parse_manifest

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from silo.storage.platform import Platform

    OpenBlob = Callable[[str], BinaryIO]

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"  # a full reference; containerd and docker write it
_NESTED_MAX = 4


@dataclass
class Found:
    """One image found in an archive, ready for :meth:`ImageStore.add`."""

    where: str                  # where the archive names it: "index.json manifests[0]"
    manifest: bytes
    media_type: str
    names: list[str]
    members: dict[str, str]     # blob digest -> member holding it


def blob_member(digest: str) -> str:
    return f"blobs/{digest.split(':', 1)[0]}/{hex_of(digest)}"


def reword(e: SiloError, where: str, obj: str) -> SiloError:
    """The same error with the place in the archive before its message."""
    fld = f"{where}: {e.field}" if e.field else where
    return type(e)(f"{where}: {e.message}", op=e.op or OP_LOAD, obj=obj, field=fld)


def check_names(names: Sequence[str], where: str, obj: str) -> list[str]:
    out = []
    for n in names:
        try:
            out.append(str(reference.parse_name(n)))
        except InvalidArgument as e:
            raise reword(e, where, obj) from e
    return out


def read_blob(files: Files, desc: Descriptor, where: str) -> bytes:
    """A small blob (index, manifest) read whole and checked against its descriptor."""
    member = blob_member(desc.digest)
    data = read_small(files, member, where)
    if len(data) != desc.size:
        raise invalid(where, f"{member} is {len(data)} bytes, the descriptor says {desc.size}",
                      op=OP_LOAD, obj=files.where)
    if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
        raise invalid(where, f"{member} does not match its digest {desc.digest}",
                      op=OP_LOAD, obj=files.where)
    return data


def need_blobs(files: Files, manifest: bytes, media_type: str, where: str) -> dict[str, str]:
    """The members holding a manifest's config and layers, each present with the right size."""
    try:
        m = parse_manifest(manifest, media_type)
    except (InvalidArgument, NotSupported) as e:
        raise reword(e, where, files.where) from e
    members = {}
    for what, desc in [("config", m.config)] + [(f"layers[{i}]", d)
                                                for i, d in enumerate(m.layers)]:
        if desc.urls:
            raise NotSupported(f"{where} {what}: a foreign layer (fetched from its urls) is not "
                               f"supported", op=OP_LOAD, obj=files.where, field=where)
        member = blob_member(desc.digest)
        size = files.size(member)
        if size is None:
            raise invalid(f"{where} {what}", f"names blob {desc.digest}, but {member} is "
                          f"missing from the archive", op=OP_LOAD, obj=files.where)
        if size != desc.size:
            raise invalid(f"{where} {what}", f"{member} is {size} bytes, the manifest says "
                          f"{desc.size}", op=OP_LOAD, obj=files.where)
        members[desc.digest] = member
    return members


def _names(desc: Descriptor, where: str, obj: str) -> list[str]:
    ann = desc.annotations or {}
    name = ann.get(CONTAINERD_NAME) or ann.get(REF_NAME)
    if not name:
        return []
    key = CONTAINERD_NAME if ann.get(CONTAINERD_NAME) else REF_NAME
    return check_names([name], f"{where}.annotations[{key}]", obj)


def _entries(index: Index, want: Platform | None, obj: str
             ) -> list[tuple[int, Descriptor, list[str]]]:
    """The index entries to load, with their names: all of them, except that of manifests for
    several platforms under one name (a multi-platform layout written without a nested
    index, as some build tools do) only the one for ``want`` is kept."""
    entries = [(i, d, _names(d, f"index.json manifests[{i}]", obj))
               for i, d in enumerate(index.manifests)]
    groups: dict[tuple[str, ...], list[Descriptor]] = {}
    for _, d, names in entries:
        if d.platform is not None and mediatypes.is_manifest(d.media_type):
            groups.setdefault(tuple(names), []).append(d)
    dropped: set[str] = set()
    for descs in groups.values():
        if len({d.platform for d in descs}) < 2:
            continue
        try:
            pick = platforms.select(Index(index.media_type, tuple(descs)), want)
        except SiloError as e:
            raise reword(e, "index.json", obj) from e
        dropped.update(d.digest for d in descs if d.digest != pick.digest)
    return [e for e in entries if e[1].digest not in dropped]


def read_layout(files: Files, want: Platform | None) -> list[Found]:
    """Every image of the layout's index (an index inside it gives its ``want`` platform),
    one per manifest, with the names the index entries give it."""
    version = read_small(files, "oci-layout", "oci-layout")
    try:
        ver = json.loads(version).get("imageLayoutVersion")
    except (ValueError, AttributeError) as e:
        raise invalid("oci-layout", "is not a JSON object", op=OP_LOAD, obj=files.where) from e
    if not isinstance(ver, str) or not ver.startswith("1."):
        raise NotSupported(f"oci-layout: imageLayoutVersion {ver!r} is not 1.x",
                           op=OP_LOAD, obj=files.where, field="oci-layout")
    try:
        index = parse_index(read_small(files, "index.json", "index.json"))
    except (InvalidArgument, NotSupported) as e:
        raise reword(e, "index.json", files.where) from e
    found: dict[str, Found] = {}
    for i, top, names in _entries(index, want, files.where):
        where = f"index.json manifests[{i}]"
        desc = top
        for _ in range(_NESTED_MAX):
            if not mediatypes.is_index(desc.media_type):
                break
            try:
                nested = parse_index(read_blob(files, desc, where), desc.media_type)
                desc = platforms.select(nested, want)
            except SiloError as e:  # a bad nested index, or none for the platform
                raise reword(e, where, files.where) from e
        if not mediatypes.is_manifest(desc.media_type):
            raise invalid(f"{where}.mediaType", f"{desc.media_type!r} is not an image manifest "
                          f"or index silo can load", op=OP_LOAD, obj=files.where)
        if desc.digest in found:
            found[desc.digest].names.extend(n for n in names
                                            if n not in found[desc.digest].names)
            continue
        data = read_blob(files, desc, where)
        found[desc.digest] = Found(where, data, desc.media_type, names,
                                   need_blobs(files, data, desc.media_type, where))
    if not found:
        raise invalid("index.json", "names no image", op=OP_LOAD, obj=files.where)
    return list(found.values())


@dataclass
class Saved:
    """One image to write: its manifest as stored and the blobs it names."""

    names: list[str]
    manifest: bytes
    media_type: str
    platform: Platform | None
    config: Descriptor
    layers: list[Descriptor]


def write_layout(w: Writer, images: Sequence[Saved], open_blob: OpenBlob) -> None:
    """An OCI layout of ``images``: one index entry per name (an unnamed image gets one
    without), each annotated with the full name for skopeo, podman and containerd."""
    done: set[str] = set()
    entries = []
    w.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    for img in images:
        digest = "sha256:" + hashlib.sha256(img.manifest).hexdigest()
        for desc in [img.config, *img.layers]:
            if desc.digest not in done:
                with open_blob(desc.digest) as f:
                    w.add_stream(blob_member(desc.digest), f, desc.size, desc.digest)
                done.add(desc.digest)
        if digest not in done:
            w.add_bytes(blob_member(digest), img.manifest)
            done.add(digest)
        entry: dict[str, object] = {"mediaType": img.media_type, "digest": digest,
                                    "size": len(img.manifest)}
        if img.platform is not None:
            entry["platform"] = img.platform.to_dict()
        for name in img.names or [""]:
            ann = {REF_NAME: name, CONTAINERD_NAME: name} if name else None
            entries.append({**entry, "annotations": ann} if ann else entry)
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    w.add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
