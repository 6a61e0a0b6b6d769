"""A compute-system document (HCS schema 2) → an OCI runtime spec: hcsshim's ``hcsoci`` turned
around. silod calls this to write the bundle's config.json, which silo-runtime then runs.

Owns the mapping of every ComputeSystem field to the spec and the defaults a Docker-like ``run``
expects (containerd's capability set, no ``noNewPrivileges``, a writable root unless asked).
It reads the image's /etc/passwd and /etc/group to turn user names into ids, through
:func:`silo.kernel.mounts.secure_join` so that a symlink in the image cannot reach the host's.
Imports silo.schema, silo.kernel and silo.errors. It is not on silo-runtime's per-call path.

Resource formulas (``period`` is 100000 µs, ``ncpu`` the host's CPUs):

==========================  ===========================================================
``Memory.SizeInMB``          ``memory.limit = SizeInMB * 2**20``
``Processor.Count``          ``cpu.quota = Count * period``
``Processor.Maximum``        ``cpu.quota = Maximum * ncpu * period / 10000`` (0.01 % of the
                             whole host), at least 1000 µs, the kernel's smallest quota
``Processor.Weight``         ``cpu.shares = 2 + ceil((Weight - 1) * 262142 / 9999)``: 1..10000
                             onto cgroup v1's 2..262144, linearly. On cgroup v2, runc's and
                             silo's shares → weight conversion then gives back ``Weight``
                             itself as ``cpu.weight``.
``Linux.PidsLimit``          ``pids.limit`` (0: no limit, nothing written)
==========================  ===========================================================
"""

from __future__ import annotations

import copy
import os
import stat

from silo.errors import InvalidArgument, invalid
from silo.kernel import capabilities
from silo.kernel.mounts import secure_join
from silo.kernel.signals import parse as parse_signal
from silo.schema import hcs, oci_defaults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CPU_PERIOD = 100000
MIN_CPU_QUOTA = 1000
MAX_WEIGHT = 10000
MIN_SHARES, MAX_SHARES = 2, 262144
SYSTEM_ID_ANNOTATION = "io.silo.system-id"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROCESS = "Container.Linux.Process"

# containerd's (and Docker's) default set: what a container's root may do.
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

_MAX_ACCOUNT_FILE = 4 << 20  # an /etc/passwd larger than this is not an account database


def to_oci_spec(system_id: str, doc: dict[str, Any], *, rootfs: str,
                image_config: dict[str, Any], cgroups_path: str, netns: str | None,
                host_cpus: int | None = None) -> dict[str, Any]:
    """The config.json of a validated ComputeSystem (:func:`silo.schema.hcs.validate`).

    ``rootfs`` is the container's root (its overlay mount); ``image_config`` the image's config
    (the OCI image config document or its ``config`` object); ``netns`` the network namespace
    to join (None: ``Networking.Namespace`` if the document has one, else a new one).
    InvalidArgument names the document's field (a user not in the image, a command neither the
    document nor the image gives).
    """
    cpus = host_cpus or hcs.host_cpus()
    container: dict[str, Any] = doc["Container"]
    linux: dict[str, Any] = container["Linux"]
    params: dict[str, Any] = linux["Process"]

    spec: dict[str, Any] = oci_defaults.default_spec(
        rootfs=rootfs, terminal=bool(params.get("EmulateConsole")))
    spec["hostname"] = container.get("GuestOs", {}).get("HostName") or system_id[:64]
    spec["root"]["readonly"] = bool(linux.get("ReadonlyRootfs", False))

    env = [DEFAULT_PATH]
    if params.get("EmulateConsole"):
        env.append("TERM=xterm")
    spec["process"] = to_oci_process(params, image_config, env, rootfs=rootfs, where=PROCESS)
    spec["process"]["capabilities"] = _capabilities(linux)

    for m in container.get("MappedDirectories", ()):
        spec["mounts"].append(_bind_mount(m))

    namespaces: list[dict[str, str]] = spec["linux"]["namespaces"]
    path = netns if netns is not None else container.get("Networking", {}).get("Namespace")
    if path:
        for ns in namespaces:
            if ns["type"] == "network":
                ns["path"] = path

    resources: dict[str, Any] = spec["linux"]["resources"]
    if "Memory" in container:
        resources["memory"] = _memory(container["Memory"]["SizeInMB"])
    if container.get("Processor"):
        resources["cpu"] = _cpu(container["Processor"], cpus, "Container.Processor")
    if linux.get("PidsLimit"):
        resources["pids"] = {"limit": linux["PidsLimit"]}
    spec["linux"]["cgroupsPath"] = cgroups_path

    spec["annotations"] = {**linux.get("Annotations", {}), SYSTEM_ID_ANNOTATION: system_id}
    return spec


