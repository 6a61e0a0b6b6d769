"""silo (the CLI) against a fake silod (tests/unit/fake_silod.py): docker's flag habits, the
request each verb and flag sends, what it prints, exit statuses (125 silo's own, 126/127 the
command, else the container's), the foreground session's signals, and a start-up that loads
none of the slow modules."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from silo.cli import flags, spec, stats, timefmt
from silo.cli.attached import Session, detach_keys
from silo.cli.common import Context
from silo.cli.flags import BOOL, INT, MULTI, STR, Flag, UsageError
from tests.unit.fake_silod import FakeConmon, FakeSilod, error
from tests.unit.test_lean_imports import forbidden_imports

pytestmark = pytest.mark.unit

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")


# -- flags ----------------------------------------------------------------------------------

FLAGS = [Flag("interactive", BOOL, "i"), Flag("tty", BOOL, "t"), Flag("detach", BOOL, "d"),
         Flag("env", MULTI, "e"), Flag("publish", MULTI, "p"), Flag("name", STR, default=""),
         Flag("time", INT, "T"), Flag("rm", BOOL)]


def test_flags_docker_habits() -> None:
    v, rest = flags.parse(FLAGS, ["-it", "-e", "A=1", "-eB=2", "-e=C=3", "--name=web",
                                  "--rm", "-dp", "80:80", "-p8080:80", "-T5", "img", "-x"],
                          interspersed=False)
    assert (v["interactive"], v["tty"], v["detach"], v["rm"]) == (True, True, True, True)
    assert v["env"] == ["A=1", "B=2", "C=3"]
    assert v["publish"] == ["80:80", "8080:80"]
    assert (v["name"], v["time"]) == ("web", 5)
    assert rest == ["img", "-x"]


def test_flags_interspersed_and_end() -> None:
    v, rest = flags.parse(FLAGS, ["a", "--rm", "b", "--", "-t", "-"])
    assert v["rm"] and rest == ["a", "b", "-t", "-"]
    v, _ = flags.parse(FLAGS, ["--rm=false", "-t=true", "--name", "x"])
    assert (v["rm"], v["tty"], v["name"]) == (False, True, "x")


@pytest.mark.parametrize(("argv", "message"), [
    (["--nope"], "unknown flag: --nope"),
    (["-iz"], "unknown shorthand flag: 'z' in -iz"),
    (["--name"], "flag needs an argument: --name"),
    (["-e"], "flag needs an argument: 'e' in -e"),
    (["-T", "x"], "not an integer"),
    (["--rm=maybe"], "not a boolean"),
])
def test_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        flags.parse(FLAGS, argv)


def test_units() -> None:
    assert spec.memory_mb("64m") == 64
    assert spec.memory_mb("1g") == 1024
    assert spec.memory_mb("1.5G") == 1536
    assert spec.memory_mb("512k") == 1  # rounded up to a whole MiB
    assert spec.memory_mb("100MiB") == 100
    assert spec.memory_mb(str(64 << 20)) == 64
    for bad in ("", "m", "-1m", "12q", "nanm"):
        with pytest.raises(UsageError):
            spec.memory_mb(bad)
    assert spec.cpus_maximum("1.5", host_cpus=4) == 3750
    assert spec.cpus_maximum("4", host_cpus=4) == 10000
    assert spec.cpus_maximum("0.0001", host_cpus=4) == 1
    for bad in ("0", "5", "x", "-1"):
        with pytest.raises(UsageError, match=r"the range is 0\.01 to 4\.00"):
            spec.cpus_maximum(bad, host_cpus=4)


def test_detach_keys() -> None:
    assert detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_keys("ctrl-@,a") == b"\x00a"
    with pytest.raises(UsageError):
        detach_keys("ctrl-pp")


def test_times() -> None:
    assert timefmt.epoch("1970-01-02T00:00:01Z") == 86401
    assert timefmt.epoch("2000-03-01T00:00:00.5+01:00") == 951865200.5
    assert timefmt.epoch(12) == 12.0
    assert timefmt.epoch("yesterday") is None
    assert timefmt.human_duration(0.5) == "Less than a second"
    assert timefmt.human_duration(90) == "About a minute"
    assert timefmt.human_duration(7200) == "2 hours"
    assert timefmt.human_duration(86400 * 3) == "3 days"
    now = 86400.0 * 100
    assert timefmt.status({"State": "Running", "Started": 86400.0 * 100 - 300}, now) == \
        "Up 5 minutes"
    assert timefmt.status({"State": "Paused", "Started": now - 5}, now) == "Up 5 seconds (Paused)"
    assert timefmt.status({"State": "Stopped", "ExitCode": 3}, now) == "Exited (3)"
    assert timefmt.status({"State": "Created"}, now) == "Created"


# -- run and create -------------------------------------------------------------------------


def _created(silod: FakeSilod) -> dict[str, Any]:
    [body] = [r.body for r in silod.requests
              if (r.method, r.path) == ("POST", "/v1/compute-systems")]
    assert isinstance(body, dict)
    return body


def test_run_detached_sends_the_document(silod: FakeSilod, silo: Any,
                                         monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Any) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setenv("FROM_HERE", "yes")
    r = silo("run", "-d", "--name", "web", "-e", "A=1", "-eFROM_HERE", "-e", "UNSET",
             "-w", "/tmp", "-u", "1000:1000", "-v", "/data:/data:ro", "-v", f"{tmp_path}:/w",
             "--memory", "64m", "--cpus", "1.5", "--pids-limit", "50", "--hostname", "box",
             "--read-only", "busybox", "sleep", "100")
    assert r.code == 0, r
    body = _created(silod)
    sid = r.out.strip()
    assert sid in silod.systems and silod.systems[sid]["State"] == "Running"
    assert body == {"Name": "web", "Configuration": {
        "Owner": "silo", "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {
            "GuestOs": {"HostName": "box"},
            "Storage": {"Image": "busybox"},
            "MappedDirectories": [
                {"HostPath": "/data", "ContainerPath": "/data", "ReadOnly": True},
                {"HostPath": str(tmp_path), "ContainerPath": "/w", "ReadOnly": False}],
            "Memory": {"SizeInMB": 64},
            "Processor": {"Maximum": 3750},
            "Linux": {
                "Process": {"CommandArgs": ["sleep", "100"],
                            "Environment": {"A": "1", "FROM_HERE": "yes"},
                            "WorkingDirectory": "/tmp", "User": "1000:1000",
                            "EmulateConsole": False, "CreateStdInPipe": False,
                            "CreateStdOutPipe": True, "CreateStdErrPipe": True},
                "ReadonlyRootfs": True, "PidsLimit": 50},
            "Networking": {"Network": "nat"}}}}
    assert [c[:2] for c in silod.calls()] == [("POST", "/v1/compute-systems"),
                                               ("POST", f"/v1/compute-systems/{sid}/start")]


def test_run_defaults(silod: FakeSilod, silo: Any) -> None:
    r = silo("run", "-d", "busybox")
    assert r.code == 0, r
    body = _created(silod)
    assert "_" in body["Name"]  # adjective_noun
    container = body["Configuration"]["Container"]
    assert container["Linux"]["Process"]["CommandArgs"] == []  # the image's default
    assert set(container) == {"Storage", "Linux", "Networking"}
    assert container["Networking"] == {"Network": "nat"}  # docker's default bridge, HNS's nat


def test_run_entrypoint_and_tty(silod: FakeSilod, silo: Any) -> None:
    assert silo("run", "-dt", "--entrypoint", "/bin/echo", "busybox", "hi").code == 0
    proc = _created(silod)["Configuration"]["Container"]["Linux"]["Process"]
    assert proc["CommandArgs"] == ["/bin/echo", "hi"]
    assert proc["EmulateConsole"] is True and proc["CreateStdErrPipe"] is False
    assert proc["Environment"] == {"TERM": "xterm"}


def test_create_prints_the_id_and_does_not_start(silod: FakeSilod, silo: Any) -> None:
    r = silo("create", "--name", "c1", "busybox", "true")
    assert r.code == 0
    sid = r.out.strip()
    assert silod.systems[sid]["State"] == "Created"
    assert [c[0:2] for c in silod.calls()] == [("POST", "/v1/compute-systems")]
    r = silo("start", "c1")
    assert (r.code, r.out) == (0, "c1\n")
    assert silod.calls()[-1][:2] == ("POST", "/v1/compute-systems/c1/start")


def test_run_foreground_follows_the_log_and_exits_with_the_code(silod: FakeSilod,
                                                               silo: Any) -> None:
    silod.exit_code = 3
    silod.log_lines = [{"Time": "t", "Stream": "stdout", "Line": "hello"},
                       {"Time": "t", "Stream": "stderr", "Line": "oops"}]
    r = silo("run", "--rm", "--name", "fg", "busybox", "sh", "-c", "exit 3")
    assert (r.code, r.out, r.err) == (3, "hello\n", "oops\n")
    sid = _started(silod)
    assert [c[:2] for c in silod.calls()] == [
        ("POST", "/v1/compute-systems"),
        ("POST", f"/v1/compute-systems/{sid}/start"),
        ("GET", f"/v1/compute-systems/{sid}/logs?Follow=true"),
        ("POST", f"/v1/compute-systems/{sid}/wait"),
        ("DELETE", f"/v1/compute-systems/{sid}?Force=true")]


def _started(silod: FakeSilod) -> str:
    return [r.path.split("/")[3] for r in silod.requests if r.path.endswith("/start")][-1]


def test_run_foreground_through_the_attach_socket(silod: FakeSilod, silo: Any,
                                                  tmp_path: Any) -> None:
    conmon = FakeConmon(str(tmp_path), [b"\x02from conmon\n", b"\x03to stderr\n"],
                        exits=True)
    silod.stdio = {"AttachSocket": conmon.path, "ControlFifo": conmon.ctl}
    silod.exit_code = 0
    conmon.release.set()
    r = silo("run", "busybox", "echo")
    assert (r.code, r.out, r.err) == (0, "from conmon\n", "to stderr\n")
    assert not any(c[1].endswith("/logs?Follow=true") for c in silod.calls())


def test_run_interactive_needs_an_attach_socket(silod: FakeSilod, silo: Any) -> None:
    r = silo("run", "-i", "busybox", "cat")
    assert r.code == 125
    assert "silod gave no attach socket" in r.err
    assert silod.calls()[-1][0] == "DELETE" and silod.systems == {}


def test_run_unknown_image_is_125(silod: FakeSilod, silo: Any) -> None:
    r = silo("run", "alpine", "true")
    assert r.code == 125
    assert r.err == "silo: image 'alpine' not found (only busybox exists)\n"


def test_run_hyperv_is_not_there_yet(silod: FakeSilod, silo: Any) -> None:
    r = silo("run", "--isolation", "hyperv", "busybox", "true")
    assert r.code == 125
    assert "not there yet" in r.err
    assert silod.requests == []
    assert silo("run", "--isolation=bogus", "busybox").code == 125
    assert silo("run", "--network", "none", "-p", "80:80", "busybox").code == 125
    assert silo("run", "-p", "80", "busybox").code == 125
    assert silod.requests == []


@pytest.mark.parametrize(("spec", "mappings"), [
    ("8080:80", [{"Protocol": 6, "InternalPort": 80, "ExternalPort": 8080}]),
    ("53:5353/udp", [{"Protocol": 17, "InternalPort": 5353, "ExternalPort": 53}]),
    ("127.0.0.1:8080:80/tcp", [{"Protocol": 6, "InternalPort": 80, "ExternalPort": 8080,
                                "VIP": "127.0.0.1"}]),
    ("0.0.0.0:8080:80", [{"Protocol": 6, "InternalPort": 80, "ExternalPort": 8080}]),
    ("[::1]:8080:80", [{"Protocol": 6, "InternalPort": 80, "ExternalPort": 8080,
                        "VIP": "::1"}]),
    ("8080-8081:80-81", [{"Protocol": 6, "InternalPort": 80, "ExternalPort": 8080},
                         {"Protocol": 6, "InternalPort": 81, "ExternalPort": 8081}]),
])
def test_publish_becomes_port_mappings(spec: str, mappings: list[dict[str, Any]]) -> None:
    from silo.cli.spec import port_mappings

    assert port_mappings(spec) == mappings


@pytest.mark.parametrize(("spec", "words"), [
    ("80", "HOST-PORT:CONTAINER-PORT"), ("8080:80/sctp", "'sctp'"), ("x:80", "'x'"),
    ("0:80", "1..65535"), ("8080-8082:80-81", "differ"), ("[::1:8080:80", "unclosed"),
    ("70000:80", "1..65535"),
])
def test_a_bad_publish_is_refused_naming_it(spec: str, words: str) -> None:
    from silo.cli.flags import UsageError
    from silo.cli.spec import port_mappings

    with pytest.raises(UsageError) as e:
        port_mappings(spec)
    assert spec in e.value.message and words in e.value.message


def test_run_publishes_on_the_network_named(silod: FakeSilod, silo: Any) -> None:
    assert silo("run", "-d", "--network", "web", "-p", "8080:80", "-p", "53:53/udp",
                "busybox", "true").code == 0
    assert _created(silod)["Configuration"]["Container"]["Networking"] == {
        "Network": "web", "PortMappings": [
            {"Protocol": 6, "InternalPort": 80, "ExternalPort": 8080},
            {"Protocol": 17, "InternalPort": 53, "ExternalPort": 53}]}
    silod.requests.clear()
    assert silo("run", "-d", "--network", "none", "busybox", "true").code == 0
    assert "Networking" not in _created(silod)["Configuration"]["Container"]


@pytest.mark.parametrize(("answer", "code"), [
    (error("not_found", 'exec: "nosuch": executable file not found in $PATH',
           Field="process.args"), 127),
    (error("invalid_argument", "Container.Linux.Process.CommandArgs: permission denied",
           Field="Container.Linux.Process.CommandArgs"), 126),
    (error("invalid_argument", "process.cwd: /nope does not exist", Field="process.cwd"), 126),
    (error("internal", "cgroup: out of memory"), 125),
])
def test_run_start_failures(silod: FakeSilod, silo: Any, answer: Any, code: int) -> None:
    silod.override("POST", r"/v1/compute-systems/[^/]+/start", lambda req: answer)
    r = silo("run", "--rm", "busybox", "nosuch")
    assert r.code == code
    assert r.err == f"silo: {answer[1]['Message']}\n"
    assert silod.calls()[-1][0] == "DELETE"  # --rm removes what failed to start
    assert silo("run", "-d", "busybox", "nosuch").code == code


def test_run_create_failure_naming_the_command(silod: FakeSilod, silo: Any) -> None:
    # silod runs the runtime's create, which looks the executable up, at create.
    silod.override("POST", "/v1/compute-systems", lambda req: error(
        "internal", 'the runtime failed: silo-runtime create: exec: "nosuch": executable file '
        "not found in $PATH", Operation="compute::create"))
    r = silo("run", "busybox", "nosuch")
    assert r.code == 127 and "executable file not found" in r.err
    assert silo("create", "busybox", "nosuch").code == 125


def test_silod_unreachable_is_125(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                  silo: Any) -> None:
    monkeypatch.setenv("SILO_HOST", f"unix://{tmp_path}/none.sock")
    for argv in (["ps"], ["stop", "x"], ["run", "busybox"]):
        r = silo(*argv)
        assert r.code == 125
        assert r.err == f"silo: silod is not running (no socket at {tmp_path}/none.sock)\n"
    r = silo("-H", "tcp://127.0.0.1:1", "ps")
    assert r.code == 125 and "nothing listens on 127.0.0.1:1" in r.err


def test_usage_errors_are_125(silod: FakeSilod, silo: Any) -> None:
    r = silo("run", "--bogus", "busybox")
    assert r.code == 125
    assert r.err == "silo: unknown flag: --bogus\nSee 'silo run --help'.\n"
    assert silo("run").code == 125
    assert silo("frobnicate").code == 125
    assert silo().code == 125
    assert silod.requests == []
    r = silo("run", "--help")
    assert r.code == 0 and "Usage:  silo run [OPTIONS] IMAGE" in r.out and "--memory" in r.out
    assert silo("--help").code == 0
    assert silo("--version").out.startswith("silo version ")


# -- the other verbs --------------------------------------------------------------------------


def test_ps(silod: FakeSilod, silo: Any) -> None:
    a = silod.add("web")
    silod.add("old", state="Stopped")
    r = silo("ps")
    assert r.code == 0
    header, *rows = r.out.splitlines()
    assert header.split("   ")[0] == "CONTAINER ID"
    assert len(rows) == 1 and rows[0].startswith(a[:12]) and rows[0].endswith("web")
    assert len(silo("ps", "-a").out.splitlines()) == 3
    assert silo("ps", "-q").out == a[:12] + "\n"
    assert silo("ps", "-aq", "--no-trunc").out.split() == list(silod.systems)
    lines = silo("ps", "--format", "json").out.splitlines()
    assert len(lines) == 1 and '"Name":"web"' in lines[0]
    assert silo("ps", "--format", "{{.Names}}\\t{{.State}}").out == "web\trunning\n"


def test_exec(silod: FakeSilod, silo: Any) -> None:
    silod.add("web")
    silod.process_exit_code = 4
    silod.process_log_lines = [
        {"Time": "2026-11-27T00:00:00Z", "Stream": "stdout", "Line": "total 0"},
        {"Time": "2026-11-27T00:00:00Z", "Stream": "stderr", "Line": "ls: oops"}]
    r = silo("exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", "web", "ls", "-l")
    assert r.code == 4
    assert (r.out, r.err) == ("total 0\n", "ls: oops\n")
    create, logs, wait = silod.calls()[-3:]
    assert logs[:2] == ("GET", "/v1/compute-systems/web/processes/101/logs?Follow=true")
    assert create == ("POST", "/v1/compute-systems/web/processes",
                      {"CommandArgs": ["ls", "-l"], "Environment": {"X": "1"},
                       "WorkingDirectory": "/tmp", "User": "nobody", "EmulateConsole": False,
                       "CreateStdInPipe": False, "CreateStdOutPipe": True,
                       "CreateStdErrPipe": True})
    assert wait[:2] == ("POST", "/v1/compute-systems/web/processes/101/wait")


def test_exec_detached_and_attached(silod: FakeSilod, silo: Any, tmp_path: Any) -> None:
    sid = silod.add("web")
    assert silo("exec", "-d", "web", "sleep", "1").code == 0
    assert silod.calls()[-1][2]["CreateStdOutPipe"] is False
    conmon = FakeConmon(str(tmp_path), [b"\x02exec out\n"], exits=True)
    conmon.release.set()
    silod.stdio = {"AttachSocket": conmon.path, "ControlFifo": conmon.ctl}
    r = silo("exec", "-i", sid[:4], "echo")
    assert (r.code, r.out) == (0, "exec out\n")


def test_exec_command_not_found_is_127(silod: FakeSilod, silo: Any) -> None:
    silod.add("web")
    assert silo("exec", "ghost", "ls").code == 1  # no such container: silod's answer
    silod.override("POST", r"/v1/compute-systems/[^/]+/processes", lambda req: error(
        "not_found", 'exec: "nope": executable file not found in $PATH', Field="process.args"))
    assert silo("exec", "web", "nope").code == 127


def test_logs(silod: FakeSilod, silo: Any) -> None:
    silod.add("web")
    silod.log_lines = [{"Time": "T1", "Stream": "stdout", "Line": "a"},
                       {"Time": "T2", "Stream": "stderr", "Line": "b"},
                       {"Time": "T3", "Stream": "stdout", "Line": "prompt$ ", "Partial": True}]
    r = silo("logs", "web")
    assert (r.out, r.err) == ("a\nprompt$ ", "b\n")
    r = silo("logs", "-f", "--tail", "2", "-t", "web")
    assert (r.out, r.err) == ("T3 prompt$ ", "T2 b\n")
    assert silod.calls()[-1][1] == \
        "/v1/compute-systems/web/logs?Follow=true&Tail=2&Timestamps=true"
    assert silo("logs", "--tail", "x", "web").code == 125


def test_stop_kill_rm_pause_unpause(silod: FakeSilod, silo: Any) -> None:
    a = silod.add("web")
    r = silo("stop", "-t", "5", "web")
    assert (r.code, r.out) == (0, "web\n")
    assert silod.calls()[-1] == ("POST", "/v1/compute-systems/web/shutdown",
                                 {"TimeoutSeconds": 5})
    assert silo("stop", a).code == 0
    assert silod.calls()[-1][2] == {}
    b = silod.add("db")
    assert silo("kill", "-s", "hup", "db").code == 0
    assert silod.calls()[-1] == ("POST", f"/v1/compute-systems/{b}/processes/4242/signal",
                                 {"Signal": "SIGHUP"})
    assert silo("kill", "--signal=10", "db").code == 0
    assert silod.calls()[-1][2] == {"Signal": 10}
    assert silo("kill", "db").code == 0
    assert silod.calls()[-1][:2] == ("POST", "/v1/compute-systems/db/terminate")
    c = silod.add("paused")
    assert silo("pause", "paused").code == 0
    assert silod.systems[c]["State"] == "Paused"
    assert silo("unpause", "paused").code == 0
    assert silod.systems[c]["State"] == "Running"
    r = silo("rm", "ghost", "web", "paused", "-f")
    assert r.code == 1
    assert r.out == "web\npaused\n"
    assert r.err == "silo: no such container: ghost\n"
    assert silod.calls()[-1] == ("DELETE", "/v1/compute-systems/paused?Force=true", None)
    assert silo("rm", "db").code == 0  # stopped by the kill


def test_names_resolved_here_when_silod_does_not(tmp_path: Any, silo: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSilod(str(tmp_path / "old.sock"), names=False) as old:
        monkeypatch.setenv("SILO_HOST", old.host)
        a = old.add("web")
        assert silo("stop", "web").code == 0
        assert [(r.method, r.raw_path) for r in old.requests] == [
            ("POST", "/v1/compute-systems/web/shutdown"), ("GET", "/v1/compute-systems"),
            ("POST", f"/v1/compute-systems/{a}/shutdown")]
        old.requests.clear()
        assert silo("exec", a[:5], "ls").code == 0
        assert [r.raw_path for r in old.requests][-3:] == [
            f"/v1/compute-systems/{a}/processes",
            f"/v1/compute-systems/{a}/processes/101/logs?Follow=true",
            f"/v1/compute-systems/{a}/processes/101/wait"]
        old.requests.clear()
        old.override("POST", r"/v1/compute-systems/[^/]+/processes", lambda req: error(
            "not_found", 'exec: "nope": executable file not found', Field="process.args"))
        assert silo("exec", a, "nope").code == 127
        assert len(old.requests) == 1  # a command not found is not a container not found


def test_rm_running_without_force_is_refused(silod: FakeSilod, silo: Any) -> None:
    silod.add("web")
    r = silo("rm", "web")
    assert r.code == 1 and "is Running" in r.err


def test_inspect(silod: FakeSilod, silo: Any) -> None:
    import json

    a = silod.add("web")
    r = silo("inspect", "web")
    doc = json.loads(r.out)
    assert r.code == 0 and doc[0]["Id"] == a and "Configuration" in doc[0]
    r = silo("inspect", "--type", "Statistics", "web", "ghost")
    assert r.code == 1 and json.loads(r.out)[0]["Statistics"]["Pids"]["Current"] == 2


def test_stats_and_top(silod: FakeSilod, silo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "SAMPLE_SECONDS", 0.0)
    a = silod.add("web")
    silod.add("old", state="Stopped")
    r = silo("stats", "--no-stream")
    header, row = r.out.splitlines()
    assert header.split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert row.startswith(a[:12]) and "8MiB / 64MiB" in row and "12.50%" in row
    assert row.split()[-1] == "2"
    assert [c[1] for c in silod.calls()] == [f"/v1/compute-systems/{a}/properties"] * 2
    assert silod.calls()[0][2] == {"PropertyTypes": ["Statistics"]}
    r = silo("top", "web")
    assert r.out.splitlines() == ["PID    USER   CMD", "4242   root   sleep 100"]
    assert stats.size(1536) == "1.5KiB"


def test_update(silod: FakeSilod, silo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    silod.add("web")
    assert silo("update", "--memory", "128m", "--cpus", "1", "web").code == 0
    assert silod.calls()[-2:] == [
        ("POST", "/v1/compute-systems/web/modify",
         {"ResourcePath": "Container/Memory/SizeInMB", "RequestType": "Update",
          "Settings": 128}),
        ("POST", "/v1/compute-systems/web/modify",
         {"ResourcePath": "Container/Processor", "RequestType": "Update",
          "Settings": {"Maximum": 5000}})]
    assert silo("update", "web").code == 125


def test_wait_exits_with_the_code(silod: FakeSilod, silo: Any) -> None:
    silod.add("web")
    silod.exit_code = 42
    r = silo("wait", "web")
    assert (r.code, r.out) == (42, "42\n")


def test_events(silod: FakeSilod, silo: Any) -> None:
    a = silod.add("web")
    silod.events = [{"Time": "T", "Type": "SystemExited", "Id": a, "ExitCode": 1}]
    r = silo("events", "--filter", "type=SystemExited", "-f", "container=web",
             "-f", "container=gone", "--since", "100")
    assert r.out == f"T SystemExited {a} (ExitCode=1)\n"
    assert silod.requests[-1].query == {"Since": ["100.0"], "Type": ["SystemExited"],
                                        "Id": [a, "gone"]}
    r = silo("events", "--format", "json")
    assert r.out.startswith('{"Time":"T"')
    assert silo("events", "--filter", "colour=red").code == 125
    assert silo("events", "--since", "soon").code == 125


def test_system_info_and_version(silod: FakeSilod, silo: Any) -> None:
    r = silo("system", "info")
    assert "Cgroups: v2" in r.out.splitlines()
    assert "Runtime:" in r.out and " Name: silo-runtime" in r.out
    assert silo("info").out == r.out
    assert silo("system", "info", "--format", "json").out.startswith("{")
    assert silo("system", "prune").code == 125
    r = silo("version")
    assert r.code == 0 and "Client:" in r.out and "Server:" in r.out


# -- the foreground session -------------------------------------------------------------------


def test_ctrl_c_forwards_then_kills_then_detaches(silod: FakeSilod) -> None:
    import _signal

    sid = silod.add("web")
    session = Session(Context(), sid, 4242)
    session.on_signal(_signal.SIGINT)
    assert silod.calls()[-1] == ("POST", f"/v1/compute-systems/{sid}/processes/4242/signal",
                                 {"Signal": 2})
    session.on_signal(_signal.SIGINT)
    assert silod.calls()[-1][:2] == ("POST", f"/v1/compute-systems/{sid}/terminate")
    with pytest.raises(KeyboardInterrupt):
        session.on_signal(_signal.SIGINT)
    session.on_signal(_signal.SIGTERM)  # other signals always go through
    assert silod.calls()[-1][2] == {"Signal": 15}


def test_session_installs_and_restores_handlers(silod: FakeSilod) -> None:
    import _signal

    before = _signal.getsignal(_signal.SIGINT)
    with Session(Context(), "x", 1) as session:
        assert _signal.getsignal(_signal.SIGINT) == session.on_signal
    assert _signal.getsignal(_signal.SIGINT) is before


# -- start-up ---------------------------------------------------------------------------------

SLOW = ("typing", "json", "re", "argparse", "subprocess", "http.client", "http", "email",
        "enum", "signal", "socket", "datetime", "urllib.parse", "dataclasses", "pathlib",
        "logging")
CLI_MODULES = ["silo.client", "silo.client._attach", "silo.cli.main", "silo.cli.attached",
               *(f"silo.cli.{v}" for v in ("run", "create", "start", "ps", "exec", "logs",
                                           "stop", "kill", "rm", "inspect", "stats", "top",
                                           "pause", "unpause", "update", "wait", "events",
                                           "system", "version"))]


@pytest.mark.parametrize("module", CLI_MODULES)
def test_start_up_is_lean(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit import test_lean_imports

    monkeypatch.setattr(test_lean_imports, "FORBIDDEN", SLOW)
    bad, report = forbidden_imports(module)
    assert not bad, f"importing {module} loads {', '.join(bad)}:\n{report}"


def test_the_entry_point_runs_and_exits(silod: FakeSilod) -> None:
    silod.add("web")
    code = (f"import sys; sys.path.insert(0, {SRC!r}); sys.argv = ['silo', 'ps', '-q']\n"
            "from silo.cli.main import run\n"
            "run()\n"
            f"bad = [m for m in {SLOW!r} if m in sys.modules]\n")
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
                          capture_output=True, text=True,
                          env={"SILO_HOST": silod.host, "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == next(iter(silod.systems))[:12] + "\n"
    loaded = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
              if line.startswith("import time:") and "imported package" not in line]
    assert not [m for m in SLOW if m in loaded], loaded


def test_run_it_on_a_terminal(silod: FakeSilod, tmp_path: Any) -> None:
    """-it from a terminal: raw mode (ctrl-c goes to the container as a byte), the console
    sized through conmon's control fifo, ctrl-p ctrl-q detaches and leaves the container."""
    import fcntl
    import struct
    import termios

    conmon = FakeConmon(str(tmp_path), [b"\x02$ "])
    silod.stdio = {"AttachSocket": conmon.path, "ControlFifo": conmon.ctl}
    ctl = os.open(conmon.ctl, os.O_RDONLY | os.O_NONBLOCK)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    before = termios.tcgetattr(slave)
    code = (f"import sys; sys.path.insert(0, {SRC!r}); sys.argv = ['silo', 'run', '-it', "
            "'busybox', 'sh']\nfrom silo.cli.main import run\nrun()\n")
    with subprocess.Popen([sys.executable, "-I", "-S", "-c", code], stdin=slave,
                          stdout=slave, stderr=subprocess.PIPE,
                          env={"SILO_HOST": silod.host, "PATH": os.environ["PATH"]}) as proc:
        try:
            seen = b""
            while b"$ " not in seen:
                seen += os.read(master, 100)
            assert termios.tcgetattr(slave)[3] & termios.ICANON == 0  # raw
            os.write(master, b"ls\x03\x10\x11")
            _, stderr = proc.communicate(timeout=10)
            assert proc.returncode == 0, stderr
        finally:
            proc.kill()
            conmon.release.set()
    conmon.thread.join(10)
    assert b"".join(conmon.received) == b"ls\x03"
    assert os.read(ctl, 100) == b"1 30 100\n"
    assert termios.tcgetattr(slave) == before  # the terminal is given back as it was
    [create] = [r for r in silod.requests if r.method == "POST" and r.path.endswith("systems")]
    proc_doc = create.body["Configuration"]["Container"]["Linux"]["Process"]
    assert proc_doc["EmulateConsole"] and proc_doc["CreateStdInPipe"]
    assert proc_doc["ConsoleSize"] == [30, 100]
    sid = next(iter(silod.systems))
    assert silod.systems[sid]["State"] == "Running"  # detached, not stopped
    assert not any(r.path.endswith("/wait") for r in silod.requests)
    for fd in (ctl, master, slave):
        os.close(fd)


