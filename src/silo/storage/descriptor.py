"""Descriptors (media type, digest, size), manifests and indexes parsed from their JSON, and
the digest helpers. Imports only :mod:`silo.errors` and :mod:`silo.storage.platform`."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from silo.errors import NotSupported, invalid
from silo.storage import mediatypes
from silo.storage.platform import Platform

_DIGEST = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
_HEX = {"sha256": 64, "sha512": 128}
# A manifest or index bigger than this is refused before it is parsed (registries cap at 4 MiB).
MAX_MANIFEST = 4 << 20


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate_digest(digest: object, what: str = "digest") -> str:
    """``digest`` when it is ``sha256:<64 lowercase hex>``; InvalidArgument naming ``what``
    otherwise (sha512 is NotSupported: the store hashes with sha256 only)."""
    if not isinstance(digest, str):
        raise invalid(what, f"must be a string, got {type(digest).__name__}")
    m = _DIGEST.match(digest)
    if not m:
        raise invalid(what, f"{digest!r} is not algorithm:hex")
    algo, hexpart = m.groups()
    if algo not in _HEX:
        raise invalid(what, f"{digest!r}: unknown digest algorithm {algo!r}")
    if algo != "sha256":
        raise NotSupported(f"{what}: {digest!r}: only sha256 digests are supported",
                           field=what)
    if len(hexpart) != _HEX[algo] or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise invalid(what, f"{digest!r}: a {algo} digest is {_HEX[algo]} lowercase hex digits")
    return digest


def hex_of(digest: str) -> str:
    """The hex part of a valid digest (validated: it becomes a file name)."""
    return validate_digest(digest).split(":", 1)[1]


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] | None = field(default=None, hash=False, compare=False)
    urls: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        validate_digest(self.digest)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise invalid("size", f"must be a non-negative integer, got {self.size!r}")

    @classmethod
    def from_dict(cls, d: object, where: str = "descriptor") -> Descriptor:
        if not isinstance(d, dict):
            raise invalid(where, f"must be an object, got {type(d).__name__}")
        mt, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
        if not isinstance(mt, str) or not mt:
            raise invalid(f"{where}.mediaType", "must be a non-empty string")
        validate_digest(digest, f"{where}.digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise invalid(f"{where}.size", f"must be a non-negative integer, got {size!r}")
        platform = None
        if d.get("platform") is not None:
            platform = Platform.from_dict(d["platform"], f"{where}.platform")
        ann = d.get("annotations")
        if ann is not None and (not isinstance(ann, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in ann.items())):
            raise invalid(f"{where}.annotations", "must map strings to strings")
        urls = d.get("urls")
        if urls is not None and (not isinstance(urls, list)
                                 or not all(isinstance(u, str) for u in urls)):
            raise invalid(f"{where}.urls", "must be a list of strings")
        assert isinstance(digest, str)
        return cls(mt, digest, size, platform, ann, tuple(urls) if urls is not None else None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                             "size": self.size}
        if self.platform is not None:
            d["platform"] = self.platform.to_dict()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.urls:
            d["urls"] = list(self.urls)
        return d


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] | None = field(default=None, hash=False, compare=False)


def _load(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST:
        raise invalid(what, f"is {len(data)} bytes, more than the {MAX_MANIFEST} allowed")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(what, f"is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise invalid(what, f"must be a JSON object, got {type(doc).__name__}")
    return doc


def media_type_of(data: bytes, media_type: str = "") -> str:
    """The media type of a manifest or index: the given one (Content-Type), else its
    ``mediaType`` field, else guessed from its shape (an OCI index has ``manifests``)."""
    doc = _load(data, "manifest")
    inner = doc.get("mediaType")
    if inner is not None and not isinstance(inner, str):
        raise invalid("manifest.mediaType", "must be a string")
    if media_type and inner and media_type != inner:
        raise invalid("manifest.mediaType", f"{inner!r} contradicts the media type "
                                            f"{media_type!r} it was served as")
    mt = media_type or inner or ""
    if not mt:
        if "manifests" in doc:
            mt = mediatypes.OCI_INDEX
        elif "config" in doc and "layers" in doc:
            mt = mediatypes.OCI_MANIFEST
        elif doc.get("schemaVersion") == 1:
            mt = mediatypes.DOCKER_MANIFEST_V1
    return mt


def _check_type(mt: str, want: frozenset[str], what: str) -> None:
    if mt in (mediatypes.DOCKER_MANIFEST_V1, mediatypes.DOCKER_MANIFEST_V1_SIGNED):
        raise NotSupported(f"{what}: Docker schema 1 manifests are not supported "
                           f"(deprecated; push the image again with a current client)",
                           field=f"{what}.mediaType")
    if mt not in want:
        raise invalid(f"{what}.mediaType", f"{mt!r} is not one of {', '.join(sorted(want))}")


def parse_manifest(data: bytes, media_type: str = "") -> Manifest:
    """A single-platform image manifest (OCI or Docker v2 schema 2)."""
    mt = media_type_of(data, media_type)
    if mt in mediatypes.INDEXES:
        raise invalid("manifest.mediaType", f"{mt!r} is an index, not an image manifest: "
                                            f"select a platform from it first")
    _check_type(mt, mediatypes.MANIFESTS, "manifest")
    doc = _load(data, "manifest")
    if doc.get("schemaVersion") != 2:
        raise invalid("manifest.schemaVersion", f"must be 2, got {doc.get('schemaVersion')!r}")
    config = Descriptor.from_dict(doc.get("config"), "manifest.config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise invalid("manifest.layers", "must be a list")
    descs = tuple(Descriptor.from_dict(ld, f"manifest.layers[{i}]")
                  for i, ld in enumerate(layers))
    for i, ld in enumerate(descs):
        if not mediatypes.is_layer(ld.media_type):
            raise invalid(f"manifest.layers[{i}].mediaType",
                          f"{ld.media_type!r} is not a layer media type silo can unpack")
    ann = doc.get("annotations")
    return Manifest(mt, config, descs, ann if isinstance(ann, dict) else None)


def parse_index(data: bytes, media_type: str = "") -> Index:
    """An OCI image index or a Docker manifest list."""
    mt = media_type_of(data, media_type)
    _check_type(mt, mediatypes.INDEXES, "index")
    doc = _load(data, "index")
    if doc.get("schemaVersion") != 2:
        raise invalid("index.schemaVersion", f"must be 2, got {doc.get('schemaVersion')!r}")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise invalid("index.manifests", "must be a list")
    ann = doc.get("annotations")
    return Index(mt, tuple(Descriptor.from_dict(m, f"index.manifests[{i}]")
                           for i, m in enumerate(manifests)),
                 ann if isinstance(ann, dict) else None)

