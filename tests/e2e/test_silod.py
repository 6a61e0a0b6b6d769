"""silod end to end: a real silod on its own directories and cgroup parent, driven by the real
``silo`` command (and, for waits, ``silo.client``), with real conmon and silo-runtime
containers from the embedded busybox image. Every test's teardown removes all containers
through the API and fails the test if anything was left on the host.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import pytest
from silod_host import SILO, Silod, kernel_view

pytestmark = pytest.mark.e2e

LOOP = "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done"


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def inspect(silod: Silod, ref: str) -> dict:
    docs = json.loads(ok(silod.cli("inspect", ref)))
    assert isinstance(docs, list) and len(docs) == 1
    return docs[0]


def wait_cli(silod: Silod, ref: str) -> int:
    """``silo wait``: prints the exit code and, as its own exit status, exits with it."""
    r = silod.cli("wait", ref)
    assert r.stdout.strip() == str(r.returncode), (r.stdout, r.stderr)
    return r.returncode


def wait_until(cond, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# -- run --------------------------------------------------------------------------------------


def test_run_rm_prints_output_and_exits_with_the_containers_code(silod: Silod) -> None:
    r = silod.cli("run", "--rm", "busybox", "sh", "-c", "echo hi; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "hi\n"
    assert ok(silod.cli("ps", "-a", "-q")).strip() == ""
    assert silod.leftovers() == {}


def test_detached_container_through_its_whole_life(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "--name", "web", "busybox", "sh", "-c", LOOP)).strip()
    assert len(cid) >= 12

    ps = ok(silod.cli("ps"))
    assert "web" in ps and cid[:12] in ps

    wait_until(lambda: "line2" in ok(silod.cli("logs", "web")), what="web's output")
    tail = ok(silod.cli("logs", "--tail", "1", "web")).splitlines()
    assert len(tail) == 1 and tail[0].startswith("line")

    doc = inspect(silod, "web")
    assert doc["Id"] == cid and doc["Name"] == "web" and doc["State"] == "Running"
    assert doc["Configuration"]["Container"]["Linux"]["Process"]["CommandArgs"][-1] == LOOP
    pid = doc["Pid"]
    assert alive(pid) and pid in silod.cgroup_pids(cid)

    stats = ok(silod.cli("stats", "--no-stream"))
    assert "web" in stats and cid[:12] in stats

    top = ok(silod.cli("top", "web"))
    assert str(pid) in top and "while true" in top

    assert ok(silod.cli("pause", "web")).strip() == "web"
    assert inspect(silod, "web")["State"] == "Paused"
    freezer = silod.cgroup_dir("freezer", cid) / "freezer.state"
    if freezer.exists():
        assert freezer.read_text().strip() == "FROZEN"
    assert ok(silod.cli("unpause", "web")).strip() == "web"
    assert inspect(silod, "web")["State"] == "Running"

    ok(silod.cli("update", "--memory", "32m", "web"))
    limit = silod.cgroup_dir("memory", cid) / "memory.limit_in_bytes"
    assert int(limit.read_text()) == 32 * 1024 * 1024
    assert inspect(silod, "web")["Configuration"]["Container"]["Memory"]["SizeInMB"] == 32

    ok(silod.cli("stop", "-t", "1", "web"))
    doc = inspect(silod, "web")
    assert doc["State"] == "Stopped" and doc["ExitCode"] in (137, 143)
    assert not alive(pid)
    assert ok(silod.cli("ps", "-q")).strip() == ""
    ps_a = ok(silod.cli("ps", "-a"))
    assert "web" in ps_a and f"Exited ({doc['ExitCode']})" in ps_a
    assert wait_cli(silod, "web") == doc["ExitCode"]

    assert ok(silod.cli("rm", "web")).strip() == "web"
    assert ok(silod.cli("ps", "-a", "-q")).strip() == ""
    assert silod.leftovers() == {}


def test_memory_limit_reaches_the_cgroup(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "--memory", "8m", "busybox", "sleep", "100")).strip()
    limit = silod.cgroup_dir("memory", cid) / "memory.limit_in_bytes"
    assert int(limit.read_text()) == 8 * 1024 * 1024
    assert inspect(silod, cid)["Configuration"]["Container"]["Memory"]["SizeInMB"] == 8
    ok(silod.cli("rm", "-f", cid))


def test_wait_prints_the_exit_code(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "busybox", "sh", "-c", "sleep 0.3; exit 5")).strip()
    assert wait_cli(silod, cid) == 5
    doc = inspect(silod, cid)
    assert doc["State"] == "Stopped" and doc["ExitCode"] == 5
    assert doc["ExitType"] == "UnexpectedExit"


def test_kill_sends_a_signal(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "busybox", "sleep", "100")).strip()
    ok(silod.cli("kill", cid))
    assert wait_cli(silod, cid) == 137


def test_exec_detached_runs_in_the_container(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "busybox", "sleep", "100")).strip()
    ok(silod.cli("exec", "-d", cid, "sh", "-c", "touch /tmp/was-here"))
    rootfs = silod.run / "bundles" / cid / "rootfs"
    wait_until(lambda: (rootfs / "tmp" / "was-here").exists(), what="the exec's file")


def test_exec_shows_a_quick_commands_whole_output_and_exit_code(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "busybox", "sleep", "100")).strip()
    r = silod.cli("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")


# -- refusals ---------------------------------------------------------------------------------


def test_a_bad_flag_is_125(silod: Silod) -> None:
    r = silod.cli("run", "--no-such-flag", "busybox", "true")
    assert r.returncode == 125
    assert "--no-such-flag" in r.stderr


def test_an_unknown_image_is_125(silod: Silod) -> None:
    r = silod.cli("run", "--rm", "no-such-image", "true")
    assert r.returncode == 125
    assert "no-such-image" in r.stderr
    assert ok(silod.cli("ps", "-a", "-q")).strip() == ""


def test_a_missing_command_is_127(silod: Silod) -> None:
    r = silod.cli("run", "--rm", "busybox", "/no/such/command")
    assert r.returncode == 127
    assert "/no/such/command" in r.stderr
    assert ok(silod.cli("ps", "-a", "-q")).strip() == ""


def test_hyperv_isolation_is_refused_clearly(silod: Silod) -> None:
    r = silod.cli("run", "--rm", "--isolation", "hyperv", "busybox", "true")
    assert r.returncode == 125
    assert "hyperv" in r.stderr and "process" in r.stderr
    assert ok(silod.cli("ps", "-a", "-q")).strip() == ""


# -- events -----------------------------------------------------------------------------------


def test_events_show_a_short_containers_life(silod: Silod) -> None:
    since = str(int(time.time()) - 1)  # replayed from before, however late it subscribes
    events = subprocess.Popen([str(SILO), "-H", silod.host, "events", "--since", since],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert events.stdout is not None
    out = b""
    try:
        cid = ok(silod.cli("run", "-d", "busybox", "true")).strip()
        assert wait_cli(silod, cid) == 0
        deadline = time.monotonic() + 15
        while b"SystemExited " + cid.encode() not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([events.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(events.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        events.send_signal(signal.SIGINT)
        try:
            rest, err = events.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            events.kill()
            rest, err = events.communicate(timeout=10)
    text = (out + rest).decode(errors="replace")
    mine = [line.split()[1] for line in text.splitlines() if cid in line]
    assert mine[:3] == ["SystemCreated", "SystemStarted", "SystemExited"], (text, err)


# -- silod restarts ---------------------------------------------------------------------------


def test_a_running_container_survives_a_crash_of_silod(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "--name", "long", "busybox", "sleep", "1000")).strip()
    pid = inspect(silod, cid)["Pid"]
    assert alive(pid)

    silod.kill9()
    time.sleep(0.3)
    assert alive(pid), "the container died with silod"
    assert pid in silod.cgroup_pids(cid)

    silod.start()
    doc = inspect(silod, "long")
    assert doc["State"] == "Running" and doc["Pid"] == pid
    assert kernel_view(silod, doc) is None
    assert "long" in ok(silod.cli("ps"))

    ok(silod.cli("stop", "-t", "1", "long"))
    doc = inspect(silod, "long")
    assert doc["State"] == "Stopped" and doc["ExitCode"] in (137, 143)
    assert not alive(pid)
    ok(silod.cli("rm", "long"))


def test_a_container_that_exits_while_silod_is_down_is_stopped_after(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "busybox", "sh", "-c", "sleep 0.5; exit 7")).strip()
    pid = inspect(silod, cid)["Pid"]
    silod.kill9()
    wait_until(lambda: not alive(pid), what="the container's exit")
    wait_until(lambda: not silod.monitors(), what="conmon to record the exit and leave")
    silod.start()
    doc = inspect(silod, cid)
    assert doc["State"] == "Stopped"
    assert doc["ExitCode"] == 7
    assert wait_cli(silod, cid) == 7
    assert silod.monitors() == {}


def test_a_stopped_containers_exit_code_survives_a_restart(silod: Silod) -> None:
    cid = ok(silod.cli("run", "-d", "busybox", "sh", "-c", "exit 9")).strip()
    assert wait_cli(silod, cid) == 9
    silod.kill9()
    silod.start()
    assert inspect(silod, cid)["ExitCode"] == 9
    silod.stop()
    silod.start()
    assert inspect(silod, cid)["ExitCode"] == 9
    assert os.path.isdir(silod.run / "bundles" / cid)
