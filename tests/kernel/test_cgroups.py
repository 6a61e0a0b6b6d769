"""silo.kernel.cgroups on the host's real hierarchies (root).

Each test makes its cgroups under a unique top-level name, and the ``cgroups`` fixture kills
and removes whatever a test left. Processes are placed with fork + a pipe: the child waits
until the parent has added it, then does its work (open a device, allocate memory) and
reports back. The v2-only path runs against the cgroup2 mount of this (hybrid) host as if it
were the only hierarchy; settings whose controller that mount lacks are skipped by probe.
"""

from __future__ import annotations

import errno
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from silo import errors
from silo.kernel import cgroups
from silo.kernel.cgroups import Cgroup, Layout
from tests import probes


def _need_cgroupfs() -> str | None:
    try:
        cgroups.detect()
    except errors.SiloError as err:
        return f"no usable cgroup filesystem: {err}"
    return None


SKIP = probes.need_all(probes.need_root(), _need_cgroupfs())
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(bool(SKIP), reason=SKIP or "")]

_names = itertools.count()


def need_v1(*controllers: str) -> None:
    layout = cgroups.detect()
    missing = [c for c in controllers if layout.mode == "v2" or c not in layout.v1]
    if missing:
        pytest.skip(f"no v1 hierarchy for {', '.join(missing)} on this host")


def v2_only_layout() -> Layout:
    host = cgroups.detect()
    if host.v2 is None:
        pytest.skip("this host has no cgroup2 mount")
    return Layout("v2", {}, host.v2)


def need_v2(layout: Layout, *controllers: str) -> None:
    missing = sorted(set(controllers) - layout.v2_controllers())
    if missing:
        pytest.skip(f"the cgroup2 mount at {layout.v2} does not offer {', '.join(missing)} "
                    f"(its cgroup.controllers: {sorted(layout.v2_controllers()) or 'none'})")


