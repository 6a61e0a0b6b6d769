"""Drive silo's real peers (containerd + ctr, podman + conmon) against any runc-compatible runtime.

Owns what the end-to-end tests and the runtime benchmark share:

- the runtime under test (``SILO_E2E_RUNTIME``, else the repo's ``.venv/bin/silo-runtime``) and
  the probes that turn a missing peer into a skip reason naming what is missing;
- a busybox root filesystem and an OCI image archive (image layout in a tar) built from it;
- isolated containerd and podman instances: own root, state, socket and configuration files,
  all under one directory that the caller owns;
- a pty runner, for ``-t`` paths (there may be no controlling terminal here);
- the leak checks every teardown runs: processes, mounts, cgroups and network namespaces left
  behind are removed, then reported as an error, so a leaky runtime fails loudly instead of
  poisoning the next test.

It imports nothing of silo: silo-runtime is tested from the outside, the way containerd and
podman see it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_ENV = "SILO_E2E_RUNTIME"
DEFAULT_RUNTIME = REPO_ROOT / ".venv" / "bin" / "silo-runtime"
BUSYBOX = Path("/bin/busybox")
IMAGE_REF = "docker.io/silo-test/busybox:latest"

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
ROOTFS_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root",
               "var", "run")


class PeerError(RuntimeError):
    """A peer command failed; the message carries its argv, exit status and output."""


# -- probes: each answers None when the thing is there, else a reason naming what is missing --


def runtime_under_test() -> tuple[str | None, str]:
    """(path, "") for the runtime to test, or (None, reason) when there is none."""
    wanted = os.environ.get(RUNTIME_ENV)
    if wanted:
        path = os.path.abspath(wanted)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return None, f"{RUNTIME_ENV}={wanted} is not an executable file"
        return path, ""
    if DEFAULT_RUNTIME.is_file() and os.access(DEFAULT_RUNTIME, os.X_OK):
        return str(DEFAULT_RUNTIME), ""
    return None, (f"silo-runtime is not installed at .venv/bin/silo-runtime; set {RUNTIME_ENV} "
                  "to a runc-compatible runtime to test that instead")


def missing_commands(*names: str) -> str | None:
    missing = [n for n in names if shutil.which(n) is None]
    return f"missing commands: {', '.join(missing)}" if missing else None


def missing_root() -> str | None:
    return None if os.geteuid() == 0 else "needs root (containerd and podman run as root here)"


def missing_busybox() -> str | None:
    if BUSYBOX.is_file():
        return None
    return f"{BUSYBOX} is missing (Debian package busybox-static)"


# -- small process helpers --


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60,
        input: str | None = None, env: dict[str, str] | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion with stdout/stderr captured as text."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=input, env=env, cwd=cwd,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise PeerError(f"{' '.join(argv)} exited {proc.returncode}\n"
                        f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}")
    return proc


def run_in_pty(argv: Sequence[str], *, input: bytes = b"", timeout: float = 30,
               env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run argv with a fresh pty as stdin/stdout/stderr; return (exit status, everything read).

    The child gets a new session so the caller's terminal, if any, is never touched. ``input`` is
    written at once and waits in the pty until read; the pty echoes it into the output too.
    """
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True, env=env, close_fds=True)
    finally:
        os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        if input:
            os.write(master, input)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait()
                raise PeerError(f"{' '.join(argv)} timed out in a pty; output so far: "
                                f"{bytes(out)!r}")
            ready, _, _ = select.select([master], [], [], min(left, 0.1))
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every slave end is closed
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                # The command is gone; take what the pty still holds without waiting on
                # grandchildren that may keep the slave open.
                while select.select([master], [], [], 0.05)[0]:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        break
                    out += chunk
                break
        return proc.wait(timeout=max(deadline - time.monotonic(), 1)), bytes(out)
    finally:
        os.close(master)


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10,
             interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise PeerError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


