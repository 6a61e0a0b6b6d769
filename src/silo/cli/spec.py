"""``silo run``/``silo create`` flags → a compute-system document (docs/api.md).

    -m/--memory 64m     Container.Memory.SizeInMB = 64 (bytes rounded up to whole MiB)
    --cpus 1.5          Container.Processor.Maximum = cpus / host CPUs * 10000
    --pids-limit N      Container.Linux.PidsLimit
    --hostname/-h NAME  Container.GuestOs.HostName
    --read-only         Container.Linux.ReadonlyRootfs
    -v HOST:CTR[:ro]    Container.MappedDirectories[]
    -e, -w, -u, -i, -t  Container.Linux.Process (Environment, WorkingDirectory, User,
                        CreateStdInPipe, EmulateConsole)
    IMAGE [CMD...]      Storage.Image; CommandArgs = CMD ([]: the image's Entrypoint and Cmd)
    --storage-opt size=64m  Container.Storage.ScratchSizeInMB = 64 (the writable layer's cap)
    --entrypoint E      CommandArgs = [E, *CMD]
    --isolation         process (the only one today); hyperv is refused
    --network NAME      Container.Networking.Network = NAME (default nat: silod's NAT network,
                        made on first use); none: Networking left out (only loopback)
    -p [IP:]HOST:CTR[/udp]  Container.Networking.PortMappings[] (HNS PortMapping settings)
"""

from __future__ import annotations

import os

from silo.cli.flags import BOOL, HELP, INT, MULTI, STR, Flag, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CREATE_FLAGS = [
    Flag("interactive", BOOL, "i", help="keep stdin open"),
    Flag("tty", BOOL, "t", help="allocate a terminal"),
    Flag("rm", BOOL, help="remove the container when it exits"),
    Flag("name", STR, default="", help="the container's name"),
    Flag("env", MULTI, "e", help="set an environment variable (K=V, or K from here)"),
    Flag("workdir", STR, "w", default="", help="working directory in the container"),
    Flag("user", STR, "u", default="", help="uid[:gid] or name"),
    Flag("volume", MULTI, "v", help="bind mount HOST:CONTAINER[:ro]"),
    Flag("memory", STR, "m", default="", help="memory limit (64m, 1g)"),
    Flag("cpus", STR, default="", help="number of CPUs (1.5)"),
    Flag("pids-limit", INT, help="most processes at once"),
    Flag("hostname", STR, "h", default="", help="the container's host name"),
    Flag("read-only", BOOL, help="read-only root filesystem"),
    Flag("entrypoint", STR, help="the executable to run instead of the image's"),
    Flag("isolation", STR, default="process", help="process (hyperv: not there yet)"),
    Flag("network", STR, default="nat", help="the network to join (name or id; none: only "
                                             "loopback)"),
    Flag("publish", MULTI, "p", help="publish a port: [HOST-IP:]HOST-PORT:CONTAINER-PORT[/udp]"),
    Flag("storage-opt", MULTI, help="size=64m: cap the container's writable layer"),
    HELP,
]


def parse_bytes(flag: str, text: str) -> int:
    """``64m``, ``1g``, ``512k``, ``1.5G``, ``100mb``, ``2GiB``, ``1048576`` → bytes."""
    t = text.strip().lower()
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and len(t) > len(suffix):
            t = t[: -len(suffix)]
            break
    scale = 1
    if t and t[-1] in "kmgtp":
        scale = 1024 ** ("kmgtp".index(t[-1]) + 1)
        t = t[:-1]
    try:
        number = float(t)
    except ValueError:
        number = -1.0
    if not t or number != number or number <= 0 or t.startswith(("+", ".")):
        raise UsageError(f"invalid size {text!r} for {flag}: use a number with an optional "
                         "unit (b, k, m, g), e.g. 64m", field=flag)
    return int(number * scale)


