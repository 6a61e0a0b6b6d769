"""pull.resolve against the fake registry: an index narrowed to one platform, and the indexes
it refuses (no such platform, an index inside an index, a manifest whose size the index
misstates)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from silo import errors
from silo.storage import mediatypes, reference
from silo.storage.platform import Platform
from silo.storage.pull import resolve
from tests.unit.test_registry import (  # noqa: F401  (_close_clients: an autouse fixture)
    REPO,
    Fake,
    _close_clients,
    client,
    digest_of,
    oci_manifest,
    serving,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def fake() -> Iterator[tuple[Fake, str]]:
    with serving() as served:
        yield served


def index_of(state: Fake, entries: list[tuple[str, str, bytes, str]]) -> bytes:
    """An OCI index of (os, arch, bytes, media type) manifests, each stored by digest."""
    manifests = []
    for os_, arch, data, mt in entries:
        state.manifests[f"{REPO}:{digest_of(data)}"] = (data, mt)
        manifests.append({"mediaType": mt, "digest": digest_of(data), "size": len(data),
                          "platform": {"os": os_, "architecture": arch}})
    return json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX,
                       "manifests": manifests}).encode()


def manifest_bytes(tag: str) -> bytes:
    doc = oci_manifest([])
    doc["annotations"] = {"which": tag}
    return json.dumps(doc).encode()


def ref(host: str, tag: str) -> reference.Reference:
    return reference.parse(f"{host}/{REPO}:{tag}")


def test_index_narrowed_to_the_platform(fake: tuple[Fake, str]) -> None:
    state, host = fake
    amd, arm = manifest_bytes("amd"), manifest_bytes("arm")
    idx = index_of(state, [("linux", "amd64", amd, mediatypes.OCI_MANIFEST),
                           ("linux", "arm64", arm, mediatypes.OCI_MANIFEST)])
    state.manifest("multi", idx, mediatypes.OCI_INDEX)
    c = client(host)
    top, chosen = resolve(c, ref(host, "multi"), Platform("linux", "arm64"))
    assert top.digest == digest_of(idx) and top.is_index
    assert chosen.data == arm and chosen.digest == digest_of(arm)
    assert resolve(c, ref(host, "multi"), Platform("linux", "amd64"))[1].data == amd


def test_a_plain_manifest_resolves_to_itself(fake: tuple[Fake, str]) -> None:
    state, host = fake
    d = state.manifest("one", manifest_bytes("one"), mediatypes.OCI_MANIFEST)
    top, chosen = resolve(client(host), ref(host, "one"))
    assert top == chosen and top.digest == d


def test_no_manifest_for_the_platform(fake: tuple[Fake, str]) -> None:
    state, host = fake
    idx = index_of(state, [("linux", "amd64", manifest_bytes("a"), mediatypes.OCI_MANIFEST)])
    state.manifest("multi", idx, mediatypes.OCI_INDEX)
    with pytest.raises(errors.NotFound) as e:
        resolve(client(host), ref(host, "multi"), Platform("linux", "riscv64"))
    assert "linux/amd64" in str(e.value) and f"{REPO}:multi" in str(e.value)


def test_an_index_inside_an_index_is_refused(fake: tuple[Fake, str]) -> None:
    state, host = fake
    inner = index_of(state, [("linux", "amd64", manifest_bytes("a"), mediatypes.OCI_MANIFEST)])
    outer = index_of(state, [("linux", "amd64", inner, mediatypes.OCI_INDEX)])
    state.manifest("nested", outer, mediatypes.OCI_INDEX)
    with pytest.raises(errors.NotSupported, match="itself an index"):
        resolve(client(host), ref(host, "nested"), Platform("linux", "amd64"))


def test_a_size_the_index_misstates_is_refused(fake: tuple[Fake, str]) -> None:
    state, host = fake
    data = manifest_bytes("a")
    idx = json.loads(index_of(state, [("linux", "amd64", data, mediatypes.OCI_MANIFEST)]))
    idx["manifests"][0]["size"] += 1
    state.manifest("lying", json.dumps(idx).encode(), mediatypes.OCI_INDEX)
    with pytest.raises(errors.InvalidArgument, match="the index says"):
        resolve(client(host), ref(host, "lying"), Platform("linux", "amd64"))