def to_oci_process(params: dict[str, Any], image_config: dict[str, Any], base_env: list[str],
                   *, rootfs: str = "", where: str = PROCESS) -> dict[str, Any]:
    """An OCI ``process`` from validated ProcessParameters, with the image's defaults.

    Empty ``CommandArgs`` run the image's Entrypoint + Cmd (a non-empty list is the whole argv,
    as in HCS); ``Environment`` is set over the image's Env, which is set over ``base_env``;
    ``WorkingDirectory`` defaults to the image's WorkingDir, else ``/``; ``User`` to the
    image's User, else root, resolved in ``rootfs`` (:func:`resolve_user`). HOME comes from the
    user's /etc/passwd entry unless set. Capabilities are containerd's defaults.
    """
    image = _image(image_config)
    args = list(params.get("CommandArgs") or ())
    if not args:
        args = [*(image.get("Entrypoint") or ()), *(image.get("Cmd") or ())]
        if not args:
            raise invalid(_at(where, "CommandArgs"),
                          "is empty and the image has no Entrypoint or Cmd")

    env: dict[str, str] = {}
    for entry in [*base_env, *(image.get("Env") or ())]:
        key, sep, value = entry.partition("=")
        if sep and key:
            env[key] = value
    env.update(params.get("Environment", {}))

    cwd = params.get("WorkingDirectory") or image.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        cwd = "/" + cwd  # an image's WorkingDir is relative to / (Docker's rule)

    user_field = _at(where, "User")
    if params.get("User"):
        uid, gid, groups, home = _resolve(rootfs, params["User"], user_field)
    else:
        try:
            uid, gid, groups, home = _resolve(rootfs, image.get("User") or "0", user_field)
        except InvalidArgument as err:
            raise invalid(user_field, f"not given, and the image's User does not resolve: "
                                      f"{err.message.removeprefix(user_field + ': ')}") from err
    env.setdefault("HOME", home)

    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": cwd,
        "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": False,
    }
    if groups:
        process["user"]["additionalGids"] = groups
    _console(params, process)
    return process


def to_oci_exec_process(params: dict[str, Any], container_process: dict[str, Any], *,
                        rootfs: str, where: str = "") -> dict[str, Any]:
    """An OCI ``process`` for validated ProcessParameters run in a running container, with the
    container's own process (its config.json ``process``) as the defaults, as ``docker exec``
    does: its env under ``Environment``, its cwd, its user unless ``User`` is given (resolved in
    ``rootfs``), its capabilities, rlimits and noNewPrivileges. The image is not read again:
    the container's env already holds the image's Env, under the document's Environment.
    """
    env: dict[str, str] = {}
    for entry in container_process.get("env") or ():
        key, sep, value = entry.partition("=")
        if sep and key:
            env[key] = value
    env.update(params.get("Environment", {}))
    process: dict[str, Any] = {
        "terminal": False,
        "args": list(params["CommandArgs"]),
        "cwd": params.get("WorkingDirectory") or container_process.get("cwd") or "/",
    }
    if params.get("User"):
        uid, gid, groups, home = _resolve(rootfs, params["User"], _at(where, "User"))
        process["user"] = {"uid": uid, "gid": gid}
        if groups:
            process["user"]["additionalGids"] = groups
        env.setdefault("HOME", home)
    else:
        process["user"] = copy.deepcopy(container_process.get("user") or {"uid": 0, "gid": 0})
    process["env"] = [f"{k}={v}" for k, v in env.items()]
    for key in ("capabilities", "rlimits", "noNewPrivileges", "apparmorProfile",
                "selinuxLabel", "oomScoreAdj"):
        if key in container_process:
            process[key] = copy.deepcopy(container_process[key])
    _console(params, process)
    return process


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _console(params: dict[str, Any], process: dict[str, Any]) -> None:
    process["terminal"] = bool(params.get("EmulateConsole"))
    if process["terminal"] and "ConsoleSize" in params:
        height, width = params["ConsoleSize"]
        process["consoleSize"] = {"height": height, "width": width}


