"""The compute service against the real kernel, silo-runtime and conmon.

Each test gets a ComputeService on a DaemonConfig of its own (data, run and runtime dirs in a
temp dir, a cgroup parent of its own). At the end the fixture deletes whatever the test left
through a fresh service, then fails the test if anything outlived that: a mount, a process
that mentions the temp dir (conmon's command line, the containers' environment), a cgroup, or a
file in the service's directories.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from silo import errors
from silo.service.compute import ComputeService
from silo.service.config import DaemonConfig
from tests import probes
from tests.kernel.conftest import (
    SKIP,
    cgroup_dirs_named,
    mounts_below,
    processes_mentioning,
    remove_cgroup_tree,
    wait_for,
)

pytestmark = pytest.mark.kernel

CONMON = "/usr/bin/conmon"
_seq = itertools.count()


def _skip_reason() -> str | None:
    return SKIP or (None if os.access(CONMON, os.X_OK) else "conmon is not installed")


class Env:
    """A temp dir, a DaemonConfig over it, and the services made on it."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="silo-svc-"))
        self.tmp.chmod(0o711)
        self.cgroup_name = f"silo-svc-{os.getpid()}-{next(_seq)}"
        self.config = DaemonConfig(
            data_dir=str(self.tmp / "data"), run_dir=str(self.tmp / "run"),
            runtime=str(probes.RUNTIME), conmon=CONMON,
            images_dir=str(probes.BUSYBOX_IMAGE.parent),
            cgroup_parent="/" + self.cgroup_name, stop_timeout=10)
        self.services: list[ComputeService] = []

    def service(self, reconcile: bool = True) -> ComputeService:
        svc = ComputeService(self.config)
        self.services.append(svc)
        if reconcile:
            svc.reconcile()
        return svc

    def doc(self, *args: str, **more: Any) -> dict[str, Any]:
        """A CreateRequest body running ``args`` (marked so that a leaked process shows)."""
        process: dict[str, Any] = {"CommandArgs": list(args),
                                   "Environment": {"SILO_TEST_SERVICE": str(self.tmp)}}
        process.update(more.pop("process", {}))
        container: dict[str, Any] = {"Storage": {"Image": "busybox"},
                                     "Linux": {"Process": process}}
        container.update(more.pop("container", {}))
        return {"Configuration": {"Owner": "tests", "SchemaVersion": {"Major": 2, "Minor": 1},
                                  "Container": container}, **more}

    def leaks(self) -> list[str]:
        out = []
        for m in mounts_below(self.tmp):
            out.append(f"mount {m}")
        for pid, cmd in processes_mentioning(str(self.tmp)).items():
            out.append(f"process {pid}: {cmd}")
        for d in cgroup_dirs_named(self.cgroup_name):
            for top, dirs, _ in os.walk(d):
                out += [f"cgroup {top}/{sub}" for sub in dirs]
        c = self.config
        for d in (os.path.join(c.run_dir, "bundles"), os.path.join(c.run_dir, "exits"),
                  os.path.join(c.data_dir, "scratch"), c.runtime_root):
            if os.path.isdir(d) and os.listdir(d):
                out.append(f"files in {d}: {sorted(os.listdir(d))}")
        return out

    def teardown(self) -> list[str]:
        for svc in self.services:
            svc.close()
        problems = []
        try:
            final = ComputeService(self.config)
            final.reconcile()
            for s in final.list():
                problems.append(f"compute system {s['Id']} ({s['State']}) was left")
                final.delete(s["Id"], force=True)
            final.close()
        except Exception as err:  # the check below says what is left
            problems.append(f"cleanup failed: {err!r}")
        problems += self.leaks()
        self.scrub()
        return problems

    def scrub(self) -> None:
        for pid in processes_mentioning(str(self.tmp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for m in sorted(mounts_below(self.tmp), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        for d in cgroup_dirs_named(self.cgroup_name):
            remove_cgroup_tree(d)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.tmp)], capture_output=True)


@pytest.fixture
def env() -> Iterator[Env]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    e = Env()
    yield e
    problems = e.teardown()
    if problems:
        pytest.fail("the compute service left things behind: " + "; ".join(problems),
                    pytrace=False)


@pytest.fixture
def svc(env: Env) -> ComputeService:
    return env.service()