def test_run_it_without_a_terminal_is_refused(silod: FakeSilod, silo: Any) -> None:
    r = silo("run", "-it", "busybox")  # pytest's stdin is not a terminal
    assert r.code == 125 and "not a TTY" in r.err
    assert silod.requests == []


def test_start_attached(silod: FakeSilod, silo: Any) -> None:
    silod.add("c1", state="Created")
    silod.exit_code = 9
    silod.log_lines = [{"Time": "t", "Stream": "stdout", "Line": "out"}]
    r = silo("start", "-a", "c1")
    assert (r.code, r.out) == (9, "out\n")
    assert [c[1].rsplit("/", 1)[-1] for c in silod.calls()] == [
        "c1", "start", "logs?Follow=true", "wait"]


@pytest.mark.parametrize(("size", "sent"), [([30, 100], [30, 100]), ([0, 0], None), (None, None)])
def test_console_size_is_sent_only_when_the_terminal_knows_one(
        monkeypatch: pytest.MonkeyPatch, size: list[int] | None, sent: list[int] | None) -> None:
    from silo.cli import spec

    monkeypatch.setattr(spec, "console_size", lambda: size)
    values = {"env": [], "workdir": "", "user": "", "tty": True, "interactive": True,
              "entrypoint": None}
    proc = spec.process(values, ["sh"])
    assert proc.get("ConsoleSize") == sent
