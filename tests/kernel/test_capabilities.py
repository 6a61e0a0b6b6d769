"""silo.kernel.capabilities against the running kernel.

Each test forks a child that changes its own capabilities and user the way the container init
does (drop_bounding, prepare_for_user_change, setuid, apply), then reports through a pipe,
either from Python or from a program it executes. The test process is never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from silo.kernel import capabilities, libc
from tests.kernel.forking import run_in_child

USER = 1000
PYTHON = "/usr/bin/python3"  # the test's own interpreter may sit where USER cannot read it
PR_GET_KEEPCAPS = 7
KILL, NET_BIND_SERVICE, NET_RAW = (capabilities.CAPS[n] for n in
                                   ("CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"))


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root"
    bounding = capabilities.current()["bounding"]
    for cap in (KILL, NET_BIND_SERVICE, NET_RAW, capabilities.CAPS["CAP_SETPCAP"]):
        if not bounding >> cap & 1:
            return f"{capabilities.names(1 << cap)[0]} is not in this machine's bounding set"
    return ""


pytestmark = [pytest.mark.kernel, pytest.mark.skipif(bool(_missing()), reason=_missing())]


def become_user(caps: dict[str, list[str]]) -> None:
    """The container init's sequence, for uid/gid USER."""
    capabilities.drop_bounding(caps)
    capabilities.prepare_for_user_change()
    os.setgroups([])
    os.setgid(USER)
    os.setuid(USER)
    capabilities.apply(caps)


def status_of(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def mask(*caps: int) -> int:
    return sum(1 << c for c in set(caps))


def test_non_root_keeps_exactly_the_configured_capabilities() -> None:
    caps = {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}

    def body() -> dict[str, Any]:
        become_user(caps)
        try:
            os.kill(1, 0)  # pid 1 belongs to root: only CAP_KILL lets USER signal it
            kill_init = "allowed"
        except PermissionError:
            kill_init = "denied"
        return {"caps": capabilities.current(), "uid": os.getuid(), "euid": os.geteuid(),
                "keepcaps": libc.prctl(PR_GET_KEEPCAPS), "kill_init": kill_init}

    status, out = run_in_child(body)
    report = json.loads(out)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report["caps"] == {"bounding": mask(KILL), "effective": mask(KILL),
                              "permitted": mask(KILL), "inheritable": 0, "ambient": 0}
    assert (report["uid"], report["euid"]) == (USER, USER)
    assert report["keepcaps"] == 0
    assert report["kill_init"] == "allowed"


def test_without_keep_caps_setuid_loses_them() -> None:
    # The control for prepare_for_user_change: without it, setuid empties the permitted set.
    def body() -> dict[str, Any]:
        capabilities.drop_bounding({"bounding": ["CAP_KILL"]})
        os.setgroups([])
        os.setgid(USER)
        os.setuid(USER)
        return {"caps": capabilities.current()}

    status, out = run_in_child(body)
    report = json.loads(out)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report["caps"]["permitted"] == 0


BIND_AND_REPORT = """
import socket, sys
s = socket.socket()
try:
    s.bind(("0.0.0.0", 80))
    bound = "yes"
except PermissionError:
    bound = "no"
with open("/proc/self/status") as f:
    status = f.read()
sys.stdout.write("Bound:\\t" + bound + "\\n" + status)
"""


@pytest.mark.skipif(not os.access(PYTHON, os.X_OK), reason=f"{PYTHON} is missing")
@pytest.mark.parametrize("ambient", [True, False])
def test_ambient_capabilities_survive_execve_as_non_root(ambient: bool) -> None:
    caps = {
        "bounding": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_KILL"],
        "permitted": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_KILL"],
        "effective": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_KILL"],
        "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        # CAP_KILL is not inheritable, so the kernel cannot make it ambient: left out.
        "ambient": ["CAP_NET_BIND_SERVICE", "CAP_KILL"] if ambient else [],
    }

    def body() -> None:
        libc.unshare(libc.CLONE_NEWNET)  # port 80 of a fresh network namespace is free
        become_user(caps)
        os.execv(PYTHON, [PYTHON, "-I", "-S", "-c", BIND_AND_REPORT])

    status, out = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, out
    st = status_of(out.decode())
    after_exec = mask(NET_BIND_SERVICE) if ambient else 0
    assert int(st["CapAmb"], 16) == after_exec
    assert int(st["CapEff"], 16) == after_exec
    assert int(st["CapPrm"], 16) == after_exec
    assert int(st["CapInh"], 16) == mask(NET_BIND_SERVICE, NET_RAW)
    assert int(st["CapBnd"], 16) == mask(NET_BIND_SERVICE, NET_RAW, KILL)
    assert st["Uid"].split()[:2] == [str(USER), str(USER)]
    assert st["Bound"] == ("yes" if ambient else "no")


@pytest.fixture
def setuid_root_cat() -> Iterator[str]:
    """A setuid-root copy of cat in a directory USER can reach (pytest's tmp dir is 0700)."""
    where = tempfile.mkdtemp(prefix="silo-caps-")
    try:
        os.chmod(where, 0o755)
        path = os.path.join(where, "cat")
        shutil.copy(shutil.which("cat") or "/bin/cat", path)
        os.chown(path, 0, 0)
        os.chmod(path, 0o4755)
        yield path
    finally:
        shutil.rmtree(where)


@pytest.mark.parametrize("no_new_privs", [True, False])
def test_setuid_root_program_regains_at_most_the_bounding_set(setuid_root_cat: str,
                                                              no_new_privs: bool) -> None:
    caps: dict[str, list[str]] = {"bounding": ["CAP_KILL"], "effective": [], "permitted": []}

    def body() -> None:
        become_user(caps)
        if no_new_privs:
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        os.execv(setuid_root_cat, [setuid_root_cat, "/proc/self/status"])

    status, out = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, out
    st = status_of(out.decode())
    euid = st["Uid"].split()[1]
    if no_new_privs:
        # no_new_privs: the setuid bit is ignored, nothing is regained
        assert euid == str(USER)
        assert int(st["CapEff"], 16) == 0
        assert int(st["CapPrm"], 16) == 0
    else:
        # a setuid-root program gets root's capabilities, cut down to the bounding set
        assert euid == "0"
        assert int(st["CapEff"], 16) == mask(KILL)
        assert int(st["CapPrm"], 16) == mask(KILL)
    assert int(st["CapBnd"], 16) == mask(KILL)


def test_root_without_capabilities_object_keeps_everything() -> None:
    before = capabilities.current()

    def body() -> dict[str, Any]:
        capabilities.drop_bounding(None)
        capabilities.apply(None)
        return {"caps": capabilities.current()}

    status, out = run_in_child(body)
    report = json.loads(out)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report["caps"] == before
