"""What a container must not be able to do, tried from inside a real container.

Every denial is paired with a control that shows the test can see the thing happen: the
setuid binary does give euid 0 without no_new_privs, mkdir works without the seccomp filter,
a masked file is not empty on the host, and so on.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import probes
from tests.kernel.conftest import (
    RUNTIME,
    Bundle,
    read_until_closed,
    requires_runtime,
    wait_for,
)

pytestmark = [pytest.mark.kernel, requires_runtime]

CAP_SETS = ("bounding", "effective", "permitted", "ambient", "inheritable")
NO_CAPS: dict[str, list[str]] = {k: [] for k in CAP_SETS}


def test_sees_only_its_own_pids(bundle: Bundle) -> None:
    # "exit 0" keeps sh from replacing itself with its last command
    r = bundle.sh("echo $$; cat /proc/1/cmdline; echo; ls /proc; ps -o pid,comm; exit 0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith("sh\0-c\0echo $$")
    pids = {int(x) for x in r.stdout.split() if x.isdigit()}
    host = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    assert max(pids) < 10 and len(host) > 10
    ps = [line.split() for line in lines if re.match(r"\s*\d+ ", line)]
    assert [p[1] for p in ps if p[0] == "1"] == ["sh"]
    assert {p[1] for p in ps} <= {"sh", "ps", "ls", "cat"}


@pytest.mark.parametrize("sys_admin", [False, True])
def test_cannot_mount_without_cap_sys_admin(bundle: Bundle, sys_admin: bool) -> None:
    if sys_admin:  # the control: with the capability the same mount works
        for k in ("bounding", "effective", "permitted"):
            bundle.process["capabilities"][k].append("CAP_SYS_ADMIN")
    r = bundle.sh("mount -t tmpfs none /tmp && echo mounted")
    if sys_admin:
        assert r.stdout == "mounted\n", r.stderr
    else:
        assert r.returncode != 0 and "mounted" not in r.stdout
        assert "denied" in r.stderr or "not permitted" in r.stderr, r.stderr


def test_cgroup_namespace_and_read_only_cgroupfs(bundle: Bundle) -> None:
    for k in ("bounding", "effective", "permitted"):  # so that only the ro mount is in the way
        bundle.process["capabilities"][k].append("CAP_SYS_ADMIN")
    r = bundle.sh("cat /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max; "
                  "echo 1 > /sys/fs/cgroup/pids/pids.max && echo written")
    lines = r.stdout.splitlines()
    own = [line for line in lines if line.count(":") >= 2]
    assert own and all(line.endswith(":/") for line in own), own
    assert "max" in lines and "written" not in lines
    assert "Read-only file system" in r.stderr, r.stderr


MASKED = ["/proc/kcore", "/proc/timer_list", "/proc/keys", "/proc/sched_debug"]


def test_masked_paths_read_empty(bundle: Bundle) -> None:
    present = [p for p in MASKED if os.path.exists(p)]  # /proc/kcore needs CONFIG_PROC_KCORE
    assert Path("/proc/timer_list").read_text()  # the control: not empty on the host
    r = bundle.sh("".join(f"wc -c < {p}; " for p in present) + "ls -A /sys/firmware | wc -l")
    assert r.stdout.split() == ["0"] * (len(present) + 1), r.stderr


@pytest.mark.parametrize("path", ["/proc/sys/kernel/printk_ratelimit", "/proc/sysrq-trigger"])
def test_readonly_paths_refuse_writes(bundle: Bundle, path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist in this kernel")
    # Writing back the current value (or sysrq's harmless "help") changes nothing if it works.
    value = "h" if path.endswith("sysrq-trigger") else Path(path).read_text().strip()
    # CAP_SYS_ADMIN, so that only the read-only mount is in the way
    for k in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][k].append("CAP_SYS_ADMIN")
    r = bundle.sh(f"echo {value} > {path} && echo written")
    assert "written" not in r.stdout
    assert "Read-only file system" in r.stderr, r.stderr
    point = "/proc/sys" if path.startswith("/proc/sys/") else path
    r = bundle.sh(f"grep ' {point} ' /proc/self/mountinfo")
    assert " ro," in r.stdout, r.stdout
    bundle.linux["readonlyPaths"] = []  # the control: without the read-only mount it works
    if path.endswith("printk_ratelimit"):
        r = bundle.sh(f"echo {value} > {path} && echo written")
        assert r.stdout == "written\n", r.stderr


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges_blocks_setuid(bundle: Bundle, nnp: bool) -> None:
    # A setuid-root busybox in the image, and a busybox.conf that lets its id applet keep euid 0
    # (busybox drops a setuid euid for applets the conf does not name).
    suid = bundle.rootfs / "usr/local/suid"
    suid.mkdir(parents=True)
    shutil.copy(bundle.rootfs / "bin/busybox", suid / "busybox")
    os.chown(suid / "busybox", 0, 0)
    os.chmod(suid / "busybox", 0o4755)
    (bundle.rootfs / "etc/busybox.conf").write_text("[SUID]\nid = sxx root.root\n")
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.process["capabilities"] = NO_CAPS
    bundle.process["noNewPrivileges"] = nnp
    r = bundle.sh("grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; "
                  "/usr/local/suid/busybox id -u")
    fields = dict(line.split(":\t") for line in r.stdout.splitlines() if ":\t" in line)
    assert fields["CapEff"] == fields["CapPrm"] == "0000000000000000"
    assert fields["NoNewPrivs"] == ("1" if nnp else "0")
    euid = r.stdout.splitlines()[-1]
    if nnp:
        assert euid != "0" and "setresuid: Operation not permitted" in r.stderr, r.stdout
    else:
        assert euid == "0", r.stderr


@pytest.mark.parametrize("filtered", [True, False])
def test_seccomp_errno_blocks_mkdir(bundle: Bundle, filtered: bool) -> None:
    if filtered:
        bundle.linux["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        }
    bundle.process["args"] = ["sh", "-c", "mkdir /dev/shm/x && echo made; exec sleep 300"]
    cid = bundle.start()
    r = bundle.runtime("exec", cid, "mkdir", "/dev/shm/y")
    if filtered:
        assert r.returncode != 0 and "Operation not permitted" in r.stderr
        assert bundle.runtime("exec", cid, "ls", "/dev/shm").stdout == ""
    else:
        assert r.returncode == 0, r.stderr
        assert bundle.runtime("exec", cid, "ls", "/dev/shm").stdout.split() == ["x", "y"]


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def runtime_interpreter() -> str:
    """The interpreter silo-runtime's Python runs on: the shebang of the Python launcher, which
    the C launcher (an ELF file) executes, or of silo-runtime itself when it is that script."""
    with open(RUNTIME, "rb") as f:
        launcher = RUNTIME + "-py" if f.read(4) == b"\x7fELF" else RUNTIME
    return os.path.realpath(Path(launcher).read_text().splitlines()[0][2:].split()[0])


def test_proc_pid_exe_of_exec_helpers_is_out_of_reach(bundle: Bundle) -> None:
    """CVE-2019-5736 class: a container process tries to read and write /proc/PID/exe of every
    process it can see while ``silo-runtime exec`` helpers enter the container."""
    interpreters = {os.path.realpath(sys.executable), runtime_interpreter(),
                    os.path.realpath(RUNTIME)}   # the launcher binary too
    before = {p: sha256(p) for p in interpreters}
    bundle.spec["root"]["readonly"] = False
    cid = bundle.start()
    attacker = ("while [ ! -e /stop ]; do for p in /proc/[0-9]*; do "
                "readlink $p/exe >> /seen; "
                "{ echo x > $p/exe; } 2>/dev/null && echo $p >> /wrote; done; done; "
                "touch /done")
    bundle.ok("exec", "--detach", cid, "sh", "-c", attacker)
    helper = subprocess.Popen([RUNTIME, "--root", str(bundle.state_dir), "exec", cid,
                               "sleep", "30"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for _ in range(15):  # more helpers going through the window while the loop runs
            bundle.ok("exec", cid, "true")
        bundle.ok("exec", cid, "touch", "/stop")
        done = bundle.rootfs / "done"
        for _ in range(2000):
            if done.exists():
                break
            bundle.ok("exec", cid, "true")
    finally:
        helper.kill()
        helper.wait()
    seen = set((bundle.rootfs / "seen").read_text().split())
    assert "/bin/busybox" in seen  # the control: the loop did read exe links
    assert not any("python" in s for s in seen), seen
    assert not (bundle.rootfs / "wrote").exists(), (bundle.rootfs / "wrote").read_text()
    assert {p: sha256(p) for p in interpreters} == before


def test_no_host_fd_or_cwd_reaches_the_container(bundle: Bundle) -> None:
    """CVE-2024-21626 class: the caller holds host files and directories open and sits in a
    host directory; the container process gets none of them."""
    host_dir = bundle.tmp / "host-dir"
    host_dir.mkdir()
    (host_dir / "HOST-MARKER").write_text("host")
    fds = [os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY),
           os.open(host_dir / "HOST-MARKER", os.O_RDONLY), os.open("/", os.O_RDONLY)]
    script = "ls /proc/self/fd; readlink /proc/self/cwd; ls"
    try:
        for fd in fds:
            os.set_inheritable(fd, True)
        ran = bundle.sh(script, pass_fds=tuple(fds), cwd=str(host_dir))
        bundle.process["args"] = ["sleep", "300"]
        cid = bundle.start()
        execed = bundle.runtime("exec", cid, "sh", "-c", script, pass_fds=tuple(fds),
                                cwd=str(host_dir))
    finally:
        for fd in fds:
            os.close(fd)
    for r in (ran, execed):
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split("\n")
        listed = lines[: lines.index("/")]
        # 0-2 and the directory ls itself opened to list them
        assert sorted(int(x) for x in listed) == [0, 1, 2, 3]
        assert "HOST-MARKER" not in r.stdout and "bin" in r.stdout.split()


def test_cwd_through_proc_self_fd_cannot_escape(bundle: Bundle) -> None:
    """process.cwd "/proc/self/fd/N" must not land in a directory of the host, whether N is
    a directory the caller left open or one of the runtime's own descriptors."""
    host_dir = bundle.tmp / "host-dir"
    host_dir.mkdir()
    (host_dir / "HOST-MARKER").write_text("host")
    fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    try:
        bundle.process["cwd"] = f"/proc/self/fd/{fd}"
        r = bundle.sh("ls; echo cwd=$(pwd)", pass_fds=(fd,))
        assert "HOST-MARKER" not in r.stdout, r.stdout
        if r.returncode != 0:  # refusing is fine, if it says why
            assert "process.cwd" in r.stderr, r.stderr
        bundle.process["cwd"] = "/"
        bundle.process["args"] = ["sleep", "300"]
        cid = bundle.start()
        for n in [fd, *range(3, 13)]:
            r = bundle.runtime("exec", "--cwd", f"/proc/self/fd/{n}", cid, "ls",
                               pass_fds=(fd,))
            assert "HOST-MARKER" not in r.stdout, (n, r.stdout)
            assert r.returncode == 0 or "process.cwd" in r.stderr, (n, r.stderr)
    finally:
        os.close(fd)


