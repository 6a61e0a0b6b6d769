"""Fixtures for driving the real ``silo-runtime`` command against the running kernel.

``bundle`` hands each test an OCI bundle in a temp dir whose rootfs is an overlay mount over
the embedded busybox image (so the image is never written), a state dir of its own for
``--root``, and unique container ids with a cgroupsPath under ``/silo-test/``. Its teardown
force-deletes whatever the test left, then fails the test if anything outlived that: a state
dir entry, a cgroup directory named after a container, a process that mentions the bundle, a
mount below the bundle.
"""

from __future__ import annotations

import array
import copy
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from silo.schema.oci_defaults import default_spec
from tests import probes
from tests.kernel.netfixtures import net_prefix, netns_factory, netns_path  # noqa: F401

RUNTIME = str(probes.RUNTIME)
IMAGE_ROOTFS = probes.BUSYBOX_IMAGE / "rootfs"
CGROUP_MOUNT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "silo-test"
MARK = "SILO_TEST_BUNDLE"  # env var every container process carries: finds leaked processes
_ids = itertools.count()


def need_overlayfs() -> str | None:
    try:
        with open("/proc/filesystems") as f:
            if any(line.split()[-1] == "overlay" for line in f if line.strip()):
                return None
    except OSError:
        pass
    return "overlayfs is not available in this kernel (the bundle's rootfs is an overlay)"


SKIP = probes.need_all(probes.need_root(), probes.need_runtime(), probes.need_busybox_image(),
                       need_overlayfs())
requires_runtime = pytest.mark.skipif(bool(SKIP), reason=SKIP or "")


# -- observations ----------------------------------------------------------------------------

def cgroup_dirs_named(name: str) -> list[str]:
    """Every cgroup directory called ``name``, in every hierarchy under /sys/fs/cgroup."""
    found = []
    for top, dirs, _files in os.walk(CGROUP_MOUNT):
        if name in dirs:
            found.append(os.path.join(top, name))
    return found


def cgroup_dir(controller: str, cid: str) -> Path:
    """The v1 directory of a container created with this fixture's cgroupsPath."""
    return CGROUP_MOUNT / controller / CGROUP_PARENT / cid


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> cmdline of every live process whose cmdline or environment contains ``text``."""
    found = {}
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def mounts_below(path: Path | str) -> list[str]:
    """Mount points in our mount namespace at or below ``path``."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == str(path) or point.startswith(str(path) + "/"):
                out.append(point)
    return out


