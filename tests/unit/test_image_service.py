"""silod's image service and routes on a fake store (tests/unit/fake_images.py): the documents
(ImageSummary, ImageInspect, progress lines), docker rmi's semantics as the service reports
them, events, one lock per reference for concurrent pulls, refusals that name the field and
change nothing; then the same through the real HTTP server and the real client
(``silo.client``), with references percent-encoded in paths."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from silo import errors
from silo.client import Client
from silo.service.app import make_router
from silo.service.events import EventBus
from silo.service.images import ImageService, ProgressStream
from tests.unit.fake_images import FakeBackend, FakeStore, make_image, normalize
from tests.unit.served import Served, serving

pytestmark = pytest.mark.unit


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def svc(tmp_path: Path, backend: FakeBackend) -> ImageService:
    return ImageService(str(tmp_path / "storage"), EventBus(), backend=backend)


def store(svc: ImageService) -> FakeStore:
    assert isinstance(svc.store, FakeStore)
    return svc.store


def drain(stream: Any) -> list[dict[str, Any]]:
    return list(stream)


def events(svc: ImageService) -> list[tuple[str, str, str]]:
    return [(e["Type"], e["Id"], e.get("Name", "")) for e in svc.bus.history()]


# -- documents ---------------------------------------------------------------------------------

def test_summary_and_inspect(svc: ImageService) -> None:
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/w", "User": "1:1",
                      "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT",
                      "Labels": {"a": "b"}, "Unrelated": 1}}
    image = store(svc).put(make_image("app", ["quay.io/x/app:1", "app"], config=cfg))
    [summary] = svc.list()
    assert summary == {"Id": image.id, "RepoTags": ["app:latest", "quay.io/x/app:1"],
                       "RepoDigests": [], "Created": "2024-01-01T00:00:00Z", "Size": 3000}
    doc = svc.inspect("app")
    assert doc["Config"] == {k: v for k, v in cfg["config"].items() if k != "Unrelated"}
    assert (doc["Os"], doc["Architecture"], doc["Digest"]) == ("linux", "amd64", image.digest)
    assert doc["RootFS"] == {"Type": "layers", "Layers": [la.diff_id for la in image.layers]}
    assert svc.inspect(image.id[7:19]) == doc   # an id prefix names it too


def test_unknown_image_is_not_found_naming_it(svc: ImageService) -> None:
    with pytest.raises(errors.NotFound, match="no such image: nginx") as e:
        svc.inspect("nginx")
    assert e.value.obj == "nginx"


def test_list_is_newest_first(svc: ImageService) -> None:
    store(svc).put(make_image("old", ["old"], created="2020-01-01T00:00:00Z"))
    store(svc).put(make_image("new", ["new"], created="2024-01-01T00:00:00Z"))
    assert [s["RepoTags"] for s in svc.list()] == [["new:latest"], ["old:latest"]]


# -- names -------------------------------------------------------------------------------------

def test_tag_untag_delete_and_events(svc: ImageService) -> None:
    image = store(svc).put(make_image("app", ["app"]))
    assert svc.tag("app", "other:2")["RepoTags"] == ["app:latest", "other:2"]
    assert svc.remove("app") == [{"Untagged": "app:latest"}]
    assert svc.inspect("other:2")["Id"] == image.id      # still there by its other name
    assert svc.remove("other:2") == [{"Untagged": "other:2"}, {"Deleted": image.id}]
    assert svc.list() == []
    assert events(svc) == [("ImageTagged", image.id, "other:2"),
                           ("ImageUntagged", image.id, "app:latest"),
                           ("ImageUntagged", image.id, "other:2"),
                           ("ImageDeleted", image.id, "")]


def test_bad_names_are_refused_naming_the_field(svc: ImageService) -> None:
    store(svc).put(make_image("app", ["app"]))
    with pytest.raises(errors.InvalidArgument) as e:
        svc.tag("app", "BAD")
    assert e.value.field == "Name"
    with pytest.raises(errors.NotFound):
        svc.tag("nope", "x")
    assert svc.list()[0]["RepoTags"] == ["app:latest"] and events(svc) == []


def test_remove_by_id_with_several_names_needs_force(svc: ImageService) -> None:
    image = store(svc).put(make_image("app", ["a", "b"]))
    with pytest.raises(errors.InvalidState):
        svc.remove(image.id)
    assert len(svc.list()) == 1
    assert svc.remove(image.id, force=True)[-1] == {"Deleted": image.id}


def test_an_image_in_use_is_not_removed(svc: ImageService) -> None:
    image = store(svc).put(make_image("app", ["app"]))
    svc.create_rootfs("c1", image.id)
    with pytest.raises(errors.InvalidState, match="in use by container c1"):
        svc.remove("app")
    assert svc.prune(all=True) == {"ImagesDeleted": [], "SpaceReclaimed": 0}
    svc.remove_rootfs("c1")
    assert svc.remove("app")[-1] == {"Deleted": image.id}


def test_prune(svc: ImageService) -> None:
    dangling = store(svc).put(make_image("d", []))
    named = store(svc).put(make_image("n", ["n"]))
    assert svc.prune() == {"ImagesDeleted": [{"Deleted": dangling.id}], "SpaceReclaimed": 3000}
    assert svc.prune(all=True)["ImagesDeleted"] == [{"Deleted": named.id}]


# -- pull and push -----------------------------------------------------------------------------

def test_pull_streams_progress_then_the_summary(svc: ImageService,
                                                backend: FakeBackend) -> None:
    image = make_image("remote", layers=2)
    backend.remote[normalize("busybox")] = image
    lines = drain(svc.pull("busybox", platform="linux/amd64", insecure=True,
                           credentials={"Username": "u", "Password": "p"}))
    short = [la.blob.digest[7:19] for la in image.layers]
    assert lines[0] == {"Id": short[0], "Status": "Downloading", "Current": 0, "Total": 1000}
    assert {"Id": short[0], "Status": "Done", "Current": 1000, "Total": 1000} in lines
    assert {"Id": short[1], "Status": "Done", "Current": 2000, "Total": 2000} in lines
    currents = [ln["Current"] for ln in lines if ln.get("Id") == short[1]]
    assert currents == sorted(currents)
    assert lines[-1] == {"Id": image.id, "RepoTags": ["busybox:latest"], "RepoDigests": [],
                         "Created": image.created, "Size": image.size,
                         "Reference": "busybox:latest"}
    assert backend.calls[0] == ("pull", "docker.io/library/busybox:latest", "linux/amd64",
                                True, None, ("u", "p"))
    assert events(svc) == [("ImagePulled", image.id, "busybox:latest")]
    # a second pull finds the layers there
    again = drain(svc.pull("busybox"))
    assert [ln["Status"] for ln in again[:-1]] == ["Exists", "Exists"]


def test_a_failed_pull_ends_with_the_error(svc: ImageService, backend: FakeBackend) -> None:
    lines = drain(svc.pull("nginx"))
    assert lines == [{"Code": "not_found", "Id": "docker.io/library/nginx:latest",
                      "Message": "docker.io/library/nginx:latest: not found in the registry"}]
    backend.remote[normalize("nginx")] = make_image("n")
    backend.fail = RuntimeError("boom")
    [last] = drain(svc.pull("nginx"))
    assert last["Code"] == "internal" and "boom" in last["Message"]
    assert svc.list() == [] and events(svc) == []


def test_bad_pull_requests_are_refused_before_anything_starts(
        svc: ImageService, backend: FakeBackend, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument) as e:
        svc.pull("NOT A REF")
    assert e.value.field == "Reference"
    with pytest.raises(errors.InvalidArgument) as e:
        svc.pull("busybox", platform="linux//")
    assert e.value.field == "Platform"
    with pytest.raises(errors.NotFound) as nf:
        svc.pull("busybox", ca_file=str(tmp_path / "missing.pem"))
    assert nf.value.field == "CaFile"
    with pytest.raises(errors.InvalidArgument, match=r"CaFile: .* is a directory"):
        svc.pull("busybox", ca_file=str(tmp_path))
    with pytest.raises(errors.InvalidArgument, match=r"CaFile: .* not a regular file"):
        svc.pull("busybox", ca_file="/dev/null")
    assert backend.calls == []


def test_concurrent_pulls_of_a_reference_take_turns(svc: ImageService,
                                                    backend: FakeBackend) -> None:
    backend.remote[normalize("busybox")] = make_image("remote", layers=1)
    backend.gate = threading.Event()
    first = svc.pull("busybox")
    assert backend.started.wait(60)      # the first pull holds the lock, waiting on the gate
    second = svc.pull("busybox:latest")
    assert next(second) == {"Id": "busybox:latest", "Status": "Waiting"}
    assert len(backend.calls) == 1       # the second has not started
    backend.gate.set()
    assert "RepoTags" in drain(first)[-1]
    rest = drain(second)
    assert [ln["Status"] for ln in rest[:-1]] == ["Exists"]
    assert len(backend.calls) == 2


def test_progress_lines_are_rationed(svc: ImageService) -> None:
    stream = ProgressStream()
    desc = make_image("x", layers=1).layers[0].blob
    big = type(desc)(desc.media_type, desc.digest, 1_000_000)
    stream.start(big, "download")
    for _ in range(1000):
        stream.advance(big, 1000)
    stream.done(big)
    stream.finish({"Id": "x"})
    lines = drain(stream)
    assert 40 <= len(lines) <= 60          # about one line per 2 %, not one per read
    assert lines[-2] == {"Id": desc.digest[7:19], "Status": "Done", "Current": 1_000_000,
                         "Total": 1_000_000}


def test_push(svc: ImageService, backend: FakeBackend) -> None:
    image = store(svc).put(make_image("app", ["app"]))
    lines = drain(svc.push("app", "localhost:5000/app:1"))
    assert lines[-1]["Id"] == image.id and lines[-1]["Digest"] == image.digest
    assert [ln["Status"] for ln in lines[:-1]].count("Done") == 2
    assert backend.remote["localhost:5000/app:1"] is image
    assert events(svc) == [("ImagePushed", image.id, "localhost:5000/app:1")]
    with pytest.raises(errors.NotFound):
        svc.push("nope")


# -- archives ----------------------------------------------------------------------------------

def test_load_import_save(svc: ImageService, backend: FakeBackend, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_text("one two")
    loaded = svc.load(str(archive))
    assert [s["RepoTags"] for s in loaded["Images"]] == [["one:latest"], ["two:latest"]]
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_text("x")
    summary = svc.import_(str(rootfs), "mine:1", config={"Cmd": ["true"]})
    assert summary["RepoTags"] == ["mine:1"]
    assert svc.inspect("mine:1")["Config"] == {"Cmd": ["true"]}
    out = tmp_path / "out.tar"
    report = svc.save(["one", "mine:1"], str(out), "oci-archive")
    assert report == {"Path": str(out), "Size": out.stat().st_size}
    assert out.read_text().startswith("oci-archive\n")
    assert [t for t, _, _ in events(svc)] == ["ImageLoaded", "ImageLoaded", "ImageImported"]


@pytest.mark.parametrize(("call", "field"), [
    (lambda s, d: s.load(str(d / "missing.tar")), "Path"),
    (lambda s, d: s.load("relative.tar"), "Path"),
    (lambda s, d: s.load("/dev/zero"), "Path"),
    (lambda s, d: s.import_(str(d), "x"), "Path"),
    (lambda s, d: s.import_(str(d / "f"), "BAD NAME"), "Name"),
    (lambda s, d: s.save(["nope"], str(d / "o.tar")), "Names[0]"),
    (lambda s, d: s.save(["one"], str(d)), "Path"),
    (lambda s, d: s.save(["one"], "/dev/null"), "Path"),
    (lambda s, d: s.save(["one"], str(d / "no" / "such" / "dir.tar")), "Path"),
    (lambda s, d: s.save([], str(d / "o.tar")), "Names"),
])
def test_bad_archive_requests_name_the_field_and_change_nothing(
        svc: ImageService, backend: FakeBackend, tmp_path: Path, call: Any,
        field: str) -> None:
    store(svc).put(make_image("one", ["one"]))
    (tmp_path / "f").write_text("x")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(errors.SiloError) as e:
        call(svc, tmp_path)
    assert e.value.field == field, e.value
    assert [c[0] for c in backend.calls] == []
    assert sorted(os.listdir(tmp_path)) == before
    assert len(svc.list()) == 1 and events(svc) == []


def test_the_builtin_image_is_imported_once(tmp_path: Path, backend: FakeBackend) -> None:
    images_dir = tmp_path / "images"
    (images_dir / "busybox" / "rootfs").mkdir(parents=True)
    svc = ImageService(str(tmp_path / "storage"), images_dir=str(images_dir), backend=backend)
    assert svc.ensure_builtin() is True
    assert svc.ensure_builtin() is False
    assert svc.list()[0]["RepoTags"] == ["busybox:latest"]
    assert backend.calls == [("builtin", str(images_dir / "busybox"), "busybox:latest")]
    nothing = ImageService(str(tmp_path / "s2"), images_dir=str(tmp_path / "none"),
                           backend=FakeBackend())
    assert nothing.ensure_builtin() is False and nothing.list() == []


# -- through HTTP and the client ---------------------------------------------------------------

@pytest.fixture
def client(tmp_path: Path, svc: ImageService) -> Iterator[Client]:
    with serving(tmp_path, images=svc) as sock:
        yield Client("unix://" + sock, timeout=10)


def test_routes_through_the_client(client: Client, svc: ImageService, backend: FakeBackend,
                                   tmp_path: Path) -> None:
    image = store(svc).put(make_image("app", ["quay.io/x/app:1"]))
    assert [s["Id"] for s in client.images()] == [image.id]
    # a reference with '/' and ':' travels percent-encoded as one path segment
    assert client.inspect_image("quay.io/x/app:1")["Id"] == image.id
    assert client.tag_image("quay.io/x/app:1", "app:2")["RepoTags"] == ["app:2",
                                                                        "quay.io/x/app:1"]
    assert client.remove_image("app:2") == [{"Untagged": "app:2"}]
    backend.remote[normalize("busybox")] = make_image("bb", layers=1)
    with client.pull("busybox", username="u", password="p") as stream:
        lines = list(stream)
    assert lines[-1]["RepoTags"] == ["busybox:latest"]
    assert backend.calls[-1][-1] == ("u", "p")
    (tmp_path / "a.tar").write_text("loaded")
    assert client.load_images(str(tmp_path / "a.tar"))["Images"][0]["RepoTags"] == \
        ["loaded:latest"]
    (tmp_path / "r.tar").write_text("r")
    assert client.import_image(str(tmp_path / "r.tar"), "r:1")["RepoTags"] == ["r:1"]
    assert client.save_images(["r:1"], str(tmp_path / "o.tar"))["Size"] > 0
    assert (tmp_path / "o.tar").read_text().startswith("docker-archive\n")
    pushed = list(client.push("r:1", "localhost:5000/r:1", insecure=True))
    assert pushed[-1]["RepoTags"] == ["r:1"]
    assert client.prune_images(all=True)["SpaceReclaimed"] > 0


def test_errors_through_the_client(client: Client, svc: ImageService,
                                   backend: FakeBackend) -> None:
    with pytest.raises(errors.NotFound, match="no such image: a/b:c"):
        client.inspect_image("a/b:c")
    with pytest.raises(errors.InvalidArgument) as e:
        client.pull("")
    assert e.value.field == "Reference"
    with pytest.raises(errors.InvalidArgument) as e:
        client.save_images(["x"], "o.tar", format="zip")
    assert e.value.field == "Format"
    stream = client.pull("nginx")          # accepted; the registry has no such image
    with pytest.raises(errors.NotFound, match="not found in the registry"):
        list(stream)
    image = store(svc).put(make_image("app", ["app"]))
    svc.create_rootfs("c1", image.id)
    with pytest.raises(errors.InvalidState, match="in use"):
        client.remove_image("app", force=True)


def test_no_image_service_is_503(tmp_path: Path) -> None:
    with serving(tmp_path) as sock, pytest.raises(errors.Unavailable, match="no image store"):
        Client("unix://" + sock, timeout=10).images()


def test_a_literal_route_wins_over_an_image_reference() -> None:
    from silo.service.http import MethodNotAllowed

    router = make_router(Served())  # type: ignore[arg-type]
    with pytest.raises(MethodNotAllowed) as e:
        router.match("GET", "/v1/images/pull")
    assert e.value.allowed == ["POST"]
    _, params = router.match("GET", "/v1/images/docker.io%2Flibrary%2Fpull%3Alatest")
    assert params == {"ref": "docker.io/library/pull:latest"}