def resolve_user(rootfs: str, user: str,
                 field: str = f"{PROCESS}.User") -> tuple[int, int, list[int]]:
    """``uid``, ``uid:gid``, ``name`` or ``name:group`` → (uid, gid, additional gids).

    Names are looked up in the image's /etc/passwd and /etc/group (unknown: InvalidArgument
    naming ``field``). A numeric uid takes its gid from /etc/passwd when listed there, else 0.
    The additional gids are the groups of /etc/group that list the user as a member.
    """
    uid, gid, groups, _ = _resolve(rootfs, user, field)
    return uid, gid, groups


def stop_signal(doc: dict[str, Any], image_config: dict[str, Any]) -> int:
    """The signal shutdown sends first: ``Linux.StopSignal``, else the image's, else SIGTERM."""
    linux = doc["Container"]["Linux"]
    if "StopSignal" in linux:
        return hcs.signal_number(linux["StopSignal"], "Container.Linux.StopSignal")
    image_signal = _image(image_config).get("StopSignal")
    if image_signal:
        try:
            return parse_signal(str(image_signal))
        except InvalidArgument:
            pass  # an image's bad StopSignal is not the caller's mistake: Docker ignores it too
    return 15


def modify_to_resources(request: dict[str, Any], host_cpus: int) -> dict[str, Any]:
    """A ModifySettingRequest → the OCI LinuxResources to apply (the formulas above).

    Memory: ``{"memory": {"limit"}}``. Processor: Count or Maximum set ``cpu.quota`` and
    ``period``; Weight sets ``cpu.shares`` and lifts any quota (``-1``), since the three are
    exclusive. InvalidArgument names ``ResourcePath``/``RequestType``/``Settings``; a resource
    silo does not change is NotSupported.
    """
    hcs.validate("ModifySettingRequest", request)
    settings = request["Settings"]
    if request["ResourcePath"] == "Container/Memory/SizeInMB":
        return {"memory": _memory(settings)}
    cpu = _cpu(settings, host_cpus, "Settings")
    if "Weight" in settings:
        cpu["quota"] = -1
    return {"cpu": cpu}


