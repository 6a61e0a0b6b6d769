"""A real silod on directories of its own, for the end-to-end tests of the compute service.

:class:`Silod` starts ``.venv/bin/silod --foreground`` with its own data dir, run dir (socket,
bundles, runtime state) and cgroup parent ``/silo-test-<hex>``, waits until its API answers,
kills it (SIGKILL, as a crash) or stops it, and drives the real ``silo`` command against it.
:meth:`Silod.finish` removes every container through the API, stops silod and returns what was
left on the host (monitors, mounts, cgroups, runtime state, bundles, scratch), after removing
it, so that a leak fails its test instead of poisoning the next one.

It never touches the host's own silod (``/run/silo/silod.sock``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from silo.client import Client
from silo.errors import SiloError

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # tests/e2e is not a package: tests.probes needs the repo
    sys.path.insert(0, str(REPO))

from tests import probes  # noqa: E402

SILOD = REPO / ".venv" / "bin" / "silod"
SILO = REPO / ".venv" / "bin" / "silo"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def missing() -> str | None:
    """Why a real silod cannot run here, or None."""
    if not SILOD.exists() or not SILO.exists():
        return ".venv/bin/silod or .venv/bin/silo is missing: run scripts/setup"
    return probes.need_all(probes.need_root(), probes.need_runtime(),
                           probes.need_binary("conmon"), probes.need_busybox_image())



def conmons_mentioning(path: Path | str) -> dict[int, str]:
    """conmon processes whose command line names ``path``: pid -> command line."""
    out: dict[int, str] = {}
    needle = str(path).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"conmon" and any(needle in a for a in argv):
            out[int(entry)] = b" ".join(argv).decode(errors="replace")
    return out

class Silod:
    def __init__(self, top: Path) -> None:
        self.top = top
        self.data = top / "data"
        self.run = top / "run"
        self.sock = self.run / "silod.sock"
        self.host = f"unix://{self.sock}"
        self.tag = f"silo-test-{uuid.uuid4().hex[:12]}"
        self.cgroup_parent = "/" + self.tag
        # Its own names for interfaces, netns files and nft tables: a start rebuilds the
        # network and removes what carries its prefix, so it must never share one.
        self.network_prefix = "t" + uuid.uuid4().hex[:4]
        self.log_path = top / "silod.log"
        self.proc: subprocess.Popen[bytes] | None = None
        (self.data / "images").mkdir(parents=True)
        self.run.mkdir(parents=True)
        os.symlink(probes.BUSYBOX_IMAGE, self.data / "images" / "busybox")

    # -- the daemon ---------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None, "silod is already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(SILOD), "--foreground", "--data-dir", str(self.data), "--run-dir",
                 str(self.run), "--cgroup-parent", self.cgroup_parent, "--log-level", "debug",
                 "--network-prefix", self.network_prefix],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        client = self.client(timeout=2.0)
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise AssertionError(f"silod exited with {code} before serving:\n{self.log()}")
            try:
                client.system_info()
                return
            except SiloError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"silod did not serve in {timeout:g}s:\n{self.log()}")
            time.sleep(0.02)

    def kill9(self) -> None:
        """SIGKILL silod, as a crash would end it; its containers keep running."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        quiet = ('"GET /v1/compute-systems HTTP', '"GET /v1/system/info HTTP')
        return "\n".join(line for line in lines if not any(q in line for q in quiet))[-8000:]

    def client(self, timeout: float | None = 30.0) -> Client:
        return Client(self.host, timeout=timeout)

    def cli(self, *args: str, timeout: float = 60.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``silo -H unix://SOCK ARGS...``: exit status, stdout, stderr."""
        return subprocess.run([str(SILO), "-H", self.host, *args], capture_output=True,
                              text=True, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              check=False)

    # -- the host as the kernel sees it -------------------------------------------------------

    def cgroup_dir(self, controller: str, system_id: str = "") -> Path:
        base = CGROUP_ROOT / controller / self.tag
        return base / system_id if system_id else base

    def cgroup_children(self) -> set[str]:
        """Ids of the containers' cgroups under the test's parent, in any hierarchy."""
        found: set[str] = set()
        for parent in CGROUP_ROOT.glob(f"*/{self.tag}"):
            with contextlib.suppress(OSError):
                found.update(e.name for e in os.scandir(parent) if e.is_dir())
        return found

    def cgroup_pids(self, system_id: str) -> set[int]:
        pids: set[int] = set()
        for procs in CGROUP_ROOT.glob(f"*/{self.tag}/{system_id}/cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in procs.read_text().split())
        return pids

    def monitors(self) -> dict[int, str]:
        """conmon processes whose command line names this silod's run dir: pid -> cmdline."""
        return conmons_mentioning(self.run)

    def mounts(self) -> list[str]:
        """Mount points under this silod's directories."""
        tops = (str(self.top) + "/",)
        out = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = _unescape(line.split()[4])
                if point.startswith(tops):
                    out.append(point)
        return out

    def runtime_states(self) -> list[str]:
        d = self.run / "runtime"
        return sorted(e.name for e in d.iterdir() if e.is_dir()) if d.is_dir() else []

    def bundles(self) -> list[str]:
        d = self.run / "bundles"
        return sorted(os.listdir(d)) if d.is_dir() else []

    def scratches(self) -> list[str]:
        d = self.data / "scratch"
        return sorted(os.listdir(d)) if d.is_dir() else []

    def leftovers(self, known: set[str] | None = None) -> dict[str, Any]:
        """What is on the host for ids not in ``known``, by kind (empty kinds omitted)."""
        known = known or set()
        found: dict[str, Any] = {
            "monitors": {p: c for p, c in self.monitors().items()
                         if not any(k in c for k in known)},
            "mounts": [m for m in self.mounts() if not any(k in m for k in known)],
            "cgroups": sorted(self.cgroup_children() - known),
            "runtime state": [s for s in self.runtime_states() if s not in known],
            "bundles": [b for b in self.bundles() if b not in known],
            "scratch": [s for s in self.scratches() if s not in known],
        }
        return {k: v for k, v in found.items() if v}

    # -- teardown -----------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Remove every container through the API, stop silod, and return (then remove) what
        is left on the host. An error of the API's removal is reported too."""
        problems: dict[str, Any] = {}
        try:
            if not self.running:
                self.proc = None
                self.start()
            client = self.client(timeout=60.0)
            for s in client.list_systems():
                try:
                    client.delete(s["Id"], force=True)
                except SiloError as err:
                    problems.setdefault("delete failed", []).append(f"{s['Id']}: {err}")
        except (SiloError, AssertionError) as err:
            problems["silod"] = str(err)
        finally:
            self.stop()
        problems.update(self.leftovers())
        self._scrub()
        return problems

    def _scrub(self) -> None:
        """Remove by force whatever is left: processes, mounts, cgroups, and the network's
        interfaces, netns files and nft tables (silod leaves them for its containers)."""
        from silo.network.datapath import DataPath

        datapath = DataPath(prefix=self.network_prefix, run_dir=str(self.run))
        try:
            datapath.teardown()
        except SiloError:
            pass
        finally:
            with contextlib.suppress(AttributeError):
                datapath.close()
        for pid in self.monitors():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for sid in self.cgroup_children():
            for pid in self.cgroup_pids(sid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        # thaw frozen leftovers so that they can die
        for state in CGROUP_ROOT.glob(f"freezer/{self.tag}/*/freezer.state"):
            with contextlib.suppress(OSError):
                state.write_text("THAWED")
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        deadline = time.monotonic() + 5
        for parent in CGROUP_ROOT.glob(f"*/{self.tag}"):
            for child in [p for p in parent.iterdir() if p.is_dir()] + [parent]:
                while True:
                    try:
                        child.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.05)
        shutil.rmtree(self.run / "runtime", ignore_errors=True)


def _unescape(field: str) -> str:
    """A mountinfo field, its octal escapes (\\040 ...) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def kernel_view(silod: Silod, summary: dict[str, Any]) -> str | None:
    """Whether the kernel agrees with one system's Summary; None when it does, else why not."""
    sid, state, pid = summary["Id"], summary["State"], summary.get("Pid", 0)
    in_cgroup = silod.cgroup_pids(sid)
    if state in ("Running", "Paused"):
        if not pid or not _alive(pid):
            return f"{sid} is {state} but its pid {pid} is not alive"
        if pid not in in_cgroup:
            return f"{sid} is {state} but its pid {pid} is not in its cgroup ({in_cgroup})"
    elif state == "Created":
        if pid and not _alive(pid):
            return f"{sid} is Created but its pid {pid} is not alive"
    elif state == "Stopped":
        alive = {p for p in in_cgroup if _alive(p)}
        if alive:
            return f"{sid} is Stopped but processes {alive} live in its cgroup"
        if "ExitCode" not in summary:
            return f"{sid} is Stopped without an ExitCode"
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