class Made:
    """Cgroups made by one test; teardown removes what is left of them."""

    def __init__(self) -> None:
        self.made: list[Cgroup] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self.extra_dirs: list[str] = []

    def __call__(self, layout: Layout | None = None, path: str | None = None) -> Cgroup:
        cg = Cgroup(path or f"/silo-cgtest-{os.getpid()}-{next(_names)}", layout)
        self.made.append(cg)
        cg.create()
        return cg

    def sleeper(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(["sleep", "300"])
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
        for cg in reversed(self.made):
            try:
                cg.kill_all(9)
                cg.destroy()
            except errors.SiloError:
                pass
        for d in sorted(self.extra_dirs, key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


@pytest.fixture
def made() -> Iterator[Made]:
    m = Made()
    yield m
    m.cleanup()


@pytest.fixture
def v2_root_restored() -> Iterator[None]:
    """A v2-only Cgroup enables controllers at the cgroup2 root: give back what was off."""
    host = cgroups.detect()
    if host.v2 is None:
        yield
        return
    control = Path(host.v2) / "cgroup.subtree_control"
    before = set(control.read_text().split())
    yield
    for ctrl in set(control.read_text().split()) - before:
        try:
            control.write_text(f"-{ctrl}")
        except OSError:
            pass  # someone else's cgroup uses it now


def all_dirs(cg: Cgroup) -> set[str]:
    return set(cg.paths.values())


def spawn_waiting(work: Callable[[], str]) -> tuple[int, Callable[[], tuple[str, int]]]:
    """Fork a child that waits for the go, runs ``work`` and sends back its result.

    Returns the pid and ``release()``, which gives the go and returns (result, wait status).
    """
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(out_r)
            os.read(go_r, 1)
            os.write(out_w, work().encode())
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(out_w)

    def release() -> tuple[str, int]:
        os.write(go_w, b"x")
        os.close(go_w)
        chunks = []
        while chunk := os.read(out_r, 4096):
            chunks.append(chunk)
        os.close(out_r)
        _, status = os.waitpid(pid, 0)
        return b"".join(chunks).decode(), status

    return pid, release


def try_opens(*attempts: tuple[str, int]) -> Callable[[], str]:
    def work() -> str:
        results = []
        for path, flags in attempts:
            try:
                os.close(os.open(path, flags))
                results.append("ok")
            except OSError as err:
                results.append(errno.errorcode[err.errno])
        return " ".join(results)
    return work


def cgroup_of(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(",") if names else [""]:
            out[name] = path
    return out


OCI_DEFAULT_DEVICES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


# -- the host's own layout (hybrid here) ---------------------------------------------------------

def test_create_apply_destroy_leaves_nothing(made: Made) -> None:
    need_v1("memory", "cpu", "cpuset", "pids", "devices")
    cg = made()
    dirs = all_dirs(cg)
    assert dirs and all(os.path.isdir(d) for d in dirs)
    assert cg.exists()
    resources: dict[str, Any] = {
        "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 50},
        "devices": OCI_DEFAULT_DEVICES,
    }
    cgroups.validate_resources(resources)
    cg.apply(resources)

    def value(ctrl: str, name: str) -> str:
        return Path(cg.paths[ctrl], name).read_text().strip()

    assert value("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert value("memory", "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert value("memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert value("cpu", "cpu.shares") == "512"
    assert value("cpu", "cpu.cfs_quota_us") == "50000"
    assert value("cpu", "cpu.cfs_period_us") == "100000"
    assert value("cpuset", "cpuset.cpus") == "0"
    assert value("pids", "pids.max") == "50"
    assert value("devices", "devices.list").splitlines() == [
        "c 1:3 rwm", "c 1:5 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 136:* rwm"]
    cg.create()                                   # idempotent, and limits survive it
    assert value("pids", "pids.max") == "50"

    cg.destroy()
    assert not cg.exists()
    assert [d for d in dirs if os.path.exists(d)] == []


def test_update_grows_memory_and_swap_in_the_order_the_kernel_accepts(made: Made) -> None:
    need_v1("memory")
    cg = made()
    cg.apply({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
    cg.apply({"memory": {"limit": 64 << 20, "swap": 128 << 20}})     # memsw must go first
    cg.apply({"memory": {"limit": 16 << 20, "swap": 16 << 20}})      # limit must go first
    d = cg.paths["memory"]
    assert Path(d, "memory.limit_in_bytes").read_text().strip() == str(16 << 20)
    assert Path(d, "memory.memsw.limit_in_bytes").read_text().strip() == str(16 << 20)


def test_process_is_tracked_frozen_thawed_and_killed(made: Made) -> None:
    need_v1("freezer")
    cg = made()
    child = made.sleeper()
    cg.add(child.pid)
    assert child.pid in cg.pids()
    placed = cgroup_of(child.pid)
    suffix = cg.path
    for key in cg.paths:
        assert placed["" if key == "unified" else key].endswith(suffix), key

    cg.freeze()
    assert cg.is_frozen()
    assert Path(cg.paths["freezer"], "freezer.state").read_text().strip() == "FROZEN"
    cg.thaw()
    assert not cg.is_frozen()
    assert Path(cg.paths["freezer"], "freezer.state").read_text().strip() == "THAWED"

    cg.kill_all(9)
    assert child.wait() == -9
    cg.destroy()
    assert not cg.exists()


def test_kill_all_signals_every_process(made: Made) -> None:
    cg = made()
    children = [made.sleeper() for _ in range(3)]
    for child in children:
        cg.add(child.pid)
    assert sorted(cg.pids()) == sorted(c.pid for c in children)
    cg.kill_all(15)
    assert [c.wait() for c in children] == [-15, -15, -15]
    assert cg.pids() == []


def test_kill_all_sigkill_reaches_a_paused_cgroup(made: Made) -> None:
    cg = made()
    child = made.sleeper()
    cg.add(child.pid)
    cg.freeze()
    cg.kill_all(9)
    assert child.wait() == -9


def test_devices_are_enforced_v1(made: Made) -> None:
    need_v1("devices")
    cg = made()
    cg.apply({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"}]})
    pid, release = spawn_waiting(try_opens(("/dev/null", os.O_WRONLY), ("/dev/null", os.O_RDONLY),
                                           ("/dev/zero", os.O_RDONLY)))
    cg.add(pid)
    result, status = release()
    assert os.waitstatus_to_exitcode(status) == 0
    assert result == "ok EPERM EPERM"


def test_memory_limit_is_enforced_and_the_oom_kill_counted(made: Made) -> None:
    cg = made()
    cg.apply({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
    assert cg.oom_kill_count() == 0
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.read(go_r, 1)
            os.execv(sys.executable, [sys.executable, "-S", "-c", "b = b'x' * (256 << 20)"])
        finally:
            os._exit(127)
    os.close(go_r)
    cg.add(pid)
    os.write(go_w, b"x")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    assert cg.oom_kill_count() >= 1
    assert cg.stats()["memory"]["usage"]["limit"] == 32 << 20


def test_stats_of_a_busy_cgroup(made: Made) -> None:
    cg = made()
    cg.apply({"pids": {"limit": 10}})
    pid, release = spawn_waiting(lambda: str(sum(range(3_000_000))))
    cg.add(pid)
    busy = made.sleeper()
    cg.add(busy.pid)
    release()
    stats = cg.stats()
    assert stats["cpu"]["usage"]["total"] > 0
    assert stats["pids"] == {"current": 1, "limit": 10}
    assert stats["memory"]["usage"]["usage"] > 0
    assert isinstance(stats["memory"]["raw"], dict) and stats["memory"]["raw"]


def test_kernel_refusal_names_the_field(made: Made) -> None:
    need_v1("cpuset", "blkio")
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    if cgroups.parse_cpu_list(online) == [(0, 0)]:
        pytest.skip("one CPU online: no cpuset that a parent can exclude")
    parent = made()
    parent.apply({"cpu": {"cpus": "0"}})
    child = made(path=parent.path + "/child")
    with pytest.raises(errors.InvalidArgument) as info:
        child.apply({"cpu": {"cpus": "1"}})
    assert info.value.field == "linux.resources.cpu.cpus"
    assert "cpuset.cpus" in str(info.value)
    with pytest.raises(errors.InvalidArgument) as info:
        child.apply({"blockIO": {"throttleReadBpsDevice": [
            {"major": 4095, "minor": 1048575, "rate": 1}]}})
    assert info.value.field == "linux.resources.blockIO.throttleReadBpsDevice[0]"
    assert os.strerror(errno.ENODEV) in str(info.value)


def test_relative_path_is_below_our_own_cgroups(made: Made) -> None:
    own = cgroups.own_cgroup_paths()
    cg = made(path=f"silo-cgtest-rel-{os.getpid()}-{next(_names)}")
    layout = cgroups.detect()
    for key, d in cg.paths.items():
        mount = layout.v2 if key == "unified" else layout.v1[key]
        mine = own["" if key == "unified" else key].rstrip("/")
        assert d == f"{mount}{mine}/{cg.path}", key
        assert os.path.isdir(d)
    cg.destroy()
    assert not any(os.path.exists(d) for d in cg.paths.values())


def test_destroy_removes_cgroups_the_container_made_below(made: Made) -> None:
    cg = made()
    for d in all_dirs(cg):
        os.mkdir(d + "/nested")
    cg.destroy()
    assert not any(os.path.exists(d) for d in all_dirs(cg))


def test_destroy_with_a_live_process_is_invalid_state(made: Made) -> None:
    cg = made()
    child = made.sleeper()
    cg.add(child.pid)
    with pytest.raises(errors.InvalidState):
        cg.destroy()
    cg.kill_all(9)
    child.wait()
    cg.destroy()
    assert not cg.exists()


# -- cgroup2 alone: this host's cgroup2 mount used as if it were the only hierarchy ---------------

def test_v2_create_track_freeze_kill_destroy(made: Made, v2_root_restored: None) -> None:
    layout = v2_only_layout()
    cg = made(layout)
    assert set(cg.paths) == {"unified"}
    d = cg.paths["unified"]
    child = made.sleeper()
    cg.add(child.pid)
    assert cg.pids() == [child.pid]
    assert cgroup_of(child.pid)[""] == cg.path

    cg.freeze()
    assert cg.is_frozen()
    assert "frozen 1" in Path(d, "cgroup.events").read_text()
    cg.thaw()
    assert not cg.is_frozen()

    stats = cg.stats()
    assert "total" in stats["cpu"]["usage"]

    cg.kill_all(9)
    assert child.wait() == -9
    cg.destroy()
    assert not os.path.exists(d)


def test_v2_devices_are_enforced_with_bpf(made: Made, v2_root_restored: None) -> None:
    cg = made(v2_only_layout())
    assert cg.devices_enforced()
    cg.apply({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"}]})
    pid, release = spawn_waiting(try_opens(("/dev/null", os.O_WRONLY), ("/dev/null", os.O_RDONLY),
                                           ("/dev/zero", os.O_RDONLY)))
    cg.add(pid)
    assert release()[0] == "ok EPERM EPERM"

    # update: the new program replaces the old one (not added beside it)
    cg.apply({"devices": [{"allow": True, "access": "rwm"},
                          {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "r"}]})
    pid, release = spawn_waiting(try_opens(("/dev/null", os.O_RDONLY), ("/dev/zero", os.O_RDONLY),
                                           ("/dev/zero", os.O_WRONLY)))
    cg.add(pid)
    assert release()[0] == "ok EPERM ok"


def test_v2_limits_where_the_controllers_are_offered(made: Made,
                                                     v2_root_restored: None) -> None:
    layout = v2_only_layout()
    need_v2(layout, "memory", "cpu", "pids")
    cg = made(layout)
    cg.apply({"memory": {"limit": 64 << 20, "swap": 96 << 20}, "cpu": {"shares": 1024,
              "quota": 50000, "period": 100000}, "pids": {"limit": 20}})
    d = Path(cg.paths["unified"])
    assert (d / "memory.max").read_text().strip() == str(64 << 20)
    assert (d / "memory.swap.max").read_text().strip() == str(32 << 20)
    assert (d / "cpu.weight").read_text().strip() == "39"
    assert (d / "cpu.max").read_text().strip() == "50000 100000"
    assert (d / "pids.max").read_text().strip() == "20"


def test_v2_hugetlb_limit(made: Made, v2_root_restored: None) -> None:
    layout = v2_only_layout()
    need_v2(layout, "hugetlb")
    if not Path("/sys/kernel/mm/hugepages/hugepages-2048kB").exists():
        pytest.skip("no 2MB huge pages on this host")
    cg = made(layout)
    cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    assert Path(cg.paths["unified"], "hugetlb.2MB.max").read_text().strip() == str(4 << 20)


def test_v2_missing_controller_is_not_supported(made: Made, v2_root_restored: None) -> None:
    layout = v2_only_layout()
    if "pids" in layout.v2_controllers():
        pytest.skip("the cgroup2 mount offers pids here; nothing is missing to test")
    cg = made(layout)
    with pytest.raises(errors.NotSupported) as info:
        cg.apply({"pids": {"limit": 5}})
    assert info.value.field == "linux.resources.pids.limit"