def loops_backed_below(path: str) -> dict[str, str]:
    """Loop devices (``/dev/loopN``) whose backing file is below ``path``, with that file; read
    from /sys, independently of silo.kernel.loop."""
    out = {}
    for dev in os.listdir("/sys/block"):
        try:
            backing = Path(f"/sys/block/{dev}/loop/backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(path + "/"):
            out[f"/dev/{dev}"] = backing
    return out


def pid_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


# -- the bundle ---------------------------------------------------------------------------------

class Bundle:
    """An OCI bundle over an overlay of the busybox image, plus a private --root."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.path = tmp / "bundle"
        self.rootfs = self.path / "rootfs"
        self.upper = tmp / "upper"
        self.state_dir = tmp / "state"
        self.log = tmp / "runtime.log"
        self.io = tmp / "io"
        self.last_out = self.io / "none"
        self.outputs: dict[str, Path] = {}
        self.spec: dict[str, Any] = default_spec(args=["sleep", "300"], terminal=False)
        self.ids: list[str] = []
        self.mounted = False

    # ids and config
    def new_id(self) -> str:
        cid = f"silo-t{os.getpid()}-{next(_ids)}"
        self.ids.append(cid)
        return cid

    @property
    def process(self) -> dict[str, Any]:
        proc: dict[str, Any] = self.spec["process"]
        return proc

    @property
    def linux(self) -> dict[str, Any]:
        linux: dict[str, Any] = self.spec["linux"]
        return linux

    def config_for(self, cid: str) -> dict[str, Any]:
        spec = copy.deepcopy(self.spec)
        linux = spec.setdefault("linux", {})
        linux.setdefault("cgroupsPath", f"/{CGROUP_PARENT}/{cid}")
        process = spec.get("process")
        if isinstance(process, dict) and isinstance(process.get("env"), list):
            process["env"] = [*process["env"], f"{MARK}={self.tmp}"]
        return spec

    def write_config(self, cid: str, raw: str | None = None) -> None:
        text = raw if raw is not None else json.dumps(self.config_for(cid), indent=1)
        (self.path / "config.json").write_text(text)

    # the command
    def runtime(self, *args: str, log: bool = False, input: str | None = None,
                pass_fds: tuple[int, ...] = (), cwd: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run silo-runtime with this bundle's --root. Its stdout and stderr go to files, not
        pipes: a container started by ``create`` or a detached ``exec`` inherits them and
        would hold a pipe open for as long as it lives."""
        glob = ["--root", str(self.state_dir)]
        if log:
            glob += ["--log", str(self.log), "--log-format", "json"]
        n = next(_ids)
        out, err = self.io / f"{n}.out", self.io / f"{n}.err"
        self.last_out = out
        with open(out, "w+") as fo, open(err, "w+") as fe:
            r = subprocess.run([RUNTIME, *glob, *args], stdout=fo, stderr=fe, text=True,
                               input=input, pass_fds=pass_fds, cwd=cwd, timeout=timeout,
                               stdin=None if input is not None else subprocess.DEVNULL)
        return subprocess.CompletedProcess(r.args, r.returncode, out.read_text(),
                                           err.read_text())

    def ok(self, *args: str, **kw: Any) -> str:
        r = self.runtime(*args, **kw)
        assert r.returncode == 0, f"silo-runtime {' '.join(args)}: exit {r.returncode}: " \
                                  f"{r.stderr.strip()}"
        return r.stdout

    def create(self, cid: str | None = None, *flags: str) -> str:
        cid = cid or self.new_id()
        self.write_config(cid)
        self.ok("create", "--bundle", str(self.path), *flags, cid)
        self.outputs[cid] = self.last_out
        return cid

    def output(self, cid: str, stream: str = "out") -> str:
        """What the container's process (created by :meth:`create`) wrote so far on stdout
        (``stream="out"``) or stderr (``"err"``)."""
        return self.outputs[cid].with_suffix("." + stream).read_text()

    def start(self, cid: str | None = None) -> str:
        """create + start: a running container (by default ``sleep 300``)."""
        cid = self.create(cid)
        self.ok("start", cid)
        return cid

    def run(self, *flags: str, cid: str | None = None,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """``run`` in the foreground with the current spec; the container's output and code."""
        cid = cid or self.new_id()
        self.write_config(cid)
        return self.runtime("run", "--bundle", str(self.path), *flags, cid, **kw)

    def sh(self, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        self.process["args"] = ["sh", "-c", script]
        return self.run(**kw)

    def state(self, cid: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.ok("state", cid))
        return doc

    def wait_status(self, cid: str, status: str, deadline: float = 20) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            doc = self.state(cid)
            if doc["status"] == status or time.monotonic() > end:
                return doc
            time.sleep(0.02)

    def exec(self, cid: str, *cmd: str, flags: tuple[str, ...] = ()) -> str:
        return self.ok("exec", *flags, cid, *cmd)

    # bad input
    def log_errors(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [e for e in lines if e.get("level") == "error"]

    def leaks(self) -> list[str]:
        """What is left of this bundle's containers (empty when nothing is)."""
        out = []
        if self.state_dir.exists() and os.listdir(self.state_dir):
            out.append(f"state dir entries: {sorted(os.listdir(self.state_dir))}")
        for cid in self.ids:
            for d in cgroup_dirs_named(cid):
                out.append(f"cgroup {d}")
        for pid, cmd in processes_mentioning(str(self.tmp)).items():
            out.append(f"process {pid}: {cmd}")
        for m in mounts_below(self.path):
            if not (self.mounted and m == str(self.rootfs)):
                out.append(f"mount {m}")
        return out

    def assert_clean(self) -> None:
        left = self.leaks()
        assert not left, "left behind: " + "; ".join(left)

    # setup and teardown
    def setup(self) -> None:
        work = self.tmp / "work"
        for d in (self.rootfs, self.upper, work, self.state_dir, self.io):
            d.mkdir(parents=True)
        self.path.chmod(0o711)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={IMAGE_ROOTFS},upperdir={self.upper},workdir={work}",
                        str(self.rootfs)], check=True, capture_output=True)
        self.mounted = True

    def teardown(self) -> list[str]:
        problems = []
        names = set(self.ids)
        if self.state_dir.exists():
            names |= set(os.listdir(self.state_dir))
        for cid in sorted(names):
            r = self.runtime("delete", "--force", cid)
            if r.returncode != 0 and "does not exist" not in r.stderr:
                problems.append(f"delete --force {cid}: {r.stderr.strip()}")
        problems += self.leaks()
        self.scrub()
        return problems

    def scrub(self) -> None:
        """Remove leaks by hand so that one broken test does not poison the next."""
        for pid in processes_mentioning(str(self.tmp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for cid in self.ids:
            for d in cgroup_dirs_named(cid):
                remove_cgroup_tree(d)
        for m in sorted(mounts_below(self.path), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        self.mounted = False
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.tmp)], capture_output=True)


def remove_cgroup_tree(d: str) -> None:
    """Remove a cgroup directory and every one below it, deepest first (each retried while
    its last task is still on its way out)."""
    for top, dirs, _ in os.walk(d, topdown=False):
        for sub in dirs:
            _rmdir_retry(os.path.join(top, sub))
    _rmdir_retry(d)


def _rmdir_retry(path: str) -> None:
    for _ in range(100):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


@pytest.fixture(scope="session")
def _cgroup_parent() -> Iterator[None]:
    yield
    for d in cgroup_dirs_named(CGROUP_PARENT):
        try:
            os.rmdir(d)
        except OSError:
            pass


@pytest.fixture
def bundle(_cgroup_parent: None) -> Iterator[Bundle]:
    if SKIP:
        pytest.skip(SKIP)
    # Not pytest's tmp_path: that sits below a 0700 directory, which the root of a user
    # namespace (a host uid without rights there) cannot walk through to reach the rootfs.
    tmp = Path(tempfile.mkdtemp(prefix="silo-test-"))
    tmp.chmod(0o711)
    b = Bundle(tmp)
    b.setup()
    yield b
    problems = b.teardown()
    if problems:
        pytest.fail("silo-runtime left things behind: " + "; ".join(problems), pytrace=False)


def one_error_line(r: subprocess.CompletedProcess[str], *words: str) -> str:
    """The failure is reported on exactly one stderr line, which contains each of ``words``."""
    assert r.returncode != 0, f"expected a failure, got exit 0 (stdout {r.stdout!r})"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {r.stderr!r}"
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def read_until_closed(fd: int, deadline: float = 60) -> str:
    """Everything a pty master yields until the slave side is closed everywhere (the
    deadline only stops a hang)."""
    data = b""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every slave side is closed
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def receive_fd(conn: socket.socket) -> int:
    """The one descriptor (a pty master) sent with SCM_RIGHTS on a console socket."""
    fds = array.array("i")
    _msg, anc, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: fds.itemsize])
    assert len(fds) == 1, "no pty master received on the console socket"
    return fds[0]


def wait_for(cond: Callable[[], object], what: str, deadline: float = 20) -> None:
    """Poll until ``cond()`` is true; the deadline only stops a hang, it is not measured."""
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)
