"""Processes seen through /proc: liveness with pid-reuse protection, start times, rlimits,
the namespaces and root a process lives in."""

from __future__ import annotations

import os

from silo.errors import InvalidArgument

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF
NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "cgroup", "user")


def identity(pid: int | str = "self") -> tuple[object, ...]:
    """The namespaces and root directory of a process: equal for two processes that see the
    same mounts, pids, network, ... and the same ``/``. OSError if the process is gone."""
    ids: list[object] = [os.readlink(f"/proc/{pid}/ns/{ns}") for ns in NAMESPACES]
    st = os.stat(f"/proc/{pid}/root")
    ids.append((st.st_dev, st.st_ino))
    return tuple(ids)


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), or None if the pid is gone.

    A pid and its start time together name one process: pids are reused, start times are not.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parens: split after the last ')'.
    fields = data[data.rfind(b")") + 2:].split()
    return int(fields[19])


def state_letter(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()[0].decode()


def is_alive(pid: int, started: int | None) -> bool:
    """True if ``pid`` still runs, is the same process (start time) and is not a zombie."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rfind(b")") + 2:].split()  # comm may hold spaces and parens
    if started is not None and int(fields[19]) != started:
        return False
    return fields[0] not in (b"Z", b"X")


def hard_limit(resource: int) -> int:
    import resource as _resource

    return _resource.getrlimit(resource)[1]


def has_cap(cap: int) -> bool:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def validate_rlimits(rlimits: object, where: str = "process.rlimits") -> None:
    """Types, known names, soft <= hard, and hard within what this process may raise to."""
    if rlimits is None:
        return
    if not isinstance(rlimits, list):
        raise InvalidArgument(f"{where}: must be an array", field=where)
    seen = set()
    for i, rl in enumerate(rlimits):
        f = f"{where}[{i}]"
        if not isinstance(rl, dict):
            raise InvalidArgument(f"{f}: must be an object", field=f)
        kind = rl.get("type")
        if kind not in RLIMITS:
            raise InvalidArgument(f"{f}.type: unknown rlimit {kind!r}", field=f + ".type")
        if kind in seen:
            raise InvalidArgument(f"{f}.type: duplicate rlimit {kind}", field=f + ".type")
        seen.add(kind)
        for k in ("soft", "hard"):
            v = rl.get(k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > RLIM_INFINITY:
                raise InvalidArgument(f"{f}.{k}: must be a non-negative integer no larger "
                                      "than 2^64-1 (unlimited)", field=f"{f}.{k}")
        if rl["soft"] > rl["hard"]:
            raise InvalidArgument(
                f"{f}: soft limit {rl['soft']} is above the hard limit {rl['hard']}", field=f
            )
        current = hard_limit(RLIMITS[kind])
        if current != -1 and rl["hard"] > current and not has_cap(24):  # CAP_SYS_RESOURCE
            raise InvalidArgument(
                f"{f}.hard: {kind} hard limit {rl['hard']} is above this host's hard limit "
                f"{current} and the runtime lacks CAP_SYS_RESOURCE to raise it",
                field=f + ".hard",
            )


def apply_rlimits(rlimits: list[dict[str, int]] | None) -> None:
    if not rlimits:
        return
    import resource as _resource

    def value(v: int) -> int:
        return _resource.RLIM_INFINITY if v == RLIM_INFINITY else v

    for rl in rlimits:
        _resource.setrlimit(RLIMITS[str(rl["type"])], (value(rl["soft"]), value(rl["hard"])))


def set_oom_score_adj(value: int, pid: str = "self") -> None:
    with open(f"/proc/{pid}/oom_score_adj", "w") as f:
        f.write(str(value))


def lookup_executable(name: str, env_path: str | None, cwd: str = "/") -> str | None:
    """Resolve ``name`` the way execvp would, in the current root; None if not found."""
    if "/" in name:
        path = name if name.startswith("/") else os.path.join(cwd, name)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    for d in (env_path if env_path is not None else "/usr/local/bin:/usr/bin:/bin").split(":"):
        path = os.path.join(d or cwd, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def children_of_cgroup_procs(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []
