"""containerd 1.6 + ctr + the runc v2 shim, driving the runtime under test (``--runc-binary``).

What a user of ``ctr`` sees: output and exit status of ``run`` and ``task exec`` (with and
without a tty), signals from ``task kill``, ``pause``/``resume`` and ``delete``. Each test gets its
own containerd; its teardown fails the test if a process, mount or cgroup was left behind.
"""

from __future__ import annotations

import subprocess

import peers
import pytest

pytestmark = pytest.mark.e2e

IMAGE = peers.IMAGE_REF


def start_detached(ctrd: peers.Containerd, cid: str, *cmd: str) -> None:
    peers.run(ctrd.run_argv(IMAGE, cid, *cmd, flags=["--detach", "--null-io"]))
    peers.wait_for(lambda: ctrd.task_status(cid) == "RUNNING", f"{cid} to run")


def remove(ctrd: peers.Containerd, cid: str) -> None:
    ctrd.ctr("tasks", "kill", "--signal", "SIGKILL", cid, check=False)
    peers.wait_for(lambda: ctrd.task_status(cid) in ("STOPPED", None), f"{cid} to stop")
    ctrd.ctr("tasks", "delete", cid)
    ctrd.ctr("containers", "delete", cid)


def test_run_captures_output_and_propagates_exit_status(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("run")
    proc = peers.run(containerd.run_argv(
        IMAGE, cid, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3",
        flags=["--rm"]), check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "to-stdout\n", "to-stderr\n")


def test_run_rm_leaves_nothing(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("rm")
    proc = peers.run(containerd.run_argv(IMAGE, cid, "true", flags=["--rm"]))
    assert proc.returncode == 0
    assert containerd.ctr("containers", "ls", "-q").stdout.split() == []
    assert containerd.ctr("tasks", "ls", "-q").stdout.split() == []
    assert cid not in containerd.ctr("snapshots", "ls").stdout
    runtime_root = containerd.runc_root / containerd.namespace
    state = peers.run([containerd.runtime, "--root", str(runtime_root), "state", cid],
                      check=False)
    assert state.returncode != 0, f"the runtime still knows {cid}: {state.stdout}"
    assert peers.cgroup_dirs(f"{containerd.namespace}/{cid}") == []


def test_run_with_tty(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("tty")
    status, out = peers.run_in_pty(containerd.run_argv(
        IMAGE, cid, "sh", "-c", "tty; stty size >/dev/null && echo has-size; exit 4",
        flags=["--rm", "--tty"]))
    text = out.decode(errors="replace")
    assert status == 4, text
    assert "/dev/pts/0" in text
    assert "has-size" in text


def test_run_with_tty_passes_input_through(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("stdin")
    # "$((6*7))" is only 42 once a shell in the container has run it; the pty echoes the input.
    status, out = peers.run_in_pty(
        containerd.run_argv(IMAGE, cid, "sh", flags=["--rm", "--tty"]),
        input=b"echo answer=$((6*7))\nexit 6\n")
    text = out.decode(errors="replace")
    assert status == 6, text
    assert "answer=42" in text


def test_task_exec_without_tty(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("exec")
    start_detached(containerd, cid, "sleep", "600")
    try:
        proc = containerd.ctr("tasks", "exec", "--exec-id", "e1", "--fifo-dir",
                              str(containerd.fifo_dir), cid, "sh", "-c",
                              "echo in-exec; echo exec-err >&2; exit 5", check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (5, "in-exec\n", "exec-err\n")
        # The exec joined the container: it sees the init as pid 1.
        proc = containerd.ctr("tasks", "exec", "--exec-id", "e2", "--fifo-dir",
                              str(containerd.fifo_dir), cid, "cat", "/proc/1/cmdline")
        assert proc.stdout.split("\0")[:2] == ["sleep", "600"]
    finally:
        remove(containerd, cid)


def test_task_exec_with_tty(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("exect")
    start_detached(containerd, cid, "sleep", "600")
    try:
        status, out = peers.run_in_pty(containerd.ctr_argv(
            "tasks", "exec", "--tty", "--exec-id", "t1", "--fifo-dir",
            str(containerd.fifo_dir), cid, "sh", "-c", "tty; exit 2"))
        text = out.decode(errors="replace")
        assert status == 2, text
        assert "/dev/pts/" in text
    finally:
        remove(containerd, cid)


def _attached_run(ctrd: peers.Containerd, cid: str, script: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(ctrd.run_argv(IMAGE, cid, "sh", "-c", script, flags=["--rm"]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", line + (proc.stderr.read() if proc.stderr else "")
    return proc


def test_task_kill_delivers_the_signal(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("kill")
    proc = _attached_run(containerd, cid,
                         'trap "echo got-USR1; exit 7" USR1; echo ready; '
                         "while :; do sleep 0.1; done")
    try:
        containerd.ctr("tasks", "kill", "--signal", "SIGUSR1", cid)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (7, "got-USR1\n")


def test_task_kill_sigkill(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("kill9")
    proc = _attached_run(containerd, cid, "echo ready; exec sleep 600")
    try:
        containerd.ctr("tasks", "kill", "--signal", "SIGKILL", cid)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + 9


def test_pause_and_resume(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("pause")
    start_detached(containerd, cid, "sleep", "600")
    try:
        containerd.ctr("tasks", "pause", cid)
        assert containerd.task_status(cid) == "PAUSED"
        containerd.ctr("tasks", "resume", cid)
        assert containerd.task_status(cid) == "RUNNING"
        # Resumed for real: a new process can run in it.
        proc = containerd.ctr("tasks", "exec", "--exec-id", "p1", "--fifo-dir",
                              str(containerd.fifo_dir), cid, "echo", "alive", timeout=20)
        assert proc.stdout == "alive\n"
    finally:
        remove(containerd, cid)


def test_delete(containerd: peers.Containerd) -> None:
    cid = peers.unique_id("del")
    start_detached(containerd, cid, "sleep", "600")
    # A running task cannot be deleted without --force ...
    assert containerd.ctr("tasks", "delete", cid, check=False).returncode != 0
    containerd.ctr("tasks", "kill", "--signal", "SIGKILL", cid)
    peers.wait_for(lambda: containerd.task_status(cid) == "STOPPED", f"{cid} to stop")
    # ... a stopped one can; then the container record goes too.
    containerd.ctr("tasks", "delete", cid)
    assert containerd.task_status(cid) is None
    containerd.ctr("containers", "delete", cid)
    assert containerd.ctr("containers", "ls", "-q").stdout.split() == []
    assert peers.cgroup_dirs(f"{containerd.namespace}/{cid}") == []
