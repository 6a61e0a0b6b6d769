"""``spec``, ``features``, ``--version`` and the flags that ask for what silo-runtime does not
do: the answers containerd and podman read before they run anything."""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.kernel.conftest import Bundle, one_error_line, receive_fd, requires_runtime

pytestmark = [pytest.mark.kernel, requires_runtime]


def test_spec_writes_a_config_that_create_accepts(bundle: Bundle) -> None:
    bundle.ok("spec", "--bundle", str(bundle.path))
    spec = json.loads((bundle.path / "config.json").read_text())
    assert spec["root"]["path"] == "rootfs" and spec["process"]["terminal"] is True
    # As written: a terminal, so create needs a console socket to hand the pty master to.
    cid = bundle.new_id()
    path = str(bundle.tmp / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        bundle.ok("create", "--bundle", str(bundle.path), "--console-socket", path, cid)
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn:
            os.close(receive_fd(conn))
    st = bundle.state(cid)
    assert st["status"] == "created" and st["pid"] > 0
    bundle.ok("delete", cid)


def test_spec_refuses_to_overwrite(bundle: Bundle) -> None:
    config = bundle.path / "config.json"
    config.write_text('{"mine": true}')
    r = bundle.runtime("spec", "--bundle", str(bundle.path), log=True)
    one_error_line(r, "config.json", "exists")
    assert config.read_text() == '{"mine": true}'
    assert bundle.log_errors()


def test_spec_stdout_is_the_same_document(bundle: Bundle) -> None:
    printed = json.loads(bundle.ok("spec", "--stdout", "--bundle", str(bundle.path)))
    assert not (bundle.path / "config.json").exists()
    bundle.ok("spec", "--bundle", str(bundle.path))
    assert json.loads((bundle.path / "config.json").read_text()) == printed


def test_features(bundle: Bundle) -> None:
    f = json.loads(bundle.ok("features"))
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"].startswith("1.2")
    linux = f["linux"]
    assert set(linux["namespaces"]) >= {"pid", "network", "mount", "ipc", "uts", "user",
                                        "cgroup"}
    assert {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_KILL"} <= set(linux["capabilities"])
    assert all(c.startswith("CAP_") for c in linux["capabilities"])
    v1 = os.path.isdir("/sys/fs/cgroup/memory")
    assert linux["cgroup"]["v1"] is v1 and linux["cgroup"]["systemd"] is False
    assert linux["seccomp"]["enabled"] is True
    assert "SCMP_ACT_ERRNO" in linux["seccomp"]["actions"]
    assert "prestart" in f["hooks"] and "poststop" in f["hooks"]
    assert {"bind", "rbind", "ro", "nosuid"} <= set(f["mountOptions"])


@pytest.mark.parametrize("where", [["--systemd-cgroup", "list"], ["--systemd-cgroup",
                                                                  "create", "x"]])
def test_systemd_cgroup_is_refused_clearly(bundle: Bundle, where: list[str]) -> None:
    r = bundle.runtime(*where, log=True)
    one_error_line(r, "systemd")
    assert any("systemd" in e["msg"] for e in bundle.log_errors())
    bundle.assert_clean()


def test_version(bundle: Bundle) -> None:
    lines = bundle.ok("--version").splitlines()
    assert lines[0].startswith("silo-runtime version ")
    spec = [line.split(": ", 1)[1] for line in lines if line.startswith("spec: ")]
    assert spec == [json.loads(bundle.ok("features"))["ociVersionMax"]]


def test_help_lists_the_verbs(bundle: Bundle) -> None:
    out = bundle.ok("--help")
    for verb in ("create", "start", "state", "kill", "delete", "exec", "run", "features"):
        assert verb in out.split()
    r = bundle.runtime()
    assert r.returncode != 0 and "usage" in r.stdout + r.stderr


@pytest.mark.parametrize("verb", ["checkpoint", "restore"])
def test_checkpoint_and_restore_say_they_are_not_supported(bundle: Bundle, verb: str) -> None:
    cid = bundle.start()
    r = bundle.runtime(verb, cid, log=True)
    one_error_line(r, verb, "not supported")
    assert bundle.state(cid)["status"] == "running"
