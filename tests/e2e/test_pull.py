"""silo pulls from a real registry (Debian's docker-registry on loopback) what skopeo put there:
by tag and by digest, OCI and Docker media types, one platform out of an index; over plain
http, htpasswd auth and TLS with a test CA; and every bad case gets a clear error and leaves
the store as it was (no image, no temporaries)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import registry as reg

from silo import errors
from silo.storage import mediatypes
from silo.storage.images import ImageStore
from silo.storage.pull import pull

pytestmark = pytest.mark.e2e

REPO = "silo-e2e/app"


def leftovers(store: ImageStore) -> list[str]:
    """Partial downloads and unpacks the store would have to clean up."""
    root = Path(store.root)
    found = [str(p) for p in (root / "ingest").glob("*") if p.name != ".lock"]
    found += [str(p) for p in (root / "layers").glob(".tmp-*")]
    return found


def build(tmp_path: Path, *, seed: str = "pull", big: int = 0) -> tuple[Path, dict[str, object]]:
    """An OCI layout with a three-layer image tagged "v1" (plus a ``big`` random layer)."""
    layout = reg.Layout(tmp_path / f"layout-{seed}")
    layers = reg.small_layers(seed)
    if big:
        layers.append({f"{seed}/big.bin": os.urandom(big)})
    desc = layout.image(layers)
    layout.tag(desc, "v1")
    return layout.path, desc


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "store"))


def pushed(registry: reg.Registry, tmp_path: Path, **kw: object) -> dict[str, object]:
    layout, desc = build(tmp_path, big=int(kw.pop("big", 0)))  # type: ignore[call-overload]
    registry.push_layout(layout, "v1", f"{REPO}:v1", **kw)  # type: ignore[arg-type]
    return desc


def file_in(store: ImageStore, image_layers: int, rel: str) -> bytes:
    img = store.list()[0]
    assert len(img.layers) == image_layers
    for layer in img.layers:
        p = Path(store.layers.path(layer.chain_id)) / rel
        if p.exists():
            return p.read_bytes()
    raise AssertionError(f"{rel} is in no layer")


# -- what works ------------------------------------------------------------------------------


def test_pull_by_tag(registry_plain: reg.Registry, tmp_path: Path, store: ImageStore) -> None:
    desc = pushed(registry_plain, tmp_path)
    ref = f"{registry_plain.host}/{REPO}:v1"
    img = pull(store, ref, insecure=True)
    assert img.digest == desc["digest"]
    assert img.names == (ref,)
    assert img.repo_digests == (f"{registry_plain.host}/{REPO}@{desc['digest']}",)
    assert img.media_type == mediatypes.OCI_MANIFEST
    assert img.config["config"]["Cmd"] == ["/bin/sh"]
    want = hashlib.sha256(b"pull/1/2").digest() * 128
    assert file_in(store, 3, "pull/layer1/file2") == want
    assert store.get(ref).id == img.id
    assert leftovers(store) == []


def test_pull_by_digest_names_nothing(registry_plain: reg.Registry, tmp_path: Path,
                                      store: ImageStore) -> None:
    desc = pushed(registry_plain, tmp_path)
    img = pull(store, f"{registry_plain.host}/{REPO}@{desc['digest']}", insecure=True)
    assert img.digest == desc["digest"]
    assert img.names == ()
    assert store.get(f"{registry_plain.host}/{REPO}@{desc['digest']}").id == img.id


def test_pull_again_is_a_no_op_that_keeps_the_image(registry_plain: reg.Registry,
                                                     tmp_path: Path, store: ImageStore) -> None:
    pushed(registry_plain, tmp_path)
    ref = f"{registry_plain.host}/{REPO}:v1"
    first = pull(store, ref, insecure=True)

    class Seen:
        what: list[str] = []

        def start(self, desc: object, what: str) -> None:
            self.what.append(what)

        def advance(self, desc: object, n: int) -> None: ...

        def done(self, desc: object) -> None: ...

    seen = Seen()
    again = pull(store, ref, insecure=True, progress=seen)
    assert again == first
    assert seen.what == ["exists"] * 3


def test_pull_docker_media_types(registry_plain: reg.Registry, tmp_path: Path,
                                 store: ImageStore) -> None:
    pushed(registry_plain, tmp_path, docker_format=True)
    raw = json.loads(registry_plain.raw_manifest(f"{REPO}:v1"))
    assert raw["mediaType"] == mediatypes.DOCKER_MANIFEST
    img = pull(store, f"{registry_plain.host}/{REPO}:v1", insecure=True)
    assert img.media_type == mediatypes.DOCKER_MANIFEST
    assert {layer.blob.media_type for layer in img.layers} == {mediatypes.DOCKER_LAYER_GZIP}
    assert len(store.list()[0].layers) == 3


def test_loopback_registry_in_plain_http_without_insecure(
        registry_plain: reg.Registry, tmp_path: Path, store: ImageStore) -> None:
    """As docker does for localhost: a loopback registry that answers TLS in plain http."""
    pushed(registry_plain, tmp_path)
    assert pull(store, f"{registry_plain.host}/{REPO}:v1").names


# -- a platform out of an index --------------------------------------------------------------


@pytest.fixture
def multi(registry_plain: reg.Registry, tmp_path: Path) -> str:
    layout = reg.Layout(tmp_path / "layout-multi")
    amd = layout.image(reg.small_layers("amd", count=1), arch="amd64", cmd=["amd"])
    arm = layout.image(reg.small_layers("arm", count=2), arch="arm64", cmd=["arm"])
    layout.tag_index([amd, arm], "multi")
    registry_plain.push_layout(layout.path, "multi", f"{REPO}:multi", all_platforms=True)
    return f"{registry_plain.host}/{REPO}:multi"


def test_index_picks_the_host_platform(multi: str, store: ImageStore) -> None:
    img = pull(store, multi, insecure=True, platform="linux/amd64")
    assert str(img.platform) == "linux/amd64"
    assert img.config["config"]["Cmd"] == ["amd"]
    if os.uname().machine == "x86_64":
        assert pull(store, multi, insecure=True).id == img.id


def test_index_with_a_platform_override(multi: str, store: ImageStore) -> None:
    img = pull(store, multi, insecure=True, platform="linux/arm64")
    assert str(img.platform) == "linux/arm64"
    assert img.config["config"]["Cmd"] == ["arm"]
    assert len(img.layers) == 2


def test_index_without_the_platform_names_those_it_has(multi: str, store: ImageStore) -> None:
    with pytest.raises(errors.NotFound) as e:
        pull(store, multi, insecure=True, platform="linux/s390x")
    assert "linux/amd64" in str(e.value) and "linux/arm64" in str(e.value)
    assert "linux/s390x" in str(e.value) and multi in str(e.value)
    assert store.list() == [] and leftovers(store) == []


# -- auth and TLS ----------------------------------------------------------------------------


def test_htpasswd_with_the_right_credentials(registry_auth: reg.Registry, tmp_path: Path,
                                             store: ImageStore) -> None:
    pushed(registry_auth, tmp_path)
    img = pull(store, f"{registry_auth.host}/{REPO}:v1", insecure=True,
               credentials=registry_auth.credentials)
    assert len(img.layers) == 3


@pytest.mark.parametrize(("creds", "words"), [(("silo-test", "wrong"), "refused the credentials"),
                                              (None, "requires credentials")])
def test_htpasswd_refused(registry_auth: reg.Registry, tmp_path: Path, store: ImageStore,
                          creds: tuple[str, str] | None, words: str) -> None:
    pushed(registry_auth, tmp_path)
    with pytest.raises(errors.InvalidArgument) as e:
        pull(store, f"{registry_auth.host}/{REPO}:v1", insecure=True, credentials=creds)
    assert words in str(e.value) and registry_auth.host in str(e.value)
    assert store.list() == [] and leftovers(store) == []


def test_tls_with_the_test_ca(registry_tls: reg.Registry, tmp_path: Path,
                              store: ImageStore) -> None:
    pushed(registry_tls, tmp_path)
    img = pull(store, f"{registry_tls.host}/{REPO}:v1", ca_file=str(registry_tls.ca_file))
    assert len(img.layers) == 3


def test_tls_without_the_ca_is_a_clear_error(registry_tls: reg.Registry, tmp_path: Path,
                                             store: ImageStore) -> None:
    pushed(registry_tls, tmp_path)
    with pytest.raises(errors.InvalidArgument) as e:
        pull(store, f"{registry_tls.host}/{REPO}:v1")
    assert e.value.field == "ca_file"
    assert registry_tls.host in str(e.value) and "certificate" in str(e.value)
    assert store.list() == []


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["repo", "tag"])
def test_unknown_repository_or_tag(registry_plain: reg.Registry, tmp_path: Path,
                                   store: ImageStore, what: str) -> None:
    pushed(registry_plain, tmp_path)
    ref = (f"{registry_plain.host}/silo-e2e/nothing:v1" if what == "repo" else
           f"{registry_plain.host}/{REPO}:v9")
    with pytest.raises(errors.NotFound) as e:
        pull(store, ref, insecure=True)
    assert ref in str(e.value)
    assert store.list() == [] and leftovers(store) == []


@pytest.mark.parametrize("ref", ["upper/CASE:v1", "repo:bad tag", "repo@sha256:12", "",
                                 "host:99999999/x:y"])
def test_malformed_reference(store: ImageStore, ref: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        pull(store, ref, insecure=True)
    assert store.list() == []


def test_corrupt_blob_is_refused_and_leaves_nothing(registry_plain: reg.Registry,
                                                    tmp_path: Path, store: ImageStore) -> None:
    pushed(registry_plain, tmp_path)
    manifest = json.loads(registry_plain.raw_manifest(f"{REPO}:v1"))
    victim = manifest["layers"][1]["digest"]
    path = registry_plain.blob_path(victim)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(errors.InvalidArgument) as e:
        pull(store, f"{registry_plain.host}/{REPO}:v1", insecure=True)
    assert victim in str(e.value)
    assert store.list() == [] and leftovers(store) == []
    assert not store.content.has(victim)


def test_truncated_blob_is_refused_and_leaves_nothing(registry_plain: reg.Registry,
                                                      tmp_path: Path,
                                                      store: ImageStore) -> None:
    pushed(registry_plain, tmp_path)
    manifest = json.loads(registry_plain.raw_manifest(f"{REPO}:v1"))
    victim = manifest["layers"][0]["digest"]
    path = registry_plain.blob_path(victim)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(errors.InvalidArgument) as e:
        pull(store, f"{registry_plain.host}/{REPO}:v1", insecure=True)
    assert victim in str(e.value) and "truncated" in str(e.value)
    assert store.list() == [] and leftovers(store) == []


def test_registry_down_is_unavailable(registry_plain: reg.Registry, store: ImageStore) -> None:
    host = registry_plain.host
    registry_plain.stop(remove=False)
    with pytest.raises(errors.Unavailable) as e:
        pull(store, f"{host}/{REPO}:v1", insecure=True, retries=1)
    assert host in str(e.value)
    assert store.list() == []


def test_unsupported_layer_media_type(registry_plain: reg.Registry, tmp_path: Path,
                                      store: ImageStore) -> None:
    """A manifest whose layer is of a type silo cannot unpack: refused naming the type."""
    pushed(registry_plain, tmp_path)
    manifest = json.loads(registry_plain.raw_manifest(f"{REPO}:v1"))
    manifest["layers"][0]["mediaType"] = "application/vnd.example.layer.v1+squashfs"
    data = json.dumps(manifest).encode()
    status = registry_plain.put(f"/v2/{REPO}/manifests/odd", data, mediatypes.OCI_MANIFEST)
    assert status == 201
    with pytest.raises(errors.InvalidArgument) as e:
        pull(store, f"{registry_plain.host}/{REPO}:odd", insecure=True)
    assert "squashfs" in str(e.value)
    assert store.list() == [] and leftovers(store) == []


def test_schema1_manifest_is_not_supported(registry_plain: reg.Registry,
                                           store: ImageStore) -> None:
    """Stored behind the registry's back: docker-registry no longer accepts schema 1 pushes."""
    schema1 = json.dumps({"schemaVersion": 1, "name": REPO, "tag": "old",
                          "architecture": "amd64", "fsLayers": [], "history": []}).encode()
    digest = "sha256:" + hashlib.sha256(schema1).hexdigest()
    v2 = registry_plain.storage / "docker" / "registry" / "v2"
    blob = registry_plain.blob_path(digest)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(schema1)
    repo = v2 / "repositories" / REPO / "_manifests"
    (repo / "revisions" / "sha256" / digest[7:]).mkdir(parents=True)
    (repo / "revisions" / "sha256" / digest[7:] / "link").write_text(digest)
    (repo / "tags" / "old" / "current").mkdir(parents=True)
    (repo / "tags" / "old" / "current" / "link").write_text(digest)
    with pytest.raises(errors.NotSupported) as e:
        pull(store, f"{registry_plain.host}/{REPO}:old", insecure=True)
    assert "schema 1" in str(e.value)
    assert store.list() == []


