"""Images end to end: a real silod with its own image store, driven by the real ``silo``
command. The embedded busybox is in the store from the start; images are imported from a root
filesystem tar and loaded from an oci-archive built here, run, listed, inspected, tagged,
removed (refused while a container uses them), pruned, saved and loaded back, pushed to and
pulled from a real docker-registry on loopback; ``--storage-opt size=`` caps what a container
can write. Every test's teardown fails it if silod left anything on the host.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import peers
import pytest
import registry as reg
from silod_host import SILO, Silod
from tests import probes

pytestmark = pytest.mark.e2e


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def inspect_image(silod: Silod, ref: str) -> dict:
    [doc] = json.loads(ok(silod.cli("image", "inspect", ref)))
    assert isinstance(doc, dict)
    return doc


def table(silod: Silod) -> list[list[str]]:
    """``silo images`` as rows of cells (REPOSITORY, TAG, IMAGE ID, ...)."""
    lines = ok(silod.cli("images")).splitlines()
    assert lines[0].split()[:2] == ["REPOSITORY", "TAG"]
    return [line.split() for line in lines[1:]]


def rootfs_tar(dest: Path, extra: dict[str, str]) -> Path:
    """A tar of the busybox root filesystem plus ``extra`` files (path -> text)."""
    root = peers.build_busybox_rootfs(dest.parent / (dest.name + ".d"))
    for path, text in extra.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    with tarfile.open(dest, "w") as tar:
        tar.add(root, arcname=".")
    return dest


# -- the store and containers ----------------------------------------------------------------

def test_the_embedded_busybox_is_there_and_runs(silod: Silod) -> None:
    rows = table(silod)
    assert [r[:2] for r in rows] == [["busybox", "latest"]]
    doc = inspect_image(silod, "busybox")
    assert doc["RepoTags"] == ["busybox:latest"]
    assert doc["Config"]["Cmd"] == ["sh"] and doc["Os"] == "linux"
    assert len(doc["RootFS"]["Layers"]) == 1
    assert rows[0][2] == doc["Id"].split(":")[1][:12]
    assert ok(silod.cli("run", "--rm", "busybox", "echo", "hi")) == "hi\n"
    # the container's document names the image's layers, top first
    cid = ok(silod.cli("create", "busybox", "true")).strip()
    [props] = json.loads(ok(silod.cli("inspect", cid)))
    layers = props["Configuration"]["Container"]["Storage"]["Layers"]
    assert [la["Id"] for la in layers] == doc["RootFS"]["Layers"][::-1]
    assert all(Path(la["Path"]).is_dir() for la in layers)


def test_import_a_rootfs_tar_and_run_it(silod: Silod, tmp_path: Path) -> None:
    tar = rootfs_tar(tmp_path / "rootfs.tar", {"hello.txt": "hello from an imported image\n"})
    image_id = ok(silod.cli("import", "-c", 'CMD ["cat", "/hello.txt"]', "-c", "ENV GREETING=hi",
                            str(tar), "silo-e2e/imported:1")).strip()
    assert image_id.startswith("sha256:")
    doc = inspect_image(silod, "silo-e2e/imported:1")
    assert doc["Id"] == image_id and doc["Config"]["Cmd"] == ["cat", "/hello.txt"]
    assert ok(silod.cli("run", "--rm", "silo-e2e/imported:1")) == "hello from an imported image\n"
    assert ok(silod.cli("run", "--rm", "silo-e2e/imported:1", "sh", "-c",
                        "echo $GREETING")) == "hi\n"
    # and by an id prefix
    assert ok(silod.cli("run", "--rm", image_id[7:19], "true")) == ""


def test_load_an_oci_archive_and_run_it(silod: Silod, tmp_path: Path) -> None:
    rootfs = peers.build_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "etc" / "motd").write_text("loaded\n")
    archive = peers.write_oci_archive(rootfs, tmp_path / "img.oci.tar",
                                      "docker.io/silo-e2e/loaded:v1")
    out = ok(silod.cli("load", "-i", str(archive)))
    assert out == "Loaded image: silo-e2e/loaded:v1\n"
    assert ok(silod.cli("run", "--rm", "silo-e2e/loaded:v1", "cat", "/etc/motd")) == "loaded\n"


def test_an_unknown_image_is_named(silod: Silod) -> None:
    r = silod.cli("run", "--rm", "silo-e2e/nope:1", "true")
    assert r.returncode == 125 and "silo-e2e/nope:1" in r.stderr
    r = silod.cli("image", "inspect", "silo-e2e/nope:1")
    assert r.returncode == 1 and "silo-e2e/nope:1" in r.stderr


# -- names, removal, prune --------------------------------------------------------------------

def test_tag_and_rmi(silod: Silod) -> None:
    busybox_id = inspect_image(silod, "busybox")["Id"]
    ok(silod.cli("tag", "busybox", "silo-e2e/mine:2"))
    assert inspect_image(silod, "silo-e2e/mine:2")["Id"] == busybox_id
    assert ok(silod.cli("rmi", "silo-e2e/mine:2")) == "Untagged: silo-e2e/mine:2\n"
    r = silod.cli("image", "inspect", "silo-e2e/mine:2")
    assert r.returncode == 1
    # by id, with two names: refused without -f
    ok(silod.cli("tag", "busybox", "silo-e2e/mine:3"))
    r = silod.cli("rmi", busybox_id)
    assert r.returncode == 1 and "several names" in r.stderr
    assert ok(silod.cli("rmi", "silo-e2e/mine:3")) == "Untagged: silo-e2e/mine:3\n"
    with silod.client().events(since=0, types=["ImageTagged", "ImageUntagged"]) as stream:
        seen = [(e["Type"], e.get("Name"), e["Id"]) for e in (next(stream) for _ in range(4))]
    assert seen == [("ImageTagged", "silo-e2e/mine:2", busybox_id),
                    ("ImageUntagged", "silo-e2e/mine:2", busybox_id),
                    ("ImageTagged", "silo-e2e/mine:3", busybox_id),
                    ("ImageUntagged", "silo-e2e/mine:3", busybox_id)]


def test_rmi_is_refused_while_a_container_uses_the_image(silod: Silod, tmp_path: Path) -> None:
    tar = rootfs_tar(tmp_path / "r.tar", {})
    image_id = ok(silod.cli("import", str(tar), "silo-e2e/used:1")).strip()
    cid = ok(silod.cli("run", "-d", "silo-e2e/used:1", "sleep", "100")).strip()
    r = silod.cli("rmi", "silo-e2e/used:1")
    assert r.returncode == 1 and "in use by container" in r.stderr and cid in r.stderr
    r = silod.cli("rmi", image_id)
    assert r.returncode == 1 and "in use" in r.stderr
    # -f by name only takes the name away; the image stays for the container
    assert ok(silod.cli("rmi", "-f", "silo-e2e/used:1")) == "Untagged: silo-e2e/used:1\n"
    assert inspect_image(silod, image_id)["RepoTags"] == []
    assert ok(silod.cli("exec", cid, "echo", "still")) == "still\n"
    ok(silod.cli("rm", "-f", cid))
    assert ok(silod.cli("rmi", image_id)) == f"Deleted: {image_id}\n"


def test_prune(silod: Silod, tmp_path: Path) -> None:
    tar = rootfs_tar(tmp_path / "r.tar", {"x": "1"})
    image_id = ok(silod.cli("import", str(tar), "silo-e2e/dangling:1")).strip()
    ok(silod.cli("rmi", "-f", "silo-e2e/dangling:1"))       # deleted: nothing uses it
    image_id = ok(silod.cli("import", str(tar), "silo-e2e/dangling:1")).strip()
    ok(silod.cli("tag", image_id, "silo-e2e/other:1"))
    ok(silod.cli("rmi", "silo-e2e/dangling:1", "silo-e2e/other:1"))
    out = ok(silod.cli("image", "prune", "-f"))
    assert "Total reclaimed space: 0B" in out               # it was deleted with its last name
    ok(silod.cli("import", str(tar), "silo-e2e/unused:1"))
    cid = ok(silod.cli("create", "busybox", "true")).strip()
    out = ok(silod.cli("image", "prune", "-a", "-f"))
    assert "deleted: sha256:" in out and "Total reclaimed space:" in out
    assert [r[:2] for r in table(silod)] == [["busybox", "latest"]]   # in use: kept
    ok(silod.cli("rm", cid))


# -- archives --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_and_load_round_trip(silod: Silod, tmp_path: Path, fmt: str) -> None:
    tar = rootfs_tar(tmp_path / "r.tar", {"round": "trip\n"})
    image_id = ok(silod.cli("import", "-c", 'CMD ["cat", "/round"]', str(tar),
                            "silo-e2e/round:1")).strip()
    archive = tmp_path / "saved.tar"
    ok(silod.cli("save", "--format", fmt, "-o", str(archive), "silo-e2e/round:1"))
    assert archive.stat().st_size > 0 and tarfile.is_tarfile(archive)
    assert ok(silod.cli("rmi", "silo-e2e/round:1")).endswith(f"Deleted: {image_id}\n")
    assert ok(silod.cli("load", "-i", str(archive))) == "Loaded image: silo-e2e/round:1\n"
    assert inspect_image(silod, "silo-e2e/round:1")["Id"] == image_id
    assert ok(silod.cli("run", "--rm", "silo-e2e/round:1")) == "trip\n"
    # to stdout and back from stdin
    streamed = subprocess.run([str(SILO), "-H", silod.host,
                               "save", "silo-e2e/round:1"], capture_output=True, check=True)
    assert tarfile.is_tarfile(_write(tmp_path / "streamed.tar", streamed.stdout))
    ok(silod.cli("rmi", "silo-e2e/round:1"))
    r = subprocess.run([str(SILO), "-H", silod.host, "load"],
                       input=streamed.stdout, capture_output=True, check=False)
    assert r.returncode == 0, r.stderr
    assert inspect_image(silod, "silo-e2e/round:1")["Id"] == image_id


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_archives_are_refused_and_change_nothing(silod: Silod, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not an archive" * 100)
    before = table(silod)
    r = silod.cli("load", "-i", str(junk))
    assert r.returncode == 1 and str(junk) in r.stderr
    r = silod.cli("load", "-i", str(tmp_path / "missing.tar"))
    assert r.returncode == 1 and "missing.tar" in r.stderr
    r = silod.cli("save", "-o", "/dev/null", "busybox")
    assert r.returncode == 1 and "Path" in r.stderr
    assert table(silod) == before


# -- the scratch layer's cap -----------------------------------------------------------------

def test_storage_opt_size_caps_what_a_container_writes(silod: Silod) -> None:
    reason = probes.need_binary("mkfs.ext4")
    if reason:
        pytest.skip(reason)
    r = silod.cli("run", "--rm", "--storage-opt", "size=16m", "busybox", "sh", "-c",
                  "dd if=/dev/zero of=/small bs=1M count=4 2>/dev/null && echo fits")
    assert ok(r) == "fits\n"
    r = silod.cli("run", "--rm", "--storage-opt", "size=16m", "busybox", "sh", "-c",
                  "dd if=/dev/zero of=/big bs=1M count=64")
    assert r.returncode != 0
    assert "No space left on device" in r.stdout + r.stderr
    # without a cap the same write goes through
    r = silod.cli("run", "--rm", "busybox", "sh", "-c",
                  "dd if=/dev/zero of=/big bs=1M count=64 2>/dev/null && echo wrote")
    assert ok(r) == "wrote\n"
    r = silod.cli("run", "--rm", "--storage-opt", "size=1m", "busybox", "true")
    assert r.returncode == 125 and "ScratchSizeInMB" in r.stderr


# -- a registry ------------------------------------------------------------------------------

def test_push_then_pull_from_a_registry(silod: Silod, registry_plain: reg.Registry,
                                        tmp_path: Path) -> None:
    tar = rootfs_tar(tmp_path / "r.tar", {"from": "the registry\n"})
    image_id = ok(silod.cli("import", "-c", 'CMD ["cat", "/from"]', str(tar),
                            "silo-e2e/pushed:1")).strip()
    remote = f"{registry_plain.host}/silo-e2e/pushed:1"
    out = ok(silod.cli("push", "--insecure", "silo-e2e/pushed:1", remote))
    assert out.splitlines()[-1].startswith(f"{remote}: digest: sha256:")
    ok(silod.cli("rmi", "silo-e2e/pushed:1"))
    out = ok(silod.cli("pull", "--insecure", remote))
    lines = out.splitlines()
    assert lines[-1] == remote and "Status: Downloaded newer image for " + remote in lines
    assert any(line.endswith(": Complete") for line in lines)
    assert inspect_image(silod, remote)["Id"] == image_id
    assert ok(silod.cli("run", "--rm", remote)) == "the registry\n"
    # again: every layer is there already
    out = ok(silod.cli("pull", "--insecure", remote))
    assert "Status: Image is up to date for " + remote in out


def test_a_failed_pull_is_one_clear_line(silod: Silod, registry_plain: reg.Registry) -> None:
    r = silod.cli("pull", "--insecure", f"{registry_plain.host}/silo-e2e/none:1")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "silo-e2e/none" in r.stderr
    r = silod.cli("pull", "NOT/a REFERENCE")
    assert r.returncode == 1 and "Reference" in r.stderr
    assert [row[:2] for row in table(silod)] == [["busybox", "latest"]]


def test_credentials_and_a_ca_file(silod: Silod, registry_auth: reg.Registry,
                                   registry_tls: reg.Registry) -> None:
    assert registry_auth.credentials is not None
    user, password = registry_auth.credentials
    remote = f"{registry_auth.host}/silo-e2e/auth:1"
    ok(silod.cli("tag", "busybox", "silo-e2e/auth:1"))
    r = silod.cli("push", "--insecure", "silo-e2e/auth:1", remote)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr   # no credentials
    r = silod.cli("push", "--insecure", "-u", user, "--password-stdin", "silo-e2e/auth:1",
                  remote, input="wrong\n")
    assert r.returncode == 1 and registry_auth.host.split(":")[0] in r.stderr, r.stderr
    ok(silod.cli("push", "--insecure", "-u", user, "--password-stdin", "silo-e2e/auth:1",
                 remote, input=password + "\n"))
    ok(silod.cli("pull", "-q", "--insecure", "-u", user, "--password-stdin", remote,
                 input=password + "\n"))
    # TLS: the registry's certificate checks out against its CA, and not without it
    tls_remote = f"{registry_tls.host}/silo-e2e/tls:1"
    r = silod.cli("push", "busybox", tls_remote)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    ok(silod.cli("push", "--ca-file", str(registry_tls.ca_file), "busybox", tls_remote))
    out = ok(silod.cli("pull", "--ca-file", str(registry_tls.ca_file), tls_remote))
    assert out.splitlines()[-1] == tls_remote
    assert inspect_image(silod, tls_remote)["Id"] == inspect_image(silod, "busybox")["Id"]