LOGGING_RUNTIME = """\
#!/bin/sh
# Appends how it was called to {log}, keeps each create's config.json and each exec's process
# file in {log_dir} (numbered like the log's lines), then runs {real}.
n=$(cat {log} 2>/dev/null | wc -l)
{{ printf '%s cwd=%s argv:' "$n" "$(pwd)"; for a in "$@"; do printf ' %s' "$a"; done; echo
}} >> {log}
bundle=$(pwd); process=; prev=
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle=$a;; --process|-p) process=$a;; esac; prev=$a
done
case " $* " in *" create "*) cp "$bundle/config.json" "{log_dir}/config-$n.json" 2>/dev/null;; esac
[ -n "$process" ] && cp "$process" "{log_dir}/process-$n.json" 2>/dev/null
exec {real} "$@"
"""


def write_logging_runtime(directory: Path, real: str, name: str = "runc") -> Path:
    """A wrapper runtime that logs every call to ``directory/calls.log`` (with the config.json
    of each create and the process file of each exec in ``directory/calls/``), then execs
    ``real``. Its file name matters to podman (see Podman)."""
    log_dir = directory / "calls"
    log_dir.mkdir(parents=True, exist_ok=True)
    wrapper = directory / name
    wrapper.write_text(LOGGING_RUNTIME.format(log=directory / "calls.log", log_dir=log_dir,
                                              real=real))
    wrapper.chmod(0o755)
    return wrapper


# -- the image --


def build_busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: static busybox, its applet links, passwd/group, empty dirs."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in ROOTFS_DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = run([str(BUSYBOX), "--list-full"]).stdout.split()
    for applet in applets:
        link = dest / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


def _layer_tar(rootfs: Path) -> bytes:
    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for child in sorted(rootfs.iterdir()):
            tar.add(child, arcname=child.name, filter=owned_by_root)
    return buf.getvalue()


def write_oci_archive(rootfs: Path, archive: Path, ref: str = IMAGE_REF,
                      cmd: Sequence[str] = ("sh",)) -> Path:
    """Write an oci-archive (an OCI image layout in a tar) holding rootfs as one gzip layer,
    whose config runs ``cmd``.

    The index names the image twice: ``io.containerd.image.name`` (a full reference, what
    ``ctr images import`` takes as is) and ``org.opencontainers.image.ref.name`` (what podman
    and skopeo read).
    """
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = _layer_tar(rootfs)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  **blob(gzip.compress(layer, mtime=0))}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": list(cmd), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "silo tests: busybox-static rootfs"}],
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **blob(json.dumps(config, sort_keys=True).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     **blob(json.dumps(manifest, sort_keys=True).encode()),
                     "platform": {"architecture": "amd64", "os": "linux"},
                     "annotations": {"io.containerd.image.name": ref,
                                     "org.opencontainers.image.ref.name": ref}}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))

    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in blobs.items():
            add(tar, "blobs/sha256/" + digest.split(":", 1)[1], data)
    return archive


# -- leaks: what a peer or the runtime left behind under a directory or a cgroup parent --


def _mountpoints_under(top: Path) -> list[str]:
    prefix = str(top).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == str(top):
                found.append(point)
    return found


def _processes_using(top: Path) -> list[int]:
    """Pids whose command line, root or cwd names a path under top."""
    needle = str(top).rstrip("/")
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            links = [os.readlink(f"/proc/{entry}/{name}") for name in ("root", "cwd")]
        except OSError:
            continue
        if needle in cmdline or any(p == needle or p.startswith(needle + "/") for p in links):
            pids.append(int(entry))
    return pids


def cgroup_dirs(relative: str) -> list[Path]:
    """Every existing directory for the cgroup path ``relative`` in every mounted hierarchy."""
    found = []
    rel = relative.strip("/")
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[2] in ("cgroup", "cgroup2")]
    for point in points:
        path = Path(point) / rel
        if path.is_dir():
            found.append(path)
    return found