def run(svc: ComputeService, env: Env, *args: str, **more: Any) -> str:
    """Create and start a container; its id."""
    sid: str = svc.create(env.doc(*args, **more))["Id"]
    svc.start(sid)
    return sid


def runtime_status(env: Env, sid: str) -> str:
    r = subprocess.run([str(probes.RUNTIME), "--root", env.config.runtime_root, "state", sid],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "gone"
    import json

    status: str = json.loads(r.stdout)["status"]
    return status


# -- the lifecycle ---------------------------------------------------------------------------

def test_create_start_wait_delete(svc: ComputeService, env: Env) -> None:
    created = svc.create(env.doc("sh", "-c", "exit 3", Id="first", Name="web"))
    assert created["Id"] == "first" and created["Name"] == "web"
    assert created["State"] == "Created" and created["Pid"] > 0
    assert created["SystemType"] == "Container" and created["Image"] == "busybox"
    assert runtime_status(env, "first") == "created"
    layers = svc.get("first")["Configuration"]["Container"]["Storage"]["Layers"]
    assert layers[0]["Id"].startswith("sha256:")

    started = svc.start("first")
    assert started["State"] in ("Running", "Stopped") and "Started" in started
    assert svc.wait("first", timeout=20) == {"ExitCode": 3, "ExitType": "UnexpectedExit"}
    summary = svc.get("first")
    assert summary["State"] == "Stopped" and summary["ExitCode"] == 3 and summary["Pid"] == 0
    assert [s["Id"] for s in svc.list(owner="tests")] == ["first"]
    assert svc.list(state="Running") == []

    svc.delete("first")
    with pytest.raises(errors.NotFound):
        svc.get("first")
    assert svc.list() == []


def test_exit_zero_is_graceful(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "true")
    assert svc.wait(sid, timeout=20) == {"ExitCode": 0, "ExitType": "GracefulExit"}
    svc.delete(sid)


def test_a_kill_of_a_container_that_just_stopped_is_not_a_failure(svc: ComputeService,
                                                                   env: Env) -> None:
    """shutdown and terminate race the container's own exit: silod may still hold it as
    Running when the runtime already sees it stopped. That kill is no failure (the exit is
    recorded by the watcher), while any other refusal of the runtime still is."""
    sid = run(svc, env, "true")
    assert svc.wait(sid, timeout=20)["ExitCode"] == 0
    assert runtime_status(env, sid) == "stopped"
    svc._runtime("kill", sid, "15", op="shutdown", obj=sid, ok_missing=True)
    with pytest.raises(errors.Internal) as e:
        svc._runtime("kill", sid, "15", op="shutdown", obj=sid)
    assert "it is stopped" in e.value.message
    with pytest.raises(errors.Internal):
        svc._runtime("pause", sid, op="pause", obj=sid, ok_missing=True)
    svc.delete(sid)


def test_ids_and_names_are_unique(svc: ComputeService, env: Env) -> None:
    svc.create(env.doc("sleep", "300", Id="a", Name="alpha"))
    with pytest.raises(errors.AlreadyExists):
        svc.create(env.doc("sleep", "300", Id="a"))
    with pytest.raises(errors.AlreadyExists):
        svc.create(env.doc("sleep", "300", Id="b", Name="alpha"))
    assert [s["Id"] for s in svc.list()] == ["a"]
    svc.delete("a")


def test_generated_id(svc: ComputeService, env: Env) -> None:
    s = svc.create(env.doc("true"))
    assert len(s["Id"]) >= 32 and s["Name"] == s["Id"]
    svc.delete(s["Id"])


def test_start_twice_is_invalid_state(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    with pytest.raises(errors.InvalidState):
        svc.start(sid)
    svc.terminate(sid)
    svc.delete(sid)


def test_unknown_system(svc: ComputeService) -> None:
    for call in (lambda: svc.get("nope"), lambda: svc.start("nope"),
                 lambda: svc.delete("nope"), lambda: svc.wait("nope", 1)):
        with pytest.raises(errors.NotFound):
            call()


def test_a_command_the_image_lacks_is_not_found(svc: ComputeService, env: Env) -> None:
    # the runtime looks the executable up at create (and at exec): the request's fault, not
    # silod's, named by its field
    for args in (["nosuch"], [""]):
        with pytest.raises(errors.NotFound) as caught:
            svc.create(env.doc(*args))
        assert caught.value.field == "Configuration.Container.Linux.Process.CommandArgs"
        assert "executable file not found" in caught.value.message
    assert svc.list() == []
    sid = run(svc, env, "sleep", "300")
    with pytest.raises(errors.NotFound) as caught:
        svc.create_process(sid, {"CommandArgs": ["nosuch"]})
    assert caught.value.field == "CommandArgs"
    svc.terminate(sid)
    svc.delete(sid)

# -- stopping --------------------------------------------------------------------------------

def test_shutdown_graceful(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sh", "-c", "trap 'exit 0' TERM; echo ready; "
                                    "while true; do sleep 0.05; done")
    wait_for(lambda: any(line["Line"] == "ready" for line in svc.logs(sid)), "the trap is set")
    stopped = svc.shutdown(sid, timeout=20)
    assert stopped["State"] == "Stopped"
    assert (stopped["ExitCode"], stopped["ExitType"]) == (0, "GracefulExit")
    svc.delete(sid)


def test_shutdown_forced_after_the_timeout(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")  # pid 1 of its namespace: SIGTERM is ignored
    t = time.monotonic()
    stopped = svc.shutdown(sid, timeout=1)
    assert time.monotonic() - t >= 1
    assert (stopped["ExitCode"], stopped["ExitType"]) == (137, "ForcedExit")
    svc.delete(sid)


def test_shutdown_uses_the_stop_signal(svc: ComputeService, env: Env) -> None:
    body = env.doc("sh", "-c", "trap 'exit 7' USR1; echo ready; "
                               "while true; do sleep 0.05; done")
    body["Configuration"]["Container"]["Linux"]["StopSignal"] = "SIGUSR1"
    sid = svc.create(body)["Id"]
    svc.start(sid)
    wait_for(lambda: any(line["Line"] == "ready" for line in svc.logs(sid)), "the trap is set")
    stopped = svc.shutdown(sid, timeout=20)
    assert (stopped["ExitCode"], stopped["ExitType"]) == (7, "GracefulExit")
    svc.delete(sid)


def test_terminate(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    stopped = svc.terminate(sid)
    assert (stopped["State"], stopped["ExitCode"], stopped["ExitType"]) == \
        ("Stopped", 137, "ForcedExit")
    assert svc.terminate(sid)["State"] == "Stopped"  # again: nothing to do
    svc.delete(sid)


def test_pause_resume(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    assert svc.pause(sid)["State"] == "Paused"
    assert runtime_status(env, sid) == "paused"
    with pytest.raises(errors.InvalidState):
        svc.pause(sid)
    assert svc.resume(sid)["State"] == "Running"
    assert runtime_status(env, sid) == "running"
    with pytest.raises(errors.InvalidState):
        svc.resume(sid)
    svc.pause(sid)
    assert svc.terminate(sid)["ExitType"] == "ForcedExit"  # a paused one dies too
    svc.delete(sid)


def test_delete_refuses_a_running_one_unless_forced(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    with pytest.raises(errors.InvalidState):
        svc.delete(sid)
    assert svc.get(sid)["State"] == "Running"
    svc.delete(sid, force=True)
    assert svc.list() == []


def test_delete_a_created_one(svc: ComputeService, env: Env) -> None:
    sid = svc.create(env.doc("sleep", "300"))["Id"]
    svc.delete(sid)
    assert runtime_status(env, sid) == "gone"


def test_wait_times_out(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    with pytest.raises(errors.Timeout):
        svc.wait(sid, timeout=0.2)
    svc.delete(sid, force=True)


# -- properties and modify -------------------------------------------------------------------

def test_properties_statistics_and_process_list(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300", container={"Memory": {"SizeInMB": 64}})

    def listed() -> list[str]:
        found = svc.properties(sid, {"PropertyTypes": ["ProcessList"]})["ProcessList"]
        return [p["CommandLine"] for p in found]

    # start returns once the init is released; its exec of the command follows
    wait_for(lambda: listed() == ["sleep 300"], "the init runs its command")
    props = svc.properties(sid, {"PropertyTypes": ["Statistics", "ProcessList", "Memory"]})
    assert props["Configuration"]["Container"]["Memory"] == {"SizeInMB": 64}
    stats = props["Statistics"]
    assert stats["Memory"]["LimitBytes"] == 64 << 20
    assert stats["Memory"]["UsageBytes"] > 0
    assert stats["Processor"]["TotalRuntimeNs"] > 0
    assert stats["Pids"]["Current"] == 1
    assert props["Memory"] == stats["Memory"]
    plist = props["ProcessList"]
    assert [p["CommandLine"] for p in plist] == ["sleep 300"]
    assert plist[0]["ProcessId"] == props["Pid"] and plist[0]["UserName"] == "root"
    plain = svc.properties(sid, {})
    assert "Statistics" not in plain and "ProcessList" not in plain
    svc.delete(sid, force=True)


def test_modify_memory(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300", container={"Memory": {"SizeInMB": 64}})
    svc.modify(sid, {"ResourcePath": "Container/Memory/SizeInMB", "RequestType": "Update",
                     "Settings": 128})
    props = svc.properties(sid, {"PropertyTypes": ["Statistics"]})
    assert props["Statistics"]["Memory"]["LimitBytes"] == 128 << 20
    assert props["Configuration"]["Container"]["Memory"] == {"SizeInMB": 128}
    with pytest.raises(errors.InvalidArgument):
        svc.modify(sid, {"ResourcePath": "Container/Memory/SizeInMB", "Settings": 1})
    svc.delete(sid, force=True)


# -- logs ------------------------------------------------------------------------------------

def test_logs(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sh", "-c", "echo one; echo two; echo oops >&2; sleep 0.2; echo three")
    svc.wait(sid, timeout=20)
    lines = list(svc.logs(sid))
    assert [line["Line"] for line in lines if line["Stream"] == "stdout"] == \
        ["one", "two", "three"]
    assert [line["Line"] for line in lines if line["Stream"] == "stderr"] == ["oops"]
    assert all(line["Time"].endswith("Z") for line in lines)
    assert [line["Line"] for line in svc.logs(sid, tail=1)] == ["three"]
    assert list(svc.logs(sid, tail=0)) == []
    # following a stopped one returns at the end
    assert len(list(svc.logs(sid, follow=True))) == 4
    svc.delete(sid)


def test_logs_follow(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done")
    got = [line["Line"] for line in svc.logs(sid, follow=True)]
    assert got == ["line1", "line2", "line3"]
    assert svc.get(sid)["State"] == "Stopped"
    svc.delete(sid)


# -- processes -------------------------------------------------------------------------------

def test_exec_process_exit_code(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    events = svc.events(types={"ProcessCreated", "ProcessExited"})
    p = svc.create_process(sid, {"CommandArgs": ["sh", "-c", "sleep 0.2; exit 5"]})
    pid = p["ProcessId"]
    assert "Stdio" not in p
    assert svc.process_status(sid, pid) == {"ProcessId": pid, "Exited": False}
    assert svc.wait_process(sid, pid, timeout=20) == \
        {"ProcessId": pid, "Exited": True, "ExitCode": 5}
    got = [next(events), next(events)]
    events.close()  # type: ignore[attr-defined]
    assert [(e["Type"], e["ProcessId"]) for e in got] == \
        [("ProcessCreated", pid), ("ProcessExited", pid)]
    assert got[1]["ExitCode"] == 5
    assert svc.get(sid)["State"] == "Running"
    svc.delete(sid, force=True)


def test_exec_needs_a_running_system(svc: ComputeService, env: Env) -> None:
    sid = svc.create(env.doc("sleep", "300"))["Id"]
    with pytest.raises(errors.InvalidState):
        svc.create_process(sid, {"CommandArgs": ["true"]})
    with pytest.raises(errors.InvalidArgument):
        svc.create_process(sid, {"CommandArgs": []})
    svc.delete(sid)


def test_exec_stdin_closed(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    p = svc.create_process(sid, {"CommandArgs": ["sh", "-c", "cat; exit 4"],
                                 "CreateStdInPipe": True, "CreateStdOutPipe": True})
    assert os.path.exists(p["Stdio"]["AttachSocket"])
    assert os.path.exists(p["Stdio"]["ControlFifo"])
    with pytest.raises(errors.Timeout):
        svc.wait_process(sid, p["ProcessId"], timeout=0.3)  # cat waits for its input
    svc.close_stdin(sid, p["ProcessId"])
    assert svc.wait_process(sid, p["ProcessId"], timeout=20)["ExitCode"] == 4
    with pytest.raises(errors.InvalidState):
        svc.resize_console(sid, p["ProcessId"], 30, 100)  # no console
    svc.delete(sid, force=True)


def test_exec_console_resize(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    p = svc.create_process(sid, {"CommandArgs": ["sh", "-c",
                                                 "while [ \"$(stty size)\" != '33 111' ]; "
                                                 "do sleep 0.05; done; exit 9"],
                                 "EmulateConsole": True, "ConsoleSize": [24, 80]})
    svc.resize_console(sid, p["ProcessId"], 33, 111)
    assert svc.wait_process(sid, p["ProcessId"], timeout=20)["ExitCode"] == 9
    svc.delete(sid, force=True)


def test_signal_process(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sleep", "300")
    p = svc.create_process(sid, {"CommandArgs": ["sleep", "300"]})
    svc.signal_process(sid, p["ProcessId"], signal.SIGKILL)
    assert svc.wait_process(sid, p["ProcessId"], timeout=20)["ExitCode"] == 137
    with pytest.raises(errors.NotFound):
        svc.signal_process(sid, os.getpid(), signal.SIGTERM)  # not the container's
    svc.delete(sid, force=True)


# -- events ----------------------------------------------------------------------------------

def test_events_sequence(svc: ComputeService, env: Env) -> None:
    before = time.time()
    sub = svc.events()
    sid = run(svc, env, "sh", "-c", "exit 2")
    svc.wait(sid, timeout=20)
    svc.delete(sid)
    got = []
    while len(got) < 4:
        e = sub.get(timeout=10)  # type: ignore[attr-defined]
        assert e is not None, f"only {got}"
        got.append(e)
    sub.close()  # type: ignore[attr-defined]
    assert [e["Type"] for e in got] == \
        ["SystemCreated", "SystemStarted", "SystemExited", "SystemDeleted"]
    assert all(e["Id"] == sid and e["Time"].endswith("Z") for e in got)
    assert (got[2]["ExitCode"], got[2]["ExitType"]) == (2, "UnexpectedExit")
    # the same again from history, filtered
    replay = svc.events(since=before, types={"SystemExited"}, ids={sid})
    assert next(replay)["ExitCode"] == 2
    replay.close()  # type: ignore[attr-defined]


def test_events_close_wakes_a_blocked_reader(svc: ComputeService) -> None:
    sub = svc.events()
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(list(sub)))
    t.start()
    time.sleep(0.1)
    sub.close()  # type: ignore[attr-defined]
    t.join(5)
    assert out == [[]]


def test_out_of_memory(svc: ComputeService, env: Env) -> None:
    sub = svc.events(types={"OutOfMemory", "SystemExited"})
    sid = run(svc, env, "sh", "-c", "x=a; while true; do x=$x$x; done",
              container={"Memory": {"SizeInMB": 8}})
    exit_status = svc.wait(sid, timeout=60)
    assert exit_status["ExitType"] == "UnexpectedExit"
    types = [next(sub)["Type"], next(sub)["Type"]]
    sub.close()  # type: ignore[attr-defined]
    assert types == ["OutOfMemory", "SystemExited"]
    svc.delete(sid)


# -- failures leave nothing ------------------------------------------------------------------

def test_unknown_image(svc: ComputeService, env: Env) -> None:
    body = env.doc("true")
    body["Configuration"]["Container"]["Storage"]["Image"] = "nginx"
    with pytest.raises(errors.NotFound, match=r"Storage\.Image: no image 'nginx'"):
        svc.create(body)
    assert svc.list() == [] and env.leaks() == []


def test_invalid_document(svc: ComputeService, env: Env) -> None:
    body = env.doc("true", container={"Memory": {"SizeInMB": 1}})
    with pytest.raises(errors.InvalidArgument) as e:
        svc.create(body)
    assert "SizeInMB" in e.value.field
    assert svc.list() == [] and env.leaks() == []


def test_failed_create_leaves_nothing(svc: ComputeService, env: Env) -> None:
    body = env.doc("true", Id="broken",
                   container={"Networking": {"Namespace": "/run/netns/silo-no-such"}})
    with pytest.raises(errors.SiloError):
        svc.create(body)
    assert svc.list() == []
    assert svc.store.operations() == []
    assert env.leaks() == []
    svc.create(env.doc("true", Id="broken"))  # the id is free again
    svc.delete("broken")


# -- system info -----------------------------------------------------------------------------

def test_system_info(svc: ComputeService) -> None:
    info = svc.system_info()
    assert info["Cgroups"]["Mode"] in ("v1", "v2", "hybrid")
    assert info["Overlayfs"] is True
    assert "silo-runtime" in info["Runtime"]["Version"]
    assert "conmon" in info["Monitor"]["Version"]
    assert "busybox:latest" in info["Images"]


# -- reconcile -------------------------------------------------------------------------------

def test_reconcile_readopts_a_running_container(env: Env) -> None:
    first = env.service()
    sid = run(first, env, "sh", "-c", "echo up; sleep 1000")
    pid = first.get(sid)["Pid"]
    first.close()  # silod goes away without cleaning up
    env.services.remove(first)
    assert runtime_status(env, sid) == "running"
    os.kill(pid, 0)  # the container kept running

    second = env.service()
    summary = second.get(sid)
    assert (summary["State"], summary["Pid"]) == ("Running", pid)
    with pytest.raises(errors.Timeout):
        second.wait(sid, timeout=0.2)
    assert [line["Line"] for line in second.logs(sid)] == ["up"]
    second.signal_process(sid, pid, signal.SIGKILL)
    assert second.wait(sid, timeout=20) == {"ExitCode": 137, "ExitType": "UnexpectedExit"}
    second.delete(sid)


def test_reconcile_records_an_exit_while_down(env: Env) -> None:
    first = env.service()
    sid = run(first, env, "sh", "-c", "sleep 0.5; exit 42")
    first.close()
    env.services.remove(first)
    exit_file = Path(env.config.run_dir) / "exits" / sid
    wait_for(exit_file.exists, "conmon wrote the exit file", deadline=30)

    second = env.service(reconcile=False)
    sub = second.events(types={"SystemExited"})
    report = second.reconcile()
    assert report["exited"] == [sid]
    summary = second.get(sid)
    assert (summary["State"], summary["ExitCode"], summary["ExitType"]) == \
        ("Stopped", 42, "UnexpectedExit")
    assert next(sub)["ExitCode"] == 42
    sub.close()  # type: ignore[attr-defined]
    second.delete(sid)


def test_reconcile_undoes_a_half_done_create(env: Env) -> None:
    first = env.service()
    sid = run(first, env, "sleep", "300")
    # as if silod died in the middle of create: the intent is in the journal
    first.store.begin(sid, "create", {"bundle": str(Path(env.config.run_dir, "bundles", sid)),
                                      "scratch": str(Path(env.config.data_dir, "scratch", sid)),
                                      "cgroup": env.config.cgroup_parent + "/" + sid})
    conmon_pid = first.store.get_system(sid).conmon_pid  # type: ignore[union-attr]
    first.close()
    env.services.remove(first)

    second = env.service(reconcile=False)
    report = second.reconcile()
    assert report["undone"] == [f"create {sid}"]
    assert second.list() == [] and second.store.operations() == []
    assert runtime_status(env, sid) == "gone"
    wait_for(lambda: not _alive(conmon_pid), "conmon left")
    assert env.leaks() == []


def test_reconcile_finishes_an_interrupted_delete(env: Env) -> None:
    first = env.service()
    sid = run(first, env, "true")
    first.wait(sid, timeout=20)
    row = first.store.get_system(sid)
    assert row is not None
    first.store.begin(sid, "delete", {"bundle": row.bundle, "scratch": row.scratch,
                                      "cgroup": row.cgroup})
    first.close()
    env.services.remove(first)
    second = env.service()
    assert second.list() == []
    assert env.leaks() == []


def test_reconcile_removes_leftovers(env: Env) -> None:
    svc = env.service()
    sid = run(svc, env, "sleep", "300")
    # forget the row, as if the database had been lost: the container is a stranger now
    svc.store.delete_system(sid)
    svc.close()
    env.services.remove(svc)
    report = env.service(reconcile=False).reconcile()
    assert f"bundle {sid}" in report["removed"]
    assert runtime_status(env, sid) == "gone"
    assert env.leaks() == []


def test_concurrent_verbs(svc: ComputeService, env: Env) -> None:
    ids = [run(svc, env, "sleep", "300") for _ in range(3)]
    errs: list[BaseException] = []

    def stop(sid: str) -> None:
        try:
            svc.terminate(sid)
            svc.delete(sid)
        except BaseException as err:
            errs.append(err)

    threads = [threading.Thread(target=stop, args=(sid,)) for sid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errs == [] and svc.list() == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except OSError:
        return False



def test_stopping_a_created_one(svc: ComputeService, env: Env) -> None:
    a = svc.create(env.doc("sleep", "300"))["Id"]
    assert svc.terminate(a)["ExitType"] == "ForcedExit"
    b = svc.create(env.doc("sleep", "300"))["Id"]
    stopped = svc.shutdown(b, timeout=1)
    assert stopped["State"] == "Stopped"
    svc.delete(a)
    svc.delete(b)


def test_reconcile_follows_a_container_whose_monitor_died(env: Env) -> None:
    first = env.service()
    sid = run(first, env, "sleep", "300")
    row = first.store.get_system(sid)
    assert row is not None
    first.close()
    env.services.remove(first)
    os.kill(row.conmon_pid, signal.SIGKILL)
    wait_for(lambda: not _alive(row.conmon_pid), "conmon died")
    assert _alive(row.pid)

    second = env.service(reconcile=False)
    assert second.reconcile()["adopted"] == [sid]
    assert second.get(sid)["State"] == "Running"
    second.signal_process(sid, row.pid, signal.SIGKILL)
    # the monitor kept the exit code: without it, the exit is known but its code is not
    assert second.wait(sid, timeout=20) == {"ExitCode": -1, "ExitType": "UnexpectedExit"}
    second.delete(sid)


def test_reconcile_records_an_exec_exit_while_down(env: Env) -> None:
    first = env.service()
    sid = run(first, env, "sleep", "300")
    p = first.create_process(sid, {"CommandArgs": ["sh", "-c", "sleep 0.3; exit 6"]})
    first.close()
    env.services.remove(first)
    time.sleep(1)
    second = env.service()
    assert second.process_status(sid, p["ProcessId"]) == \
        {"ProcessId": p["ProcessId"], "Exited": True, "ExitCode": 6}
    second.delete(sid, force=True)


def test_first_process_stdin_and_console(svc: ComputeService, env: Env) -> None:
    a = run(svc, env, "sh", "-c", "cat; exit 3", process={"CreateStdInPipe": True})
    pid = svc.get(a)["Pid"]
    with pytest.raises(errors.Timeout):
        svc.wait(a, timeout=0.3)
    svc.close_stdin(a, pid)
    assert svc.wait(a, timeout=20)["ExitCode"] == 3
    with pytest.raises(errors.InvalidState):
        svc.close_stdin(a, pid)  # it has exited
    svc.delete(a)

    b = run(svc, env, "sh", "-c", "while [ \"$(stty size)\" != '40 120' ]; do sleep 0.05; done",
            process={"EmulateConsole": True})
    svc.resize_console(b, svc.get(b)["Pid"], 40, 120)
    assert svc.wait(b, timeout=20) == {"ExitCode": 0, "ExitType": "GracefulExit"}
    svc.delete(b)


def test_reconcile_after_a_reboot_trusts_no_pid(env: Env) -> None:
    first = env.service()
    sid = run(first, env, "sleep", "300")
    first.store.set_meta("boot_id", "an-earlier-boot")  # as if the host had rebooted since
    first.close()
    env.services.remove(first)
    second = env.service(reconcile=False)
    assert second.reconcile()["exited"] == [sid]
    assert second.get(sid)["State"] == "Stopped"
    assert second.store.get_meta("boot_id") != "an-earlier-boot"
    second.delete(sid)  # the stale container is removed with it
    assert runtime_status(env, sid) == "gone"


def test_logs_follow_comes_up_for_air(svc: ComputeService, env: Env) -> None:
    sid = run(svc, env, "sh", "-c", "echo first; sleep 300")
    stream = svc.logs(sid, follow=True)
    wait_for(lambda: stream.get(0.05) is not None, "the first line")  # type: ignore[attr-defined]
    t = time.monotonic()
    assert stream.get(0.3) is None  # type: ignore[attr-defined]
    assert 0.25 < time.monotonic() - t < 5
    stream.close()  # type: ignore[attr-defined]
    with pytest.raises(StopIteration):
        next(stream)
    svc.delete(sid, force=True)
