"""Control groups: the job-object half of a server silo, on cgroup v1, v2 and hybrid hosts.

Owns every read and write under the cgroup filesystems: the host's layout (from mountinfo),
the checks on an OCI ``linux.resources`` object before anything exists, a container's cgroup in
every hierarchy, limits under both the v1 and the v2 file names, moving processes in, freezing,
signalling, statistics and removal. Device rules are enforced by the v1 ``devices`` controller,
or on cgroup2 by a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the container's cgroup.

Where a controller lives: a controller with a v1 mount is used there; one without is used on the
cgroup2 hierarchy when its root lists it (on a hybrid host, hugetlb can end up there). In hybrid
mode the container also gets a cgroup2 directory, as runc gives it one, so that the process is
tracked there too and ``cgroup.kill`` works. On a v2-only host, v1 mounts (a stray
``name=systemd``) are ignored.

This runs on every ``silo-runtime`` call, so it imports only ``os``, ``errno``, ``time`` and
:mod:`silo.errors` (``ctypes`` through :mod:`silo.kernel.libc`, and only to load a device
program). Every ``OSError`` is translated here, once, into :mod:`silo.errors` with the original
as ``__cause__``: a value the kernel refuses is an ``InvalidArgument`` naming the field
(``linux.resources.memory.limit``), a file or controller the host lacks is ``NotSupported``.
"""

from __future__ import annotations

import errno
import os
import time

from silo import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = [
    "Cgroup",
    "Layout",
    "detect",
    "device_program",
    "device_state",
    "own_cgroup_paths",
    "parse_cpu_list",
    "parse_mountinfo",
    "validate_resources",
]

# Names that can appear in a v1 cgroup mount's options; anything else there (rw, relatime,
# clone_children, ...) is a mount option. Named hierarchies appear as "name=...".
_V1_CONTROLLERS = frozenset((
    "blkio", "cpu", "cpuacct", "cpuset", "debug", "devices", "freezer", "hugetlb", "io",
    "memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma",
))

_I64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1
_FREEZE_TIMEOUT = 10.0
_DESTROY_TIMEOUT = 1.0


# --------------------------------------------------------------------------------------------
# Small file helpers. cgroupfs files are written with one write(2) each: the kernel parses a
# whole value per write, so a split write would be two values.


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return os.fsdecode(b"".join(chunks))


def _write_file(path: str, value: str) -> None:
    # O_TRUNC is accepted by cgroupfs and keeps plain files in test trees faithful.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


# The other calls that change the kernel's state, kept as module functions so that unit tests can
# put a fake kernel (a temp tree with cgroupfs' write semantics) behind them.


def _sys_mkdir(path: str) -> None:
    os.mkdir(path, 0o755)


def _sys_rmdir(path: str) -> None:
    os.rmdir(path)


def _sys_kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)