def _remove_cgroup_tree(path: Path) -> None:
    """rmdir a cgroup and its children, deepest first, killing what still lives in them."""
    dirs = sorted((Path(d) for d, _, _ in os.walk(path)), key=lambda p: len(p.parts),
                  reverse=True)
    for d in dirs:
        for attempt in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                for procs in ("cgroup.procs", "tasks"):
                    with contextlib.suppress(OSError, ValueError):
                        for pid in (d / procs).read_text().split():
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(pid), signal.SIGKILL)
                with contextlib.suppress(OSError):
                    (d / "freezer.state").write_text("THAWED")
                with contextlib.suppress(OSError):
                    (d / "cgroup.freeze").write_text("0")
                time.sleep(0.02 * (attempt + 1) if attempt < 10 else 0.2)


class LeakCheck:
    """Collects what was left behind, removes it, and says what it was."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.leaks: list[str] = []

    def processes(self, top: Path, grace: float = 5) -> None:
        """Processes still using top after ``grace`` seconds are leaks (and get SIGKILL).

        The grace is for what is already on its way out: conmon runs podman's exit command
        after the container dies, and a shim lingers for a moment after its last task.
        """
        with contextlib.suppress(PeerError):
            wait_for(lambda: not _processes_using(top), f"processes under {top} to exit",
                     timeout=grace, interval=0.1)
        pids = _processes_using(top)
        for pid in pids:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                self.leaks.append(f"process {pid}: {cmd[:300]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(PeerError):  # a zombie has no cwd: it counts as gone
            wait_for(lambda: not any(os.path.exists(f"/proc/{p}/cwd") for p in pids),
                     f"pids {pids} to exit", timeout=5)

    def mounts(self, top: Path, expected: Iterable[Path] = ()) -> None:
        """Mounts under top are leaks, but for ``expected`` ones, which go quietly."""
        quiet = {str(p) for p in expected}
        # Deepest first; lazily, since a stale overlay may still be busy for a moment.
        for point in sorted(_mountpoints_under(top), key=len, reverse=True):
            if point not in quiet:
                self.leaks.append(f"mount {point}")
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def cgroups(self, relative: str) -> None:
        """Report and remove cgroup ``relative`` (in every hierarchy) if it still exists."""
        for path in cgroup_dirs(relative):
            self.leaks.append(f"cgroup {path}")
            _remove_cgroup_tree(path)

    def runtime_state(self, runtime: str, cid: str, global_flags: Sequence[str] = ()) -> None:
        """A container the runtime still answers ``state`` for, though its peer deleted it."""
        if run([runtime, *global_flags, "state", cid], check=False).returncode == 0:
            self.leaks.append(f"runtime state of {cid}")
            run([runtime, *global_flags, "delete", "--force", cid], check=False)

    def netns(self, paths: Iterable[str]) -> None:
        for path in paths:
            if os.path.exists(path):
                self.leaks.append(f"network namespace {path}")
                subprocess.run(["umount", "-l", path], capture_output=True, check=False)
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def raise_if_any(self) -> None:
        if self.leaks:
            raise PeerError(f"{self.owner} left these behind (now removed):\n  "
                            + "\n  ".join(self.leaks))


class HostPaths:
    """Host directories a peer creates outside its own root, whatever it is told.

    Those that did not exist when the peer started are removed when it stops: directories
    with rmdir (only if empty, so a concurrent user keeps them), the ``caches`` with their
    contents. Cgroup directories given as relative paths are checked in every hierarchy.
    """

    def __init__(self, dirs: Iterable[Path] = (), caches: Iterable[Path] = (),
                 cgroups: Iterable[str] = ()) -> None:
        self.caches = [p for p in caches if not p.exists()]
        self.dirs = [p for p in dirs if not p.exists()]
        self.cgroups = [c for c in cgroups if not cgroup_dirs(c)]

    def remove(self) -> None:
        for cache in self.caches:
            shutil.rmtree(cache, ignore_errors=True)
        for d in sorted(self.dirs, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        for relative in self.cgroups:
            for path in cgroup_dirs(relative):
                with contextlib.suppress(OSError):
                    path.rmdir()


def remove_tree(top: Path) -> None:
    """rm -rf that never follows a mount: unmount everything under top first."""
    for point in sorted(_mountpoints_under(top), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(top, ignore_errors=True)


# -- containerd --

CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
# Not needed here. (io.containerd.runtime.v1.linux stays: 1.6's tasks service refuses to load
# without a v1 runtime registered, even when every task goes through the v2 shim.)
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "100ms"
"""