def test_image_cannot_plant_code_in_the_runtime(bundle: Bundle) -> None:
    """After pivot_root, a Python import made by the runtime's init would read the *image* at
    the host's sys.path: plant a module at every such path and name (silo's own modules, the
    standard library's) and use every feature that runs code late in the init or an exec."""
    planted = ("import os\n"
               "os.write(2, b'PLANTED ' + __name__.encode() + b'\\n')\n"
               "open('/planted', 'a').write(__name__ + '\\n')\n")
    src = Path(probes.REPO) / "src"
    for module in src.rglob("*.py"):
        dest = bundle.rootfs / str(module).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(planted)
    stdlib = Path(runtime_interpreter()).parent.parent / "lib" / (
        f"python{sys.version_info.major}.{sys.version_info.minor}")
    for lib in (stdlib, stdlib / "lib-dynload"):
        dest = bundle.rootfs / str(lib).lstrip("/")
        dest.mkdir(parents=True, exist_ok=True)
        for entry in lib.iterdir():
            name = entry.name.split(".")[0]
            if name.isidentifier():
                (dest / f"{name}.py").write_text(planted)
    inside = bundle.rootfs / "hook.sh"
    inside.write_text("#!/bin/sh\ntrue\n")
    inside.chmod(0o755)
    bundle.spec["root"]["readonly"] = False
    bundle.spec["hooks"] = {"startContainer": [{"path": "/hook.sh"}]}
    bundle.spec["domainname"] = "planted.example"
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": "1"}
    bundle.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}]
    bundle.process["oomScoreAdj"] = 100
    cid = bundle.start()
    pid = bundle.state(cid)["pid"]
    wait_for(lambda: not os.path.exists(f"/proc/{pid}/cmdline")
             or Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"),
             "the init has executed the container process, or died")
    assert not (bundle.upper / "planted").exists(), (bundle.upper / "planted").read_text()
    out = bundle.exec(cid, "sh", "-c", "echo in-exec",
                      flags=("--user", "1000:1000", "--cwd", "/tmp", "--env", "A=b"))
    assert out == "in-exec\n"
    assert bundle.runtime("exec", cid, "no-such-command").returncode != 0
    master, slave = os.openpty()  # and an exec with a terminal
    try:
        tty = subprocess.run([RUNTIME, "--root", str(bundle.state_dir), "exec", "--tty", cid,
                              "tty"], stdin=slave, stdout=slave, stderr=slave, timeout=60)
    finally:
        os.close(slave)
    out = read_until_closed(master, deadline=20)
    os.close(master)
    assert tty.returncode == 0 and "/dev/pts/" in out, out
    assert not (bundle.upper / "planted").exists(), (bundle.upper / "planted").read_text()
    assert "PLANTED" not in bundle.output(cid, "err")


