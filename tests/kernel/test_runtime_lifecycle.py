"""silo-runtime's verbs driven as containerd and podman drive runc: the real command, the real
kernel, observations read back from /proc, the cgroup files and the container's own output."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import termios
from datetime import datetime
from pathlib import Path

import pytest

from tests.kernel.conftest import (
    RUNTIME,
    Bundle,
    cgroup_dir,
    cgroup_dirs_named,
    mounts_below,
    pid_status,
    read_until_closed,
    receive_fd,
    requires_runtime,
    wait_for,
)

pytestmark = [pytest.mark.kernel, requires_runtime]

STATE_KEYS = {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"}


def alive(pid: int) -> bool:
    try:
        return pid_status(pid)["State"][0] not in "ZX"
    except OSError:
        return False


def cgroup_procs(controller: str, cid: str) -> list[int]:
    text = (cgroup_dir(controller, cid) / "cgroup.procs").read_text()
    return [int(x) for x in text.split()]


# -- the lifecycle -----------------------------------------------------------------------------

def test_create_start_pause_resume_kill_delete(bundle: Bundle) -> None:
    cid = bundle.create()
    st = bundle.state(cid)
    assert set(st) - {"annotations"} == STATE_KEYS
    assert st["id"] == cid and st["status"] == "created" and st["pid"] > 0
    assert st["bundle"] == str(bundle.path) and st["rootfs"] == str(bundle.rootfs)
    assert st["ociVersion"].startswith("1.")
    datetime.fromisoformat(st["created"][:26])  # RFC 3339, nanoseconds cut to what Python reads
    pid = st["pid"]
    assert alive(pid) and pid in cgroup_procs("pids", cid)

    bundle.ok("start", cid)
    assert bundle.state(cid)["status"] == "running"
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00300\x00",
             "the container process executes sleep")

    bundle.ok("pause", cid)
    assert bundle.state(cid)["status"] == "paused"
    assert (cgroup_dir("freezer", cid) / "freezer.state").read_text().strip() == "FROZEN"
    assert pid_status(pid)["State"].startswith("D"), pid_status(pid)["State"]

    bundle.ok("resume", cid)
    assert bundle.state(cid)["status"] == "running"
    assert (cgroup_dir("freezer", cid) / "freezer.state").read_text().strip() == "THAWED"
    assert not pid_status(pid)["State"].startswith("D")

    bundle.ok("kill", cid, "KILL")
    assert bundle.wait_status(cid, "stopped")["status"] == "stopped"
    assert not alive(pid)
    bundle.ok("delete", cid)
    assert not cgroup_dirs_named(cid)
    r = bundle.runtime("state", cid)
    assert r.returncode == 1 and "does not exist" in r.stderr


@pytest.mark.parametrize("signal", ["TERM", "9", "SIGKILL"])
def test_kill_by_name_and_number(bundle: Bundle, signal: str) -> None:
    # pid 1 of a pid namespace gets only the signals it handles: trap TERM to see it arrive.
    bundle.process["args"] = ["sh", "-c", "trap 'echo got-term; exit 0' TERM; "
                              "while :; do sleep 1 & wait $!; done"]
    cid = bundle.start()
    pid = bundle.state(cid)["pid"]
    wait_for(lambda: len(cgroup_procs("pids", cid)) == 2, "the shell runs its loop")
    bundle.ok("kill", cid, signal)
    assert bundle.wait_status(cid, "stopped")["status"] == "stopped"
    assert not alive(pid)
    if signal == "TERM":
        assert bundle.output(cid) == "got-term\n"
    bundle.ok("delete", cid)


def test_kill_all_signals_every_process(bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "sleep 300 & sleep 301 & wait"]
    cid = bundle.start()
    wait_for(lambda: len(cgroup_procs("pids", cid)) == 3, "three processes in the cgroup")
    pids = cgroup_procs("pids", cid)
    bundle.ok("kill", "--all", cid, "KILL")
    wait_for(lambda: not any(alive(p) for p in pids), "every process of the container is gone")
    assert cgroup_procs("pids", cid) == []
    assert bundle.wait_status(cid, "stopped")["status"] == "stopped"


def test_delete_force_kills_a_running_container(bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "sleep 300 & wait"]
    cid = bundle.start()
    wait_for(lambda: len(cgroup_procs("pids", cid)) == 2, "two processes in the cgroup")
    pids = cgroup_procs("pids", cid)
    bundle.ok("delete", "--force", cid)
    assert not any(alive(p) for p in pids)
    assert not cgroup_dirs_named(cid)
    assert "does not exist" in bundle.runtime("state", cid).stderr


def test_delete_without_force_refuses_a_running_container(bundle: Bundle) -> None:
    cid = bundle.start()
    pid = bundle.state(cid)["pid"]
    r = bundle.runtime("delete", cid)
    assert r.returncode == 1 and "running" in r.stderr
    assert bundle.state(cid)["status"] == "running" and alive(pid)
    assert bundle.exec(cid, "echo", "still-here") == "still-here\n"


def test_delete_a_created_container(bundle: Bundle) -> None:
    cid = bundle.create()
    pid = bundle.state(cid)["pid"]
    bundle.ok("delete", cid)
    assert not alive(pid) and not cgroup_dirs_named(cid)


def test_delete_force_of_a_paused_container(bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "sleep 300 & wait"]
    cid = bundle.start()
    wait_for(lambda: len(cgroup_procs("pids", cid)) == 2, "two processes in the cgroup")
    pids = cgroup_procs("pids", cid)
    bundle.ok("pause", cid)
    bundle.ok("delete", "--force", cid)
    assert not any(alive(p) for p in pids) and not cgroup_dirs_named(cid)


# -- run ---------------------------------------------------------------------------------------

def test_run_forwards_signals_to_the_container(bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "trap 'echo got-term; exit 9' TERM; echo ready; "
                              "while :; do sleep 1 & wait $!; done"]
    cid = bundle.new_id()
    bundle.write_config(cid)
    out = bundle.tmp / "run.out"
    with open(out, "w") as f:
        p = subprocess.Popen([RUNTIME, "--root", str(bundle.state_dir), "run", "--bundle",
                              str(bundle.path), cid], stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "ready" in out.read_text(), "the container's trap is set")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 9
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out.read_text() == "ready\ngot-term\n"


def test_exit_by_signal_is_128_plus_the_signal(bundle: Bundle) -> None:
    cid = bundle.new_id()
    bundle.write_config(cid)
    p = subprocess.Popen([RUNTIME, "--root", str(bundle.state_dir), "run", "--bundle",
                          str(bundle.path), cid], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: bundle.runtime("state", cid).stdout.count('"running"') == 1,
                 "the container runs")
        bundle.ok("kill", cid, "KILL")  # from outside: pid 1 cannot be killed from inside
        assert p.wait(timeout=60) == 137
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    other = bundle.start()
    assert bundle.runtime("exec", other, "sh", "-c", "kill -15 $$").returncode == 143


def test_run_keep_leaves_a_stopped_container(bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "exit 2"]
    cid = bundle.new_id()
    bundle.write_config(cid)
    assert bundle.runtime("run", "--keep", "--bundle", str(bundle.path), cid).returncode == 2
    assert bundle.state(cid)["status"] == "stopped"
    assert cgroup_dirs_named(cid)
    bundle.ok("delete", cid)
    assert not cgroup_dirs_named(cid)


def test_annotations_reach_state_and_hooks(bundle: Bundle) -> None:
    bundle.spec["annotations"] = {"org.example.team": "silo", "io.kubernetes.pod": "p1"}
    bundle.spec["hooks"] = {"prestart": [{"path": hook(bundle, "prestart")}]}
    cid = bundle.create()
    assert bundle.state(cid)["annotations"] == bundle.spec["annotations"]
    hook_state = json.loads((bundle.tmp / "prestart.json").read_text())
    assert hook_state["annotations"] == bundle.spec["annotations"]


def test_run_detach_leaves_it_running(bundle: Bundle) -> None:
    cid = bundle.new_id()
    bundle.write_config(cid)
    bundle.ok("run", "--detach", "--bundle", str(bundle.path), cid)
    st = bundle.state(cid)
    assert st["status"] == "running" and alive(st["pid"])


def test_run_propagates_the_exit_code(bundle: Bundle) -> None:
    r = bundle.sh("exit 7")
    assert r.returncode == 7, r.stderr


def test_run_captures_stdout_and_stderr(bundle: Bundle) -> None:
    r = bundle.sh("echo out-line; echo err-line >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out-line\n", "err-line\n")


def test_run_with_a_terminal_inside_a_pty(bundle: Bundle) -> None:
    bundle.process["terminal"] = True
    bundle.process["args"] = ["sh", "-c", "tty; stty size; read line; echo got-$line; exit 3"]
    cid = bundle.new_id()
    bundle.write_config(cid)
    master, slave = os.openpty()
    # the runtime gives the container's terminal the size of its own, as runc does
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    try:
        p = subprocess.Popen([RUNTIME, "--root", str(bundle.state_dir), "run", "--bundle",
                              str(bundle.path), cid], stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        slave = -1
        # typed ahead of the container's start: the relay must not drop it
        os.write(master, b"typed\n")
        out = read_until_closed(master, deadline=20)
        code = p.wait(timeout=20)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
        if p.poll() is None:
            p.kill()
            p.wait()
    assert code == 3, out
    lines = [line for line in out.split("\r\n") if line != "typed"]  # the echoes
    assert lines[:3] == ["/dev/pts/0", "33 111", "got-typed"], out


# -- list, ps, events, update --------------------------------------------------------------------

def test_list_table_and_json(bundle: Bundle) -> None:
    running = bundle.start()
    created = bundle.create()
    table = bundle.ok("list").splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[running][2] == "running" and rows[created][2] == "created"
    assert rows[running][1] == str(bundle.state(running)["pid"])
    docs = {d["id"]: d for d in json.loads(bundle.ok("list", "--format", "json"))}
    assert set(docs) == {running, created}
    assert docs[running]["status"] == "running" and docs[created]["status"] == "created"
    assert set(bundle.ok("list", "-q").split()) == {running, created}


def test_ps_json_lists_the_init(bundle: Bundle) -> None:
    bundle.process["args"] = ["sh", "-c", "sleep 300 & wait"]
    cid = bundle.start()
    wait_for(lambda: len(cgroup_procs("pids", cid)) == 2, "two processes in the cgroup")
    pids = json.loads(bundle.ok("ps", "--format", "json", cid))
    assert bundle.state(cid)["pid"] in pids and len(pids) == 2
    assert sorted(pids) == sorted(cgroup_procs("pids", cid))


def test_events_stats(bundle: Bundle) -> None:
    cid = bundle.start()
    lines = bundle.ok("events", "--stats", cid).splitlines()
    assert len(lines) == 1
    ev = json.loads(lines[0])
    assert ev["type"] == "stats" and ev["id"] == cid
    assert ev["data"]["pids"]["current"] == 1
    assert ev["data"]["memory"]["usage"]["usage"] > 0


def test_events_stream_reports_an_oom_kill(bundle: Bundle) -> None:
    bundle.linux["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    cid = bundle.start()
    out = bundle.tmp / "events.out"
    with open(out, "w") as f:
        p = subprocess.Popen([RUNTIME, "--root", str(bundle.state_dir), "events",
                              "--interval", "100ms", cid], stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: out.read_text().count("\n") >= 1, "the first stats event")
        assert '"oom"' not in out.read_text()
        # tail keeps the one endless "line" of zeros in memory: 64 MiB against 16
        r = bundle.runtime("exec", cid, "sh", "-c", "head -c 64m /dev/zero | tail >/dev/null")
        assert r.returncode == 137
        wait_for(lambda: '"oom"' in out.read_text(), "an oom event")
        bundle.ok("kill", cid, "KILL")
        assert p.wait(timeout=60) == 0  # the stream ends with the container
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"type": "oom", "id": cid} in events
    assert all(e["id"] == cid and e["type"] in ("stats", "oom") for e in events)


def test_update_memory_limit_reaches_the_cgroup(bundle: Bundle) -> None:
    cid = bundle.start()
    limit_file = cgroup_dir("memory", cid) / "memory.limit_in_bytes"
    before = int(limit_file.read_text())
    res = bundle.tmp / "resources.json"
    res.write_text(json.dumps({"memory": {"limit": 64 << 20}, "pids": {"limit": 42}}))
    bundle.ok("update", "--resources", str(res), cid)
    assert before != 64 << 20
    assert int(limit_file.read_text()) == 64 << 20
    assert (cgroup_dir("pids", cid) / "pids.max").read_text().strip() == "42"
    bundle.ok("update", "--memory", "96m", cid)
    assert int(limit_file.read_text()) == 96 << 20


# -- exec --------------------------------------------------------------------------------------

def test_exec_args_env_cwd_user(bundle: Bundle) -> None:
    cid = bundle.start()
    out = bundle.exec(cid, "sh", "-c", 'id -u; id -g; echo "$FOO"; pwd',
                      flags=("--env", "FOO=bar baz", "--cwd", "/tmp", "--user", "1000:1000"))
    assert out.split("\n") == ["1000", "1000", "bar baz", "/tmp", ""]
    assert bundle.exec(cid, "id", "-u") == "0\n"
    r = bundle.runtime("exec", cid, "sh", "-c", "exit 5")
    assert r.returncode == 5


def test_exec_process_file(bundle: Bundle) -> None:
    cid = bundle.start()
    pfile = bundle.tmp / "process.json"
    pfile.write_text(json.dumps({
        "args": ["sh", "-c", 'echo "$A"; pwd; id -u'], "env": ["A=from-file", "PATH=/bin"],
        "cwd": "/etc", "user": {"uid": 1000, "gid": 1000}, "terminal": False,
    }))
    assert bundle.ok("exec", "--process", str(pfile), cid) == "from-file\n/etc\n1000\n"


def test_exec_detach_pid_file(bundle: Bundle) -> None:
    cid = bundle.start()
    pid_file = bundle.tmp / "exec.pid"
    bundle.ok("exec", "--detach", "--pid-file", str(pid_file), cid, "sleep", "123")
    pid = int(pid_file.read_text())
    assert alive(pid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00123\x00"
    assert pid in cgroup_procs("pids", cid)
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(
        f"/proc/{bundle.state(cid)['pid']}/ns/pid")


def test_exec_tty_in_the_foreground(bundle: Bundle) -> None:
    """exec --tty without a console socket: the runtime relays the pty to its own stdio."""
    cid = bundle.start()
    master, slave = os.openpty()
    try:
        p = subprocess.Popen([RUNTIME, "--root", str(bundle.state_dir), "exec", "--tty", cid,
                              "sh", "-c", "tty; exit 6"], stdin=slave, stdout=slave,
                             stderr=slave)
        os.close(slave)
        slave = -1
        out = read_until_closed(master, deadline=20)
        code = p.wait(timeout=20)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
        if p.poll() is None:
            p.kill()
            p.wait()
    assert code == 6, out
    assert out.split() and out.split()[0].startswith("/dev/pts/"), out


def test_exec_tty_through_a_console_socket(bundle: Bundle) -> None:
    cid = bundle.start()
    path = str(bundle.tmp / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(30)
        p = subprocess.Popen([RUNTIME, "--root", str(bundle.state_dir), "exec", "--tty",
                              "--console-socket", path, cid, "sh", "-c", "tty; exit 4"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            conn, _ = listener.accept()
            with conn:
                master = receive_fd(conn)
            try:
                out = read_until_closed(master)
            finally:
                os.close(master)
            code = p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            assert p.stderr is not None
            err = p.stderr.read().decode()
            p.stderr.close()
    assert code == 4, err
    assert out.split() and out.split()[0].startswith("/dev/pts/"), out


# -- hooks -------------------------------------------------------------------------------------

def hook(bundle: Bundle, name: str, body: str = "") -> str:
    script = bundle.tmp / f"{name}.sh"
    script.write_text(f"#!/bin/sh\n/bin/cat > {bundle.tmp}/{name}.json\n{body}")
    script.chmod(0o755)
    return str(script)


def test_hooks_get_the_state_on_stdin(bundle: Bundle) -> None:
    bundle.spec["hooks"] = {k: [{"path": hook(bundle, k)}]
                            for k in ("prestart", "poststart", "poststop")}
    cid = bundle.create()
    pid = bundle.state(cid)["pid"]
    pre = json.loads((bundle.tmp / "prestart.json").read_text())
    assert not (bundle.tmp / "poststart.json").exists()
    bundle.ok("start", cid)
    post = json.loads((bundle.tmp / "poststart.json").read_text())
    assert not (bundle.tmp / "poststop.json").exists()
    bundle.ok("kill", cid, "KILL")
    bundle.wait_status(cid, "stopped")
    bundle.ok("delete", cid)
    stop = json.loads((bundle.tmp / "poststop.json").read_text())
    assert [(d["id"], d["status"], d["pid"], d["bundle"]) for d in (pre, post, stop)] == [
        (cid, "creating", pid, str(bundle.path)), (cid, "running", pid, str(bundle.path)),
        (cid, "stopped", pid, str(bundle.path))]


def test_create_runtime_create_container_and_start_container_hooks(bundle: Bundle) -> None:
    inside = bundle.rootfs / "hook.sh"  # startContainer's path resolves in the container
    inside.write_text("#!/bin/sh\ncat > /dev/shm/startContainer.json\n")
    inside.chmod(0o755)
    bundle.spec["hooks"] = {"createRuntime": [{"path": hook(bundle, "createRuntime")}],
                            "createContainer": [{"path": hook(bundle, "createContainer")}],
                            "startContainer": [{"path": "/hook.sh"}]}
    bundle.process["args"] = ["sh", "-c", "cat /dev/shm/startContainer.json; exec sleep 300"]
    cid = bundle.create()
    pid = bundle.state(cid)["pid"]
    for kind in ("createRuntime", "createContainer"):
        doc = json.loads((bundle.tmp / f"{kind}.json").read_text())
        assert (doc["id"], doc["status"], doc["bundle"]) == (cid, "creating", str(bundle.path))
    assert json.loads((bundle.tmp / "createRuntime.json").read_text())["pid"] == pid
    bundle.ok("start", cid)
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"),
             "the container process reaches sleep")
    doc = json.loads(bundle.output(cid))
    assert (doc["id"], doc["status"]) == (cid, "running")


def test_failing_start_container_hook_says_so(bundle: Bundle) -> None:
    inside = bundle.rootfs / "hook.sh"
    inside.write_text("#!/bin/sh\nexit 3\n")
    inside.chmod(0o755)
    bundle.spec["hooks"] = {"startContainer": [{"path": "/hook.sh"}]}
    r = bundle.sh("echo should-not-run")
    assert r.returncode != 0 and "should-not-run" not in r.stdout
    assert "hooks.startContainer[0]" in r.stderr and "status 3" in r.stderr, r.stderr


def test_failing_poststart_hook_fails_start_and_stops_the_container(bundle: Bundle) -> None:
    bundle.spec["hooks"] = {"poststart": [{"path": hook(bundle, "poststart", "exit 4\n")}]}
    cid = bundle.create()
    pid = bundle.state(cid)["pid"]
    r = bundle.runtime("start", cid)
    assert r.returncode != 0 and "hooks.poststart[0]" in r.stderr, r.stderr
    assert bundle.state(cid)["status"] == "stopped" and not alive(pid)
    bundle.ok("delete", cid)


def test_every_poststop_hook_runs_even_after_one_fails(bundle: Bundle) -> None:
    bundle.spec["hooks"] = {"poststop": [{"path": hook(bundle, "first", "exit 4\n")},
                                         {"path": hook(bundle, "second")}]}
    cid = bundle.create()
    bundle.ok("delete", cid)
    assert json.loads((bundle.tmp / "first.json").read_text())["id"] == cid
    assert json.loads((bundle.tmp / "second.json").read_text())["status"] == "stopped"


def test_hook_timeout_fails_create_and_leaves_nothing(bundle: Bundle) -> None:
    bundle.spec["hooks"] = {"prestart": [{"path": hook(bundle, "slow", "exec sleep 5\n"),
                                          "timeout": 1}]}
    cid = bundle.new_id()
    bundle.write_config(cid)
    r = bundle.runtime("create", "--bundle", str(bundle.path), cid)
    assert r.returncode != 0
    assert "hooks.prestart[0]" in r.stderr
    bundle.assert_clean()


# -- the spec reaches the kernel ------------------------------------------------------------------

def test_hostname_and_domainname(bundle: Bundle) -> None:
    bundle.spec["hostname"] = "box-one"
    bundle.spec["domainname"] = "silo.example"
    r = bundle.sh("hostname; cat /proc/sys/kernel/domainname")
    assert r.stdout == "box-one\nsilo.example\n", r.stderr
    assert os.uname().nodename != "box-one"


def test_sysctl_in_the_containers_netns(bundle: Bundle) -> None:
    host = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    want = "0" if host == "1" else "1"
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": want}
    r = bundle.sh("cat /proc/sys/net/ipv4/ip_forward")
    assert r.stdout.strip() == want, r.stderr
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == host


@pytest.mark.parametrize("inheritable", [True, False])
def test_process_user_groups_umask_caps_and_oom_score(bundle: Bundle,
                                                      inheritable: bool) -> None:
    bundle.spec["root"]["readonly"] = False
    bundle.process["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 6],
                              "umask": 0o027}
    bundle.process["oomScoreAdj"] = 123
    bundle.process["env"].append("GREETING=hello there")
    bundle.process["cwd"] = "/var/tmp"
    caps = bundle.process["capabilities"]
    if inheritable:
        caps["inheritable"] = list(caps["ambient"])
    bundle.process["args"] = [
        "sh", "-c", 'id -u; id -g; id -G; umask; cat /proc/self/oom_score_adj; echo "$GREETING";'
        " pwd; grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status"]
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:7] == ["1000", "1001", "1001 5 6", "0027", "123", "hello there", "/var/tmp"]
    got = dict(line.split(":\t") for line in lines[7:])
    # The default three (AUDIT_WRITE, KILL, NET_BIND_SERVICE) reach a non-root user through
    # the ambient set, which the kernel raises only for capabilities also inheritable; runc
    # skips the others, and so does silo.
    default = f"{(1 << 29) | (1 << 5) | (1 << 10):016x}"
    held = default if inheritable else "0" * 16
    assert got == {"CapPrm": held, "CapEff": held, "CapBnd": default, "CapAmb": held}


def test_rlimits(bundle: Bundle) -> None:
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
    r = bundle.sh("ulimit -n; ulimit -Hn")
    assert r.stdout == "123\n456\n", r.stderr


@pytest.mark.parametrize("readonly", [True, False])
def test_readonly_root(bundle: Bundle, readonly: bool) -> None:
    bundle.spec["root"]["readonly"] = readonly
    r = bundle.sh("touch /made-here && echo wrote")
    if readonly:
        assert r.returncode != 0 and "Read-only file system" in r.stderr
        assert not (bundle.upper / "made-here").exists()
    else:
        assert r.stdout == "wrote\n", r.stderr
        assert (bundle.upper / "made-here").exists()


def test_user_namespace_with_mappings(bundle: Bundle) -> None:
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    bundle.process["args"] = ["sh", "-c", "id -u; id -g; cat /proc/self/uid_map "
                              "/proc/self/gid_map; exec sleep 300"]
    cid = bundle.start()
    pid = bundle.state(cid)["pid"]
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"),
             "the script reaches sleep")
    out = bundle.output(cid).split("\n")
    assert out[:2] == ["0", "0"]
    assert [line.split() for line in out[2:4]] == [["0", "100000", "65536"],
                                                    ["0", "200000", "65536"]]
    status = pid_status(pid)
    assert status["Uid"].split() == ["100000"] * 4 and status["Gid"].split() == ["200000"] * 4
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    lines = bundle.exec(cid, "sh", "-c",
                        "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user").split("\n")
    assert lines[0] == "0" and lines[1].split() == ["0", "100000", "65536"]
    assert lines[2] == os.readlink(f"/proc/{pid}/ns/user")


@pytest.mark.parametrize("propagation", ["rshared", "shared", "rslave", "slave", "rprivate",
                                         "private"])
def test_rootfs_propagation(bundle: Bundle, propagation: str) -> None:
    bundle.linux["rootfsPropagation"] = propagation
    cid = bundle.start()
    assert bundle.exec(cid, "cat", "/proc/1/cmdline") == "sleep\x00300\x00"
    # nothing of the container's mounts shows in the host's namespace while it runs
    assert mounts_below(bundle.path) == [str(bundle.rootfs)]


def test_join_a_network_namespace_by_path(bundle: Bundle) -> None:
    name = f"silo-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        path = f"/run/netns/{name}"
        # a mark a fresh namespace would not have: an odd MTU on its loopback
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "mtu", "1234"], check=True,
                       capture_output=True)
        for ns in bundle.linux["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = path
        cid = bundle.start()
        pid = bundle.state(cid)["pid"]
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(path).st_ino
        assert "mtu 1234" in bundle.exec(cid, "ip", "link", "show", "lo")
        bundle.ok("delete", "--force", cid)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_cgroup_limits_in_the_cgroup_files(bundle: Bundle) -> None:
    bundle.linux["resources"].update({
        "memory": {"limit": 48 << 20},
        "pids": {"limit": 77},
        "cpu": {"quota": 25000, "period": 100000, "shares": 512},
    })
    cid = bundle.start()
    assert int((cgroup_dir("memory", cid) / "memory.limit_in_bytes").read_text()) == 48 << 20
    assert (cgroup_dir("pids", cid) / "pids.max").read_text().strip() == "77"
    assert (cgroup_dir("cpu", cid) / "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert (cgroup_dir("cpu", cid) / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert (cgroup_dir("cpu", cid) / "cpu.shares").read_text().strip() == "512"
    pid = bundle.state(cid)["pid"]
    own = Path(f"/proc/{pid}/cgroup").read_text()
    assert f":memory:/silo-test/{cid}\n" in own and f":pids:/silo-test/{cid}\n" in own


@pytest.mark.parametrize("limit", [5, None])
def test_pids_limit_stops_forks(bundle: Bundle, limit: int | None) -> None:
    if limit is not None:
        bundle.linux["resources"]["pids"] = {"limit": limit}
    loop = " ".join(str(i) for i in range(20))
    # The loop runs in a subshell: a shell whose fork fails exits, and pid 1 must survive it.
    bundle.process["args"] = ["sh", "-c", f"(for i in {loop}; do sleep 300 & done); "
                              "exec sleep 301"]
    cid = bundle.start()
    pid = bundle.state(cid)["pid"]
    wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00301\x00",
             "the fork loop is over")
    procs = cgroup_procs("pids", cid)
    if limit is None:
        assert len(procs) == 21
    else:
        assert 2 <= len(procs) <= limit
        events = (cgroup_dir("pids", cid) / "pids.events").read_text().split()
        assert int(events[events.index("max") + 1]) > 0