def _read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ("key value" lines: memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _read_int(path: str) -> int:
    """An integer file; "max" (v2's unlimited) reads as 2**64-1, as runc reports it."""
    text = _read(path).strip()
    return _U64_MAX if text == "max" else int(text)


def _controllers(path: str) -> set[str]:
    try:
        return set(_read(path).split())
    except FileNotFoundError:
        return set()


def _unsupported(field: str, reason: str, *, op: str = "", obj: str = "") -> errors.NotSupported:
    return errors.NotSupported(f"{field}: {reason}", op=op, obj=obj, field=field)


def _internal(err: OSError, what: str, *, op: str, obj: str) -> errors.SiloError:
    reason = os.strerror(err.errno) if err.errno else str(err)
    if err.errno == errno.ENOENT:
        return errors.NotFound(f"{what}: {reason}", op=op, obj=obj)
    return errors.Internal(f"{what}: {reason}", op=op, obj=obj)


# --------------------------------------------------------------------------------------------
# The host's layout.


class Layout:
    """Which cgroup hierarchies the host has mounted, and where.

    ``mode`` is "v1" (no cgroup2 mount), "v2" (cgroup2 and no v1 controller mounted) or
    "hybrid" (v1 controllers and a cgroup2 mount, e.g. at /sys/fs/cgroup/unified). ``v1`` maps
    each v1 controller (and named hierarchy, "name=systemd") to its mountpoint; co-mounted
    controllers ("cpu,cpuacct") map to the same directory. ``roots`` holds each mount's root
    within its hierarchy ("" for cgroup2) when that is not "/" (a bind mount of a sub-cgroup).
    """

    __slots__ = ("_v2_controllers", "mode", "roots", "v1", "v2")

    def __init__(self, mode: str, v1: dict[str, str], v2: str | None,
                 roots: dict[str, str] | None = None) -> None:
        if mode not in ("v1", "v2", "hybrid"):
            raise errors.InvalidArgument(f"cgroup layout mode {mode!r} is not v1, v2 or hybrid")
        self.mode = mode
        self.v1 = v1
        self.v2 = v2
        self.roots = roots or {}
        self._v2_controllers: frozenset[str] | None = None

    def v2_controllers(self) -> set[str]:
        """The controllers the cgroup2 root offers (its ``cgroup.controllers``)."""
        if self.v2 is None:
            return set()
        if self._v2_controllers is None:
            try:
                self._v2_controllers = frozenset(_controllers(self.v2 + "/cgroup.controllers"))
            except OSError as err:
                raise _internal(err, f"read {self.v2}/cgroup.controllers",
                                op="cgroup::layout", obj=self.v2) from err
        return set(self._v2_controllers)

    def __repr__(self) -> str:
        return f"Layout(mode={self.mode!r}, v1={self.v1!r}, v2={self.v2!r})"


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo.
    if "\\" not in field:
        return field
    parts = field.split("\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def parse_mountinfo(text: str) -> Layout:
    """The cgroup layout described by a ``/proc/<pid>/mountinfo`` text.

    The first mount of each v1 controller wins; for cgroup2, /sys/fs/cgroup wins over others.
    Raises NotSupported when no cgroup filesystem is mounted.
    """
    v1: dict[str, str] = {}
    roots: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root = _unescape(fields[3])
        mountpoint = _unescape(fields[4])
        if fstype == "cgroup2":
            if v2 is None or mountpoint == "/sys/fs/cgroup":
                v2 = mountpoint
                if root != "/":
                    roots[""] = root
                else:
                    roots.pop("", None)
            continue
        for opt in fields[sep + 3].split(","):
            if (opt in _V1_CONTROLLERS or opt.startswith("name=")) and opt not in v1:
                v1[opt] = mountpoint
                if root != "/":
                    roots[opt] = root
    has_controllers = any(not name.startswith("name=") for name in v1)
    if v2 is not None and not has_controllers:
        mode = "v2"
    elif v2 is not None:
        mode = "hybrid"
    elif v1:
        mode = "v1"
    else:
        raise errors.NotSupported("no cgroup filesystem is mounted", op="cgroup::detect")
    return Layout(mode, v1, v2, roots)


_detected: dict[str, Layout] = {}


def move_to_roots(pid: int | str = "self") -> None:
    """Move a process to the root of every mounted hierarchy (best effort: a hierarchy that
    refuses is skipped). For a process that outlives the one that started it and must not keep
    that one's cgroups from being removed."""
    layout = detect()
    mounts = {m for c, m in layout.v1.items() if c not in layout.roots}
    if layout.v2 is not None and "" not in layout.roots:
        mounts.add(layout.v2)
    me = str(os.getpid() if pid == "self" else pid)
    for mount in sorted(mounts):
        try:
            _write_file(os.path.join(mount, "cgroup.procs"), me)
        except OSError:
            pass


def detect(mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """The calling process's cgroup layout, parsed once per process (per mountinfo path)."""
    layout = _detected.get(mountinfo)
    if layout is None:
        try:
            text = _read(mountinfo)
        except OSError as err:
            raise _internal(err, f"read {mountinfo}", op="cgroup::detect", obj="") from err
        layout = _detected[mountinfo] = parse_mountinfo(text)
    return layout


def own_cgroup_paths(proc_cgroup: str = "/proc/self/cgroup") -> dict[str, str]:
    """Controller -> cgroup path of the calling process ("" for cgroup2, "name=systemd", ...)."""
    try:
        text = _read(proc_cgroup)
    except OSError as err:
        raise _internal(err, f"read {proc_cgroup}", op="cgroup::own", obj="") from err
    out: dict[str, str] = {}
    for line in text.splitlines():
        hier, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if hier == "0" and not names:
            out[""] = path
            continue
        for name in names.split(","):
            if name:
                out[name] = path
    return out


def _home(ctrl: str, layout: Layout, v2_controllers: set[str]) -> str | None:
    """Where a controller is served: "v1", "v2" or None (not on this host)."""
    if layout.mode != "v2" and ctrl in layout.v1:
        return "v1"
    if layout.v2 is not None and ctrl in v2_controllers:
        return "v2"
    return None


# --------------------------------------------------------------------------------------------
# Validation of linux.resources (shape and ranges first, then what this host can do).


def parse_cpu_list(text: str) -> list[tuple[int, int]]:
    """"0-2,7" -> [(0, 2), (7, 7)]. Raises ValueError on anything else."""
    ranges = []
    for part in text.strip().split(","):
        lo, sep, hi = part.strip().partition("-")
        if not (lo.isascii() and lo.isdigit()) or (sep and not (hi.isascii() and hi.isdigit())):
            raise ValueError(part)
        first = int(lo)
        last = int(hi) if sep else first
        if first > last:
            raise ValueError(part)
        ranges.append((first, last))
    return ranges


def _online(path: str, fallback: str) -> tuple[str, set[int]]:
    try:
        text = _read(path).strip()
    except OSError:
        text = fallback
    members: set[int] = set()
    try:
        for first, last in parse_cpu_list(text):
            members.update(range(first, last + 1))
    except ValueError:
        return text, set()      # unreadable or empty: the caller leaves it to the kernel
    return text, members


class _Checker:
    """Type checks for one object of the document, with the object's dotted path."""

    __slots__ = ("obj", "where")

    def __init__(self, obj: Mapping[str, Any], where: str) -> None:
        self.obj = obj
        self.where = where

    def field(self, key: str) -> str:
        return f"{self.where}.{key}"

    def integer(self, key: str, lo: int, hi: int) -> int | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if type(value) is not int:
            raise errors.invalid(self.field(key), "must be an integer")
        if not lo <= value <= hi:
            raise errors.invalid(self.field(key), f"must be between {lo} and {hi}, not {value}")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.obj.get(key)
        if value is not None and type(value) is not bool:
            raise errors.invalid(self.field(key), "must be true or false")
        return value

    def string(self, key: str) -> str | None:
        value = self.obj.get(key)
        if value is not None and not isinstance(value, str):
            raise errors.invalid(self.field(key), "must be a string")
        return value

    def child(self, key: str) -> _Checker | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise errors.invalid(self.field(key), "must be an object")
        return _Checker(value, self.field(key))

    def items(self, key: str) -> list[_Checker]:
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise errors.invalid(self.field(key), "must be a list")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise errors.invalid(f"{self.field(key)}[{i}]", "must be an object")
            out.append(_Checker(item, f"{self.field(key)}[{i}]"))
        return out


def _check_memory(mem: _Checker) -> None:
    # 0 means "leave as is", as runc reads these fields.
    limit = mem.integer("limit", -1, _I64_MAX)
    if limit is not None and 0 < limit < 4096:
        raise errors.invalid(mem.field("limit"),
                             f"must be -1 (unlimited) or at least 4096 bytes, not {limit}")
    mem.integer("reservation", -1, _I64_MAX)
    swap = mem.integer("swap", -1, _I64_MAX)
    if swap is not None and swap > 0:
        # OCI's swap is memory+swap (v1's memsw), so it cannot be below the memory limit.
        if limit == -1:
            raise errors.invalid(mem.field("swap"),
                                 "cannot limit memory+swap while memory.limit is -1 (unlimited)")
        if limit is not None and limit > 0 and swap < limit:
            raise errors.invalid(
                mem.field("swap"),
                f"is memory+swap and must be -1 or at least memory.limit ({limit}), not {swap}")
    mem.integer("kernel", -1, _I64_MAX)
    mem.integer("kernelTCP", -1, _I64_MAX)
    mem.integer("swappiness", 0, 100)
    mem.boolean("disableOOMKiller")
    mem.boolean("useHierarchy")
    mem.boolean("checkBeforeUpdate")


def _check_cpu(cpu: _Checker, sysfs: str) -> None:
    shares = cpu.integer("shares", 0, _U64_MAX)
    if shares is not None and shares != 0 and not 2 <= shares <= 262144:
        raise errors.invalid(cpu.field("shares"), f"must be between 2 and 262144, not {shares}")
    quota = cpu.integer("quota", -1, _I64_MAX)
    if quota is not None and 0 < quota < 1000:
        raise errors.invalid(cpu.field("quota"),
                             f"must be -1 (unlimited) or at least 1000 microseconds, not {quota}")
    period = cpu.integer("period", 0, _U64_MAX)
    if period is not None and period != 0 and not 1000 <= period <= 1000000:
        raise errors.invalid(cpu.field("period"),
                             f"must be between 1000 and 1000000 microseconds, not {period}")
    burst = cpu.integer("burst", 0, _U64_MAX)
    if burst is not None and quota is not None and quota > 0 and burst > quota:
        raise errors.invalid(cpu.field("burst"), f"must not exceed cpu.quota ({quota})")
    cpu.integer("realtimeRuntime", -1, _I64_MAX)
    cpu.integer("realtimePeriod", 0, _U64_MAX)
    cpu.integer("idle", 0, 1)
    for key, online_file, fallback in (("cpus", "/devices/system/cpu/online", ""),
                                       ("mems", "/devices/system/node/online", "0")):
        text = cpu.string(key)
        if not text:
            continue
        try:
            ranges = parse_cpu_list(text)
        except ValueError:
            raise errors.invalid(cpu.field(key),
                                 f"{text!r} is not a list like \"0-2,7\"") from None
        online_text, online = _online(sysfs + online_file, fallback)
        if not online:
            continue  # the host does not say; the kernel will judge
        top = max(online)
        for first, last in ranges:
            if last > top or not all(n in online for n in range(first, last + 1)):
                what = "CPUs" if key == "cpus" else "memory nodes"
                raise errors.invalid(cpu.field(key),
                                     f"{text!r} names {what} that are not online ({online_text})")


def _check_devices(devices: list[_Checker]) -> None:
    for dev in devices:
        if dev.obj.get("allow") is None:
            raise errors.invalid(dev.field("allow"), "is required")
        dev.boolean("allow")
        kind = dev.string("type")
        if kind not in (None, "", "a", "b", "c"):
            raise errors.invalid(dev.field("type"), f"must be a, b or c, not {kind!r}")
        # Real device numbers are below 2**20; the cap keeps them in a BPF immediate.
        dev.integer("major", -1, (1 << 31) - 1)
        dev.integer("minor", -1, (1 << 31) - 1)
        access = dev.string("access")
        if access and not set(access) <= set("rwm"):
            raise errors.invalid(dev.field("access"),
                                 f"must be made of r, w and m, not {access!r}")


def _check_block_io(bio: _Checker) -> None:
    bio.integer("weight", 0, 1000)
    bio.integer("leafWeight", 0, 1000)
    for dev in bio.items("weightDevice"):
        _check_major_minor(dev)
        dev.integer("weight", 0, 1000)
        dev.integer("leafWeight", 0, 1000)
    for key in ("throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"):
        for dev in bio.items(key):
            _check_major_minor(dev)
            if dev.integer("rate", 0, _U64_MAX) is None:
                raise errors.invalid(dev.field("rate"), "is required")


def _check_major_minor(dev: _Checker) -> None:
    for key in ("major", "minor"):
        if dev.integer(key, 0, (1 << 32) - 1) is None:
            raise errors.invalid(dev.field(key), "is required")


def _check_hugepages(limits: list[_Checker]) -> None:
    for item in limits:
        size = item.string("pageSize")
        if not size or not size[:-2].isdigit() or size[-2:] not in ("KB", "MB", "GB"):
            raise errors.invalid(item.field("pageSize"),
                                 f"must be a size like \"2MB\" or \"1GB\", not {size!r}")
        if item.integer("limit", 0, _U64_MAX) is None:
            raise errors.invalid(item.field("limit"), "is required")


def _check_unified(unified: _Checker) -> None:
    for key, value in unified.obj.items():
        field = f'{unified.where}["{key}"]'
        if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
            raise errors.invalid(field, "must name a file of the cgroup directory")
        if not isinstance(value, str):
            raise errors.invalid(field, "must be a string")


def _check_network(net: _Checker) -> None:
    net.integer("classID", 0, (1 << 32) - 1)
    for prio in net.items("priorities"):
        if not prio.string("name"):
            raise errors.invalid(prio.field("name"), "is required")
        prio.integer("priority", 0, (1 << 32) - 1)


def _check_rdma(rdma: _Checker) -> None:
    for dev in rdma.obj:
        entry = rdma.child(dev)
        if entry is not None:
            entry.integer("hcaHandles", 0, (1 << 32) - 1)
            entry.integer("hcaObjects", 0, (1 << 32) - 1)


def _wanted(resources: Mapping[str, Any]) -> dict[str, str]:
    """Controller -> the field that needs it, for every group of settings that will be written.

    Zeros and empty lists/objects write nothing, so they need nothing. Assumes a checked shape.
    """
    want: dict[str, str] = {}
    mem = resources.get("memory") or {}
    if any(mem.get(k) for k in ("limit", "reservation", "swap", "kernelTCP", "disableOOMKiller")) \
            or mem.get("swappiness") is not None:
        want["memory"] = "memory"
    cpu = resources.get("cpu") or {}
    if any(cpu.get(k) for k in ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod")) \
            or cpu.get("idle") is not None or cpu.get("burst") is not None:
        want["cpu"] = "cpu"
    if cpu.get("cpus") or cpu.get("mems"):
        want["cpuset"] = "cpu.cpus" if cpu.get("cpus") else "cpu.mems"
    if (resources.get("pids") or {}).get("limit"):
        want["pids"] = "pids.limit"
    if resources.get("hugepageLimits"):
        want["hugetlb"] = "hugepageLimits"
    bio = resources.get("blockIO") or {}
    if any(bio.get(k) for k in ("weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                                "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                                "throttleWriteIOPSDevice")):
        want["blkio"] = "blockIO"
    net = resources.get("network") or {}
    if net.get("classID"):
        want["net_cls"] = "network.classID"
    if net.get("priorities"):
        want["net_prio"] = "network.priorities"
    if resources.get("rdma"):
        want["rdma"] = "rdma"
    return want


def _check_support(resources: Mapping[str, Any], where: str, layout: Layout,
                   v2_controllers: set[str], v2_dir: bool) -> None:
    for ctrl, field in _wanted(resources).items():
        home = _home(ctrl, layout, v2_controllers)
        if home is None and ctrl == "blkio":
            home = _home("io", layout, v2_controllers)
        if home is None:
            raise _unsupported(f"{where}.{field}",
                               f"the {ctrl} controller is not available on this host")
        if ctrl == "cpu" and home == "v2":
            cpu = resources["cpu"]
            for key in ("realtimeRuntime", "realtimePeriod"):
                if cpu.get(key):
                    raise _unsupported(f"{where}.cpu.{key}", "cgroup v2 has no realtime settings")
        if ctrl == "blkio" and home == "v2":
            bio = resources["blockIO"]
            if bio.get("leafWeight") or any(d.get("leafWeight")
                                             for d in bio.get("weightDevice") or []):
                raise _unsupported(f"{where}.blockIO.leafWeight", "cgroup v2 has no leaf weights")
    if resources.get("devices") is not None and not (
            (layout.mode != "v2" and "devices" in layout.v1) or v2_dir):
        raise _unsupported(f"{where}.devices", "no devices controller and no cgroup2 hierarchy")
    if resources.get("unified") and not v2_dir:
        raise _unsupported(f"{where}.unified", "this host has no cgroup2 hierarchy")


def _check_shape(resources: Any, where: str, sysfs: str) -> None:
    if not isinstance(resources, dict):
        raise errors.invalid(where, "must be an object")
    top = _Checker(resources, where)
    mem = top.child("memory")
    if mem is not None:
        _check_memory(mem)
    cpu = top.child("cpu")
    if cpu is not None:
        _check_cpu(cpu, sysfs)
    pids = top.child("pids")
    # runc: 0 leaves the limit as is, a negative value (only -1 is accepted here) is "max".
    if pids is not None and pids.integer("limit", -1, _I64_MAX) is None and "limit" in pids.obj:
        raise errors.invalid(pids.field("limit"), "must be an integer")
    if resources.get("devices") is not None:
        _check_devices(top.items("devices"))
    bio = top.child("blockIO")
    if bio is not None:
        _check_block_io(bio)
    _check_hugepages(top.items("hugepageLimits"))
    net = top.child("network")
    if net is not None:
        _check_network(net)
    rdma = top.child("rdma")
    if rdma is not None:
        _check_rdma(rdma)
    unified = top.child("unified")
    if unified is not None:
        _check_unified(unified)


def validate_resources(resources: Mapping[str, Any], where: str = "linux.resources", *,
                       layout: Layout | None = None, sysfs: str = "/sys") -> None:
    """Raise before anything is created if ``resources`` (OCI LinuxResources) cannot be applied.

    InvalidArgument names the field for a wrong type or an impossible value; NotSupported names
    it for a non-empty setting this host has no controller for. Zero values mean "leave as is",
    as runc reads them. ``layout`` defaults to :func:`detect`; ``sysfs`` locates the online CPU
    and memory-node lists.
    """
    _check_shape(resources, where, sysfs)
    layout = layout or detect()
    _check_support(resources, where, layout, layout.v2_controllers(), layout.v2 is not None)


# --------------------------------------------------------------------------------------------
# Device rules: the v1 controller's semantics, computed once and written to v1 or to BPF.

_ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_{MKNOD,READ,WRITE}
_ALL_ACCESS = 7


def _access_bits(access: str) -> int:
    bits = 0
    for char in access:
        bits |= _ACCESS_BITS[char]
    return bits


def _access_text(bits: int) -> str:
    return "".join(c for c in "rwm" if bits & _ACCESS_BITS[c])


DeviceKey = tuple[str, int, int]  # type ("b"/"c"), major, minor (-1 is "*")


def device_state(rules: Iterable[Mapping[str, Any]]) -> tuple[bool, dict[DeviceKey, int]]:
    """Replay OCI device rules the way the v1 devices controller would, from "deny all".

    Returns (allow_by_default, exceptions): a type "a" rule resets the default and drops every
    exception; any other rule that agrees with the default takes its access bits away from the
    exception with exactly the same type/major/minor, and one that disagrees adds them. The
    later rule wins, as in OCI.
    """
    allow_default = False
    exceptions: dict[DeviceKey, int] = {}
    for rule in rules:
        kind = rule.get("type") or "a"
        allow = bool(rule["allow"])
        if kind == "a":
            allow_default = allow
            exceptions = {}
            continue
        major = rule.get("major")
        minor = rule.get("minor")
        key = (kind, -1 if major is None else major, -1 if minor is None else minor)
        bits = _access_bits(rule.get("access") or "rwm")
        if allow == allow_default:
            left = exceptions.get(key, 0) & ~bits
            if left:
                exceptions[key] = left
            else:
                exceptions.pop(key, None)
        else:
            exceptions[key] = exceptions.get(key, 0) | bits
    return allow_default, exceptions


def _device_line(key: DeviceKey, bits: int) -> str:
    kind, major, minor = key
    return (f"{kind} {'*' if major < 0 else major}:{'*' if minor < 0 else minor} "
            f"{_access_text(bits)}")


def _parse_devices_list(text: str) -> dict[DeviceKey, int] | None:
    """v1 devices.list: None in allow-by-default mode (it then shows only "a *:* rwm")."""
    out: dict[DeviceKey, int] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        numbers, _, access = rest.partition(" ")
        if kind == "a":
            return None
        major, _, minor = numbers.partition(":")
        key = (kind, -1 if major == "*" else int(major), -1 if minor == "*" else int(minor))
        out[key] = out.get(key, 0) | _access_bits(access)
    return out


def device_program(allow_default: bool, exceptions: Mapping[DeviceKey, int]) -> bytes:
    """eBPF for BPF_PROG_TYPE_CGROUP_DEVICE that decides like the v1 devices controller.

    With deny by default, a request passes if one exception matches its device and holds every
    access bit asked for; with allow by default, it fails if one exception matches its device
    and shares any access bit with it (the kernel's match_exception / match_exception_partial).
    """
    def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
        return (bytes((code, (src << 4) | dst)) + off.to_bytes(2, "little", signed=True)
                + imm.to_bytes(4, "little", signed=True))

    ldxw, and32, rsh32, mov32x, mov32k = 0x61, 0x54, 0x74, 0xBC, 0xB4
    jne, jeq, exit_ = 0x55, 0x15, 0x95
    # struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major, minor; }
    prog = [
        insn(ldxw, 2, 1, 0), insn(and32, 2, imm=0xFFFF),     # r2 = device type
        insn(ldxw, 3, 1, 0), insn(rsh32, 3, imm=16),         # r3 = access asked for
        insn(ldxw, 4, 1, 4), insn(ldxw, 5, 1, 8),            # r4 = major, r5 = minor
    ]
    verdict = 0 if allow_default else 1
    for (kind, major, minor), bits in exceptions.items():
        # Each test jumps to the next block; (opcode, register, immediate).
        tests: list[tuple[int, int, int]] = [(jne, 2, 1 if kind == "b" else 2)]
        if major >= 0:
            tests.append((jne, 4, major))
        if minor >= 0:
            tests.append((jne, 5, minor))
        scratch = []
        if bits != _ALL_ACCESS:
            if allow_default:
                scratch = [insn(mov32x, 1, 3), insn(and32, 1, imm=bits)]
                tests.append((jeq, 1, 0))                  # shares no bit: not this one
            else:
                scratch = [insn(mov32x, 1, 3), insn(and32, 1, imm=_ALL_ACCESS & ~bits)]
                tests.append((jne, 1, 0))                  # asks for more: not this one
        length = len(tests) + len(scratch) + 2
        block: list[bytes] = []
        for code, reg, imm in tests:
            if reg == 1:
                block.extend(scratch)
            # A jump's offset counts from the next instruction; the target is the block's end.
            block.append(insn(code, reg, off=length - len(block) - 1, imm=imm))
        block += [insn(mov32k, 0, imm=verdict), insn(exit_)]
        prog.extend(block)
    prog += [insn(mov32k, 0, imm=1 if allow_default else 0), insn(exit_)]
    return b"".join(prog)


def _bpf(cmd: int, attr: bytearray) -> int:
    import ctypes

    from silo.kernel import libc

    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ret: int = libc.libc().syscall(libc.syscall_number("bpf"), cmd, buf, len(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret


_BPF_PROG_LOAD, _BPF_PROG_ATTACH, _BPF_PROG_DETACH = 5, 8, 9
_BPF_PROG_GET_FD_BY_ID, _BPF_PROG_QUERY = 13, 16
_BPF_PROG_TYPE_CGROUP_DEVICE, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI = 15, 6, 2


def _u32(attr: bytearray, offset: int, value: int) -> None:
    attr[offset:offset + 4] = value.to_bytes(4, "little")


def _u64(attr: bytearray, offset: int, value: int) -> None:
    attr[offset:offset + 8] = value.to_bytes(8, "little")


def _bpf_load_device_program(code: bytes) -> int:
    import ctypes

    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(0)
    for log_size in (0, 1 << 16):
        attr = bytearray(128)                                     # union bpf_attr, PROG_LOAD
        _u32(attr, 0, _BPF_PROG_TYPE_CGROUP_DEVICE)
        _u32(attr, 4, len(code) // 8)
        _u64(attr, 8, ctypes.addressof(insns))
        _u64(attr, 16, ctypes.addressof(license_))
        if log_size:
            log = ctypes.create_string_buffer(log_size)
            _u32(attr, 24, 1)
            _u32(attr, 28, log_size)
            _u64(attr, 32, ctypes.addressof(log))
        attr[48:48 + 12] = b"silo_devices"                       # prog_name
        _u32(attr, 68, _BPF_CGROUP_DEVICE)                        # expected_attach_type
        try:
            return _bpf(_BPF_PROG_LOAD, attr)
        except OSError as err:
            if log_size or err.errno not in (errno.EINVAL, errno.EACCES):
                if log.value:
                    raise OSError(err.errno, f"{err.strerror}: {log.value.decode()}") from err
                raise
    raise AssertionError("unreachable")


def _bpf_attached(cgroup_fd: int) -> list[int]:
    import ctypes

    ids = (ctypes.c_uint32 * 64)()
    attr = bytearray(64)                                          # PROG_QUERY
    _u32(attr, 0, cgroup_fd)
    _u32(attr, 4, _BPF_CGROUP_DEVICE)
    _u64(attr, 16, ctypes.addressof(ids))
    _u32(attr, 24, 64)
    _bpf(_BPF_PROG_QUERY, attr)
    count = int.from_bytes(attr[24:28], "little")
    return list(ids[:count])


def _attach_device_program(cgroup_dir: str, code: bytes) -> None:
    """Attach the new program, then detach the ones it replaces (no window without a filter)."""
    cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    prog_fd = -1
    try:
        old = _bpf_attached(cgroup_fd)
        prog_fd = _bpf_load_device_program(code)
        attr = bytearray(32)                                      # PROG_ATTACH / PROG_DETACH
        _u32(attr, 0, cgroup_fd)
        _u32(attr, 4, prog_fd)
        _u32(attr, 8, _BPF_CGROUP_DEVICE)
        _u32(attr, 12, _BPF_F_ALLOW_MULTI)
        _bpf(_BPF_PROG_ATTACH, attr)
        for prog_id in old:
            id_attr = bytearray(16)
            _u32(id_attr, 0, prog_id)
            try:
                old_fd = _bpf(_BPF_PROG_GET_FD_BY_ID, id_attr)
            except FileNotFoundError:
                continue
            try:
                attr = bytearray(32)
                _u32(attr, 0, cgroup_fd)
                _u32(attr, 4, old_fd)
                _u32(attr, 8, _BPF_CGROUP_DEVICE)
                _bpf(_BPF_PROG_DETACH, attr)
            finally:
                os.close(old_fd)
    finally:
        if prog_fd >= 0:
            os.close(prog_fd)
        os.close(cgroup_fd)


# --------------------------------------------------------------------------------------------
# A container's cgroup.

# What a write of a bad value gets back: EINVAL (malformed, or outside what the parent allows),
# EBUSY (memory limit below usage), ERANGE/EOVERFLOW (too large), ENOSPC (cpuset with no cpus),
# ENODEV/ENXIO (a device number that names no device).
_REFUSED = frozenset((errno.EINVAL, errno.EBUSY, errno.ERANGE, errno.EOVERFLOW, errno.ENOSPC,
                      errno.EDOM, errno.E2BIG, errno.ENODEV, errno.ENXIO))

# v1 answers a value its parent cgroup does not allow with a permission error.
_REFUSED_BY_PARENT = {
    (errno.EACCES, "cpuset.cpus"): "not within the parent cgroup's cpuset.cpus",
    (errno.EACCES, "cpuset.mems"): "not within the parent cgroup's cpuset.mems",
    (errno.EPERM, "devices.allow"): "the parent cgroup does not allow that device",
}


def _shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000), the conversion runc and crun use."""
    return 1 + ((shares - 2) * 9999) // 262142


def _blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) -> io.weight (1..10000), as runc converts it."""
    return 1 + ((weight - 10) * 9999) // 990


class Cgroup:
    """One container's cgroup, in every hierarchy of the host.

    ``path`` is OCI ``linux.cgroupsPath``: absolute ("/default/abc") is below each hierarchy's
    root, relative ("abc") is below the calling process's own cgroup in each hierarchy.
    ``paths`` maps each v1 controller to the container's directory for it, and "unified" to
    its cgroup2 directory. ``root_prefix`` is put before every mountpoint and before /sys (a
    fake root in tests); ``proc_cgroup`` is where the caller's own cgroups are read for a
    relative path.

    Errors: InvalidArgument names the field the kernel refused; NotSupported names a setting
    this host has no file for; NotFound when the cgroup or a process is gone; InvalidState when
    a cgroup still has processes at ``destroy`` or the no-internal-process rule refuses
    ``add``; Timeout when processes do not freeze; Internal for the rest, cause kept.
    """

    def __init__(self, path: str, layout: Layout | None = None, *, root_prefix: str = "",
                 proc_cgroup: str = "/proc/self/cgroup") -> None:
        if not isinstance(path, str) or not path:
            raise errors.invalid("linux.cgroupsPath", "must be a non-empty path")
        parts = [p for p in path.split("/") if p and p != "."]
        if ".." in parts:
            raise errors.invalid("linux.cgroupsPath", f"{path!r} must not contain '..'")
        if not parts:
            raise errors.invalid("linux.cgroupsPath", f"{path!r} names the root cgroup")
        if "\0" in path:
            raise errors.invalid("linux.cgroupsPath", "must not contain NUL")
        self.path = path
        self._sysfs = root_prefix + "/sys"
        self.layout = layout = layout or detect()
        own = own_cgroup_paths(proc_cgroup) if not path.startswith("/") else {}
        self.paths: dict[str, str] = {}
        # leaf directory -> (mountpoint, path components from the mountpoint to the leaf)
        self._trees: dict[str, tuple[str, list[str]]] = {}

        def place(key: str, own_key: str, mountpoint: str) -> str:
            below: list[str] = []
            if own:
                mine = own.get(own_key, "/")
                root = layout.roots.get(own_key, "/")
                if root != "/" and (mine == root or mine.startswith(root + "/")):
                    mine = mine[len(root):]
                below = [p for p in mine.split("/") if p]
            mount = root_prefix + mountpoint
            components = below + parts
            leaf = mount + "/" + "/".join(components)
            self.paths[key] = leaf
            self._trees.setdefault(leaf, (mount, components))
            return leaf

        if layout.mode != "v2":
            for ctrl, mountpoint in layout.v1.items():
                place(ctrl, ctrl, mountpoint)
        self._v2root: str | None = None
        if layout.v2 is not None:
            place("unified", "", layout.v2)
            self._v2root = root_prefix + layout.v2
        self._v2_controllers: set[str] | None = None

    # -- where things are ----------------------------------------------------------------

    def _v2_available(self) -> set[str]:
        if self._v2_controllers is None:
            if self._v2root is None:
                self._v2_controllers = set()
            else:
                try:
                    self._v2_controllers = _controllers(self._v2root + "/cgroup.controllers")
                except OSError as err:
                    raise self._error(err, f"read {self._v2root}/cgroup.controllers",
                                      "cgroup::layout") from err
        return self._v2_controllers

    def _dir(self, ctrl: str) -> tuple[str, bool] | None:
        """(directory, is_v2) serving a controller, or None."""
        home = _home(ctrl, self.layout, self._v2_available())
        if home == "v1":
            return self.paths[ctrl], False
        if home == "v2":
            return self.paths["unified"], True
        return None

    def _dirs(self) -> list[str]:
        """Every distinct directory of this cgroup (co-mounted controllers share one)."""
        return list(self._trees)

    def _tracking_dir(self) -> str:
        """The one directory whose membership is "the container's processes"."""
        if self.layout.mode == "v2":
            return self.paths["unified"]
        for ctrl in ("freezer", "devices", "pids", "memory", "cpu"):
            if ctrl in self.paths:
                return self.paths[ctrl]
        return self._dirs()[0]

    def _error(self, err: OSError, what: str, op: str) -> errors.SiloError:
        return _internal(err, what, op=op, obj=self.path)

    # -- lifecycle ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return any(os.path.isdir(leaf) for leaf in self._dirs())

    def create(self) -> None:
        """Make the directories in every hierarchy (idempotent)."""
        cpuset_dir = self.paths.get("cpuset") if self.layout.mode != "v2" else None
        for leaf, (mount, components) in self._trees.items():
            current = mount
            for name in components:
                parent, current = current, current + "/" + name
                try:
                    _sys_mkdir(current)
                except FileExistsError:
                    pass
                except OSError as err:
                    raise self._error(err, f"mkdir {current}", "cgroup::create") from err
                if leaf == cpuset_dir:
                    self._copy_cpuset(parent, current)
        if self._v2root is not None and self.layout.mode == "v2":
            self._enable_controllers(None)

    def _copy_cpuset(self, parent: str, child: str) -> None:
        # A new v1 cpuset starts with empty cpus and mems, and a task cannot join it until both
        # are set (ENOSPC), so every fresh ancestor gets its parent's values, top down.
        for name in ("cpuset.cpus", "cpuset.mems"):
            try:
                if _read(f"{child}/{name}").strip():
                    continue
                _write_file(f"{child}/{name}", _read(f"{parent}/{name}").strip() or "\n")
            except FileNotFoundError:
                continue
            except OSError as err:
                raise self._error(err, f"copy {name} into {child}", "cgroup::create") from err

    def _enable_controllers(self, only: set[str] | None) -> None:
        # cgroup2 gives a cgroup only the controllers its parent lists in cgroup.subtree_control,
        # so each ancestor enables for its children what it has itself. The no-internal-process
        # rule forbids this (EBUSY) in a non-root cgroup that holds processes itself: a relative
        # path below the caller's own cgroup hits it. Such controllers are left off; apply()
        # then finds their files missing and says which setting cannot be honoured. The leaf
        # enables nothing, so that the container's processes may live in it.
        #
        # On a v2 host everything available is enabled at create(), as runc does. On a hybrid
        # host the cgroup2 tree mostly tracks processes, so apply() enables only the few
        # controllers a setting needs there (hugetlb, typically) and the host's tree is left
        # alone otherwise.
        mount, components = self._trees[self.paths["unified"]]
        current = mount
        for name in components:
            available = _controllers(current + "/cgroup.controllers")
            if only is not None:
                available &= only
            enabled = _controllers(current + "/cgroup.subtree_control")
            missing = sorted(available - enabled)
            if missing:
                target = current + "/cgroup.subtree_control"
                try:
                    _write_file(target, " ".join("+" + c for c in missing))
                except OSError:
                    for ctrl in missing:
                        try:
                            _write_file(target, "+" + ctrl)
                        except OSError:
                            continue
            current = current + "/" + name

    def destroy(self) -> None:
        """Remove the leaf (and any cgroups a container made below it) in every hierarchy.

        Ancestors are left: other containers may share them. A missing directory is fine.
        rmdir fails with EBUSY while exiting tasks are still charged, so it is retried for up
        to a second before InvalidState is raised.
        """
        deadline = time.monotonic() + _DESTROY_TIMEOUT
        for leaf in self._dirs():
            for top, dirs, _files in os.walk(leaf, topdown=False):
                for sub in dirs:
                    self._rmdir(f"{top}/{sub}", deadline)
            self._rmdir(leaf, deadline)

    def _rmdir(self, path: str, deadline: float) -> None:
        delay = 0.001
        while True:
            try:
                _sys_rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as err:
                if err.errno != errno.EBUSY:
                    raise self._error(err, f"rmdir {path}", "cgroup::destroy") from err
                if time.monotonic() >= deadline:
                    raise errors.InvalidState(f"cgroup {path} still has processes",
                                              op="cgroup::destroy", obj=self.path) from err
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def join_self(self) -> None:
        """Move the calling process, which must be single-threaded, into this cgroup.

        Design note: a write to ``cgroup.procs`` takes the kernel's global
        ``cgroup_threadgroup_rwsem`` for writing, and the first writer after a quiet spell
        waits for an RCU grace period (5-20 ms on an idle host: most of a container's start).
        Moving one thread, the caller itself, by writing "0" to a v1 ``tasks`` file needs no
        such lock; for a single-threaded process (a freshly forked child) that moves the
        whole process. So a container's first process joins its cgroup itself.

        On a hybrid host the cgroup2 directory is left out: it holds no limits there, and the
        v1 hierarchies (freezer, pids) track the processes. On a v2-only host ``cgroup.procs``
        is the only way in, so there the lock is paid.
        """
        for leaf in self._dirs():
            v2 = leaf == self.paths.get("unified")
            if v2 and self.layout.mode != "v2":
                continue
            try:
                _write_file(leaf + ("/cgroup.procs" if v2 else "/tasks"), "0")
            except OSError as err:
                raise self._error(err, f"join {leaf}", "cgroup::add") from err

    def add(self, pid: int) -> None:
        """Move a process into this cgroup in every hierarchy."""
        for leaf in self._dirs():
            try:
                _write_file(leaf + "/cgroup.procs", str(pid))
            except OSError as err:
                if err.errno == errno.ESRCH:
                    raise errors.NotFound(f"process {pid} does not exist", op="cgroup::add",
                                          obj=self.path) from err
                if err.errno == errno.EBUSY and leaf == self.paths.get("unified"):
                    raise errors.InvalidState(
                        f"{leaf} has controllers enabled for child cgroups, so it cannot hold "
                        "processes (cgroup v2's no-internal-process rule)",
                        op="cgroup::add", obj=self.path) from err
                raise self._error(err, f"add {pid} to {leaf}", "cgroup::add") from err

    # -- limits ----------------------------------------------------------------------------

    def apply(self, resources: Mapping[str, Any], where: str = "linux.resources") -> None:
        """Write OCI LinuxResources (create, and ``update`` of a running container).

        Checks everything first (:func:`validate_resources` plus this cgroup's files), then
        writes group by group; a refusal by the kernel stops there, naming the field.
        """
        _check_shape(resources, where, self._sysfs)
        v2_available = self._v2_available()
        _check_support(resources, where, self.layout, v2_available, "unified" in self.paths)
        if self.layout.mode == "hybrid":
            needed = {ctrl for ctrl in _wanted(resources)
                      if _home(ctrl, self.layout, v2_available) == "v2"}
            if "blkio" in needed:
                needed.add("io")
            needed |= {key.split(".")[0] for key in resources.get("unified") or {}}
            needed &= v2_available
            if needed:
                self._enable_controllers(needed)
        mem = resources.get("memory")
        if mem:
            self._apply_memory(mem, f"{where}.memory")
        cpu = resources.get("cpu")
        if cpu:
            self._apply_cpu(cpu, f"{where}.cpu")
        pids = resources.get("pids")
        if pids and pids.get("limit"):
            limit = pids["limit"]
            d, _ = self._must("pids", f"{where}.pids.limit")
            self._set(f"{where}.pids.limit", d, "pids.max", str(limit) if limit > 0 else "max")
        if resources.get("devices") is not None:
            self._apply_devices(resources["devices"], f"{where}.devices")
        for i, item in enumerate(resources.get("hugepageLimits") or []):
            field = f"{where}.hugepageLimits[{i}]"
            d, v2 = self._must("hugetlb", field)
            size = item["pageSize"]
            name = f"hugetlb.{size}.max" if v2 else f"hugetlb.{size}.limit_in_bytes"
            self._set(f"{field}.limit", d, name, str(item["limit"]))
        bio = resources.get("blockIO")
        if bio:
            self._apply_block_io(bio, f"{where}.blockIO")
        net = resources.get("network")
        if net:
            if net.get("classID"):
                d, _ = self._must("net_cls", f"{where}.network.classID")
                self._set(f"{where}.network.classID", d, "net_cls.classid", str(net["classID"]))
            for i, prio in enumerate(net.get("priorities") or []):
                field = f"{where}.network.priorities[{i}]"
                d, _ = self._must("net_prio", field)
                self._set(field, d, "net_prio.ifpriomap",
                          f"{prio['name']} {prio.get('priority') or 0}")
        for dev, entry in (resources.get("rdma") or {}).items():
            field = f"{where}.rdma.{dev}"
            d, _ = self._must("rdma", field)
            limits = []
            if entry and entry.get("hcaHandles") is not None:
                limits.append(f"hca_handle={entry['hcaHandles']}")
            if entry and entry.get("hcaObjects") is not None:
                limits.append(f"hca_object={entry['hcaObjects']}")
            if limits:
                self._set(field, d, "rdma.max", f"{dev} {' '.join(limits)}")
        for key, value in (resources.get("unified") or {}).items():
            self._set(f'{where}.unified["{key}"]', self.paths["unified"], key, value)

    def _must(self, ctrl: str, field: str) -> tuple[str, bool]:
        found = self._dir(ctrl)
        if found is None:
            raise _unsupported(field, f"the {ctrl} controller is not available on this host",
                               obj=self.path)
        return found

    def _set(self, field: str, directory: str, name: str, value: str) -> None:
        path = f"{directory}/{name}"
        try:
            _write_file(path, value)
        except OSError as err:
            code = err.errno or 0
            if code in _REFUSED or (code, name) in _REFUSED_BY_PARENT:
                reason = _REFUSED_BY_PARENT.get((code, name)) or os.strerror(code)
                raise errors.invalid(field, f"the kernel refused {value!r} for {name}: {reason}",
                                     op="cgroup::apply", obj=self.path) from err
            if err.errno == errno.ENOENT:
                if not os.path.isdir(directory):
                    raise errors.NotFound(f"cgroup {directory} does not exist",
                                          op="cgroup::apply", obj=self.path) from err
                raise _unsupported(field, self._missing(directory, name),
                                   op="cgroup::apply", obj=self.path) from err
            raise self._error(err, f"write {value!r} to {path}", "cgroup::apply") from err

    def _missing(self, directory: str, name: str) -> str:
        """Why a cgroup's file is absent: a controller not enabled there, or not in this kernel."""
        ctrl = name.split(".")[0]
        if directory == self.paths.get("unified") and ctrl in self._v2_available() \
                and ctrl not in _controllers(directory + "/cgroup.controllers"):
            return (f"the {ctrl} controller is not enabled for {directory} (its parent's "
                    "cgroup.subtree_control lacks it; a parent that holds processes cannot "
                    "enable controllers)")
        return f"this host has no {name} in {directory}"

    def _get(self, directory: str, name: str, field: str) -> str:
        try:
            return _read(f"{directory}/{name}").strip()
        except OSError as err:
            if err.errno == errno.ENOENT and os.path.isdir(directory):
                raise _unsupported(field, self._missing(directory, name),
                                   op="cgroup::apply", obj=self.path) from err
            raise self._error(err, f"read {directory}/{name}", "cgroup::apply") from err

    def _apply_memory(self, mem: Mapping[str, Any], where: str) -> None:
        limit = mem.get("limit") or 0
        swap = mem.get("swap") or 0
        reservation = mem.get("reservation") or 0
        if not (limit or swap or reservation or mem.get("swappiness") is not None
                or mem.get("kernelTCP") or mem.get("disableOOMKiller")):
            return
        d, v2 = self._must("memory", where)
        if v2:
            self._apply_memory_v2(d, limit, swap, reservation, where)
        else:
            self._apply_memory_v1(d, limit, swap, where)
            if reservation:
                self._set(f"{where}.reservation", d, "memory.soft_limit_in_bytes",
                          str(reservation))
            if mem.get("kernelTCP"):
                self._set(f"{where}.kernelTCP", d, "memory.kmem.tcp.limit_in_bytes",
                          str(mem["kernelTCP"]))
            if mem.get("swappiness") is not None:
                self._set(f"{where}.swappiness", d, "memory.swappiness", str(mem["swappiness"]))
            if mem.get("disableOOMKiller"):
                self._set(f"{where}.disableOOMKiller", d, "memory.oom_control", "1")
        # memory.kernel is deprecated by OCI and refused by kernels >= 6.1: ignored, as runc 1.2
        # does. On v2, swappiness, kernelTCP and disableOOMKiller have no file and runc ignores
        # them too.

    def _apply_memory_v1(self, d: str, limit: int, swap: int, where: str) -> None:
        memsw = "memory.memsw.limit_in_bytes"
        if limit == -1 and swap == 0 and os.path.exists(f"{d}/{memsw}"):
            swap = -1  # "unlimited memory" means unlimited memory+swap too (runc)
        # The kernel keeps memsw >= limit at every step, so the order of the two writes
        # depends on where the current limit is (runc's setMemoryAndSwap).
        swap_first = False
        if limit and swap:
            current = int(self._get(d, "memory.limit_in_bytes", f"{where}.limit"))
            swap_first = swap == -1 or current < swap
        if swap and swap_first:
            self._set(f"{where}.swap", d, memsw, str(swap))
        if limit:
            self._set(f"{where}.limit", d, "memory.limit_in_bytes", str(limit))
        if swap and not swap_first:
            self._set(f"{where}.swap", d, memsw, str(swap))

    def _apply_memory_v2(self, d: str, limit: int, swap: int, reservation: int,
                         where: str) -> None:
        # OCI's swap is memory+swap; memory.swap.max is swap alone, so it is swap - limit.
        swap_max: str | None = None
        if swap == -1 or (limit == -1 and swap == 0):
            if swap == -1 or os.path.exists(f"{d}/memory.swap.max"):
                swap_max = "max"
        elif swap > 0:
            memory = limit
            if memory == 0:
                current = self._get(d, "memory.max", f"{where}.swap")
                if current == "max":
                    raise errors.invalid(f"{where}.swap",
                                         "cannot limit memory+swap without a memory limit",
                                         op="cgroup::apply", obj=self.path)
                memory = int(current)
            if swap < memory:
                raise errors.invalid(f"{where}.swap",
                                     f"is memory+swap and must be at least the memory limit "
                                     f"({memory}), not {swap}", op="cgroup::apply",
                                     obj=self.path)
            swap_max = str(swap - memory)
        if swap_max is not None:
            self._set(f"{where}.swap", d, "memory.swap.max", swap_max)
        if limit:
            self._set(f"{where}.limit", d, "memory.max", "max" if limit == -1 else str(limit))
        if reservation:
            self._set(f"{where}.reservation", d, "memory.low",
                      "max" if reservation == -1 else str(reservation))

    def _apply_cpu(self, cpu: Mapping[str, Any], where: str) -> None:
        for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            if cpu.get(key):
                d, _ = self._must("cpuset", f"{where}.{key}")
                self._set(f"{where}.{key}", d, name, cpu[key])
        shares = cpu.get("shares") or 0
        quota = cpu.get("quota") or 0
        period = cpu.get("period") or 0
        rt_runtime = cpu.get("realtimeRuntime") or 0
        rt_period = cpu.get("realtimePeriod") or 0
        idle = cpu.get("idle")
        burst = cpu.get("burst")
        if not (shares or quota or period or rt_runtime or rt_period) and idle is None \
                and burst is None:
            return
        d, v2 = self._must("cpu", where)
        if v2:
            if shares:
                self._set(f"{where}.shares", d, "cpu.weight", str(_shares_to_weight(shares)))
            if quota or period:
                field = f"{where}.quota" if quota else f"{where}.period"
                text = "max" if quota == -1 else str(quota) if quota else None
                if period:
                    if text is None:  # keep the current quota; runc would reset it to "max"
                        text = self._get(d, "cpu.max", field).split()[0]
                    text = f"{text} {period}"
                assert text is not None
                self._set(field, d, "cpu.max", text)
            if burst is not None:
                self._set(f"{where}.burst", d, "cpu.max.burst", str(burst))
        else:
            if shares:
                self._set(f"{where}.shares", d, "cpu.shares", str(shares))
            pending_period = False
            if period:
                try:
                    self._set(f"{where}.period", d, "cpu.cfs_period_us", str(period))
                except errors.InvalidArgument:
                    # A shorter period can make old_quota/new_period exceed the parent's
                    # bandwidth; with a quota coming, write the period again after it (runc).
                    if not quota:
                        raise
                    pending_period = True
            if quota:
                self._set(f"{where}.quota", d, "cpu.cfs_quota_us", str(quota))
                if pending_period:
                    self._set(f"{where}.period", d, "cpu.cfs_period_us", str(period))
            if burst is not None:
                self._set(f"{where}.burst", d, "cpu.cfs_burst_us", str(burst))
            if rt_period:
                self._set(f"{where}.realtimePeriod", d, "cpu.rt_period_us", str(rt_period))
            if rt_runtime:
                self._set(f"{where}.realtimeRuntime", d, "cpu.rt_runtime_us", str(rt_runtime))
        if idle is not None:
            self._set(f"{where}.idle", d, "cpu.idle", str(idle))

    def _apply_devices(self, rules: list[Mapping[str, Any]], where: str) -> None:
        allow_default, exceptions = device_state(rules)
        if self.layout.mode != "v2" and "devices" in self.layout.v1:
            self._apply_devices_v1(self.paths["devices"], allow_default, exceptions, where)
            return
        code = device_program(allow_default, exceptions)
        try:
            _attach_device_program(self.paths["unified"], code)
        except OSError as err:
            if err.errno in (errno.EPERM, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise _unsupported(where, f"the kernel refused the device-filter program: "
                                          f"{err.strerror}", op="cgroup::apply",
                                   obj=self.path) from err
            raise self._error(err, "attach the device-filter program", "cgroup::apply") from err

    def _apply_devices_v1(self, d: str, allow_default: bool,
                          exceptions: dict[DeviceKey, int], where: str) -> None:
        current = _parse_devices_list(self._get(d, "devices.list", where))
        if not allow_default and current is not None:
            # Deny-by-default both before and after: grant what is new, then take away what
            # is gone, so a running container never loses a device it keeps.
            for key, bits in exceptions.items():
                extra = bits & ~current.get(key, 0)
                if extra:
                    self._set(where, d, "devices.allow", _device_line(key, extra))
            for key, bits in current.items():
                gone = bits & ~exceptions.get(key, 0)
                if gone:
                    self._set(where, d, "devices.deny", _device_line(key, gone))
            return
        # Switching mode, or allow-by-default (whose deny list the kernel does not show): reset
        # with "a", then write the exceptions.
        reset, other = ("devices.allow", "devices.deny") if allow_default else \
            ("devices.deny", "devices.allow")
        self._set(where, d, reset, "a")
        for key, bits in exceptions.items():
            self._set(where, d, other, _device_line(key, bits))

    def _apply_block_io(self, bio: Mapping[str, Any], where: str) -> None:
        found = self._dir("blkio") or self._dir("io")
        if found is None:
            raise _unsupported(where, "no blkio or io controller on this host", obj=self.path)
        d, v2 = found
        weight = bio.get("weight")
        if weight:
            if v2:
                if os.path.exists(f"{d}/io.bfq.weight"):
                    self._set(f"{where}.weight", d, "io.bfq.weight", str(weight))
                else:
                    self._set(f"{where}.weight", d, "io.weight",
                              f"default {_blkio_weight_to_io_weight(weight)}")
            else:
                name = "blkio.weight" if os.path.exists(f"{d}/blkio.weight") \
                    else "blkio.bfq.weight"
                self._set(f"{where}.weight", d, name, str(weight))
        if bio.get("leafWeight"):
            self._set(f"{where}.leafWeight", d, "blkio.leaf_weight", str(bio["leafWeight"]))
        for i, dev in enumerate(bio.get("weightDevice") or []):
            field = f"{where}.weightDevice[{i}]"
            number = f"{dev['major']}:{dev['minor']}"
            if dev.get("weight"):
                if v2:
                    bfq = os.path.exists(f"{d}/io.bfq.weight")
                    value = dev["weight"] if bfq else _blkio_weight_to_io_weight(dev["weight"])
                    self._set(f"{field}.weight", d, "io.bfq.weight" if bfq else "io.weight",
                              f"{number} {value}")
                else:
                    name = "blkio.weight_device" if os.path.exists(f"{d}/blkio.weight_device") \
                        else "blkio.bfq.weight_device"
                    self._set(f"{field}.weight", d, name, f"{number} {dev['weight']}")
            if dev.get("leafWeight"):
                self._set(f"{field}.leafWeight", d, "blkio.leaf_weight_device",
                          f"{number} {dev['leafWeight']}")
        for key, v1_name, v2_key in (
                ("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
                ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
                ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
                ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops")):
            for i, dev in enumerate(bio.get(key) or []):
                number = f"{dev['major']}:{dev['minor']}"
                rate = dev["rate"]
                if v2:
                    self._set(f"{where}.{key}[{i}]", d, "io.max",
                              f"{number} {v2_key}={rate or 'max'}")
                else:
                    self._set(f"{where}.{key}[{i}]", d, v1_name, f"{number} {rate}")

    def devices_enforced(self) -> bool:
        """Whether device rules given to apply() are enforced here.

        v1 (and hybrid) use the devices controller; v2 attaches a BPF device program, and
        apply() raises NotSupported if the kernel refuses it, so True means "will be, or
        apply() says why not".
        """
        if self.layout.mode != "v2" and "devices" in self.layout.v1:
            return True
        return "unified" in self.paths

    # -- processes -------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Every process in the cgroup and the cgroups below it; [] if the cgroup is gone."""
        top = self._tracking_dir()
        found: list[int] = []
        for directory, _dirs, _files in os.walk(top):
            try:
                text = _read(directory + "/cgroup.procs")
            except FileNotFoundError:
                continue
            except OSError as err:
                raise self._error(err, f"read {directory}/cgroup.procs", "cgroup::pids") from err
            found.extend(int(line) for line in text.split())
        return found

    def _freezer(self) -> tuple[str, bool]:
        if self.layout.mode != "v2" and "freezer" in self.layout.v1:
            return self.paths["freezer"], False
        if "unified" in self.paths:
            return self.paths["unified"], True
        raise errors.NotSupported("this host has no freezer", op="cgroup::freeze",
                                  obj=self.path)

    def freezer_file(self) -> str:
        """The file that says whether the cgroup is frozen (see :func:`read_frozen`); saved by
        the runtime so that ``state`` need not import this module."""
        d, v2 = self._freezer()
        return d + ("/cgroup.events" if v2 else "/freezer.state")

    def freeze(self) -> None:
        """Freeze every process and return once all are frozen (not merely freezing)."""
        d, v2 = self._freezer()
        try:
            if v2:
                self._freeze_v2(d)
            else:
                self._freeze_v1(d)
        except OSError as err:
            raise self._error(err, f"freeze {d}", "cgroup::freeze") from err

    def _freeze_v1(self, d: str) -> None:
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        attempt = 0
        while time.monotonic() < deadline:
            if attempt % 50 == 49:
                # Processes that keep forking can hold a cgroup in FREEZING; a short thaw
                # lets the freeze start over and usually win (runc does the same).
                _write_file(d + "/freezer.state", "THAWED")
                time.sleep(0.01)
            _write_file(d + "/freezer.state", "FROZEN")
            state = _read(d + "/freezer.state").strip()
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise errors.Internal(f"{d}/freezer.state is {state!r} after writing FROZEN",
                                      op="cgroup::freeze", obj=self.path)
            attempt += 1
            time.sleep(0.001 if attempt < 10 else 0.01)
        _write_file(d + "/freezer.state", "THAWED")
        raise errors.Timeout(f"processes in {d} did not freeze", op="cgroup::freeze",
                             obj=self.path)

    def _freeze_v2(self, d: str) -> None:
        _write_file(d + "/cgroup.freeze", "1")
        if not self._wait_frozen_v2(d, True):
            _write_file(d + "/cgroup.freeze", "0")
            raise errors.Timeout(f"processes in {d} did not freeze", op="cgroup::freeze",
                                 obj=self.path)

    def _wait_frozen_v2(self, d: str, frozen: bool) -> bool:
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        delay = 0.0005
        while True:
            if bool(_read_keyed(d + "/cgroup.events").get("frozen")) == frozen:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def thaw(self) -> None:
        d, v2 = self._freezer()
        try:
            if v2:
                _write_file(d + "/cgroup.freeze", "0")
                self._wait_frozen_v2(d, False)
            else:
                _write_file(d + "/freezer.state", "THAWED")
        except OSError as err:
            raise self._error(err, f"thaw {d}", "cgroup::thaw") from err

    def is_frozen(self) -> bool:
        d, v2 = self._freezer()
        try:
            if v2:
                return _read_keyed(d + "/cgroup.events").get("frozen") == 1
            return _read(d + "/freezer.state").strip() == "FROZEN"
        except OSError as err:
            raise self._error(err, f"read the freezer state of {d}", "cgroup::freeze") from err

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process of the cgroup.

        SIGKILL goes through cgroup.kill where the cgroup2 directory has it (atomic, no fork
        race). Otherwise, as runc does, the cgroup is frozen so that nothing forks between
        listing and signalling, every process is signalled, and the cgroup is thawed again
        (for SIGKILL always, so that the processes can die; for other signals only if it was
        not frozen before).
        """
        if not self.exists():
            return
        v2 = self.paths.get("unified") if self.layout.mode == "v2" else None
        if sig == 9 and v2 is not None and os.path.exists(v2 + "/cgroup.kill"):
            try:
                _write_file(v2 + "/cgroup.kill", "1")
            except OSError as err:
                raise self._error(err, f"write {v2}/cgroup.kill", "cgroup::kill") from err
            if self.layout.mode == "v2":
                return
        try:
            self._freezer()
            was_frozen = self.is_frozen()
            self.freeze()
            frozen = True
        except (errors.NotSupported, errors.Timeout):
            was_frozen = frozen = False
        try:
            for pid in self.pids():
                try:
                    _sys_kill(pid, sig)
                except ProcessLookupError:
                    continue
                except OSError as err:
                    raise self._error(err, f"kill {pid}", "cgroup::kill") from err
        finally:
            if frozen and (sig == 9 or not was_frozen):
                self.thaw()

    # -- accounting ------------------------------------------------------------------------

    def oom_kill_count(self) -> int:
        """How many processes the OOM killer has killed in this cgroup."""
        found = self._dir("memory")
        if found is None:
            return 0
        d, v2 = found
        try:
            if v2:
                return _read_keyed(d + "/memory.events").get("oom_kill", 0)
            return _read_keyed(d + "/memory.oom_control").get("oom_kill", 0)
        except FileNotFoundError:
            return 0
        except OSError as err:
            raise self._error(err, f"read the OOM events of {d}", "cgroup::stats") from err

    def stats(self) -> dict[str, Any]:
        """runc's ``events --stats`` "data" object; fields that cannot be read are left out."""
        out: dict[str, Any] = {}
        for name, part in (("cpu", self._cpu_stats()), ("memory", self._memory_stats()),
                           ("pids", self._pids_stats()), ("blkio", self._blkio_stats()),
                           ("hugetlb", self._hugetlb_stats())):
            if part:
                out[name] = part
        return out

    def _cpu_stats(self) -> dict[str, Any]:
        usage: dict[str, Any] = {}
        acct = self._dir("cpuacct")
        if acct is not None and not acct[1]:
            d = acct[0]
            _put(usage, "total", _opt_int(d + "/cpuacct.usage"))
            for key, name in (("percpu", "cpuacct.usage_percpu"),
                              ("percpu_kernel", "cpuacct.usage_percpu_sys"),
                              ("percpu_user", "cpuacct.usage_percpu_user")):
                text = _opt_text(f"{d}/{name}")
                if text is not None:
                    usage[key] = [int(x) for x in text.split()]
            stat = _opt_keyed(d + "/cpuacct.stat")
            if stat is not None:
                tick = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)
                usage["kernel"] = stat.get("system", 0) * tick
                usage["user"] = stat.get("user", 0) * tick
        elif "unified" in self.paths:
            # cgroup2 keeps cpu.stat's usage in every cgroup, with or without the controller.
            stat = _opt_keyed(self.paths["unified"] + "/cpu.stat")
            if stat is not None:
                usage["total"] = stat.get("usage_usec", 0) * 1000
                usage["kernel"] = stat.get("system_usec", 0) * 1000
                usage["user"] = stat.get("user_usec", 0) * 1000
        out: dict[str, Any] = {}
        if usage:
            out["usage"] = usage
        cpu = self._dir("cpu")
        stat = _opt_keyed(cpu[0] + "/cpu.stat") if cpu is not None else None
        if cpu is not None and stat is not None and "nr_periods" in stat:
            out["throttling"] = {
                "periods": stat["nr_periods"],
                "throttled_periods": stat.get("nr_throttled", 0),
                "throttled_time": (stat.get("throttled_usec", 0) * 1000 if cpu[1]
                                   else stat.get("throttled_time", 0)),
            }
        return out

    def _memory_stats(self) -> dict[str, Any]:
        found = self._dir("memory")
        if found is None:
            return {}
        d, v2 = found
        out: dict[str, Any] = {}
        raw = _opt_keyed(d + "/memory.stat")
        if v2:
            usage: dict[str, int] = {}
            _put(usage, "limit", _opt_int(d + "/memory.max"))
            _put(usage, "usage", _opt_int(d + "/memory.current"))
            _put(usage, "max", _opt_int(d + "/memory.peak"))
            events = _opt_keyed(d + "/memory.events")
            if events is not None:
                usage["failcnt"] = events.get("max", 0)
            if usage:
                out["usage"] = usage
            swap_used = _opt_int(d + "/memory.swap.current")
            swap_max = _opt_int(d + "/memory.swap.max")
            if swap_used is not None and "usage" in usage:
                # Reported as memory+swap, the v1 meaning that runc keeps on v2.
                swap = {"usage": swap_used + usage["usage"]}
                if swap_max is not None and "limit" in usage:
                    swap["limit"] = (_U64_MAX if _U64_MAX in (swap_max, usage["limit"])
                                     else swap_max + usage["limit"])
                out["swap"] = swap
            if raw is not None:
                out["cache"] = raw.get("file", 0)
        else:
            for key, prefix in (("usage", "memory."), ("swap", "memory.memsw."),
                                ("kernel", "memory.kmem."), ("kernelTCP", "memory.kmem.tcp.")):
                part: dict[str, int] = {}
                for field, name in (("limit", "limit_in_bytes"), ("usage", "usage_in_bytes"),
                                    ("max", "max_usage_in_bytes"), ("failcnt", "failcnt")):
                    _put(part, field, _opt_int(f"{d}/{prefix}{name}"))
                if part:
                    out[key] = part
            if raw is not None:
                out["cache"] = raw.get("cache", 0)
        if raw is not None:
            out["raw"] = raw
        return out

    def _pids_stats(self) -> dict[str, int]:
        found = self._dir("pids")
        if found is None:
            return {}
        out: dict[str, int] = {}
        _put(out, "current", _opt_int(found[0] + "/pids.current"))
        limit = _opt_int(found[0] + "/pids.max")
        if limit is not None and limit != _U64_MAX:
            out["limit"] = limit
        return out

    def _blkio_stats(self) -> dict[str, Any]:
        found = self._dir("blkio") or self._dir("io")
        if found is None:
            return {}
        d, v2 = found
        out: dict[str, list[dict[str, Any]]] = {}
        if v2:
            for line in (_opt_text(d + "/io.stat") or "").splitlines():
                number, *pairs = line.split()
                major, _, minor = number.partition(":")
                values = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
                for key, stat, op in (("ioServiceBytesRecursive", "rbytes", "Read"),
                                      ("ioServiceBytesRecursive", "wbytes", "Write"),
                                      ("ioServicedRecursive", "rios", "Read"),
                                      ("ioServicedRecursive", "wios", "Write")):
                    if stat in values:
                        out.setdefault(key, []).append({
                            "major": int(major), "minor": int(minor), "op": op,
                            "value": int(values[stat])})
            return out
        for key, name in (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
                          ("ioServicedRecursive", "io_serviced_recursive")):
            # Without CFQ/BFQ only the throttle files count anything.
            text = _opt_text(f"{d}/blkio.{name}")
            if text is None or text.strip().startswith("Total"):
                text = _opt_text(f"{d}/blkio.throttle.{name}")
            entries = []
            for line in (text or "").splitlines():
                fields = line.split()
                if len(fields) == 3 and ":" in fields[0]:
                    major, _, minor = fields[0].partition(":")
                    entries.append({"major": int(major), "minor": int(minor), "op": fields[1],
                                    "value": int(fields[2])})
            if entries:
                out[key] = entries
        return out

    def _hugetlb_stats(self) -> dict[str, dict[str, int]]:
        found = self._dir("hugetlb")
        if found is None:
            return {}
        d, v2 = found
        try:
            names = os.listdir(d)
        except OSError:
            return {}
        out: dict[str, dict[str, int]] = {}
        for name in names:
            parts = name.split(".")
            if len(parts) != 3 or parts[0] != "hugetlb":
                continue
            size = parts[1]
            entry: dict[str, int] = {}
            if v2 and parts[2] == "current":
                _put(entry, "usage", _opt_int(f"{d}/{name}"))
                events = _opt_keyed(f"{d}/hugetlb.{size}.events")
                if events is not None:
                    entry["failcnt"] = events.get("max", 0)
            elif not v2 and parts[2] == "usage_in_bytes":
                for field, suffix in (("usage", "usage_in_bytes"), ("max", "max_usage_in_bytes"),
                                      ("failcnt", "failcnt")):
                    _put(entry, field, _opt_int(f"{d}/hugetlb.{size}.{suffix}"))
            if entry:
                out[size] = entry
        return out


# Stats leave out what cannot be read (a file this kernel lacks, a cgroup gone meanwhile).


def _opt_text(path: str) -> str | None:
    try:
        return _read(path)
    except OSError:
        return None


def _opt_int(path: str) -> int | None:
    try:
        return _read_int(path)
    except (OSError, ValueError):
        return None


def _opt_keyed(path: str) -> dict[str, int] | None:
    try:
        return _read_keyed(path)
    except OSError:
        return None


def _put(target: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        target[key] = value