def give_image_the_runtimes_libraries(bundle: Bundle) -> None:
    """Copy the loader and libraries the runtime's interpreter links against into the image,
    at the same paths, so that the host's interpreter binary *could* run in the container."""
    interpreter = runtime_interpreter()
    ldd = subprocess.run(["ldd", interpreter], capture_output=True, text=True, check=True)
    for lib in re.findall(r"(/\S+) \(0x", ldd.stdout):
        dest = bundle.rootfs / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(lib), dest)


def test_container_cannot_execute_the_runtimes_own_binary(bundle: Bundle) -> None:
    """CVE-2019-5736 class, the entry point: ``process.args[0]`` "/proc/self/exe" names, in the
    init, the host's interpreter. Run in the container it becomes a process whose
    /proc/PID/exe any other container process of the same uid can open: a way to the host
    binary that the next silo-runtime call executes as root."""
    give_image_the_runtimes_libraries(bundle)
    bundle.process["args"] = ["/proc/self/exe", "-S", "-c", "pass"]
    r = bundle.run()
    assert r.returncode != 0
    assert "Python" not in r.stderr and "python" not in r.stderr.lower().replace(
        "silo-runtime", ""), r.stderr
    assert "process.args" in r.stderr, r.stderr


def test_swapping_the_entry_point_for_proc_self_exe_after_create(bundle: Bundle) -> None:
    """The same, with the entry point turned into /proc/self/exe between create and start."""
    give_image_the_runtimes_libraries(bundle)
    payload = bundle.rootfs / "payload"
    payload.symlink_to("/bin/true")
    bundle.process["args"] = ["/payload", "-S", "-c", "pass"]
    cid = bundle.create()
    payload.unlink()
    payload.symlink_to("/proc/self/exe")
    bundle.ok("start", cid)
    assert bundle.wait_status(cid, "stopped")["status"] == "stopped"
    err = bundle.output(cid, "err")
    assert "Python" not in err and "process.args" in err, err


