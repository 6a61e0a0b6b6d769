"""silo-runtime's launcher and its warm interpreter (src/silo/runtime/zygote.py): the small
verbs answered through the zygote must be indistinguishable from a fresh interpreter's, and
every call the zygote must not take (other namespaces, another user) falls back to one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.kernel.conftest import RUNTIME, Bundle, cgroup_dir

pytestmark = pytest.mark.kernel

FRESH = {**os.environ, "SILO_RUNTIME_NO_ZYGOTE": "1"}


def _launcher_is_c() -> str | None:
    with open(RUNTIME, "rb") as f:
        return None if f.read(4) == b"\x7fELF" else "silo-runtime is the Python launcher here " \
                                                    "(no C compiler at setup): no zygote"


def _zygotes() -> list[int]:
    """Pids of running zygotes of this launcher."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if b"--zygote-serve" in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


@pytest.fixture(autouse=True)
def _need_c_launcher() -> None:
    reason = _launcher_is_c()
    if reason:
        pytest.skip(reason)


def both(bundle: Bundle, *args: str, cwd: str | None = None) -> tuple[
        subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """The same call through the zygote (the launcher's default) and in a fresh interpreter."""
    glob = ["--root", str(bundle.state_dir)]
    warm = subprocess.run([RUNTIME, *glob, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)
    fresh = subprocess.run([RUNTIME, *glob, *args], capture_output=True, text=True, cwd=cwd,
                           env=FRESH, timeout=60)
    return warm, fresh


def test_state_list_and_errors_match_a_fresh_interpreter(bundle: Bundle) -> None:
    cid = bundle.start()
    bundle.ok("state", cid)                  # starts a zygote if none runs yet
    assert _zygotes(), "no zygote is running after a small verb"
    for args in (("state", cid), ("list", "--format", "json"), ("state", "no-such-box"),
                 ("kill", "no-such-box", "TERM"), ("delete", "no-such-box"), ("features",)):
        warm, fresh = both(bundle, *args)
        assert (warm.returncode, warm.stdout, warm.stderr) == \
            (fresh.returncode, fresh.stdout, fresh.stderr), args
    assert json.loads(bundle.ok("state", cid))["status"] == "running"
    bundle.ok("kill", cid, "KILL")
    bundle.wait_status(cid, "stopped")
    bundle.ok("delete", cid)
    assert bundle.runtime("state", cid).returncode == 1


def test_the_verb_runs_in_the_callers_cwd_umask_and_env(bundle: Bundle, tmp_path: Path) -> None:
    bundle.ok("list")
    log = "relative.log"
    script = f"umask 027; SILO_T=1 exec {RUNTIME} --root {bundle.state_dir} " \
             f"--log {log} --log-format json state no-such-box"
    r = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "no-such-box" in r.stderr
    written = tmp_path / log
    assert written.exists(), "the log was not written in the caller's cwd"
    assert written.stat().st_mode & 0o777 == 0o640, oct(written.stat().st_mode)
    assert json.loads(written.read_text().splitlines()[-1])["level"] == "error"


def test_stdin_reaches_the_verb(bundle: Bundle) -> None:
    cid = bundle.start()
    r = subprocess.run([RUNTIME, "--root", str(bundle.state_dir), "update", "--resources", "-",
                        cid], input='{"pids": {"limit": 77}}', capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert (cgroup_dir("pids", cid) / "pids.max").read_text().strip() == "77"


def test_a_caller_in_another_mount_namespace_gets_a_fresh_interpreter(bundle: Bundle) -> None:
    """The zygote would see the wrong /run (and the wrong mounts): it refuses, the launcher
    runs the verb itself, and the answer is right for the caller's namespace."""
    cid = bundle.start()
    bundle.ok("state", cid)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs none {bundle.state_dir} && "
                        f"{RUNTIME} --root {bundle.state_dir} state {cid}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
    assert json.loads(bundle.ok("state", cid))["status"] == "running"


def test_exit_status_and_stdio_of_a_verb_that_fails_midway(bundle: Bundle) -> None:
    cid = bundle.create()
    warm = bundle.runtime("pause", cid)        # created, not running: refused
    assert warm.returncode == 1 and cid in warm.stderr
    assert len(warm.stderr.strip().splitlines()) == 1


def _stop_zygotes() -> None:
    for pid in _zygotes():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 10
    while _zygotes() and time.monotonic() < end:
        time.sleep(0.02)


def test_the_zygote_leaves_the_cgroup_of_the_call_that_started_it(bundle: Bundle) -> None:
    """It outlives that call: staying in the caller's cgroup would keep the caller's owner
    (a shim, a test) from removing it."""
    _stop_zygotes()
    cg = Path("/sys/fs/cgroup/pids") / f"silo-zygote-test-{os.getpid()}"
    if not cg.parent.is_dir():
        pytest.skip("no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids")
    cg.mkdir()
    try:
        subprocess.run(["sh", "-c", f"echo $$ > {cg}/cgroup.procs && exec {RUNTIME} "
                        f"--root {bundle.state_dir} list"], check=True, capture_output=True,
                       timeout=60)
        end = time.monotonic() + 10
        while not _zygotes() and time.monotonic() < end:
            time.sleep(0.02)
        assert _zygotes(), "the call did not start a zygote"
        end = time.monotonic() + 10
        while (cg / "cgroup.procs").read_text().strip() and time.monotonic() < end:
            time.sleep(0.02)
        assert not (cg / "cgroup.procs").read_text().strip()
    finally:
        cg.rmdir()