CRI_CONFIG = """
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # This machine cannot lower a process's oom score below its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "under-test"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.under-test]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.under-test.options]
        BinaryName = "{binary}"
        Root = "{runc_root}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""


class CriOptions:
    """containerd's CRI plugin (kubelet's way in): pods run by ``binary`` through the runc v2
    shim (``BinaryName``), networks by the first CNI configuration in ``cni_conf`` with the
    plugins of ``cni_bin``, pause containers from ``sandbox_image`` (imported beforehand).
    The pods' cgroups go under ``cgroup_parent``, which the caller sets in each pod's
    LinuxPodSandboxConfig."""

    def __init__(self, binary: str, cni_bin: Path, cni_conf: Path, sandbox_image: str,
                 cgroup_parent: str) -> None:
        self.binary = binary
        self.cni_bin = cni_bin
        self.cni_conf = cni_conf
        self.sandbox_image = sandbox_image
        self.cgroup_parent = cgroup_parent


class Containerd:
    """Debian's containerd with its own root, state, socket and config, under ``workdir``.

    Containers are made with ``ctr run`` and the runc v2 shim, pointed at the runtime under test
    with ``--runc-binary`` (the per-container form of the CRI ``BinaryName`` option; the shim
    re-reads it for exec, kill, pause and delete). The runtime's ``--root`` is kept under
    ``workdir`` too (``--runc-root``), and so are ctr's FIFOs.

    Each instance uses its own namespace, so its cgroups (``/<namespace>/<id>`` in every
    hierarchy) are its own even when another run shares the machine. With ``cri``, the CRI
    plugin is on (its namespace is always ``k8s.io``; the pods' cgroups are under
    ``cri.cgroup_parent``).
    """

    SHIM = "io.containerd.runc.v2"
    SOCKET_DIR = Path("/run/containerd/s")  # where 1.6's shims put their sockets, always

    def __init__(self, workdir: Path, runtime: str, namespace: str | None = None,
                 cri: CriOptions | None = None) -> None:
        self.workdir = workdir
        self.runtime = runtime
        self.cri = cri
        self.namespace = "k8s.io" if cri else namespace or unique_id("silo-test")
        self.cgroup_root = cri.cgroup_parent.strip("/") if cri else self.namespace
        self.root = workdir / "root"
        self.state = workdir / "state"
        self.address = workdir / "containerd.sock"
        self.runc_root = workdir / "runc"
        self.fifo_dir = workdir / "fifo"
        self.config = workdir / "config.toml"
        self.log = workdir / "containerd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._host = HostPaths()

    # lifecycle

    def __enter__(self) -> Containerd:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if len(str(self.address)) > 100:
            raise PeerError(f"socket path too long for AF_UNIX: {self.address}")
        # The runtime makes /<ns>/<id> and removes it on delete; /<ns> is nobody's to remove.
        self._host = HostPaths(dirs=[self.SOCKET_DIR.parent, self.SOCKET_DIR],
                               cgroups=[self.cgroup_root])
        for d in (self.root, self.state, self.runc_root, self.fifo_dir):
            d.mkdir(parents=True, exist_ok=True)
        config = CONTAINERD_CONFIG.format(
            root=self.root, state=self.state, address=self.address, opt=self.workdir / "opt")
        if self.cri is not None:
            config = config.replace('  "io.containerd.grpc.v1.cri",\n', "") + CRI_CONFIG.format(
                sandbox_image=self.cri.sandbox_image, binary=self.cri.binary,
                runc_root=self.runc_root, cni_bin=self.cri.cni_bin, cni_conf=self.cri.cni_conf)
        self.config.write_text(config)
        log = open(self.log, "ab")  # noqa: SIM115 - containerd writes it for its whole life
        try:
            self._proc = subprocess.Popen(
                ["containerd", "--config", str(self.config)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True, cwd=self.workdir)
        finally:
            log.close()

        def answers() -> bool:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise PeerError(f"containerd exited {self._proc.returncode}:\n{self.log_tail()}")
            return self.ctr("version", check=False, timeout=5).returncode == 0

        wait_for(answers, "containerd to answer on its socket", timeout=30, interval=0.1)

    def stop(self) -> None:
        """Delete every task and container, stop containerd, then check nothing was left."""
        leaks = LeakCheck(f"containerd ({self.namespace})")
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._delete_everything()
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            leaks.processes(self.workdir)
            leaks.mounts(self.workdir)
            for parent in cgroup_dirs(self.cgroup_root):
                for child in sorted(p for p in parent.iterdir() if p.is_dir()):
                    leaks.cgroups(f"{self.cgroup_root}/{child.name}")
            remove_tree(self.workdir)
            self._host.remove()
        leaks.raise_if_any()

    def _delete_everything(self) -> None:
        for line in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", line, check=False)
            self.ctr("tasks", "delete", "--force", line, check=False)
        containers = self.ctr("containers", "ls", "-q", check=False).stdout.split()
        if containers:
            self.ctr("containers", "delete", *containers, check=False)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # commands

    def ctr_argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.address), "--namespace", self.namespace, *args]

    def ctr(self, *args: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(self.ctr_argv(*args), check=check, timeout=timeout, input=input)

    def runtime_flags(self, runtime: str | None = None) -> list[str]:
        """Flags of ``ctr run`` that select the runtime under test (or another ``runtime``)."""
        return ["--runtime", self.SHIM, "--runc-binary", runtime or self.runtime,
                "--runc-root", str(self.runc_root), "--fifo-dir", str(self.fifo_dir)]

    def run_argv(self, image: str, cid: str, *cmd: str, flags: Sequence[str] = ()) -> list[str]:
        return self.ctr_argv("run", *self.runtime_flags(), *flags, image, cid, *cmd)

    def import_image(self, archive: Path) -> str:
        """Import an oci-archive and unpack it; returns the reference it was stored under."""
        self.ctr("images", "import", "--platform", "linux/amd64", str(archive), timeout=120)
        return IMAGE_REF

    def task_status(self, cid: str) -> str | None:
        """The STATUS column of ``ctr task ls`` for cid (RUNNING, PAUSED, STOPPED, ...)."""
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == cid:
                return fields[-1]
        return None


# -- podman --

CONTAINERS_CONF = """\
[containers]
# podman gives root containers nofile and nproc of 1048576, which setrlimit refuses (EPERM)
# where the hard limits are lower and CAP_SYS_RESOURCE is not in the bounding set (here: 20000
# and 96365). Containers get the caller's hard limits instead, and nproc at most 32768: podman
# 4.3 lowers its own RLIMIT_NPROC to that before it runs conmon and the runtime.
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
# Networks are not under test here: no CNI/netavark configuration is read or written.
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmp}/events.log"
# File locks live under tmp_dir; the default (shm) would share /dev/shm/libpod_lock with every
# other podman on the machine.
lock_type = "file"
tmp_dir = "{tmp}"
static_dir = "{root}/libpod"
volume_path = "{root}/volumes"
# The exit command (podman container cleanup, run by conmon) must read this same file.
conmon_env_vars = [
  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  "CONTAINERS_CONF={conf}",
  "CONTAINERS_STORAGE_CONF={storage_conf}",
]

