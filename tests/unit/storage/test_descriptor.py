"""Descriptors, manifests, indexes, media types and platform selection."""

from __future__ import annotations

import json

import pytest

from silo.errors import InvalidArgument, NotFound, NotSupported
from silo.storage import mediatypes as mt
from silo.storage import platform
from silo.storage.descriptor import (
    Descriptor,
    parse_index,
    parse_manifest,
    sha256,
    validate_digest,
)
from silo.storage.platform import Platform

pytestmark = pytest.mark.unit
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def manifest(**over: object) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 20}]}
    doc.update(over)
    return json.dumps(doc).encode()


def test_sha256_and_validation() -> None:
    assert sha256(b"") == \
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert validate_digest(D1) == D1
    for bad, why in [("sha256:ABC" + "a" * 61, "lowercase"), ("sha256", "algorithm:hex"),
                     ("sha256:" + "a" * 63, "64"), (5, "string"), ("foo:" + "a" * 64,
                                                                    "unknown")]:
        with pytest.raises(InvalidArgument, match=why):
            validate_digest(bad, "layers[0].digest")
    with pytest.raises(NotSupported, match="sha256"):
        validate_digest("sha512:" + "a" * 128)


def test_parse_manifest() -> None:
    m = parse_manifest(manifest())
    assert m.media_type == mt.OCI_MANIFEST
    assert m.config == Descriptor(mt.OCI_CONFIG, D1, 10)
    assert m.layers == (Descriptor(mt.OCI_LAYER_GZIP, D2, 20),)
    # the media type can come from the transport only
    doc = json.loads(manifest())
    del doc["mediaType"]
    assert parse_manifest(json.dumps(doc).encode(), mt.DOCKER_MANIFEST).media_type == \
        mt.DOCKER_MANIFEST


@pytest.mark.parametrize(("data", "media_type", "words"), [
    (b"{", "", "not JSON"),
    (b"[]", "", "JSON object"),
    (manifest(schemaVersion=1), "", "schemaVersion"),
    (manifest(layers={}), "", "manifest.layers: must be a list"),
    (manifest(config={"mediaType": "x", "digest": "sha256:1", "size": 1}), "",
     "manifest.config.digest"),
    (manifest(layers=[{"mediaType": "text/plain", "digest": D2, "size": 1}]), "",
     "manifest.layers[0].mediaType"),
    (manifest(layers=[{"mediaType": mt.OCI_LAYER, "digest": D2, "size": -1}]), "",
     "manifest.layers[0].size"),
    (manifest(), mt.DOCKER_MANIFEST, "contradicts"),
    (manifest(mediaType=mt.OCI_INDEX), "", "select a platform"),
    (b"x" * (5 << 20), "", "more than"),
])
def test_bad_manifests(data: bytes, media_type: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_manifest(data, media_type)
    assert words in str(e.value)


def test_schema1_is_not_supported() -> None:
    with pytest.raises(NotSupported, match="schema 1"):
        parse_manifest(b'{"schemaVersion": 1, "name": "x"}')


def index(*plats: dict[str, str] | None) -> bytes:
    ms = []
    for i, p in enumerate(plats):
        d: dict[str, object] = {"mediaType": mt.OCI_MANIFEST,
                                "digest": "sha256:" + f"{i:x}" * 64, "size": 1}
        if p is not None:
            d["platform"] = p
        ms.append(d)
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": ms}).encode()


def test_platform_parse_and_normalise() -> None:
    assert platform.parse("linux/amd64") == Platform("linux", "amd64")
    assert platform.parse("linux/x86_64") == Platform("linux", "amd64")
    assert platform.parse("linux/arm64/v8") == Platform("linux", "arm64")
    assert platform.parse("linux/arm") == Platform("linux", "arm", "v7")
    assert str(platform.parse("linux/arm/v6")) == "linux/arm/v6"
    assert platform.parse("linux") == platform.host()
    for bad in ["", "linux/", "a/b/c/d", "/amd64"]:
        with pytest.raises(InvalidArgument, match="platform"):
            platform.parse(bad)


def test_select() -> None:
    idx = parse_index(index({"os": "linux", "architecture": "arm", "variant": "v6"},
                            {"os": "linux", "architecture": "amd64"},
                            {"os": "linux", "architecture": "arm", "variant": "v7"},
                            {"os": "windows", "architecture": "amd64"}, None))
    assert platform.select(idx, Platform("linux", "amd64")).digest == "sha256:" + "1" * 64
    assert platform.select(idx, Platform("linux", "arm", "v7")).digest == "sha256:" + "2" * 64
    assert platform.select(idx, Platform("linux", "arm", "v6")).digest == "sha256:" + "0" * 64
    assert platform.select(idx, Platform("windows", "amd64")).digest == "sha256:" + "3" * 64
    with pytest.raises(NotFound) as e:
        platform.select(idx, Platform("linux", "s390x"))
    assert "linux/s390x" in str(e.value)
    assert "linux/amd64, linux/arm/v6, linux/arm/v7, windows/amd64" in str(e.value)


def test_an_arm_v6_index_does_not_satisfy_a_v5_ask() -> None:
    idx = parse_index(index({"os": "linux", "architecture": "arm", "variant": "v7"}))
    with pytest.raises(NotFound):
        platform.select(idx, Platform("linux", "arm", "v5"))


def test_bad_index() -> None:
    with pytest.raises(InvalidArgument, match=r"index\.mediaType"):
        parse_index(manifest())
    with pytest.raises(InvalidArgument, match=r"index.manifests\[0\].platform.architecture"):
        parse_index(index({"os": "linux"}))


def test_compression() -> None:
    assert mt.compression(mt.DOCKER_LAYER_GZIP) == "gzip"
    assert mt.compression(mt.OCI_LAYER_ZSTD) == "zstd"
    assert mt.compression(mt.OCI_LAYER) == "none"
    with pytest.raises(InvalidArgument, match="'text/plain' is not a layer"):
        mt.compression("text/plain")