def memory_mb(text: str) -> int:
    size = parse_bytes("--memory", text)
    return -(-size // (1 << 20))


def cpus_maximum(text: str, host_cpus: int | None = None) -> int:
    """``--cpus`` as ``Processor.Maximum``: a share of the whole host in 0.01 % units."""
    ncpu = host_cpus or os.cpu_count() or 1
    try:
        cpus = float(text)
    except ValueError:
        cpus = -1.0
    if not 0 < cpus <= ncpu:
        raise UsageError(f"--cpus: {text!r}: the range is 0.01 to {ncpu}.00, as there are "
                         f"only {ncpu} CPUs", field="--cpus")
    return max(1, min(10000, round(cpus / ncpu * 10000)))


def environment(entries: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in entries:
        name, eq, value = e.partition("=")
        if not name:
            raise UsageError(f"invalid environment variable {e!r}", field="--env")
        if eq:
            env[name] = value
        elif name in os.environ:  # docker's habit: -e NAME passes this shell's value
            env[name] = os.environ[name]
    return env


def mapped_directories(entries: list[str]) -> list[dict[str, Any]]:
    mapped = []
    for v in entries:
        parts = v.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise UsageError(f"-v {v!r}: use HOST:CONTAINER[:ro]", field="--volume")
        host, ctr = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise UsageError(f"-v {v!r}: mode {mode!r} is not ro or rw", field="--volume")
        if host.startswith(("./", "../")) or host in (".", ".."):
            host = os.path.normpath(os.path.join(os.getcwd(), host))
        if not host.startswith("/"):
            raise UsageError(f"-v {v!r}: named volumes are not there yet; give a host path "
                             "(absolute, or starting with ./)", field="--volume")
        if not ctr.startswith("/"):
            raise UsageError(f"-v {v!r}: the container path must be absolute", field="--volume")
        mapped.append({"HostPath": host, "ContainerPath": ctr, "ReadOnly": mode == "ro"})
    return mapped


def storage_options(entries: list[str]) -> dict[str, Any]:
    """``--storage-opt size=64m`` → ``{"ScratchSizeInMB": 64}`` (rounded up to whole MiB)."""
    storage: dict[str, Any] = {}
    for entry in entries:
        key, eq, value = entry.partition("=")
        if key.strip().lower() != "size" or not eq:
            raise UsageError(f"--storage-opt {entry!r}: the one option is size=SIZE (64m, 1g)",
                             field="--storage-opt")
        size = parse_bytes("--storage-opt size", value)
        storage["ScratchSizeInMB"] = -(-size // (1 << 20))
    return storage


def console_size() -> list[int] | None:
    for fd in (0, 1):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        return [size.lines, size.columns]
    return None


def check(values: dict[str, Any]) -> None:
    """Refusals that need no silod: before anything is created."""
    from silo.errors import NotSupported

    if values["isolation"] == "hyperv":
        raise NotSupported("--isolation hyperv: utility-VM isolation is not there yet; use "
                           "--isolation process", field="--isolation")
    if values["isolation"] not in ("process", "default"):
        raise UsageError(f"--isolation: {values['isolation']!r} is not process or hyperv",
                         field="--isolation")
    if values["publish"] and values["network"] == "none":
        raise UsageError("--publish needs a network (not --network none)", field="--publish")
    if values["interactive"] and values["tty"] and not os.isatty(0):
        raise UsageError("the input device is not a TTY (drop -t, or run from a terminal)",
                         field="--tty")


def process(values: dict[str, Any], command: list[str]) -> dict[str, Any]:
    """ProcessParameters from the flags shared by ``run``, ``create`` and ``exec``."""
    tty = bool(values["tty"])
    proc: dict[str, Any] = {"CommandArgs": command}
    env = environment(values["env"])
    if tty and "TERM" not in env:
        env["TERM"] = "xterm"
    if env:
        proc["Environment"] = env
    if values["workdir"]:
        proc["WorkingDirectory"] = values["workdir"]
    if values["user"]:
        proc["User"] = values["user"]
    proc["EmulateConsole"] = tty
    proc["CreateStdInPipe"] = bool(values["interactive"])
    proc["CreateStdOutPipe"] = True
    proc["CreateStdErrPipe"] = not tty
    if tty:
        size = console_size()
        if size and all(size):  # a terminal that knows no size (0x0) says nothing
            proc["ConsoleSize"] = size
    return proc


def build(values: dict[str, Any], image: str, command: list[str],
          host_cpus: int | None = None) -> dict[str, Any]:
    """The compute-system document for ``silo run/create [flags] IMAGE [CMD...]``."""
    check(values)
    # No command: CommandArgs [] runs the image's Entrypoint and Cmd (silod fills them in).
    args = command
    if values["entrypoint"]:
        args = [values["entrypoint"], *command]
    elif values["entrypoint"] == "" and not command:
        raise UsageError("--entrypoint \"\" needs a command to run", field="--entrypoint")
    container: dict[str, Any] = {}
    if values["hostname"]:
        container["GuestOs"] = {"HostName": values["hostname"]}
    container["Storage"] = {"Image": image, **storage_options(values["storage_opt"])}
    mapped = mapped_directories(values["volume"])
    if mapped:
        container["MappedDirectories"] = mapped
    if values["memory"]:
        container["Memory"] = {"SizeInMB": memory_mb(values["memory"])}
    if values["cpus"]:
        container["Processor"] = {"Maximum": cpus_maximum(values["cpus"], host_cpus)}
    linux: dict[str, Any] = {"Process": process(values, args)}
    if values["read_only"]:
        linux["ReadonlyRootfs"] = True
    if values["pids_limit"] is not None:
        if values["pids_limit"] < 0:  # docker's "unlimited"
            values["pids_limit"] = 0
        linux["PidsLimit"] = values["pids_limit"]
    container["Linux"] = linux
    if values["network"] != "none":
        networking: dict[str, Any] = {"Network": values["network"]}
        mappings = [m for spec in values["publish"] for m in port_mappings(spec)]
        if mappings:
            networking["PortMappings"] = mappings
        container["Networking"] = networking
    return {"Owner": "silo", "SchemaVersion": {"Major": 2, "Minor": 1}, "Container": container}


def port_mappings(spec: str) -> list[dict[str, Any]]:
    """``-p [IP:]HOST:CTR[/tcp|udp]`` (ports may be equal-length ranges ``8080-8081:80-81``)
    → HNS PortMapping settings ``{Protocol, InternalPort, ExternalPort, VIP?}``."""
    def bad(reason: str) -> UsageError:
        return UsageError(f"--publish {spec!r}: {reason}", field="--publish")

    text, _, proto = spec.partition("/")
    protocols = {"": 6, "tcp": 6, "udp": 17}
    if proto.lower() not in protocols:
        raise bad(f"protocol {proto!r} is not tcp or udp")
    vip = ""
    if text.startswith("["):                       # [::1]:8080:80
        end = text.find("]")
        if end < 0:
            raise bad("unclosed '[' around the host address")
        vip, text = text[1:end], text[end + 1:].lstrip(":")
    parts = text.split(":")
    if len(parts) == 3:
        vip, parts = parts[0], parts[1:]
    if len(parts) != 2:
        raise bad("give HOST-PORT:CONTAINER-PORT (silo does not pick host ports)")
    hosts, ctrs = _port_range(parts[0], bad), _port_range(parts[1], bad)
    if len(hosts) != len(ctrs):
        raise bad("the host and container port ranges differ in length")
    out = []
    for h, c in zip(hosts, ctrs, strict=True):
        m: dict[str, Any] = {"Protocol": protocols[proto.lower()], "InternalPort": c,
                             "ExternalPort": h}
        if vip and vip not in ("0.0.0.0", "::"):
            m["VIP"] = vip
        out.append(m)
    return out


def _port_range(text: str, bad: Any) -> list[int]:
    lo, sep, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise bad(f"{text!r} is not a port or a range of ports") from None
    if not (1 <= first <= last <= 65535):
        raise bad(f"{text!r}: ports are 1..65535, low to high")
    return list(range(first, last + 1))


def new_name() -> str:
    """A name in docker's style, ``adjective_noun``."""
    adjectives = ("brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen",
                  "lucid", "merry", "nimble", "proud", "quiet", "rapid", "sharp", "stoic",
                  "tender", "vivid", "wise", "zealous", "bold", "clever", "daring", "epic")
    nouns = ("hopper", "lovelace", "turing", "ritchie", "thompson", "torvalds", "cutler",
             "russinovich", "knuth", "liskov", "hamilton", "dijkstra", "lamport", "kay",
             "backus", "mccarthy", "allen", "goldberg", "engelbart", "wirth", "perlman",
             "cerf", "kahn", "shannon")
    r = int.from_bytes(os.urandom(4), "big")
    return f"{adjectives[r % len(adjectives)]}_{nouns[(r >> 8) % len(nouns)]}"
