"""silo.kernel.proc without root: rlimit validation (the host's limits and capabilities faked),
executable lookup in a temp dir, and liveness of this process and of forked children."""

from __future__ import annotations

import os
import resource
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from silo.errors import InvalidArgument
from silo.kernel import proc

pytestmark = pytest.mark.unit


class Host:
    """The host as validate_rlimits sees it: hard limits and CAP_SYS_RESOURCE."""

    def __init__(self) -> None:
        self.hard = -1  # RLIM_INFINITY, as resource.getrlimit reports it
        self.cap = False
        self.asked_limits: list[int] = []
        self.asked_caps: list[int] = []

    def hard_limit(self, resource: int) -> int:
        self.asked_limits.append(resource)
        return self.hard

    def has_cap(self, cap: int) -> bool:
        self.asked_caps.append(cap)
        return self.cap


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Host:
    h = Host()
    monkeypatch.setattr(proc, "hard_limit", h.hard_limit)
    monkeypatch.setattr(proc, "has_cap", h.has_cap)
    return h


def nofile(soft: object = 1024, hard: object = 1024) -> dict[str, object]:
    return {"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}


def test_rlimit_numbers_match_the_resource_module() -> None:
    for name, number in proc.RLIMITS.items():
        # Python has no RLIMIT_LOCKS; <asm-generic/resource.h> numbers it 10.
        assert getattr(resource, name, 10) == number, name
    assert len(proc.RLIMITS) == 16
    assert proc.RLIM_INFINITY == 2 ** 64 - 1


@pytest.mark.parametrize("rlimits", [
    None,
    [],
    [nofile()],
    [nofile(0, 0)],
    [nofile(1, 2), {"type": "RLIMIT_CORE", "soft": 0, "hard": proc.RLIM_INFINITY}],
])
def test_valid_rlimits(host: Host, rlimits: object) -> None:
    proc.validate_rlimits(rlimits)


@pytest.mark.parametrize(("rlimits", "field", "reason"), [
    ({}, "process.rlimits", "must be an array"),
    ("RLIMIT_NOFILE=1024", "process.rlimits", "must be an array"),
    ([nofile(), "RLIMIT_CORE"], "process.rlimits[1]", "must be an object"),
    ([{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}], "process.rlimits[0].type",
     "unknown rlimit 'RLIMIT_FOO'"),
    ([{"type": "rlimit_nofile", "soft": 1, "hard": 1}], "process.rlimits[0].type",
     "unknown rlimit"),
    ([{"soft": 1, "hard": 1}], "process.rlimits[0].type", "unknown rlimit None"),
    ([nofile(), nofile(1, 1)], "process.rlimits[1].type", "duplicate rlimit RLIMIT_NOFILE"),
    ([nofile(2048, 1024)], "process.rlimits[0]", "soft limit 2048 is above the hard limit 1024"),
    ([nofile(-1, 1024)], "process.rlimits[0].soft", "non-negative integer"),
    ([nofile(1, -1)], "process.rlimits[0].hard", "non-negative integer"),
    ([nofile("1024", 1024)], "process.rlimits[0].soft", "non-negative integer"),
    ([nofile(True, 1024)], "process.rlimits[0].soft", "non-negative integer"),
    ([nofile(1, 1.5)], "process.rlimits[0].hard", "non-negative integer"),
    ([nofile(1, None)], "process.rlimits[0].hard", "non-negative integer"),
    ([{"type": "RLIMIT_NOFILE", "soft": 1}], "process.rlimits[0].hard", "non-negative integer"),
])
def test_invalid_rlimits_name_the_field(host: Host, rlimits: object, field: str,
                                        reason: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        proc.validate_rlimits(rlimits)
    assert exc.value.field == field
    assert str(exc.value).startswith(field + ": ")
    assert reason in str(exc.value)


def test_field_prefix_is_the_callers(host: Host) -> None:
    with pytest.raises(InvalidArgument) as exc:
        proc.validate_rlimits([nofile(), nofile()], where="process.json.rlimits")
    assert exc.value.field == "process.json.rlimits[1].type"


def test_hard_limit_above_the_hosts_without_cap_sys_resource(host: Host) -> None:
    host.hard = 4096
    with pytest.raises(InvalidArgument) as exc:
        proc.validate_rlimits([{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                               nofile(1024, 4097)])
    assert exc.value.field == "process.rlimits[1].hard"
    assert "4097" in str(exc.value)
    assert "4096" in str(exc.value)
    assert "CAP_SYS_RESOURCE" in str(exc.value)
    assert host.asked_limits[-1] == resource.RLIMIT_NOFILE
    assert host.asked_caps == [24]


def test_hard_limit_above_the_hosts_with_cap_sys_resource(host: Host) -> None:
    host.hard = 4096
    host.cap = True
    proc.validate_rlimits([nofile(1024, 1 << 20)])
    assert host.asked_caps == [24]


@pytest.mark.parametrize("hard", [0, 4095, 4096])
def test_hard_limit_up_to_the_hosts_needs_no_capability(host: Host, hard: int) -> None:
    host.hard = 4096
    proc.validate_rlimits([nofile(0, hard)])
    assert host.asked_caps == []


def test_an_unlimited_host_accepts_any_hard_limit(host: Host) -> None:
    proc.validate_rlimits([nofile(0, proc.RLIM_INFINITY)])
    assert host.asked_caps == []


def test_rlimit_above_uint64_is_invalid(host: Host) -> None:
    with pytest.raises(InvalidArgument) as exc:
        proc.validate_rlimits([nofile(0, 2 ** 64)])
    assert exc.value.field == "process.rlimits[0].hard"


def test_has_cap_reads_this_process() -> None:
    with open("/proc/self/status") as f:
        eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    for cap in (0, 21, 24):
        assert proc.has_cap(cap) is bool(eff >> cap & 1)


def test_hard_limit_reads_this_process() -> None:
    assert proc.hard_limit(resource.RLIMIT_NOFILE) == \
        resource.getrlimit(resource.RLIMIT_NOFILE)[1]


# children ------------------------------------------------------------------------------------


def in_child(fn: Callable[[], None]) -> str:
    """Run ``fn`` in a forked child; returns "" or the child's traceback."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                fn()
            except BaseException:
                os.write(w, traceback.format_exc().encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def _unlimited_rlimit() -> str:
    for name in ("RLIMIT_CORE", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_AS"):
        if resource.getrlimit(getattr(resource, name))[1] == resource.RLIM_INFINITY:
            return name
    raise AssertionError("precondition: this process has no rlimit with an unlimited hard "
                         "limit to keep")


def test_apply_rlimits_keeps_rlim_infinity_unlimited() -> None:
    name = _unlimited_rlimit()

    def child() -> None:
        proc.apply_rlimits([{"type": name, "soft": 0, "hard": proc.RLIM_INFINITY}])
        got = resource.getrlimit(getattr(resource, name))
        assert got == (0, resource.RLIM_INFINITY), got

    assert in_child(child) == ""


def test_apply_rlimits_in_a_child() -> None:
    name = "RLIMIT_NOFILE"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard >= 32, "precondition: lowering is allowed"
    want = (16, 32)

    def child() -> None:
        proc.apply_rlimits([{"type": name, "soft": want[0], "hard": want[1]}])
        got = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert got == want, got

    assert in_child(child) == ""


# executables ---------------------------------------------------------------------------------


@pytest.fixture
def bins(tmp_path: Path) -> dict[str, str]:
    d = {k: str(tmp_path / k) for k in ("one", "two", "cwd")}
    for path in d.values():
        os.mkdir(path)

    def make(path: str, mode: int) -> None:
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(path, mode)

    make(f"{d['one']}/tool", 0o755)
    make(f"{d['two']}/tool", 0o755)
    make(f"{d['one']}/data", 0o644)
    make(f"{d['two']}/data", 0o755)
    make(f"{d['one']}/secret", 0o600)
    make(f"{d['cwd']}/local", 0o700)
    os.mkdir(f"{d['one']}/dir", 0o755)
    os.mkdir(f"{d['cwd']}/sub")
    make(f"{d['cwd']}/sub/tool", 0o755)
    d["root"] = str(tmp_path)
    return d


def test_path_search_takes_the_first_match(bins: dict[str, str]) -> None:
    one, two = bins["one"], bins["two"]
    assert proc.lookup_executable("tool", f"{one}:{two}") == f"{one}/tool"
    assert proc.lookup_executable("tool", f"{two}:{one}") == f"{two}/tool"


def test_path_search_skips_files_that_are_not_executable(bins: dict[str, str]) -> None:
    one, two = bins["one"], bins["two"]
    assert proc.lookup_executable("data", f"{one}:{two}") == f"{two}/data"
    assert proc.lookup_executable("secret", f"{one}:{two}") is None


def test_path_search_skips_directories(bins: dict[str, str]) -> None:
    assert proc.lookup_executable("dir", bins["one"]) is None


def test_missing(bins: dict[str, str]) -> None:
    assert proc.lookup_executable("nope", f"{bins['one']}:{bins['two']}") is None
    assert proc.lookup_executable("nope", "") is None


def test_empty_path_entry_is_the_working_directory(bins: dict[str, str]) -> None:
    assert proc.lookup_executable("local", f"{bins['one']}::{bins['two']}",
                                  cwd=bins["cwd"]) == f"{bins['cwd']}/local"
    assert proc.lookup_executable("local", bins["one"], cwd=bins["cwd"]) is None


def test_a_name_with_a_slash_is_not_searched(bins: dict[str, str]) -> None:
    cwd = bins["cwd"]
    assert proc.lookup_executable("./local", bins["one"], cwd=cwd) == f"{cwd}/./local"
    assert proc.lookup_executable("sub/tool", bins["one"], cwd=cwd) == f"{cwd}/sub/tool"
    assert proc.lookup_executable("one/tool", bins["one"], cwd=cwd) is None
    assert proc.lookup_executable("one/tool", "", cwd=bins["root"]) == \
        f"{bins['root']}/one/tool"


def test_absolute_names(bins: dict[str, str]) -> None:
    assert proc.lookup_executable(f"{bins['one']}/tool", "") == f"{bins['one']}/tool"
    assert proc.lookup_executable(f"{bins['one']}/data", "") is None
    assert proc.lookup_executable(f"{bins['one']}/nope", "") is None
    assert proc.lookup_executable(bins["one"], "") is None


# liveness ------------------------------------------------------------------------------------


def test_this_process_is_alive() -> None:
    me = os.getpid()
    started = proc.start_time(me)
    assert isinstance(started, int)
    assert started > 0
    assert proc.start_time(me) == started
    assert proc.is_alive(me, started)
    assert proc.is_alive(me, None)
    assert proc.state_letter(me) == "R"


def test_a_different_start_time_is_another_process() -> None:
    me = os.getpid()
    started = proc.start_time(me)
    assert started is not None
    assert not proc.is_alive(me, started + 1)


@pytest.mark.parametrize("pid", [0, -1])
def test_no_such_pid(pid: int) -> None:
    assert not proc.is_alive(pid, None)


def test_a_child_alive_then_zombie_then_reaped(tmp_path: Path) -> None:
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(ready_r)
            os.read(go_r, 1)
            # A command name with spaces and parens, which /proc/PID/stat does not escape.
            with open("/proc/self/comm", "w") as f:
                f.write("a) b (c")
            os.write(ready_w, b"x")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(ready_w)
    try:
        before = proc.start_time(pid)
        assert before is not None
        os.write(go_w, b"x")
        assert os.read(ready_r, 1) == b"x"
        with open(f"/proc/{pid}/comm") as f:
            assert f.read().strip() == "a) b (c"
        assert proc.start_time(pid) == before
        assert proc.is_alive(pid, before)
        assert proc.state_letter(pid) in ("S", "R")
    finally:
        os.write(go_w, b"x")
        os.close(go_w)
        os.close(ready_r)
        # Wait for the exit but leave the child a zombie.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    assert proc.state_letter(pid) == "Z"
    assert proc.start_time(pid) == before
    assert not proc.is_alive(pid, before)
    assert not proc.is_alive(pid, None)
    os.waitpid(pid, 0)
    assert not proc.is_alive(pid, before)
    after = proc.start_time(pid)  # the pid may already be someone else's
    assert after is None or after != before


def test_identity_is_the_same_for_two_processes_sharing_everything() -> None:
    assert proc.identity("self") == proc.identity(os.getpid())
    assert len(proc.identity()) == len(proc.NAMESPACES) + 1
    with pytest.raises(OSError):
        proc.identity(2**22 + 7)   # above pid_max: no such process
