"""The OCI runtime spec (config.json, 1.0 to 1.2) and runtime state documents: shape checks.

:func:`validate` checks every field silo reads for type and value and raises
:class:`~silo.errors.InvalidArgument` naming the field (``process.user.uid``). Checks that need
the host (capability names the kernel knows, cgroup values, seccomp, rlimits against the host's
limits) live beside the kernel code that applies them and are called by ``silo.compute``.
"""

from __future__ import annotations

from silo.errors import InvalidArgument, NotSupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
PROPAGATIONS = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                "unbindable", "runbindable")
SUPPORTED_MAJOR_MINOR = ((1, 0), (1, 1), (1, 2))
STATUSES = ("creating", "created", "running", "paused", "stopped")


def _bad(field: str, reason: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {reason}", field=field)


def _obj(doc: dict[str, Any], key: str, field: str, required: bool = False) -> dict[str, Any]:
    v = doc.get(key)
    if v is None:
        if required:
            raise _bad(field, "is required")
        return {}
    if not isinstance(v, dict):
        raise _bad(field, f"must be an object, got {type(v).__name__}")
    return v


def _list(doc: dict[str, Any], key: str, field: str) -> list[Any]:
    v = doc.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad(field, f"must be an array, got {type(v).__name__}")
    return v


def _str_list(doc: dict[str, Any], key: str, field: str) -> list[str]:
    v = _list(doc, key, field)
    for i, s in enumerate(v):
        if not isinstance(s, str):
            raise _bad(f"{field}[{i}]", "must be a string")
    return v


def _int(v: object, field: str, lo: int | None = None, hi: int | None = None) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(field, f"must be an integer, got {type(v).__name__}")
    if lo is not None and v < lo:
        raise _bad(field, f"must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise _bad(field, f"must be <= {hi}, got {v}")
    return v


def _bool(v: object, field: str) -> None:
    if v is not None and not isinstance(v, bool):
        raise _bad(field, f"must be true or false, got {type(v).__name__}")


def _string(v: object, field: str) -> None:
    if v is not None and not isinstance(v, str):
        raise _bad(field, f"must be a string, got {type(v).__name__}")


def _abs(v: object, field: str) -> None:
    if not isinstance(v, str) or not v.startswith("/"):
        raise _bad(field, f"must be an absolute path, got {v!r}")


def check_version(version: object) -> None:
    if not isinstance(version, str) or not version:
        raise _bad("ociVersion", "is required and must be a string")
    head = version.split("-", 1)[0].split("+", 1)[0].split(".")
    try:
        major_minor = (int(head[0]), int(head[1]))
    except (ValueError, IndexError):
        raise _bad("ociVersion", f"{version!r} is not a version") from None
    if major_minor not in SUPPORTED_MAJOR_MINOR:
        raise NotSupported(
            f"ociVersion: {version!r} is not supported (1.0.0 to 1.2.x are)", field="ociVersion"
        )


def validate_process(p: dict[str, Any], field: str = "process") -> None:
    """A process object (config.json's ``process``, or an exec's process.json)."""
    if not isinstance(p, dict):
        raise _bad(field, "must be an object")
    args = _str_list(p, "args", f"{field}.args")
    if not args and not p.get("commandLine"):
        raise _bad(f"{field}.args", "is required and must not be empty")
    for i, e in enumerate(_str_list(p, "env", f"{field}.env")):
        if "=" not in e:
            raise _bad(f"{field}.env[{i}]", f"{e!r} is not KEY=VALUE")
    cwd = p.get("cwd", "/")
    _abs(cwd, f"{field}.cwd")
    _bool(p.get("terminal"), f"{field}.terminal")
    _bool(p.get("noNewPrivileges"), f"{field}.noNewPrivileges")
    user = _obj(p, "user", f"{field}.user")
    for k in ("uid", "gid"):
        if k in user:
            _int(user[k], f"{field}.user.{k}", 0, 0xFFFFFFFE)
    if "umask" in user:
        _int(user["umask"], f"{field}.user.umask", 0, 0o777)
    for i, g in enumerate(_list(user, "additionalGids", f"{field}.user.additionalGids")):
        _int(g, f"{field}.user.additionalGids[{i}]", 0, 0xFFFFFFFE)
    _string(user.get("username"), f"{field}.user.username")
    if "oomScoreAdj" in p:
        _int(p["oomScoreAdj"], f"{field}.oomScoreAdj", -1000, 1000)
    cs = _obj(p, "consoleSize", f"{field}.consoleSize")
    for k in ("height", "width"):
        if k in cs:
            _int(cs[k], f"{field}.consoleSize.{k}", 0, 65535)
    _obj(p, "capabilities", f"{field}.capabilities")
    _list(p, "rlimits", f"{field}.rlimits")
    _string(p.get("apparmorProfile"), f"{field}.apparmorProfile")
    _string(p.get("selinuxLabel"), f"{field}.selinuxLabel")


def validate(doc: object, *, need_process: bool = True) -> dict[str, Any]:
    """Shape-check a whole config.json; returns it (as a dict) when it is fine."""
    if not isinstance(doc, dict):
        raise _bad("config.json", "must be a JSON object")
    check_version(doc.get("ociVersion"))
    root = _obj(doc, "root", "root", required=True)
    if not isinstance(root.get("path"), str) or not root["path"]:
        raise _bad("root.path", "is required and must be a string")
    _bool(root.get("readonly"), "root.readonly")
    if need_process or "process" in doc:
        validate_process(_obj(doc, "process", "process", required=True))
    _string(doc.get("hostname"), "hostname")
    _string(doc.get("domainname"), "domainname")
    for i, m in enumerate(_list(doc, "mounts", "mounts")):
        if not isinstance(m, dict):
            raise _bad(f"mounts[{i}]", "must be an object")
        _abs(m.get("destination"), f"mounts[{i}].destination")
    hooks = _obj(doc, "hooks", "hooks")
    for kind, entries in hooks.items():
        if kind not in HOOKS:
            raise _bad(f"hooks.{kind}", f"unknown hook kind (known: {', '.join(HOOKS)})")
        if not isinstance(entries, list):
            raise _bad(f"hooks.{kind}", "must be an array")
        for i, h in enumerate(entries):
            f = f"hooks.{kind}[{i}]"
            if not isinstance(h, dict):
                raise _bad(f, "must be an object")
            _abs(h.get("path"), f + ".path")
            _str_list(h, "args", f + ".args")
            _str_list(h, "env", f + ".env")
            if "timeout" in h:
                _int(h["timeout"], f + ".timeout", 1)
    annotations = _obj(doc, "annotations", "annotations")
    for k, v in annotations.items():
        if not isinstance(v, str):
            raise _bad(f"annotations.{k}", "must be a string")
    linux = _obj(doc, "linux", "linux")
    validate_linux(linux, doc)
    return doc


def validate_linux(linux: dict[str, Any], doc: dict[str, Any]) -> None:
    seen: set[str] = set()
    for i, ns in enumerate(_list(linux, "namespaces", "linux.namespaces")):
        f = f"linux.namespaces[{i}]"
        if not isinstance(ns, dict):
            raise _bad(f, "must be an object")
        t = ns.get("type")
        if t not in NAMESPACES:
            known = ", ".join(NAMESPACES)
            raise _bad(f + ".type", f"unknown namespace type {t!r} (known: {known})")
        if t in seen:
            raise _bad(f + ".type", f"namespace {t!r} is listed twice")
        seen.add(t)
        if ns.get("path") not in (None, ""):
            _abs(ns.get("path"), f + ".path")
    for key in ("uidMappings", "gidMappings"):
        maps = _list(linux, key, f"linux.{key}")
        if maps and "user" not in seen:
            raise _bad(f"linux.{key}", "needs a user namespace in linux.namespaces")
        for i, m in enumerate(maps):
            f = f"linux.{key}[{i}]"
            if not isinstance(m, dict):
                raise _bad(f, "must be an object")
            for k in ("containerID", "hostID", "size"):
                _int(m.get(k), f"{f}.{k}", 0, 0xFFFFFFFF)
            if m["size"] == 0:
                raise _bad(f + ".size", "must be > 0")
    new_userns = "user" in seen and not any(
        ns.get("path") for ns in linux.get("namespaces", []) if ns.get("type") == "user")
    if new_userns and (not linux.get("uidMappings") or not linux.get("gidMappings")):
        raise _bad("linux.uidMappings", "a new user namespace needs uidMappings and "
                   "gidMappings")
    if doc.get("hostname") and "uts" not in seen:
        raise _bad("hostname", "setting a hostname needs a uts namespace")
    if doc.get("domainname") and "uts" not in seen:
        raise _bad("domainname", "setting a domainname needs a uts namespace")
    sysctl = _obj(linux, "sysctl", "linux.sysctl")
    for k, v in sysctl.items():
        if not isinstance(v, str):
            raise _bad(f"linux.sysctl.{k}", "must be a string")
        if "/" in k or ".." in k or not k:
            raise _bad(f"linux.sysctl.{k}", "is not a sysctl name")
        if k.startswith("net.") and "network" not in seen:
            raise _bad(f"linux.sysctl.{k}", "needs a network namespace")
        if (k.startswith("kernel.msg") or k.startswith("kernel.sem")
                or k.startswith("kernel.shm") or k.startswith("fs.mqueue.")):
            if "ipc" not in seen:
                raise _bad(f"linux.sysctl.{k}", "needs an ipc namespace")
        elif k in ("kernel.hostname", "kernel.domainname"):
            if "uts" not in seen:
                raise _bad(f"linux.sysctl.{k}", "needs a uts namespace")
        elif not k.startswith("net."):
            raise _bad(f"linux.sysctl.{k}", "is not namespaced: it would change the host")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(_str_list(linux, key, f"linux.{key}")):
            _abs(p, f"linux.{key}[{i}]")
    for i, d in enumerate(_list(linux, "devices", "linux.devices")):
        f = f"linux.devices[{i}]"
        if not isinstance(d, dict):
            raise _bad(f, "must be an object")
        _abs(d.get("path"), f + ".path")
        if d.get("type") not in ("c", "b", "u", "p"):
            raise _bad(f + ".type", f"must be one of c, b, u, p; got {d.get('type')!r}")
        if d["type"] != "p":
            _int(d.get("major"), f + ".major", 0)
            _int(d.get("minor"), f + ".minor", 0)
        for k in ("fileMode", "uid", "gid"):
            if k in d:
                _int(d[k], f"{f}.{k}", 0)
    _string(linux.get("cgroupsPath"), "linux.cgroupsPath")
    prop = linux.get("rootfsPropagation", "")
    if prop not in PROPAGATIONS:
        raise _bad("linux.rootfsPropagation", f"unknown propagation {prop!r}")
    _obj(linux, "resources", "linux.resources")
    _obj(linux, "seccomp", "linux.seccomp")
    for key in ("intelRdt", "personality", "memoryPolicy", "netDevices"):
        if linux.get(key):
            raise NotSupported(f"linux.{key}: not supported by silo-runtime", field=f"linux.{key}")


def state(*, id: str, status: str, pid: int, bundle: str, annotations: dict[str, str] | None,
          created: str = "", rootfs: str = "", owner: str = "") -> dict[str, Any]:
    """The state document, with runc's extra fields (rootfs, created, owner)."""
    doc: dict[str, Any] = {
        "ociVersion": "1.2.0", "id": id, "pid": pid, "status": status, "bundle": bundle,
        "rootfs": rootfs, "created": created, "owner": owner,
    }
    if annotations:
        doc["annotations"] = annotations
    return doc


def hook_state(*, id: str, status: str, pid: int, bundle: str,
               annotations: dict[str, str] | None) -> dict[str, Any]:
    """The state given to hooks on stdin (the spec's fields only)."""
    doc: dict[str, Any] = {"ociVersion": "1.2.0", "id": id, "status": status, "pid": pid,
                           "bundle": bundle}
    if annotations:
        doc["annotations"] = annotations
    return doc
