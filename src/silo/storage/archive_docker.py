"""docker-archive (what ``docker save`` writes and ``docker load`` reads): ``manifest.json``
lists each image's config member, its ``RepoTags`` and its layer members, in the legacy layout
(``<id>/layer.tar``, often symlinks) or the newer one (``blobs/sha256/<hex>``).

An image found here has no manifest of its own, so one is made: an OCI manifest whose config is
the config member as is (its digest is the image id) and whose layers are the members as they
are, each with the media type of its compression. An uncompressed layer's digest is its diff_id
from the config, so no layer is read here; the store checks it as it reads the layer. A
compressed layer is hashed once (newer archives name it by digest: that name is used).

Imports only ``silo.errors`` and the storage core.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from silo.errors import NotSupported, SiloError, invalid
from silo.storage import mediatypes, reference
from silo.storage.archive_io import (
    OP_LOAD,
    Files,
    Writer,
    clean_member,
    is_tar_header,
    read_small,
    sniff,
)
from silo.storage.archive_oci import Found, Saved, blob_member, check_names, reword
from silo.storage.descriptor import validate_digest

if TYPE_CHECKING:
    from silo.storage.archive_oci import OpenBlob

_BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_CHUNK = 1 << 20


def _json(data: bytes, where: str, obj: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(where, f"is not JSON: {e}", op=OP_LOAD, obj=obj) from e


def _str_list(v: object, where: str, obj: str, *, empty_ok: bool = True) -> list[str]:
    if v is None and empty_ok:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise invalid(where, "must be a list of strings", op=OP_LOAD, obj=obj)
    return v


def _hash(files: Files, member: str) -> str:
    h = hashlib.sha256()
    with files.open(member) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _layer(files: Files, member: str, diff_id: str, where: str) -> dict[str, Any]:
    size = files.size(member)
    if size is None:
        raise invalid(where, f"{member} is missing from the archive", op=OP_LOAD, obj=files.where)
    with files.open(member) as f:
        head = f.read(512)
    kind = sniff(head)
    if kind in ("bzip2", "xz"):
        raise NotSupported(f"{where}: {member} is {kind}-compressed; layers must be gzip, zstd "
                           f"or uncompressed tars", op=OP_LOAD, obj=files.where, field=where)
    if kind == "none":
        if not is_tar_header(head):
            raise invalid(where, f"{member} is not a tar (nor a gzip or zstd stream)",
                          op=OP_LOAD, obj=files.where)
        digest = diff_id
    else:
        named = _BLOB_NAME.fullmatch(member)
        digest = f"sha256:{named.group(1)}" if named else _hash(files, member)
    return {"mediaType": mediatypes.layer_type(kind), "digest": digest, "size": size}


def _image(files: Files, entry: object, where: str) -> Found:
    obj = files.where
    if not isinstance(entry, dict):
        raise invalid(where, "must be an object", op=OP_LOAD, obj=obj)
    if entry.get("LayerSources"):
        raise NotSupported(f"{where}.LayerSources: foreign layers are not supported",
                           op=OP_LOAD, obj=obj, field=f"{where}.LayerSources")
    cfg_name = entry.get("Config")
    if not isinstance(cfg_name, str) or not cfg_name:
        raise invalid(f"{where}.Config", "must name the config member", op=OP_LOAD, obj=obj)
    cfg_member = clean_member(cfg_name, f"{where}.Config", obj)
    layers = [clean_member(m, f"{where}.Layers[{i}]", obj)
              for i, m in enumerate(_str_list(entry.get("Layers"), f"{where}.Layers", obj,
                                              empty_ok=False))]
    tags = _str_list(entry.get("RepoTags"), f"{where}.RepoTags", obj)
    names = check_names(tags, f"{where}.RepoTags", obj)
    config = read_small(files, cfg_member, f"{where}.Config")
    doc = _json(config, f"{where}.Config ({cfg_member})", obj)
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    diff_ids = _str_list(diff_ids, f"{cfg_member} rootfs.diff_ids", obj, empty_ok=False)
    if len(diff_ids) != len(layers):
        raise invalid(f"{where}.Layers", f"lists {len(layers)} layers, the config "
                      f"{cfg_member} has {len(diff_ids)} diff_ids", op=OP_LOAD, obj=obj)
    for i, d in enumerate(diff_ids):
        try:
            validate_digest(d, f"{cfg_member} rootfs.diff_ids[{i}]")
        except SiloError as e:
            raise reword(e, where, obj) from e
    cfg_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    descs = [_layer(files, m, diff_ids[i], f"{where}.Layers[{i}]")
             for i, m in enumerate(layers)]
    manifest = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": cfg_digest,
                           "size": len(config)},
                "layers": descs}
    members = {cfg_digest: cfg_member}
    members.update((d["digest"], m) for d, m in zip(descs, layers, strict=True))
    return Found(where, json.dumps(manifest, separators=(",", ":")).encode(),
                 mediatypes.OCI_MANIFEST, names, members)


def read_docker(files: Files) -> list[Found]:
    """Every image listed in ``manifest.json``."""
    if files.size("manifest.json") is None and files.size("repositories") is not None:
        raise NotSupported("a docker-archive without manifest.json (docker before 1.10) is not "
                           "supported", op=OP_LOAD, obj=files.where, field="manifest.json")
    doc = _json(read_small(files, "manifest.json", "manifest.json"), "manifest.json",
                files.where)
    if not isinstance(doc, list) or not doc:
        raise invalid("manifest.json", "must be a non-empty list of images", op=OP_LOAD,
                      obj=files.where)
    return [_image(files, e, f"manifest.json[{i}]") for i, e in enumerate(doc)]


def write_docker(w: Writer, images: Sequence[Saved], open_blob: OpenBlob) -> None:
    """A docker-archive of ``images``: configs and layers as stored (compressed layers stay
    compressed: docker load and skopeo both read them), named ``blobs/sha256/<hex>``."""
    done: set[str] = set()
    entries = []
    for img in images:
        for desc in [img.config, *img.layers]:
            if desc.digest not in done:
                with open_blob(desc.digest) as f:
                    w.add_stream(blob_member(desc.digest), f, desc.size, desc.digest)
                done.add(desc.digest)
        tags = [reference.parse(n).familiar() for n in img.names]
        entries.append({"Config": blob_member(img.config.digest), "RepoTags": tags or None,
                        "Layers": [blob_member(d.digest) for d in img.layers]})
    w.add_bytes("manifest.json", json.dumps(entries, separators=(",", ":")).encode())
