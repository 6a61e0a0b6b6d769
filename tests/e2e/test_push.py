"""silo pushes images from its store to a real registry (docker-registry on loopback), and skopeo
reads them back: the same manifest bytes, every blob with its digest. Blobs the registry has
are skipped, blobs another repository of it has are mounted; auth, TLS and the bad cases get
clear errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import registry as reg

from silo import errors
from silo.storage import mediatypes
from silo.storage.images import Image, ImageStore
from silo.storage.pull import pull
from silo.storage.push import push
from silo.storage.source import MemorySource

pytestmark = pytest.mark.e2e

LOCAL = "silo-e2e/local:v1"


class Recorder:
    """A Progress that keeps what happened to each blob."""

    def __init__(self) -> None:
        self.what: dict[str, str] = {}

    def start(self, desc: object, what: str) -> None:
        self.what[desc.digest] = what  # type: ignore[attr-defined]

    def advance(self, desc: object, nbytes: int) -> None: ...

    def done(self, desc: object) -> None: ...


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[ImageStore, Image, bytes]]:
    """A store holding one three-layer image named LOCAL, added from memory (no registry)."""
    layout = reg.Layout(tmp_path / "layout")
    desc = layout.image(reg.small_layers("push"))
    blobs = {f"sha256:{p.name}": p.read_bytes()
             for p in (layout.path / "blobs" / "sha256").iterdir()}
    manifest = blobs[str(desc["digest"])]
    store = ImageStore(str(tmp_path / "store"))
    image = store.add(MemorySource(blobs), manifest, mediatypes.OCI_MANIFEST, names=[LOCAL])
    yield store, image, manifest


def read_back(registry: reg.Registry, repo_ref: str, dest: Path) -> dict[str, bytes]:
    """skopeo copies the image out of the registry into an OCI layout; its blobs by digest."""
    reg.run(["skopeo", "copy", "--quiet", *registry.skopeo_flags("src"),
             registry.url(repo_ref), f"oci:{dest}:x"])
    return {f"sha256:{p.name}": p.read_bytes() for p in (dest / "blobs" / "sha256").iterdir()}


def test_push_and_read_back_with_skopeo(registry_plain: reg.Registry, tmp_path: Path,
                                        local: tuple[ImageStore, Image, bytes]) -> None:
    store, image, manifest = local
    seen = Recorder()
    pushed = push(store, LOCAL, f"{registry_plain.host}/silo-e2e/pushed:v1", insecure=True,
                  progress=seen)
    assert pushed.digest == image.digest
    assert set(seen.what.values()) == {"upload"} and len(seen.what) == 4
    assert registry_plain.raw_manifest("silo-e2e/pushed:v1") == manifest
    blobs = read_back(registry_plain, "silo-e2e/pushed:v1", tmp_path / "back")
    for digest, data in blobs.items():
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    wanted = {image.id, image.digest, *(layer.blob.digest for layer in image.layers)}
    assert wanted <= set(blobs)


def test_push_again_uploads_nothing(registry_plain: reg.Registry,
                                    local: tuple[ImageStore, Image, bytes]) -> None:
    store, _, _ = local
    target = f"{registry_plain.host}/silo-e2e/pushed:v1"
    push(store, LOCAL, target, insecure=True)
    seen = Recorder()
    push(store, LOCAL, target.replace(":v1", ":v2"), insecure=True, progress=seen)
    assert set(seen.what.values()) == {"exists"} and len(seen.what) == 4
    assert json.loads(registry_plain.raw_manifest("silo-e2e/pushed:v2"))["layers"]


def test_push_mounts_blobs_from_the_repository_it_was_pulled_from(
        registry_plain: reg.Registry, tmp_path: Path) -> None:
    layout = reg.Layout(tmp_path / "layout")
    layout.tag(layout.image(reg.small_layers("mount")), "v1")
    registry_plain.push_layout(layout.path, "v1", "silo-e2e/origin:v1")
    store = ImageStore(str(tmp_path / "store"))
    pull(store, f"{registry_plain.host}/silo-e2e/origin:v1", insecure=True)
    seen = Recorder()
    push(store, f"{registry_plain.host}/silo-e2e/origin:v1",
         f"{registry_plain.host}/silo-e2e/copy:v1", insecure=True, progress=seen)
    assert set(seen.what.values()) == {"exists"}  # HEAD said no, the mount said yes
    read_back(registry_plain, "silo-e2e/copy:v1", tmp_path / "back")


def test_push_by_digest(registry_plain: reg.Registry,
                        local: tuple[ImageStore, Image, bytes]) -> None:
    store, image, manifest = local
    push(store, LOCAL, f"{registry_plain.host}/silo-e2e/bydigest@{image.digest}",
         insecure=True)
    assert registry_plain.raw_manifest(f"silo-e2e/bydigest@{image.digest}") == manifest


def test_push_with_credentials(registry_auth: reg.Registry,
                               local: tuple[ImageStore, Image, bytes]) -> None:
    store, _, manifest = local
    push(store, LOCAL, f"{registry_auth.host}/silo-e2e/pushed:v1", insecure=True,
         credentials=registry_auth.credentials)
    assert registry_auth.raw_manifest("silo-e2e/pushed:v1") == manifest


def test_push_without_credentials_is_refused(registry_auth: reg.Registry,
                                             local: tuple[ImageStore, Image, bytes]) -> None:
    store, _, _ = local
    with pytest.raises(errors.InvalidArgument) as e:
        push(store, LOCAL, f"{registry_auth.host}/silo-e2e/pushed:v1", insecure=True)
    assert registry_auth.host in str(e.value) and "credentials" in str(e.value)


def test_push_over_tls(registry_tls: reg.Registry, local: tuple[ImageStore, Image, bytes]) -> None:
    store, _, manifest = local
    push(store, LOCAL, f"{registry_tls.host}/silo-e2e/pushed:v1",
         ca_file=str(registry_tls.ca_file))
    assert registry_tls.raw_manifest("silo-e2e/pushed:v1") == manifest


def test_push_of_an_unknown_image(registry_plain: reg.Registry, tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "store"))
    with pytest.raises(errors.NotFound, match="nothing"):
        push(store, "silo-e2e/nothing:v1", f"{registry_plain.host}/x/y:z", insecure=True)


def test_push_to_a_digest_that_is_not_the_image(registry_plain: reg.Registry,
                                                local: tuple[ImageStore, Image, bytes]) -> None:
    store, _, _ = local
    other = "sha256:" + "5" * 64
    with pytest.raises(errors.InvalidArgument, match="not"):
        push(store, LOCAL, f"{registry_plain.host}/silo-e2e/pushed@{other}", insecure=True)
    assert not registry_plain.blob_path(other).exists()
    assert not (registry_plain.storage / "docker").exists()  # nothing was uploaded


def test_push_to_a_registry_that_is_down(registry_plain: reg.Registry,
                                         local: tuple[ImageStore, Image, bytes]) -> None:
    store, _, _ = local
    host = registry_plain.host
    registry_plain.stop(remove=False)
    with pytest.raises(errors.Unavailable) as e:
        push(store, LOCAL, f"{host}/silo-e2e/pushed:v1", insecure=True, retries=1)
    assert host in str(e.value)


def test_push_with_a_bearer_token(registry_token: reg.Registry,
                                  local: tuple[ImageStore, Image, bytes]) -> None:
    store, _, manifest = local
    push(store, LOCAL, f"{registry_token.host}/silo-e2e/pushed:v1", insecure=True,
         credentials=registry_token.credentials)
    assert registry_token.raw_manifest("silo-e2e/pushed:v1") == manifest
    assert registry_token.token is not None
    assert any("push" in r["scope"] for r in registry_token.token.requests)
