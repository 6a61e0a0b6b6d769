"""silo.kernel.cgroups without root: sample mountinfo texts, and a fake kernel over a temp tree.

``FakeKernel`` stands behind the module's four state-changing calls (write, mkdir, rmdir, kill)
and gives a temp tree cgroupfs' manners: mkdir seeds the files a real cgroup shows (by
hierarchy), cgroup.subtree_control takes "+ctrl" and follows the no-internal-process rule,
devices.allow/deny update devices.list, cgroup.freeze updates cgroup.events, rmdir refuses a
cgroup with processes or children. Every write is recorded in order.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from silo import errors
from silo.kernel import cgroups
from silo.kernel.cgroups import Cgroup, Layout

pytestmark = pytest.mark.unit

# This machine's /proc/self/mountinfo: hybrid, one v1 mount per controller, cgroup2 at unified.
HYBRID_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
28 27 0:25 / /mnt/sandboxing/model_tools_env/v1/python ro,nosuid,nodev,relatime - tmpfs model_tools_unavailable ro,size=4k,mode=755
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""  # noqa: E501

HYBRID_PROC_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/611df0d355a18b3ef474eb450d03e7fd
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""

# A systemd host on cgroup v2 only (Debian 12 default), with propagation fields.
V2_MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
25 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""  # noqa: E501

# An older v1 host: co-mounted cpu,cpuacct and net_cls,net_prio, a mountpoint with a space.
V1_MOUNTINFO = """\
18 23 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
29 24 0:25 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,net_cls,net_prio
30 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
31 24 0:27 / /sys/fs/cgroup/my\\040pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
32 24 0:28 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,devices
33 24 0:29 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
34 24 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,freezer
"""  # noqa: E501

UNLIMITED_V1 = "9223372036854771712"

# Files a new cgroup shows, by controller (v1 names), and on cgroup2 by enabled controller.
V1_FILES: dict[str, dict[str, str]] = {
    "memory": {
        "memory.limit_in_bytes": UNLIMITED_V1, "memory.memsw.limit_in_bytes": UNLIMITED_V1,
        "memory.soft_limit_in_bytes": UNLIMITED_V1, "memory.swappiness": "60",
        "memory.kmem.tcp.limit_in_bytes": UNLIMITED_V1,
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.usage_in_bytes": "4096", "memory.max_usage_in_bytes": "8192",
        "memory.failcnt": "0", "memory.memsw.usage_in_bytes": "4096",
        "memory.stat": "cache 100\nrss 200\n",
    },
    "cpu": {
        "cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1",
        "cpu.cfs_burst_us": "0", "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0",
        "cpu.idle": "0", "cpu.stat": "nr_periods 5\nnr_throttled 2\nthrottled_time 3000\n",
    },
    "cpuacct": {
        "cpuacct.usage": "123456", "cpuacct.usage_percpu": "100000 23456 \n",
        "cpuacct.stat": "user 3\nsystem 1\n",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "devices": {"devices.allow": "", "devices.deny": ""},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {"blkio.weight": "500", "blkio.throttle.read_bps_device": "",
              "blkio.throttle.write_iops_device": ""},
    "pids": {"pids.max": "max", "pids.current": "1"},
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": ""},
}
V2_CORE = {
    "cgroup.subtree_control": "", "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0", "cgroup.kill": "",
    "cpu.stat": "usage_usec 7\nuser_usec 5\nsystem_usec 2\n",
}
V2_FILES: dict[str, dict[str, str]] = {
    "memory": {"memory.max": "max", "memory.swap.max": "max", "memory.low": "0",
               "memory.current": "4096", "memory.swap.current": "0",
               "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\n",
               "memory.stat": "anon 10\nfile 20\n"},
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0",
            "cpu.idle": "0", "cpu.stat": "usage_usec 7\nuser_usec 5\nsystem_usec 2\n"
                                         "nr_periods 4\nnr_throttled 1\nthrottled_usec 3\n"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "io": {"io.max": "", "io.weight": "default 100", "io.stat": ""},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0",
                "hugetlb.2MB.events": "max 0\n"},
}


class FakeKernel:
    """cgroupfs write semantics over a temp tree (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: dict[str, set[str]] = {}   # mountpoint -> controllers ("unified" for v2)
        self.writes: list[tuple[str, str]] = []
        self.killed: list[tuple[int, int]] = []
        self.refuse: dict[str, int] = {}        # file name -> errno its writes fail with

    # setup
    def mount_v1(self, mountpoint: str, controllers: set[str], **root_files: str) -> None:
        path = Path(mountpoint)
        path.mkdir(parents=True, exist_ok=True)
        self.mounts[str(path)] = controllers
        self._seed(path, None)
        (path / "cgroup.procs").write_text("1\n")
        for name, value in root_files.items():
            (path / name.replace("__", ".")).write_text(value)

    def mount_v2(self, mountpoint: str, controllers: str) -> None:
        path = Path(mountpoint)
        path.mkdir(parents=True, exist_ok=True)
        self.mounts[str(path)] = {"unified"}
        (path / "cgroup.controllers").write_text(controllers + "\n")
        (path / "cgroup.subtree_control").write_text("\n")
        (path / "cgroup.procs").write_text("1\n")

    def mount_layout(self, layout: Layout) -> None:
        by_dir: dict[str, set[str]] = {}
        for ctrl, mp in layout.v1.items():
            by_dir.setdefault(str(self.root) + mp, set()).add(ctrl)
        for mp, ctrls in by_dir.items():
            extra = {}
            if "cpuset" in ctrls:
                extra = {"cpuset__cpus": "0-3\n", "cpuset__mems": "0\n"}
            self.mount_v1(mp, ctrls, **extra)
        if layout.v2 is not None:
            v2_ctrls = "hugetlb" if layout.mode == "hybrid" else "cpuset cpu io memory hugetlb pids"
            self.mount_v2(str(self.root) + layout.v2, v2_ctrls)

    # what cgroupfs does
    def _hierarchy(self, path: Path) -> tuple[Path, set[str]]:
        for mp, ctrls in self.mounts.items():
            if path == Path(mp) or Path(mp) in path.parents:
                return Path(mp), ctrls
        raise AssertionError(f"{path} is not in a fake hierarchy")

    def _seed(self, path: Path, parent: Path | None) -> None:
        _mount, ctrls = self._hierarchy(path)
        if "unified" in ctrls:
            if parent is None:
                return
            files = dict(V2_CORE)
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            files["cgroup.controllers"] = " ".join(enabled) + "\n"
            for ctrl in enabled:
                files.update(V2_FILES.get(ctrl, {}))
        else:
            files = {}
            for ctrl in ctrls:
                files.update(V1_FILES.get(ctrl, {}))
            if "devices" in ctrls:
                files["devices.list"] = ((parent / "devices.list").read_text()
                                         if parent else "a *:* rwm\n")
            files["tasks"] = ""
        files["cgroup.procs"] = ""
        for name, value in files.items():
            (path / name).write_text(value)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        self._seed(Path(path), Path(path).parent)

    def rmdir(self, path: str) -> None:
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if any(c.is_dir() for c in p.iterdir()) or (p / "cgroup.procs").read_text().strip():
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for f in p.iterdir():
            f.unlink()
        p.rmdir()

    def kill(self, pid: int, sig: int) -> None:
        self.killed.append((pid, sig))

    def write(self, path: str, value: str) -> None:
        p = Path(path)
        name = p.name
        if not p.is_file():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.writes.append((str(p.relative_to(self.root)), value))
        if name in self.refuse:
            raise OSError(self.refuse[name], os.strerror(self.refuse[name]), path)
        if name == "cgroup.subtree_control":
            self._subtree_control(p, value)
        elif name == "cgroup.procs":
            with open(p, "a") as f:
                f.write(value + "\n")
        elif name == "cgroup.freeze":
            p.write_text(value)
            (p.parent / "cgroup.events").write_text(f"populated 1\nfrozen {value}\n")
        elif name in ("devices.allow", "devices.deny"):
            self._devices(p.parent, name == "devices.allow", value)
        else:
            p.write_text(value)

    def _subtree_control(self, p: Path, value: str) -> None:
        mount, _ = self._hierarchy(p)
        available = (p.parent / "cgroup.controllers").read_text().split()
        enabled = p.read_text().split()
        if p.parent != mount and (p.parent / "cgroup.procs").read_text().strip():
            raise OSError(errno.EBUSY, "Device or resource busy", str(p))
        for token in value.split():
            ctrl = token[1:]
            if ctrl not in available:
                raise OSError(errno.ENOENT, "No such file or directory", str(p))
            if token[0] == "+" and ctrl not in enabled:
                enabled.append(ctrl)
            elif token[0] == "-" and ctrl in enabled:
                enabled.remove(ctrl)
        p.write_text(" ".join(enabled) + "\n")
        for child in p.parent.iterdir():                 # existing children gain the files
            if child.is_dir():
                (child / "cgroup.controllers").write_text(" ".join(enabled) + "\n")
                for ctrl in enabled:
                    for name, initial in V2_FILES.get(ctrl, {}).items():
                        if not (child / name).exists() or name == "cpu.stat":
                            (child / name).write_text(initial)

    def _devices(self, d: Path, allow: bool, value: str) -> None:
        # The v1 controller, written independently of the module's emulator.
        listing = d / "devices.list"
        lines = listing.read_text().split("\n")
        lines = [line for line in lines if line]
        kind, numbers, *rest = [*value.split(), ""]
        if kind == "a":
            listing.write_text("a *:* rwm\n" if allow else "")
            return
        access = rest[0]
        allow_all = lines == ["a *:* rwm"]
        assert not allow_all or not allow, "the fake does not model allow-all exceptions"
        if allow_all:
            return  # deny exceptions are not shown by the kernel
        table = {}
        for line in lines:
            k, n, acc = line.split()
            table[(k, n)] = set(acc)
        cur = table.get((kind, numbers), set())
        cur = cur | set(access) if allow else cur - set(access)
        if cur:
            table[(kind, numbers)] = cur
        else:
            table.pop((kind, numbers), None)
        listing.write_text("".join(f"{k} {n} {''.join(c for c in 'rwm' if c in acc)}\n"
                                   for (k, n), acc in table.items()))

    def written(self, suffix: str) -> list[str]:
        """Values written to files whose path ends with ``suffix``, in order."""
        return [v for p, v in self.writes if p.endswith(suffix)]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    kernel = FakeKernel(tmp_path)
    monkeypatch.setattr(cgroups, "_write_file", kernel.write)
    monkeypatch.setattr(cgroups, "_sys_mkdir", kernel.mkdir)
    monkeypatch.setattr(cgroups, "_sys_rmdir", kernel.rmdir)
    monkeypatch.setattr(cgroups, "_sys_kill", kernel.kill)
    return kernel


def hybrid_layout() -> Layout:
    return cgroups.parse_mountinfo(HYBRID_MOUNTINFO)


def v2_layout() -> Layout:
    return cgroups.parse_mountinfo(V2_MOUNTINFO)


def v1_layout() -> Layout:
    return cgroups.parse_mountinfo(V1_MOUNTINFO)


_names = itertools.count()


def make(fake: FakeKernel, layout: Layout, path: str | None = None) -> Cgroup:
    fake.mount_layout(layout)
    cg = Cgroup(path or f"/silo/c{next(_names)}", layout, root_prefix=str(fake.root))
    cg.create()
    fake.writes.clear()
    return cg


def read(path: str) -> str:
    return Path(path).read_text().strip()


# -- detect() ---------------------------------------------------------------------------------

def test_detect_hybrid_from_this_machines_mountinfo() -> None:
    layout = hybrid_layout()
    assert layout.mode == "hybrid"
    assert layout.v2 == "/sys/fs/cgroup/unified"
    assert layout.v1 == {
        c: f"/sys/fs/cgroup/{c}" for c in
        ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
    } | {"name=systemd": "/sys/fs/cgroup/systemd"}


def test_detect_v2_only() -> None:
    layout = v2_layout()
    assert (layout.mode, layout.v1, layout.v2) == ("v2", {}, "/sys/fs/cgroup")


def test_detect_v1_co_mounted_controllers_share_a_directory() -> None:
    layout = v1_layout()
    assert layout.mode == "v1" and layout.v2 is None
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.v1["net_cls"] == layout.v1["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert layout.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert layout.v1["pids"] == "/sys/fs/cgroup/my pids"          # \040 unescaped
    assert "clone_children" not in layout.v1 and "xattr" not in layout.v1
    assert not any(k.startswith("release_agent") for k in layout.v1)


def test_detect_v2_with_a_stray_named_v1_hierarchy_is_v2() -> None:
    text = V2_MOUNTINFO + ("40 30 0:40 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
                           "rw,name=systemd\n")
    layout = cgroups.parse_mountinfo(text)
    assert layout.mode == "v2"
    cg = Cgroup("/x", layout)
    assert cg.paths == {"unified": "/sys/fs/cgroup/x"}


def test_detect_without_cgroups_is_not_supported() -> None:
    with pytest.raises(errors.NotSupported):
        cgroups.parse_mountinfo("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n")


def test_detect_reads_the_file_once_per_process(tmp_path: Path) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text(HYBRID_MOUNTINFO)
    first = cgroups.detect(str(mi))
    mi.write_text(V2_MOUNTINFO)
    assert cgroups.detect(str(mi)) is first


def test_detect_missing_file_is_a_silo_error(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound) as info:
        cgroups.detect(str(tmp_path / "absent"))
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_own_cgroup_paths_of_this_machine(tmp_path: Path) -> None:
    f = tmp_path / "cgroup"
    f.write_text(HYBRID_PROC_CGROUP)
    own = cgroups.own_cgroup_paths(str(f))
    assert own["memory"] == "/process_api/611df0d355a18b3ef474eb450d03e7fd"
    assert own[""] == "/" and own["name=systemd"] == "/" and own["cpu"] == "/"


def test_own_cgroup_paths_splits_co_mounted_names(tmp_path: Path) -> None:
    f = tmp_path / "cgroup"
    f.write_text("4:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/x.scope\n")
    assert cgroups.own_cgroup_paths(str(f)) == {
        "cpu": "/user.slice", "cpuacct": "/user.slice", "name=systemd": "/user.slice/x.scope"}


def test_v2_controllers_reads_the_root(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert Layout("v2", {}, str(tmp_path)).v2_controllers() == {"cpu", "memory", "pids"}
    assert Layout("v1", {"cpu": "/x"}, None).v2_controllers() == set()


# -- paths ------------------------------------------------------------------------------------

def test_absolute_path_is_below_each_hierarchy_root() -> None:
    cg = Cgroup("/default/abc", hybrid_layout())
    assert cg.paths["memory"] == "/sys/fs/cgroup/memory/default/abc"
    assert cg.paths["name=systemd"] == "/sys/fs/cgroup/systemd/default/abc"
    assert cg.paths["unified"] == "/sys/fs/cgroup/unified/default/abc"


def test_relative_path_is_below_the_callers_own_cgroups(tmp_path: Path) -> None:
    f = tmp_path / "cgroup"
    f.write_text(HYBRID_PROC_CGROUP)
    cg = Cgroup("abc/def", hybrid_layout(), proc_cgroup=str(f))
    assert cg.paths["memory"] == \
        "/sys/fs/cgroup/memory/process_api/611df0d355a18b3ef474eb450d03e7fd/abc/def"
    assert cg.paths["cpu"] == "/sys/fs/cgroup/cpu/abc/def"
    assert cg.paths["unified"] == "/sys/fs/cgroup/unified/abc/def"


def test_relative_path_strips_the_mount_root_of_a_bind_mounted_hierarchy(tmp_path: Path) -> None:
    f = tmp_path / "cgroup"
    f.write_text("0::/kubepods/pod1/ctr\n")
    text = "30 25 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    cg = Cgroup("sub", cgroups.parse_mountinfo(text), proc_cgroup=str(f))
    assert cg.paths == {"unified": "/sys/fs/cgroup/ctr/sub"}


def test_co_mounted_controllers_share_one_directory() -> None:
    cg = Cgroup("/a", v1_layout())
    assert cg.paths["cpu"] == cg.paths["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/a"
    assert "unified" not in cg.paths


@pytest.mark.parametrize("path", ["", "/", "/a/../b", "../x", "a/..", "//", "/a\0b"])
def test_bad_cgroups_path_is_invalid(path: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        Cgroup(path, hybrid_layout())
    assert info.value.field == "linux.cgroupsPath"


# -- validate_resources() ------------------------------------------------------------------------

@pytest.fixture
def sysfs(tmp_path: Path) -> str:
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/node").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-1\n")
    (tmp_path / "sys/devices/system/node/online").write_text("0\n")
    return str(tmp_path / "sys")


def validate(resources: Any, sysfs: str, layout: Layout | None = None, **kw: Any) -> None:
    cgroups.validate_resources(resources, layout=layout or hybrid_layout(), sysfs=sysfs, **kw)


# Each case: (resources, the field the error must name, words the reason must contain).
INVALID = [
    ([], "linux.resources", "object"),
    ({"memory": 5}, "linux.resources.memory", "object"),
    ({"memory": {"limit": "abc"}}, "linux.resources.memory.limit", "must be an integer"),
    ({"memory": {"limit": True}}, "linux.resources.memory.limit", "must be an integer"),
    ({"memory": {"limit": 1.5e9}}, "linux.resources.memory.limit", "must be an integer"),
    ({"memory": {"limit": 100}}, "linux.resources.memory.limit", "4096"),
    ({"memory": {"limit": -2}}, "linux.resources.memory.limit", "between"),
    ({"memory": {"limit": 1 << 63}}, "linux.resources.memory.limit", "between"),
    ({"memory": {"reservation": -5}}, "linux.resources.memory.reservation", "between"),
    ({"memory": {"limit": 1 << 30, "swap": 1 << 29}}, "linux.resources.memory.swap", "at least"),
    ({"memory": {"limit": -1, "swap": 1 << 30}}, "linux.resources.memory.swap", "unlimited"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness", "between"),
    ({"memory": {"disableOOMKiller": "yes"}}, "linux.resources.memory.disableOOMKiller",
     "true or false"),
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares", "2 and 262144"),
    ({"cpu": {"shares": 262145}}, "linux.resources.cpu.shares", "2 and 262144"),
    ({"cpu": {"shares": "1024"}}, "linux.resources.cpu.shares", "must be an integer"),
    ({"cpu": {"quota": 999}}, "linux.resources.cpu.quota", "1000"),
    ({"cpu": {"quota": -2}}, "linux.resources.cpu.quota", "between"),
    ({"cpu": {"period": 999}}, "linux.resources.cpu.period", "1000 and 1000000"),
    ({"cpu": {"period": 1000001}}, "linux.resources.cpu.period", "1000 and 1000000"),
    ({"cpu": {"quota": 5000, "burst": 6000}}, "linux.resources.cpu.burst", "quota"),
    ({"cpu": {"idle": 2}}, "linux.resources.cpu.idle", "between"),
    ({"cpu": {"cpus": "0-"}}, "linux.resources.cpu.cpus", "list"),
    ({"cpu": {"cpus": "1-0"}}, "linux.resources.cpu.cpus", "list"),
    ({"cpu": {"cpus": "a"}}, "linux.resources.cpu.cpus", "list"),
    ({"cpu": {"cpus": "0,5"}}, "linux.resources.cpu.cpus", "not online (0-1)"),
    ({"cpu": {"cpus": "0-99999999999"}}, "linux.resources.cpu.cpus", "not online"),
    ({"cpu": {"mems": "1"}}, "linux.resources.cpu.mems", "not online (0)"),
    ({"cpu": {"cpus": 1}}, "linux.resources.cpu.cpus", "must be a string"),
    ({"pids": {"limit": "x"}}, "linux.resources.pids.limit", "must be an integer"),
    ({"pids": {"limit": None}}, "linux.resources.pids.limit", "must be an integer"),
    ({"pids": {"limit": -2}}, "linux.resources.pids.limit", "between"),
    ({"devices": {}}, "linux.resources.devices", "must be a list"),
    ({"devices": ["c 1:3 rwm"]}, "linux.resources.devices[0]", "must be an object"),
    ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow", "required"),
    ({"devices": [{"allow": 1}]}, "linux.resources.devices[0].allow", "true or false"),
    ({"devices": [{"allow": False}, {"allow": True, "type": "x"}]},
     "linux.resources.devices[1].type", "a, b or c"),
    ({"devices": [{"allow": True, "type": "c", "access": "rwx"}]},
     "linux.resources.devices[0].access", "r, w and m"),
    ({"devices": [{"allow": True, "type": "c", "major": "1"}]},
     "linux.resources.devices[0].major", "must be an integer"),
    ({"devices": [{"allow": True, "type": "c", "minor": -3}]},
     "linux.resources.devices[0].minor", "between"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 0}]},
     "linux.resources.hugepageLimits[0].pageSize", "2MB"),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, "linux.resources.hugepageLimits[0].limit",
     "required"),
    ({"blockIO": {"weight": 2000}}, "linux.resources.blockIO.weight", "between"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0].minor", "required"),
    ({"network": {"classID": "x"}}, "linux.resources.network.classID", "must be an integer"),
    ({"unified": {"../memory.max": "1"}}, 'linux.resources.unified["../memory.max"]', "file"),
    ({"unified": {"memory.max": 5}}, 'linux.resources.unified["memory.max"]', "string"),
]


@pytest.mark.parametrize(("resources", "field", "words"), INVALID)
def test_validation_names_the_field(resources: Any, field: str, words: str, sysfs: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        validate(resources, sysfs)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")
    assert words in str(info.value)


def test_validation_uses_the_given_prefix(sysfs: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        validate({"memory": {"limit": "x"}}, sysfs, where="resources")
    assert info.value.field == "resources.memory.limit"


# The resources runc's `spec`, containerd and podman write, and zeros meaning "leave as is".
VALID = [
    {},
    {"devices": [{"allow": False, "access": "rwm"}]},
    {"devices": [{"allow": False, "access": "rwm"},
                 {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                 {"allow": True, "type": "c", "major": 136, "access": "rwm"},
                 {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"}]},
    {"memory": {"limit": 1 << 30, "swap": 1 << 30, "reservation": 1 << 29, "swappiness": 0},
     "cpu": {"shares": 2, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
     "pids": {"limit": 2048}},
    {"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1, "shares": 262144},
     "pids": {"limit": -1}},
    {"memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": ""},
     "pids": {"limit": 0}},
    {"memory": {"swap": 1 << 30}},          # update: the limit already in place decides
    {"hugepageLimits": [], "blockIO": {}, "network": {}, "rdma": {}, "unified": {}},
    {"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]},   # hugetlb is on cgroup2 here
    {"blockIO": {"throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}]}},
]


@pytest.mark.parametrize("resources", VALID)
def test_valid_resources_pass(resources: dict[str, Any], sysfs: str) -> None:
    validate(resources, sysfs)


@pytest.mark.parametrize(("resources", "field"), [
    ({"network": {"classID": 1}}, "linux.resources.network.classID"),
    ({"rdma": {"mlx5_0": {"hcaHandles": 1}}}, "linux.resources.rdma"),
    ({"cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime"),
    ({"pids": {"limit": 10}}, "linux.resources.pids.limit"),
    ({"unified": {"memory.high": "1G"}}, "linux.resources.unified"),
])
def test_what_the_host_lacks_is_not_supported(resources: dict[str, Any], field: str,
                                              sysfs: str, tmp_path: Path) -> None:
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2/cgroup.controllers").write_text("cpu memory\n")
    layouts = {
        "linux.resources.network.classID": hybrid_layout(),
        "linux.resources.rdma": hybrid_layout(),
        "linux.resources.cpu.realtimeRuntime": Layout("v2", {}, str(tmp_path / "v2")),
        "linux.resources.pids.limit": Layout("v2", {}, str(tmp_path / "v2")),
        "linux.resources.unified": v1_layout(),
    }
    with pytest.raises(errors.NotSupported) as info:
        validate(resources, sysfs, layouts[field])
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


def test_cpu_lists_are_left_to_the_kernel_when_the_host_does_not_say(tmp_path: Path) -> None:
    validate({"cpu": {"cpus": "7", "mems": "0"}}, str(tmp_path / "no-sysfs"))
    with pytest.raises(errors.InvalidArgument):      # no node list: node 0 only
        validate({"cpu": {"mems": "1"}}, str(tmp_path / "no-sysfs"))


def test_parse_cpu_list() -> None:
    assert cgroups.parse_cpu_list("0-2,7, 9-9\n") == [(0, 2), (7, 7), (9, 9)]
    for bad in ("", ",", "1-", "-1", "3-1", "x", "1 2", "\uff11"):
        with pytest.raises(ValueError):
            cgroups.parse_cpu_list(bad)


# -- create(), destroy(), add() on the fake kernel -------------------------------------------

def test_create_makes_every_hierarchy_and_is_idempotent(fake: FakeKernel) -> None:
    layout = hybrid_layout()
    cg = make(fake, layout, "/default/abc")
    for key, path in cg.paths.items():
        assert os.path.isdir(path), key
        assert path.startswith(str(fake.root) + "/sys/fs/cgroup/")
    assert cg.exists()
    cg.create()
    assert cg.exists()


def test_create_copies_cpuset_down_into_fresh_ancestors(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout(), "/a/b/c")
    root = f"{fake.root}/sys/fs/cgroup/cpuset"
    for d in ("a", "a/b", "a/b/c"):
        assert read(f"{root}/{d}/cpuset.cpus") == "0-3", d
        assert read(f"{root}/{d}/cpuset.mems") == "0", d
    # other hierarchies have no cpuset files
    assert not os.path.exists(f"{cg.paths['memory']}/cpuset.cpus")


def test_create_on_v2_enables_controllers_in_ancestors_not_the_leaf(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout(), "/a/b")
    root = f"{fake.root}/sys/fs/cgroup"
    assert set(read(f"{root}/cgroup.subtree_control").split()) == \
        {"cpuset", "cpu", "io", "memory", "hugetlb", "pids"}
    assert set(read(f"{root}/a/cgroup.subtree_control").split()) == \
        {"cpuset", "cpu", "io", "memory", "hugetlb", "pids"}
    assert read(f"{cg.paths['unified']}/cgroup.subtree_control") == ""
    assert os.path.exists(f"{cg.paths['unified']}/memory.max")


def test_create_on_v2_leaves_off_what_a_populated_ancestor_cannot_enable(
        fake: FakeKernel, tmp_path: Path) -> None:
    # A relative path below our own (populated) cgroup: the no-internal-process rule refuses
    # "+memory" there; create() still succeeds and apply() then says what is missing.
    layout = v2_layout()
    fake.mount_layout(layout)
    root = Path(f"{fake.root}/sys/fs/cgroup")
    fake.mkdir(str(root / "user"))
    (root / "user/cgroup.procs").write_text("4242\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/user\n")
    cg = Cgroup("ctr", layout, root_prefix=str(fake.root), proc_cgroup=str(proc))
    cg.create()
    assert cg.paths["unified"] == str(root / "user/ctr")
    assert read(str(root / "user/cgroup.subtree_control")) == ""
    with pytest.raises(errors.NotSupported) as info:
        cg.apply({"memory": {"limit": 1 << 20}})
    assert info.value.field == "linux.resources.memory.limit"
    assert "memory controller is not enabled" in str(info.value)


def test_hybrid_create_leaves_the_cgroup2_tree_alone_until_a_setting_needs_it(
        fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout(), "/a/b")
    root = f"{fake.root}/sys/fs/cgroup/unified"
    assert read(f"{root}/cgroup.subtree_control") == ""
    cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    assert read(f"{root}/cgroup.subtree_control") == "hugetlb"
    assert read(f"{root}/a/cgroup.subtree_control") == "hugetlb"
    assert read(f"{root}/a/b/cgroup.subtree_control") == ""
    assert read(f"{root}/a/b/hugetlb.2MB.max") == str(4 << 20)


def test_destroy_removes_only_the_leaf_everywhere(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout(), "/default/abc")
    fake.mkdir(cg.paths["memory"] + "/nested")      # a cgroup the container made
    cg.destroy()
    for key, path in cg.paths.items():
        assert not os.path.exists(path), key
        assert os.path.isdir(os.path.dirname(path)), key
    assert not cg.exists()
    cg.destroy()                                     # already gone: fine


def test_destroy_gives_up_on_a_cgroup_that_keeps_processes(
        fake: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "_DESTROY_TIMEOUT", 0.05)
    cg = make(fake, hybrid_layout())
    cg.add(4242)
    with pytest.raises(errors.InvalidState) as info:
        cg.destroy()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EBUSY


def test_add_writes_the_pid_once_per_directory(fake: FakeKernel) -> None:
    cg = make(fake, v1_layout())
    cg.add(4242)
    procs = [p for p, v in fake.writes if p.endswith("cgroup.procs") and v == "4242"]
    assert len(procs) == len(set(cg.paths.values()))
    assert sum(1 for p in procs if "cpu,cpuacct" in p) == 1


def test_add_of_a_gone_process_is_not_found(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    fake.refuse["cgroup.procs"] = errno.ESRCH
    with pytest.raises(errors.NotFound) as info:
        cg.add(999999)
    assert "999999" in str(info.value)


def test_pids_lists_the_tracking_hierarchy_recursively(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.add(10)
    sub = cg.paths["freezer"] + "/sub"
    fake.mkdir(sub)
    Path(sub, "cgroup.procs").write_text("11\n12\n")
    assert sorted(cg.pids()) == [10, 11, 12]


def test_pids_of_a_missing_cgroup_is_empty(fake: FakeKernel) -> None:
    fake.mount_layout(hybrid_layout())
    assert Cgroup("/nope", hybrid_layout(), root_prefix=str(fake.root)).pids() == []


# -- apply() -----------------------------------------------------------------------------------

def test_apply_v1_memory_limit_then_swap_when_shrinking(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20,
                         "swappiness": 10}})
    d = cg.paths["memory"]
    assert read(f"{d}/memory.limit_in_bytes") == str(64 << 20)
    assert read(f"{d}/memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(f"{d}/memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(f"{d}/memory.swappiness") == "10"
    order = [p.rsplit("/", 1)[1] for p, _ in fake.writes]
    # the current limit (unlimited) is above the new memsw: limit must go first
    assert order.index("memory.limit_in_bytes") < order.index("memory.memsw.limit_in_bytes")


def test_apply_v1_memory_swap_first_when_growing(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    d = cg.paths["memory"]
    Path(d, "memory.limit_in_bytes").write_text(str(32 << 20))
    Path(d, "memory.memsw.limit_in_bytes").write_text(str(32 << 20))
    cg.apply({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    order = [p.rsplit("/", 1)[1] for p, _ in fake.writes]
    assert order.index("memory.memsw.limit_in_bytes") < order.index("memory.limit_in_bytes")


def test_apply_v1_unlimited_memory_unlimits_memsw_too(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"memory": {"limit": -1}})
    assert fake.written("memory.memsw.limit_in_bytes") == ["-1"]
    assert fake.written("memory.limit_in_bytes") == ["-1"]


def test_apply_v1_swap_without_swap_accounting_is_not_supported(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    os.unlink(cg.paths["memory"] + "/memory.memsw.limit_in_bytes")
    with pytest.raises(errors.NotSupported) as info:
        cg.apply({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    assert info.value.field == "linux.resources.memory.swap"


@pytest.mark.parametrize(("limit", "swap", "memory_max", "swap_max"), [
    (64 << 20, 96 << 20, str(64 << 20), str(32 << 20)),
    (64 << 20, 64 << 20, str(64 << 20), "0"),
    (64 << 20, -1, str(64 << 20), "max"),
    (-1, 0, "max", "max"),
    (-1, -1, "max", "max"),
    (64 << 20, 0, str(64 << 20), None),
])
def test_apply_v2_swap_is_memory_plus_swap_minus_memory(
        fake: FakeKernel, limit: int, swap: int, memory_max: str, swap_max: str | None) -> None:
    cg = make(fake, v2_layout())
    cg.apply({"memory": {"limit": limit, "swap": swap}})
    assert fake.written("/memory.max") == [memory_max]
    assert fake.written("memory.swap.max") == ([swap_max] if swap_max else [])


def test_apply_v2_swap_alone_uses_the_limit_in_place(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    Path(cg.paths["unified"], "memory.max").write_text(str(100 << 20) + "\n")
    cg.apply({"memory": {"swap": 150 << 20}})
    assert fake.written("memory.swap.max") == [str(50 << 20)]


def test_apply_v2_swap_alone_without_a_limit_is_invalid(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    with pytest.raises(errors.InvalidArgument) as info:
        cg.apply({"memory": {"swap": 150 << 20}})
    assert info.value.field == "linux.resources.memory.swap"
    assert fake.writes == []


def test_apply_v2_reservation_is_memory_low(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    cg.apply({"memory": {"reservation": 1 << 20}})
    assert fake.written("memory.low") == [str(1 << 20)]


@pytest.mark.parametrize(("shares", "weight"), [
    (2, 1), (512, 20), (1024, 39), (2048, 79), (262144, 10000)])
def test_shares_to_weight_like_runc(fake: FakeKernel, shares: int, weight: int) -> None:
    cg = make(fake, v2_layout())
    cg.apply({"cpu": {"shares": shares}})
    assert fake.written("cpu.weight") == [str(weight)]


@pytest.mark.parametrize(("cpu", "written"), [
    ({"quota": 50000, "period": 100000}, "50000 100000"),
    ({"quota": -1, "period": 20000}, "max 20000"),
    ({"quota": 25000}, "25000"),
    ({"quota": -1}, "max"),
    ({"period": 20000}, "max 20000"),      # keeps the current quota ("max 100000" here)
])
def test_apply_v2_cpu_max(fake: FakeKernel, cpu: dict[str, int], written: str) -> None:
    cg = make(fake, v2_layout())
    cg.apply({"cpu": cpu})
    assert fake.written("cpu.max") == [written]


def test_apply_v2_period_alone_keeps_a_set_quota(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    Path(cg.paths["unified"], "cpu.max").write_text("30000 100000\n")
    cg.apply({"cpu": {"period": 50000}})
    assert fake.written("cpu.max") == ["30000 50000"]


def test_apply_v1_cpu(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "1",
                      "mems": "0", "burst": 1000, "idle": 1}})
    d = cg.paths["cpu"]
    assert read(f"{d}/cpu.shares") == "512"
    assert read(f"{d}/cpu.cfs_quota_us") == "50000"
    assert read(f"{d}/cpu.cfs_period_us") == "100000"
    assert read(f"{d}/cpu.cfs_burst_us") == "1000"
    assert read(f"{d}/cpu.idle") == "1"
    assert read(cg.paths["cpuset"] + "/cpuset.cpus") == "1"
    assert read(cg.paths["cpuset"] + "/cpuset.mems") == "0"


def test_apply_v1_cpu_period_refused_first_is_retried_after_the_quota(
        fake: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    cg = make(fake, hybrid_layout())
    real = fake.write
    calls = {"n": 0}

    def write(path: str, value: str) -> None:
        if path.endswith("cpu.cfs_period_us") and calls["n"] == 0:
            calls["n"] += 1
            raise OSError(errno.EINVAL, "Invalid argument", path)
        real(path, value)

    monkeypatch.setattr(cgroups, "_write_file", write)
    cg.apply({"cpu": {"quota": 10000, "period": 20000}})
    assert read(cg.paths["cpu"] + "/cpu.cfs_period_us") == "20000"
    assert read(cg.paths["cpu"] + "/cpu.cfs_quota_us") == "10000"


def test_apply_pids(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"pids": {"limit": 100}})
    cg.apply({"pids": {"limit": 0}})          # leaves it
    assert read(cg.paths["pids"] + "/pids.max") == "100"
    cg.apply({"pids": {"limit": -1}})
    assert fake.written("pids.max") == ["100", "max"]


def test_apply_unified_writes_files_in_the_cgroup2_directory(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    cg.apply({"unified": {"memory.max": "1048576", "pids.max": "7"}})
    assert read(cg.paths["unified"] + "/memory.max") == "1048576"
    assert read(cg.paths["unified"] + "/pids.max") == "7"
    with pytest.raises(errors.NotSupported) as info:
        cg.apply({"unified": {"memory.nonexistent": "1"}})
    assert info.value.field == 'linux.resources.unified["memory.nonexistent"]'


def test_apply_block_io_v1(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"blockIO": {"weight": 300,
                          "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                          "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 5}]}})
    assert fake.written("blkio.weight") == ["300"]
    assert fake.written("blkio.throttle.read_bps_device") == ["8:0 1000"]
    assert fake.written("blkio.throttle.write_iops_device") == ["8:16 5"]


def test_apply_block_io_v2(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    cg.apply({"blockIO": {"weight": 500,
                          "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]}})
    assert fake.written("io.weight") == [f"default {1 + (490 * 9999) // 990}"]
    assert fake.written("io.max") == ["8:0 rbps=1000"]


def test_apply_hugepages_v2(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]})
    assert fake.written("hugetlb.2MB.max") == [str(1 << 21)]


def test_kernel_refusal_names_the_field_and_the_reason(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    fake.refuse["memory.limit_in_bytes"] = errno.EBUSY
    with pytest.raises(errors.InvalidArgument) as info:
        cg.apply({"memory": {"limit": 1 << 20}})
    assert info.value.field == "linux.resources.memory.limit"
    assert "memory.limit_in_bytes" in str(info.value)
    assert os.strerror(errno.EBUSY) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_other_kernel_errors_are_internal_with_the_cause(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    fake.refuse["pids.max"] = errno.EACCES
    with pytest.raises(errors.Internal) as info:
        cg.apply({"pids": {"limit": 5}})
    assert info.value.__cause__ is not None


def test_apply_to_a_missing_cgroup_is_not_found(fake: FakeKernel) -> None:
    fake.mount_layout(hybrid_layout())
    cg = Cgroup("/never-created", hybrid_layout(), root_prefix=str(fake.root))
    with pytest.raises(errors.NotFound):
        cg.apply({"pids": {"limit": 5}})


def test_apply_checks_everything_before_writing(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    with pytest.raises(errors.InvalidArgument):
        cg.apply({"memory": {"limit": 1 << 20}, "pids": {"limit": "many"}})
    with pytest.raises(errors.NotSupported):
        cg.apply({"memory": {"limit": 1 << 20}, "network": {"classID": 7}})
    assert fake.writes == []


# -- devices ------------------------------------------------------------------------------------

OCI_DEFAULT_DEVICES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rw"},
]


def test_device_state_replays_rules_like_the_v1_controller() -> None:
    assert cgroups.device_state([]) == (False, {})
    assert cgroups.device_state(OCI_DEFAULT_DEVICES) == (False, {
        ("c", 1, 3): 7, ("c", 1, 5): 7, ("c", 136, -1): 7, ("c", 5, 2): 6})
    # a later deny takes bits from the exact same entry; the later "a" resets everything
    assert cgroups.device_state([
        {"allow": False}, {"allow": True, "type": "c", "major": 1, "minor": 3},
        {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "m"}]) == \
        (False, {("c", 1, 3): 6})
    assert cgroups.device_state([
        {"allow": True, "type": "c", "major": 1, "minor": 3}, {"allow": True, "type": "a"},
        {"allow": False, "type": "b", "major": 8, "access": "w"}]) == (True, {("b", 8, -1): 4})


def test_devices_v1_fresh_cgroup_resets_then_allows_in_order(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"devices": OCI_DEFAULT_DEVICES})
    dev_writes = [(p.rsplit("/", 1)[1], v) for p, v in fake.writes if "/devices." in p]
    assert dev_writes == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 1:5 rwm"),
        ("devices.allow", "c 136:* rwm"), ("devices.allow", "c 5:2 rw"),
    ]
    assert read(cg.paths["devices"] + "/devices.list").splitlines() == [
        "c 1:3 rwm", "c 1:5 rwm", "c 136:* rwm", "c 5:2 rw"]


def test_devices_v1_update_never_takes_away_a_device_it_keeps(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"devices": OCI_DEFAULT_DEVICES})
    fake.writes.clear()
    new = [*OCI_DEFAULT_DEVICES[:2],
           {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
           {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]
    cg.apply({"devices": new})
    dev_writes = [(p.rsplit("/", 1)[1], v) for p, v in fake.writes if "/devices." in p]
    assert ("devices.deny", "a") not in dev_writes
    assert dev_writes == [
        ("devices.allow", "c 5:2 m"), ("devices.allow", "b 8:0 r"),
        ("devices.deny", "c 1:5 rwm"), ("devices.deny", "c 136:* rwm"),
    ]
    assert sorted(read(cg.paths["devices"] + "/devices.list").splitlines()) == [
        "b 8:0 r", "c 1:3 rwm", "c 5:2 rwm"]


def test_devices_v1_allow_by_default_with_denials(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.apply({"devices": [{"allow": True, "access": "rwm"},
                          {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]})
    dev_writes = [(p.rsplit("/", 1)[1], v) for p, v in fake.writes if "/devices." in p]
    assert dev_writes == [("devices.allow", "a"), ("devices.deny", "c 1:3 w")]


def test_devices_enforced() -> None:
    assert Cgroup("/x", hybrid_layout()).devices_enforced()
    assert Cgroup("/x", v2_layout()).devices_enforced()
    assert not Cgroup("/x", Layout("v1", {"memory": "/m"}, None)).devices_enforced()


def run_bpf(code: bytes, kind: str, access: int, major: int, minor: int) -> int:
    """A tiny interpreter for the instructions device_program() emits."""
    assert len(code) % 8 == 0
    ctx = [(access << 16) | (1 if kind == "b" else 2), major, minor]
    regs = [0] * 11
    pc = 0
    for _ in range(10000):
        insn = code[pc * 8:pc * 8 + 8]
        op, dst, src = insn[0], insn[1] & 0xF, insn[1] >> 4
        off = int.from_bytes(insn[2:4], "little", signed=True)
        imm = int.from_bytes(insn[4:8], "little", signed=True)
        pc += 1
        if op == 0x61:                                   # ldxw dst, [r1 + off]
            assert src == 1 and off % 4 == 0
            regs[dst] = ctx[off // 4]
        elif op == 0x54:                                 # and32 dst, imm
            regs[dst] = regs[dst] & imm & 0xFFFFFFFF
        elif op == 0x74:                                 # rsh32 dst, imm
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == 0xBC:                                 # mov32 dst, src
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == 0xB4:                                 # mov32 dst, imm
            regs[dst] = imm & 0xFFFFFFFF
        elif op == 0x55:                                 # jne dst, imm, +off
            pc += off if regs[dst] != imm else 0
        elif op == 0x15:                                 # jeq dst, imm, +off
            pc += off if regs[dst] == imm else 0
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
        assert 0 <= pc < len(code) // 8, "jumped out of the program"
    raise AssertionError("no exit")


def kernel_v1_decides(allow_default: bool, exceptions: dict[tuple[str, int, int], int],
                      kind: str, access: int, major: int, minor: int) -> bool:
    """security/device_cgroup.c: match_exception / match_exception_partial."""
    def matches(key: tuple[str, int, int]) -> bool:
        return key[0] == kind and key[1] in (-1, major) and key[2] in (-1, minor)
    if allow_default:
        return not any(matches(k) and bits & access for k, bits in exceptions.items())
    return any(matches(k) and not access & ~bits for k, bits in exceptions.items())


@pytest.mark.parametrize("rules", [
    OCI_DEFAULT_DEVICES,
    [{"allow": False}],
    [{"allow": True}],
    [{"allow": True}, {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
     {"allow": False, "type": "b", "access": "m"}],
    [{"allow": False}, {"allow": True, "type": "c", "access": "m"},
     {"allow": True, "type": "c", "major": 1, "access": "r"},
     {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rw"}],
])
def test_device_program_decides_like_the_v1_controller(rules: list[dict[str, Any]]) -> None:
    allow_default, exceptions = cgroups.device_state(rules)
    code = cgroups.device_program(allow_default, exceptions)
    checked = 0
    for kind in "bc":
        for major, minor in itertools.product((1, 5, 8, 136), (0, 2, 3, 5)):
            for access in range(1, 8):
                want = kernel_v1_decides(allow_default, exceptions, kind, access, major, minor)
                got = run_bpf(code, kind, access, major, minor)
                assert got == int(want), (kind, major, minor, access)
                checked += 1
    assert checked == 2 * 16 * 7


# -- freeze, kill, stats ---------------------------------------------------------------------------

def test_freeze_and_thaw_v1(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    assert not cg.is_frozen()
    cg.freeze()
    assert cg.is_frozen()
    assert read(cg.paths["freezer"] + "/freezer.state") == "FROZEN"
    cg.thaw()
    assert not cg.is_frozen()


def test_freeze_v1_times_out_and_thaws_when_stuck_freezing(
        fake: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "_FREEZE_TIMEOUT", 0.05)
    cg = make(fake, hybrid_layout())
    real = fake.write

    def write(path: str, value: str) -> None:
        real(path, "FREEZING" if value == "FROZEN" else value)

    monkeypatch.setattr(cgroups, "_write_file", write)
    with pytest.raises(errors.Timeout):
        cg.freeze()
    assert read(cg.paths["freezer"] + "/freezer.state") == "THAWED"


def test_freeze_and_thaw_v2(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    cg.freeze()
    assert cg.is_frozen()
    assert fake.written("cgroup.freeze") == ["1"]
    cg.thaw()
    assert not cg.is_frozen()


def test_kill_all_sigkill_on_hybrid_freezes_signals_thaws_without_cgroup_kill(
        fake: FakeKernel) -> None:
    # On a hybrid host the processes live in the v1 hierarchies only (join_self leaves the
    # cgroup2 directory out), so cgroup.kill there would kill nothing.
    cg = make(fake, hybrid_layout())
    cg.add(10)
    cg.add(11)
    fake.writes.clear()
    cg.kill_all(9)
    assert fake.written("cgroup.kill") == []
    assert fake.written("freezer.state") == ["FROZEN", "THAWED"]
    assert fake.killed == [(10, 9), (11, 9)]


def test_join_self_on_hybrid_writes_tasks_in_v1_only(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.create()
    fake.writes.clear()
    cg.join_self()
    assert fake.written("cgroup.procs") == []
    v1_dirs = {os.path.relpath(d, fake.root) for d in cg._dirs() if d != cg.paths["unified"]}
    assert {path.rsplit("/", 1)[0] for path, _ in fake.writes if path.endswith("/tasks")} \
        == v1_dirs
    assert set(fake.written("tasks")) == {"0"}


def test_join_self_on_v2_writes_cgroup_procs(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    cg.create()
    fake.writes.clear()
    cg.join_self()
    assert fake.written("cgroup.procs") == ["0"]
    assert fake.written("tasks") == []


def test_kill_all_other_signal_leaves_a_paused_cgroup_paused(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    cg.add(10)
    cg.freeze()
    fake.writes.clear()
    cg.kill_all(15)
    assert fake.killed == [(10, 15)]
    assert fake.written("cgroup.kill") == []
    assert cg.is_frozen()


def test_kill_all_sigkill_on_v2_is_cgroup_kill_alone(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    cg.add(10)
    cg.kill_all(9)
    assert fake.written("cgroup.kill") == ["1"]
    assert fake.killed == []


def test_kill_all_of_a_missing_cgroup_does_nothing(fake: FakeKernel) -> None:
    fake.mount_layout(hybrid_layout())
    Cgroup("/gone", hybrid_layout(), root_prefix=str(fake.root)).kill_all(9)
    assert fake.writes == [] and fake.killed == []


def test_stats_v1_shape(fake: FakeKernel) -> None:
    cg = make(fake, hybrid_layout())
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    stats = cg.stats()
    assert stats["cpu"]["usage"] == {
        "total": 123456, "percpu": [100000, 23456], "kernel": 1 * tick, "user": 3 * tick}
    assert stats["cpu"]["throttling"] == {
        "periods": 5, "throttled_periods": 2, "throttled_time": 3000}
    assert stats["memory"]["usage"] == {
        "limit": int(UNLIMITED_V1), "usage": 4096, "max": 8192, "failcnt": 0}
    assert stats["memory"]["swap"] == {"limit": int(UNLIMITED_V1), "usage": 4096}
    assert stats["memory"]["cache"] == 100
    assert stats["memory"]["raw"] == {"cache": 100, "rss": 200}
    assert stats["pids"] == {"current": 1}


def test_stats_v2_shape(fake: FakeKernel) -> None:
    cg = make(fake, v2_layout())
    Path(cg.paths["unified"], "pids.max").write_text("64\n")
    stats = cg.stats()
    assert stats["cpu"] == {"usage": {"total": 7000, "kernel": 2000, "user": 5000},
                            "throttling": {"periods": 4, "throttled_periods": 1,
                                           "throttled_time": 3000}}
    assert stats["memory"]["usage"] == {"limit": (1 << 64) - 1, "usage": 4096, "failcnt": 4}
    assert stats["memory"]["swap"] == {"usage": 4096, "limit": (1 << 64) - 1}
    assert stats["memory"]["cache"] == 20
    assert stats["pids"] == {"current": 0, "limit": 64}
    assert stats["hugetlb"] == {"2MB": {"usage": 0, "failcnt": 0}}


def test_stats_of_a_missing_cgroup_is_empty(fake: FakeKernel) -> None:
    fake.mount_layout(hybrid_layout())
    assert Cgroup("/gone", hybrid_layout(), root_prefix=str(fake.root)).stats() == {}


def test_oom_kill_count(fake: FakeKernel) -> None:
    v1 = make(fake, hybrid_layout())
    Path(v1.paths["memory"], "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert v1.oom_kill_count() == 3


def test_oom_kill_count_v2(fake: FakeKernel) -> None:
    v2 = make(fake, v2_layout())
    assert v2.oom_kill_count() == 2


@pytest.fixture(autouse=True)
def _no_detect_leak() -> Iterator[None]:
    # detect() caches per path; tests that use tmp files must not leave entries behind.
    before = dict(cgroups._detected)
    yield
    cgroups._detected.clear()
    cgroups._detected.update(before)


def test_move_to_roots_writes_the_pid_to_each_hierarchy_root_it_owns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Roots of v1 controllers and of cgroup2 get the pid; a mount of a sub-cgroup (a bind
    of a non-root) is no root to move to and is left alone."""
    for d in ("pids", "cpu", "unified"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "cgroup.procs").write_text("")
    layout = cgroups.Layout("hybrid", {"pids": str(tmp_path / "pids"),
                                       "cpu": str(tmp_path / "cpu")},
                            str(tmp_path / "unified"), roots={"cpu": "/sub"})
    monkeypatch.setattr(cgroups, "detect", lambda: layout)
    cgroups.move_to_roots(4242)
    assert (tmp_path / "pids" / "cgroup.procs").read_text() == "4242"
    assert (tmp_path / "unified" / "cgroup.procs").read_text() == "4242"
    assert (tmp_path / "cpu" / "cgroup.procs").read_text() == ""
