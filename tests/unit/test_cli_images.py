"""silo's image verbs (images, image ..., pull, push, rmi, tag, save, load, import) and
``--storage-opt`` against a fake silod (tests/unit/fake_silod.py): the requests they send,
what they print (docker's table and messages), progress drawn per layer, exit statuses, and a
start-up that loads none of the slow modules."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import pytest

from silo.cli import imagefmt, images
from silo.cli.import_ import changes
from tests.unit.fake_silod import FakeSilod, Lines, Request, error
from tests.unit.test_lean_imports import forbidden_imports

pytestmark = pytest.mark.unit

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")
ID1 = "sha256:" + "1a" * 32
ID2 = "sha256:" + "2b" * 32
IMAGES = [
    {"Id": ID1, "RepoTags": ["busybox:latest", "localhost:5000/bb:1"],
     "RepoDigests": ["localhost:5000/bb@sha256:" + "dd" * 32], "Created": "2024-01-01T00:00:00Z",
     "Size": 4_261_376},
    {"Id": ID2, "RepoTags": [], "RepoDigests": [], "Created": "", "Size": 999},
]


@pytest.fixture
def silod(silod: FakeSilod) -> FakeSilod:
    silod.override("GET", "/v1/images", lambda r: (200, IMAGES))
    return silod


def image_calls(silod: FakeSilod) -> list[tuple[str, str, Any]]:
    return [c for c in silod.calls() if "/v1/images" in c[1]]


# -- listing and inspecting ------------------------------------------------------------------

def test_images_table(silod: FakeSilod, silo: Any) -> None:
    r = silo("images")
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:3] == ["busybox", "latest", "1a1a1a1a1a1a"]
    assert lines[1].split()[-1] == "4.261MB"
    assert lines[2].split()[:3] == ["localhost:5000/bb", "1", "1a1a1a1a1a1a"]
    assert lines[3].split() == ["<none>", "<none>", "2b2b2b2b2b2b", "N/A", "999B"]


def test_images_filters_quiet_digests_json(silod: FakeSilod, silo: Any) -> None:
    assert silo("images", "-q").out == "1a1a1a1a1a1a\n2b2b2b2b2b2b\n"
    assert silo("images", "-q", "--no-trunc").out == f"{ID1}\n{ID2}\n"
    r = silo("images", "busybox")
    assert len(r.out.splitlines()) == 2 and "busybox" in r.out
    r = silo("images", "--digests", "localhost:5000/bb:1")
    assert ("sha256:" + "dd" * 32) in r.out.splitlines()[1]
    r = silo("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}")
    assert r.out.splitlines() == ["busybox:latest 4.261MB", "localhost:5000/bb:1 4.261MB",
                                  "<none>:<none> 999B"]
    r = silo("image", "ls", "--format", "json")
    assert r.out.count("\n") == 2 and '"RepoTags"' in r.out


def test_image_inspect(silod: FakeSilod, silo: Any) -> None:
    silod.override("GET", "/v1/images/busybox", lambda r: (200, {"Id": ID1}))
    r = silo("image", "inspect", "busybox", "nope")
    assert r.code == 1
    assert '"Id": "' + ID1 in r.out
    assert "no route /v1/images/nope" in r.err


def test_references_are_one_path_segment(silod: FakeSilod, silo: Any) -> None:
    silod.override("POST", "/v1/images/.*/tag", lambda r: (201, IMAGES[0]))
    assert silo("tag", "localhost:5000/bb:1", "x/y:2").code == 0
    [(method, raw, body)] = image_calls(silod)
    assert (method, raw, body) == ("POST", "/v1/images/localhost%3A5000%2Fbb%3A1/tag",
                                   {"Name": "x/y:2"})


# -- removing --------------------------------------------------------------------------------

def test_rmi_reports_each_and_goes_on(silod: FakeSilod, silo: Any) -> None:
    def delete(req: Request) -> Any:
        if req.path.endswith("/used"):
            return error("invalid_state", "image used:latest is in use by container web")
        return 200, [{"Untagged": "busybox:latest"}, {"Deleted": ID1}]

    silod.override("DELETE", "/v1/images/.*", delete)
    r = silo("rmi", "-f", "busybox", "used")
    assert r.code == 1
    assert r.out == f"Untagged: busybox:latest\nDeleted: {ID1}\n"
    assert r.err == "silo: image used:latest is in use by container web\n"
    assert [c[1] for c in image_calls(silod)] == ["/v1/images/busybox?Force=true",
                                                  "/v1/images/used?Force=true"]
    assert silo("image", "rm", "busybox").code == 0
    assert image_calls(silod)[-1][1] == "/v1/images/busybox"


def test_prune_asks_first(silod: FakeSilod, silo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    silod.override("POST", "/v1/images/prune", lambda r: (200, {
        "ImagesDeleted": [{"Deleted": ID2}], "SpaceReclaimed": 2_500_000}))
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    r = silo("image", "prune")
    assert "WARNING! This will remove all dangling images." in r.out
    assert image_calls(silod) == []
    r = silo("image", "prune", "-af")
    assert r.code == 0
    assert r.out == f"Deleted Images:\ndeleted: {ID2}\n\nTotal reclaimed space: 2.5MB\n"
    assert image_calls(silod) == [("POST", "/v1/images/prune", {"All": True})]


# -- pull and push ---------------------------------------------------------------------------

PULL: list[dict[str, Any]] = [
    {"Id": "aaaaaaaaaaaa", "Status": "Downloading", "Current": 0, "Total": 2000},
    {"Id": "bbbbbbbbbbbb", "Status": "Exists"},
    {"Id": "aaaaaaaaaaaa", "Status": "Downloading", "Current": 1000, "Total": 2000},
    {"Id": "aaaaaaaaaaaa", "Status": "Done", "Current": 2000, "Total": 2000},
    IMAGES[0]]


def test_pull_without_a_terminal_prints_status_changes(silod: FakeSilod, silo: Any) -> None:
    silod.override("POST", "/v1/images/pull", lambda r: (200, Lines(PULL)))
    r = silo("pull", "--platform", "linux/amd64", "busybox")
    assert r.code == 0, r
    assert r.out.splitlines() == [
        "Using default tag: latest",
        "aaaaaaaaaaaa: Downloading", "bbbbbbbbbbbb: Already exists", "aaaaaaaaaaaa: Complete",
        "Digest: sha256:" + "dd" * 32,
        "Status: Downloaded newer image for busybox:latest", "busybox:latest"]
    assert image_calls(silod) == [("POST", "/v1/images/pull",
                                   {"Reference": "busybox", "Platform": "linux/amd64"})]


def test_pull_draws_a_bar_per_layer_on_a_terminal() -> None:
    written: list[str] = []
    last, moved = imagefmt.show_progress(iter(PULL), tty=True, write=written.append)
    assert last == IMAGES[0] and moved
    assert written[0] == "aaaaaaaaaaaa: Downloading [>" + " " * 49 + "]       0B/2kB\n"
    assert written[1] == "bbbbbbbbbbbb: Already exists\n"
    # the first layer is redrawn in place, two lines up, and the cursor comes back down
    assert written[2] == ("\x1b[2A\r\x1b[2K" + "aaaaaaaaaaaa: Downloading [" + "=" * 25 + ">"
                          + " " * 24 + "]      1kB/2kB" + "\x1b[2B\r")
    assert written[3] == "\x1b[2A\r\x1b[2Kaaaaaaaaaaaa: Complete\x1b[2B\r"


def test_pull_failure_is_one_line_naming_the_reference(silod: FakeSilod, silo: Any) -> None:
    silod.override("POST", "/v1/images/pull", lambda r: (200, Lines([
        PULL[0], {"Code": "not_found", "Message": "docker.io/library/nope:latest: not found "
                                                  "in the registry"}])))
    r = silo("pull", "-q", "nope")
    assert r.code == 1
    assert r.err == "silo: docker.io/library/nope:latest: not found in the registry\n"
    silod.override("POST", "/v1/images/pull", lambda r: error(
        "invalid_argument", "Reference: 'BAD' is not a valid reference", Field="Reference"))
    r = silo("pull", "BAD")
    assert (r.code, r.err) == (1, "silo: Reference: 'BAD' is not a valid reference\n")


def test_pull_and_push_credentials(silod: FakeSilod, monkeypatch: pytest.MonkeyPatch,
                                   silo: Any, tmp_path: Any) -> None:
    silod.override("POST", "/v1/images/pull", lambda r: (200, Lines([
        {**IMAGES[0], "Reference": "localhost:5000/bb:1"}])))
    silod.override("POST", "/v1/images/.*/push", lambda r: (200, Lines(
        [{"Id": "aaaaaaaaaaaa", "Status": "Uploading", "Current": 1, "Total": 1},
         {**IMAGES[0], "Digest": "sha256:" + "ee" * 32}])))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"s3cret\n")))
    r = silo("pull", "-q", "--insecure", "-u", "me", "--password-stdin", "--ca-file", "ca.pem",
             "localhost:5000/bb:1")
    assert (r.code, r.out) == (0, "localhost:5000/bb:1\n")
    assert image_calls(silod)[-1][2] == {
        "Reference": "localhost:5000/bb:1", "Insecure": True,
        "CaFile": os.path.abspath("ca.pem"),
        "Credentials": {"Username": "me", "Password": "s3cret"}}
    r = silo("push", "busybox", "localhost:5000/bb:1")
    assert r.code == 0, r
    assert image_calls(silod)[-1] == ("POST", "/v1/images/busybox/push",
                                      {"Reference": "localhost:5000/bb:1"})
    assert "localhost:5000/bb:1: digest: sha256:" + "ee" * 32 in r.out
    r = silo("pull", "--password-stdin", "x")
    assert r.code == 125 and "--password-stdin needs --username" in r.err


# -- archives --------------------------------------------------------------------------------

def test_save_load_import_send_absolute_paths(silod: FakeSilod, silo: Any, tmp_path: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    silod.override("POST", "/v1/images/save", lambda r: (200, {"Path": r.body["Path"],
                                                               "Size": 1}))
    silod.override("POST", "/v1/images/load", lambda r: (200, {"Images": IMAGES}))
    silod.override("POST", "/v1/images/import", lambda r: (201, IMAGES[0]))
    monkeypatch.chdir(tmp_path)
    assert silo("save", "-o", "out.tar", "busybox", ID2).code == 0
    r = silo("load", "-i", "in.tar")
    assert r.out == ("Loaded image: busybox:latest\nLoaded image: localhost:5000/bb:1\n"
                     f"Loaded image ID: {ID2}\n")
    r = silo("import", "-c", 'CMD ["sh", "-c", "x"]', "-c", "ENV A=1", "rootfs.tgz", "mine:1")
    assert r.out == ID1 + "\n"
    assert image_calls(silod) == [
        ("POST", "/v1/images/save", {"Names": ["busybox", ID2],
                                     "Path": str(tmp_path / "out.tar"),
                                     "Format": "docker-archive"}),
        ("POST", "/v1/images/load", {"Path": str(tmp_path / "in.tar")}),
        ("POST", "/v1/images/import", {"Path": str(tmp_path / "rootfs.tgz"), "Name": "mine:1",
                                       "Config": {"Cmd": ["sh", "-c", "x"],
                                                  "Env": ["A=1"]}})]
    r = silo("save", "--format", "zip", "-o", "x", "busybox")
    assert r.code == 125 and "--format" in r.err


def test_save_to_stdout_streams_the_archive(silod: FakeSilod, silo: Any) -> None:
    def save(req: Request) -> Any:
        with open(req.body["Path"], "wb") as f:
            f.write(b"ARCHIVE" * 1000)
        return 200, {"Path": req.body["Path"], "Size": 7000}

    silod.override("POST", "/v1/images/save", save)
    r = silo("save", "busybox")
    assert r.code == 0 and r.out == "ARCHIVE" * 1000
    path = image_calls(silod)[0][2]["Path"]
    assert not os.path.exists(path)          # the bridge file is gone


def test_load_and_import_from_stdin(silod: FakeSilod, tmp_path: Any) -> None:
    seen: list[bytes] = []

    def load(req: Request) -> Any:
        with open(req.body["Path"], "rb") as f:
            seen.append(f.read())
        assert os.stat(req.body["Path"]).st_mode & 0o077 == 0
        return 200, {"Images": IMAGES[:1]}

    silod.override("POST", "/v1/images/load", load)
    silod.override("POST", "/v1/images/import", lambda r: (load(r)[0], IMAGES[0]))
    for argv in (["load"], ["import", "-", "x:1"]):
        proc = subprocess.run(
            [sys.executable, "-c", "import sys; from silo.cli.main import main; "
             f"sys.exit(main({argv!r}))"],
            input=b"tar bytes", capture_output=True, check=False,
            env={**os.environ, "SILO_HOST": silod.host, "PYTHONPATH": SRC,
                 "TMPDIR": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr
    assert seen == [b"tar bytes", b"tar bytes"]
    assert os.listdir(tmp_path) == ["silod.sock"]   # the bridge files are gone


def test_import_changes() -> None:
    assert changes(["CMD sh -c 'x'", "ENTRYPOINT [\"/init\"]", "ENV A B", "ENV C=d",
                    "WORKDIR /app", "USER 1:2", "STOPSIGNAL SIGQUIT", "LABEL k=\"v w\""]) == {
        "Cmd": ["/bin/sh", "-c", "sh -c 'x'"], "Entrypoint": ["/init"], "Env": ["A=B", "C=d"],
        "WorkingDir": "/app", "User": "1:2", "StopSignal": "SIGQUIT", "Labels": {"k": "v w"}}
    for bad in ("FROM x", "CMD", "CMD [1]", "ENV =x"):
        with pytest.raises(Exception, match="--change"):
            changes([bad])


# -- run --storage-opt -----------------------------------------------------------------------

def test_run_storage_opt_size(silod: FakeSilod, silo: Any) -> None:
    r = silo("run", "-d", "--storage-opt", "size=64m", "busybox")
    assert r.code == 0, r
    [body] = [b for m, p, b in silod.calls() if (m, p) == ("POST", "/v1/compute-systems")]
    assert body["Configuration"]["Container"]["Storage"] == {"Image": "busybox",
                                                             "ScratchSizeInMB": 64}
    for bad in ("size=0", "size=lots", "quota=1g", "size"):
        r = silo("create", "--storage-opt", bad, "busybox")
        assert r.code == 125 and "--storage-opt" in r.err, (bad, r)
    assert len([c for c in silod.calls() if c[1] == "/v1/compute-systems"]) == 1


def test_usage_errors(silod: FakeSilod, silo: Any) -> None:
    assert silo("image", "frobnicate").code == 125
    assert silo("tag", "only-one").code == 125
    assert silo("rmi").code == 125
    assert "Usage:  silo image COMMAND" in silo("image", "--help").out
    assert "silo image rm" in silo("image", "rm", "--help").out
    assert image_calls(silod) == []


def test_sizes_and_tags() -> None:
    assert [imagefmt.human_size(n) for n in (0, 999, 1000, 4_261_376, 10**12)] == \
        ["0B", "999B", "1kB", "4.261MB", "1TB"]
    assert images.split_tag("localhost:5000/x") == ("localhost:5000/x", "<none>")
    assert images.split_tag("localhost:5000/x:1") == ("localhost:5000/x", "1")


IMAGE_CLI_MODULES = [f"silo.cli.{v}" for v in ("images", "image", "pull", "push", "rmi", "tag",
                                               "save", "load", "import_", "imagefmt")]
SLOW = ("typing", "json", "re", "argparse", "subprocess", "http.client", "http", "email",
        "enum", "signal", "socket", "datetime", "urllib.parse", "dataclasses", "pathlib",
        "logging")


@pytest.mark.parametrize("module", [*IMAGE_CLI_MODULES, "silo.client._images"])
def test_start_up_is_lean(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit import test_lean_imports

    monkeypatch.setattr(test_lean_imports, "FORBIDDEN", SLOW)
    bad, report = forbidden_imports(module)
    assert not bad, f"importing {module} loads {', '.join(bad)}:\n{report}"