[network]
network_config_dir = "{netconf}"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}"
runroot = "{runroot}"
"""


def _hard_limit(which: int) -> int:
    hard = resource.getrlimit(which)[1]
    return 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)


class Podman:
    """podman with its own storage, run root, tmp dir and containers.conf, under ``workdir``.

    The runtime under test is given by path (``--runtime``); podman names it by its file name, so
    ``runc``/``crun`` get ``--log-format=json --log FILE`` global flags and ``silo-runtime`` gets
    none, exactly as a user's podman would do.
    """

    def __init__(self, workdir: Path, runtime: str) -> None:
        self.workdir = workdir
        self.runtime = runtime
        self.root = workdir / "root"
        self.runroot = workdir / "runroot"
        self.tmpdir = workdir / "tmp"
        self.conf = workdir / "containers.conf"
        self.storage_conf = workdir / "storage.conf"
        self.netconf = workdir / "networks"
        self._started = False
        self._host = HostPaths()

    def __enter__(self) -> Podman:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        # podman 4.3 keeps its blob-info cache in /var/lib/containers/cache whatever its root,
        # makes /run/containers/networks, and with cgroupfs puts every container under
        # /libpod_parent and every conmon in /libpod_parent/conmon.
        self._host = HostPaths(
            dirs=[Path("/var/lib/containers"), Path("/run/containers"),
                  Path("/run/containers/networks")],
            caches=[Path("/var/lib/containers/cache")],
            cgroups=["libpod_parent/conmon", "libpod_parent"])
        for d in (self.root, self.runroot, self.tmpdir, self.netconf):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONTAINERS_CONF.format(
            tmp=self.tmpdir, root=self.root, conf=self.conf, storage_conf=self.storage_conf,
            netconf=self.netconf, nofile=_hard_limit(resource.RLIMIT_NOFILE),
            nproc=min(_hard_limit(resource.RLIMIT_NPROC), 32768)))
        self.storage_conf.write_text(STORAGE_CONF.format(root=self.root, runroot=self.runroot))
        self._started = True

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERS_")}
        env["CONTAINERS_CONF"] = str(self.conf)
        env["CONTAINERS_STORAGE_CONF"] = str(self.storage_conf)
        env["TMPDIR"] = str(self.tmpdir)  # image copies would otherwise go to /var/tmp
        return env

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.root), "--runroot", str(self.runroot),
                "--tmpdir", str(self.tmpdir), "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--runtime", self.runtime, *args]

    def podman(self, *args: str, check: bool = True, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), check=check, timeout=timeout, input=input, env=self.env)

    def load_image(self, archive: Path) -> str:
        self.podman("load", "--quiet", "--input", str(archive), timeout=120)
        return IMAGE_REF

    def inspect(self, cid: str) -> dict[str, object]:
        data = json.loads(self.podman("container", "inspect", cid).stdout)
        return data[0]  # type: ignore[no-any-return]

    def _netns_paths(self) -> list[str]:
        """Network namespace paths named by the config.json of every container we still have."""
        paths = []
        for config in self.root.glob("overlay-containers/*/userdata/config.json"):
            with contextlib.suppress(OSError, ValueError):
                spec = json.loads(config.read_text())
                for ns in spec.get("linux", {}).get("namespaces", []):
                    if ns.get("type") == "network" and ns.get("path"):
                        paths.append(ns["path"])
        return paths

    def container_ids(self) -> set[str]:
        """Every container this podman ever created (from its event log, so removed ones too)."""
        ids = set()
        with contextlib.suppress(OSError):
            for line in (self.tmpdir / "events.log").read_text().splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("Type") == "container" and event.get("ID"):
                        ids.add(event["ID"])
        return ids

    def stop(self) -> None:
        """Remove every container, then check that nothing of them was left on the host."""
        leaks = LeakCheck("podman")
        netns: list[str] = []
        try:
            if self._started:
                netns = self._netns_paths()
                self.podman("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
        finally:
            leaks.processes(self.workdir)
            # The overlay driver bind-mounts its home on itself and may keep it between calls.
            leaks.mounts(self.workdir, expected=[self.root / "overlay"])
            for cid in sorted(self.container_ids()):
                leaks.runtime_state(self.runtime, cid)
                leaks.cgroups(f"libpod_parent/libpod-{cid}")
            leaks.netns(netns)
            remove_tree(self.workdir)
            self._host.remove()
        leaks.raise_if_any()