def weight_to_shares(weight: int) -> int:
    """Processor.Weight (1..10000) → cgroup v1 cpu.shares (2..262144), linearly, rounded up so
    that the v2 conversion (``1 + (shares - 2) * 9999 // 262142``) gives ``weight`` back."""
    return MIN_SHARES + -(-(weight - 1) * (MAX_SHARES - MIN_SHARES) // (MAX_WEIGHT - 1))


def maximum_to_quota(maximum: int, host_cpus: int) -> int:
    """Processor.Maximum (0.01 % of the whole host) → cpu quota in µs per CPU_PERIOD."""
    return max(MIN_CPU_QUOTA, maximum * host_cpus * CPU_PERIOD // MAX_WEIGHT)


def _image(image_config: dict[str, Any]) -> dict[str, Any]:
    inner = image_config.get("config")
    if isinstance(inner, dict):
        return inner
    return image_config


def _memory(size_mb: int) -> dict[str, Any]:
    return {"limit": size_mb << 20}


def _cpu(processor: dict[str, Any], host_cpus: int, where: str) -> dict[str, Any]:
    if "Count" in processor:
        count = processor["Count"]
        if count > host_cpus:
            raise invalid(f"{where}.Count", f"must be <= {host_cpus} (the host's CPUs)")
        return {"quota": count * CPU_PERIOD, "period": CPU_PERIOD}
    if "Maximum" in processor:
        return {"quota": maximum_to_quota(processor["Maximum"], host_cpus),
                "period": CPU_PERIOD}
    if "Weight" in processor:
        return {"shares": weight_to_shares(processor["Weight"])}
    return {}


def _bind_mount(m: dict[str, Any]) -> dict[str, Any]:
    options = ["rbind", "rprivate"]
    if m.get("ReadOnly"):
        options.append("ro")
    return {"destination": m["ContainerPath"], "type": "bind", "source": m["HostPath"],
            "options": options}


def _capabilities(linux: dict[str, Any]) -> dict[str, list[str]]:
    """containerd's defaults, then CapDrop and CapAdd as Docker applies them."""
    adds = _cap_names(linux.get("CapAdd", ()), "Container.Linux.CapAdd")
    drops = _cap_names(linux.get("CapDrop", ()), "Container.Linux.CapDrop")
    every = list(capabilities.CAPS)
    if "ALL" in adds:
        caps = [c for c in every if c not in drops]
    elif "ALL" in drops:
        caps = [c for c in every if c in adds]
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drops]
        caps += [c for c in every if c in adds and c not in caps]
    return {k: list(caps) for k in ("bounding", "effective", "permitted")}


def _cap_names(names: Any, where: str) -> list[str]:
    out = []
    for i, name in enumerate(names):
        full = name if name == "ALL" or name.startswith("CAP_") else "CAP_" + name
        if full != "ALL" and full not in capabilities.CAPS:
            raise invalid(f"{where}[{i}]", f"unknown capability {name!r}")
        out.append(full)
    return out


def _resolve(rootfs: str, user: str, field: str) -> tuple[int, int, list[int], str]:
    hcs.check_user(user, field)
    name, _, group = user.partition(":")
    passwd = _read_accounts(rootfs, "etc/passwd", 7)
    entry = None
    if name.isascii() and name.isdigit():
        uid = int(name)
        entry = next((e for e in passwd if e[2] == name), None)
    else:
        entry = next((e for e in passwd if e[0] == name), None)
        if entry is None:
            raise invalid(field, f"no user {name!r} in the image")
        uid = _number(entry[2], field, f"/etc/passwd of user {name!r}")
    gid = _number(entry[3], field, f"/etc/passwd of user {name!r}") if entry else 0
    home = entry[5] if entry and entry[5].startswith("/") else "/"
    groups_db = _read_accounts(rootfs, "etc/group", 4)
    if group:
        if group.isascii() and group.isdigit():
            gid = int(group)
        else:
            gentry = next((g for g in groups_db if g[0] == group), None)
            if gentry is None:
                raise invalid(field, f"no group {group!r} in the image")
            gid = _number(gentry[2], field, f"/etc/group of group {group!r}")
    extra: list[int] = []
    username = entry[0] if entry else None
    if username:
        for g in groups_db:
            if username in g[3].split(",") and g[2].isdigit():
                number = int(g[2])
                if number != gid and number not in extra:
                    extra.append(number)
    return uid, gid, extra, home


def _number(text: str, field: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 0xFFFFFFFE:
        raise invalid(field, f"the image's {where} has a bad id {text!r}")
    return int(text)


def _read_accounts(rootfs: str, rel: str, width: int) -> list[list[str]]:
    """Entries of an /etc/passwd-like file of the image (``[]`` when it has none), each padded
    to ``width`` fields. Read as the container would see it: symlinks stay inside rootfs."""
    if not rootfs:
        return []
    path = secure_join(rootfs, rel)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.read(fd, _MAX_ACCOUNT_FILE)
    finally:
        os.close(fd)
    entries = []
    for line in data.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        entries.append((fields + [""] * width)[:width])
    return entries
