"""podman 4.3 + conmon, driving the runtime under test (``podman --runtime PATH``).

What a podman user sees: output and exit code of ``run`` (also with ``-it``), ``exec``, ``stop``
with its timeout, ``update`` of memory and CPU limits (checked in the kernel's cgroup files),
and ``rm``. Each test gets its own podman storage; teardown fails the test if a process,
mount, cgroup or network namespace was left behind.
"""

from __future__ import annotations

import time

import peers
import pytest

pytestmark = pytest.mark.e2e

IMAGE = peers.IMAGE_REF


def start_detached(pm: peers.Podman, *cmd: str) -> str:
    cid = pm.podman("run", "--detach", "--name", peers.unique_id("pm"), IMAGE, *cmd).stdout
    return cid.strip()


def state(pm: peers.Podman, cid: str) -> dict[str, object]:
    data = pm.inspect(cid)["State"]
    assert isinstance(data, dict)
    return data


def wait_logs(pm: peers.Podman, cid: str, text: str) -> None:
    peers.wait_for(lambda: text in pm.podman("logs", cid).stdout, f"{text!r} in logs of {cid}")


def cgroup_value(relative: str, *names: str) -> str:
    """The first of ``names`` found in cgroup ``relative`` of any hierarchy (v1 or v2)."""
    for directory in peers.cgroup_dirs(relative):
        for name in names:
            if (directory / name).exists():
                return (directory / name).read_text().strip()
    raise AssertionError(f"none of {names} in cgroup {relative}")


def test_run_captures_output_and_propagates_exit_code(podman: peers.Podman) -> None:
    proc = podman.podman("run", "--rm", IMAGE, "sh", "-c",
                         "echo to-stdout; echo to-stderr >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "to-stdout\n", "to-stderr\n")


def test_run_interactive_tty(podman: peers.Podman) -> None:
    # "$((6*7))" is only 42 once a shell in the container has run it; the pty echoes the input.
    status, out = peers.run_in_pty(
        podman.argv("run", "--rm", "--interactive", "--tty", IMAGE, "sh"),
        input=b"tty; echo answer=$((6*7))\nexit 6\n", env=podman.env)
    text = out.decode(errors="replace")
    assert status == 6, text
    assert "/dev/pts/0" in text
    assert "answer=42" in text


def test_exec(podman: peers.Podman) -> None:
    cid = start_detached(podman, "sleep", "600")
    proc = podman.podman("exec", cid, "sh", "-c", "echo in-exec; echo exec-err >&2; exit 5",
                         check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (5, "in-exec\n", "exec-err\n")
    # The exec joined the container: it sees the init as pid 1.
    assert podman.podman("exec", cid, "cat", "/proc/1/cmdline").stdout.split("\0")[:2] == [
        "sleep", "600"]
    status, out = peers.run_in_pty(
        podman.argv("exec", "--interactive", "--tty", cid, "sh", "-c", "tty; exit 2"),
        env=podman.env)
    text = out.decode(errors="replace")
    assert status == 2, text
    assert "/dev/pts/" in text


def test_stop_signals_then_kills_after_the_timeout(podman: peers.Podman) -> None:
    # sleep as pid 1 of a pid namespace has no handler, so SIGTERM is ignored: podman must
    # fall back to SIGKILL once the timeout has passed.
    stubborn = start_detached(podman, "sleep", "600")
    started = time.monotonic()
    podman.podman("stop", "--time", "1", stubborn)
    elapsed = time.monotonic() - started
    st = state(podman, stubborn)
    assert (st["Status"], st["ExitCode"]) == ("exited", 128 + 9)
    assert elapsed >= 1

    polite = start_detached(podman, "sh", "-c",
                            'trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done')
    wait_logs(podman, polite, "ready")
    started = time.monotonic()
    podman.podman("stop", "--time", "30", polite)
    assert time.monotonic() - started < 15
    st = state(podman, polite)
    assert (st["Status"], st["ExitCode"]) == ("exited", 7)


def test_update_memory_and_cpus(podman: peers.Podman) -> None:
    cid = start_detached(podman, "sleep", "600")
    podman.podman("update", "--memory", "64m", "--cpus", "0.5", cid)
    cgroup = f"libpod_parent/libpod-{cid}"
    assert cgroup_value(cgroup, "memory.limit_in_bytes", "memory.max") == str(64 << 20)
    quota = cgroup_value(cgroup, "cpu.cfs_quota_us", "cpu.max").split()[0]
    period = cgroup_value(cgroup, "cpu.cfs_period_us", "cpu.max").split()[-1]
    assert int(quota) / int(period) == 0.5
    # The container still runs after the update.
    assert podman.podman("exec", cid, "echo", "alive").stdout == "alive\n"


def test_rm(podman: peers.Podman) -> None:
    stopped = start_detached(podman, "sleep", "600")
    podman.podman("stop", "--time", "0", stopped)
    podman.podman("rm", stopped)
    running = start_detached(podman, "sleep", "600")
    assert podman.podman("rm", running, check=False).returncode != 0  # running: needs --force
    podman.podman("rm", "--force", "--time", "0", running)

    assert podman.podman("ps", "--all", "--quiet").stdout.split() == []
    for cid in (stopped, running):
        proc = peers.run([podman.runtime, "state", cid], check=False)
        assert proc.returncode != 0, f"the runtime still knows {cid}: {proc.stdout}"
        assert peers.cgroup_dirs(f"libpod_parent/libpod-{cid}") == []