@pytest.mark.parametrize("allow_all", [False, True])
def test_devices_cgroup_keeps_host_devices_closed(bundle: Bundle, allow_all: bool) -> None:
    """A node the container makes itself (CAP_MKNOD) for a host device outside the default
    list (/dev/loop-control, 10:237) cannot be opened."""
    for k in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][k].append("CAP_MKNOD")
    if allow_all:  # the control: with every device allowed, the same open works
        bundle.linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    r = bundle.sh("mknod /dev/hostloop c 10 237 && exec 3< /dev/hostloop && echo opened")
    if allow_all:
        assert r.stdout == "opened\n", r.stderr
    else:
        assert "opened" not in r.stdout and "not permitted" in r.stderr, r.stderr


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_mount_destination_symlink_stays_in_the_rootfs(bundle: Bundle, link: str) -> None:
    """An image whose /dev is a symlink to a host directory: the /dev tmpfs and the device
    nodes must land inside the rootfs, not in the host directory."""
    target = bundle.tmp / "host-target"
    target.mkdir()
    dev = bundle.rootfs / "dev"
    dev.rmdir()
    dev.symlink_to(str(target) if link == "absolute" else "../" * 12 + str(target).lstrip("/"))
    r = bundle.sh("ls /dev; echo x > /dev/null && echo null-ok")
    assert r.returncode == 0, r.stderr
    assert "null-ok" in r.stdout and "null" in r.stdout.split()
    assert os.listdir(target) == []
    assert (bundle.upper / str(target).lstrip("/")).is_dir()  # it landed in the image