# -- interruption ----------------------------------------------------------------------------

BIG = 3 << 20


def test_a_cut_download_resumes(registry_plain: reg.Registry, tmp_path: Path,
                                store: ImageStore) -> None:
    pushed(registry_plain, tmp_path, big=BIG)
    with reg.CuttingProxy(registry_plain.port, after=BIG // 3, cuts=2) as proxy:
        img = pull(store, f"{proxy.host}/{REPO}:v1", insecure=True, retries=3)
        assert proxy.cut == 2
    assert len(img.layers) == 4
    assert len(file_in(store, 4, "pull/big.bin")) == BIG
    assert leftovers(store) == []


def test_a_failed_pull_runs_again(registry_plain: reg.Registry, tmp_path: Path,
                                  store: ImageStore) -> None:
    pushed(registry_plain, tmp_path, big=BIG)
    with reg.CuttingProxy(registry_plain.port, after=BIG // 3, cuts=1000) as proxy, \
            pytest.raises(errors.Unavailable) as e:
        pull(store, f"{proxy.host}/{REPO}:v1", insecure=True, retries=1)
    assert "broke" in str(e.value)
    assert store.list() == [] and leftovers(store) == []
    img = pull(store, f"{registry_plain.host}/{REPO}:v1", insecure=True)
    assert len(img.layers) == 4 and len(file_in(store, 4, "pull/big.bin")) == BIG


PULL_CHILD = """
import sys
from silo.storage.images import ImageStore
from silo.storage.pull import pull
pull(ImageStore(sys.argv[1]), sys.argv[2], insecure=True)
"""


def test_a_killed_pull_runs_again(registry_plain: reg.Registry, tmp_path: Path) -> None:
    """SIGKILL in the middle of a layer: the next store open removes the partial download and
    the pull completes."""
    pushed(registry_plain, tmp_path, big=BIG)
    root = tmp_path / "killed-store"
    with reg.CuttingProxy(registry_plain.port, after=BIG // 2, cuts=1, stall=True) as proxy:
        child = subprocess.Popen([sys.executable, "-c", PULL_CHILD, str(root),
                                  f"{proxy.host}/{REPO}:v1"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while proxy.cut == 0 and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proxy.cut == 1, child.stderr.read().decode() if child.stderr else ""
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            if child.stderr:
                child.stderr.close()
    partial = [p for p in (root / "ingest").iterdir() if p.name != ".lock"]
    assert partial, "the kill came before any partial download: the test proved nothing"
    store = ImageStore(str(root))
    assert leftovers(store) == [] and store.list() == []
    img = pull(store, f"{registry_plain.host}/{REPO}:v1", insecure=True)
    assert len(file_in(store, 4, "pull/big.bin")) == BIG
    assert store.get(f"{registry_plain.host}/{REPO}:v1").id == img.id


# -- token auth (Bearer) ---------------------------------------------------------------------


def test_bearer_token_with_the_right_credentials(registry_token: reg.Registry, tmp_path: Path,
                                                 store: ImageStore) -> None:
    pushed(registry_token, tmp_path)
    assert registry_token.token is not None
    registry_token.token.requests.clear()
    img = pull(store, f"{registry_token.host}/{REPO}:v1", insecure=True,
               credentials=registry_token.credentials)
    assert len(img.layers) == 3
    asked = registry_token.token.requests
    assert len(asked) == 1  # one token for the repository's pull scope, reused for every blob
    assert asked[0]["scope"] == f"repository:{REPO}:pull" and asked[0]["auth"]


@pytest.mark.parametrize(("creds", "words"), [(("silo-bearer", "wrong"), "refused the credentials"),
                                              (None, "requires credentials")])
def test_bearer_token_refused(registry_token: reg.Registry, tmp_path: Path, store: ImageStore,
                              creds: tuple[str, str] | None, words: str) -> None:
    pushed(registry_token, tmp_path)
    with pytest.raises(errors.InvalidArgument) as e:
        pull(store, f"{registry_token.host}/{REPO}:v1", insecure=True, credentials=creds)
    assert words in str(e.value) and registry_token.host in str(e.value)
    assert store.list() == [] and leftovers(store) == []


@pytest.mark.parametrize("platform", ["linux/", "/amd64", "a/b/c/d"])
def test_malformed_platform(registry_plain: reg.Registry, store: ImageStore,
                            platform: str) -> None:
    with pytest.raises(errors.InvalidArgument) as e:
        pull(store, f"{registry_plain.host}/{REPO}:v1", insecure=True, platform=platform)
    assert e.value.field == "platform"
    assert store.list() == []
