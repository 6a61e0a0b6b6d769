"""HCS compute-system and process documents: their JSON Schemas and the checks around them.

Owns the documents of silod's compute API (docs/api.md) as one registry of JSON Schemas,
:data:`SCHEMAS`. silod validates requests with them and puts them verbatim into its OpenAPI
document under ``components/schemas``, so the contract and the checks cannot drift. Field names
are the Windows (HCS schema 2) ones; what Linux needs and Windows has not lives under ``Linux``.

:func:`validate` runs the schema and then the checks a schema cannot express (exclusive
Processor fields, the host's CPU count, absolute paths, environment names, user and signal
syntax, fields that only silod fills in). Every error names its field as a dotted path into the
document it was given (``Container.Memory.SizeInMB``; ``Configuration.Container...`` for a
CreateRequest).

Imports only :mod:`silo.errors`, :mod:`silo.schema.jsonschema` and :mod:`silo.schema._build`;
signal names are a local table (silo.kernel is out of reach here) checked against the kernel's
in the tests.
"""

from __future__ import annotations

import os

from silo.errors import NotSupported, invalid
from silo.schema import hns, image, jsonschema
from silo.schema._build import boolean as _bool
from silo.schema._build import integer as _int
from silo.schema._build import obj as _obj
from silo.schema._build import ref as _ref
from silo.schema._build import string as _str

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Schema = dict[str, Any]

SCHEMA_MAJOR = 2
CPU_PERIOD_MAX_WEIGHT = 10000  # Processor.Maximum and Weight are 1..10000, as on Windows

ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_ID_REASON = "must be 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit"
HOSTNAME_PATTERN = ("^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                    "(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")
CAPABILITY_PATTERN = "^((CAP_)?[A-Z_]+|ALL)$"

STATES = ["Created", "Running", "Paused", "Stopped"]
EXIT_TYPES = ["GracefulExit", "ForcedExit", "UnexpectedExit"]
EVENT_TYPES = ["SystemCreated", "SystemStarted", "SystemPaused", "SystemResumed", "SystemExited",
               "SystemDeleted", "ProcessCreated", "ProcessExited", "OutOfMemory",
               *image.EVENT_TYPES]
PROPERTY_TYPES = ["Statistics", "ProcessList", "Memory"]
ERROR_CODES = ["invalid_argument", "not_found", "already_exists", "invalid_state",
               "not_supported", "unavailable", "timeout", "internal"]
RESOURCE_PATHS = ["Container/Memory/SizeInMB", "Container/Processor"]

# Linux signal numbers (x86, arm, the generic table); SIGRTMIN is glibc's 34, not the kernel's 32.
SIGNALS: dict[str, int] = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6,
    "SIGIOT": 6, "SIGBUS": 7, "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11,
    "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17,
    "SIGCLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22,
    "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28,
    "SIGIO": 29, "SIGPOLL": 29, "SIGPWR": 30, "SIGSYS": 31,
}
SIGRTMIN = 34
SIGRTMAX = 64


def _id(doc: str) -> Schema:
    return _str(doc, pattern=ID_PATTERN, **{"x-reason": _ID_REASON})


_TIMEOUT = _int(0, doc="Seconds to wait; absent: the default of the verb")
_MAX_MB = (2**63 - 1) // (1 << 20)  # SizeInMB in bytes must fit the kernel's int64

_SUMMARY_PROPS: dict[str, Schema] = {
    "Id": _str("The compute system's id"),
    "Name": _str("Its name (the id when none was given)"),
    "Owner": _str("Who created it (ComputeSystem.Owner)"),
    "SystemType": {"type": "string", "enum": ["Container"]},
    "State": {"type": "string", "enum": STATES},
    "Pid": _int(0, doc="Host pid of the first process; 0 when it does not run"),
    "Created": _str("RFC 3339 time of creation"),
    "Started": _str("RFC 3339 time of the last start"),
    "ExitCode": _int(doc="Exit code of the first process, once Stopped"),
    "ExitType": {"type": "string", "enum": EXIT_TYPES},
    "Image": _str("Storage.Image of the document"),
}
_SUMMARY_REQUIRED = ["Id", "Name", "Owner", "SystemType", "State", "Pid", "Created", "Image"]

SCHEMAS: dict[str, Schema] = {
    "SchemaVersion": _obj({
        "Major": _int(0, doc="Only 2 is supported"),
        "Minor": _int(0),
    }, ["Major", "Minor"]),
    "ComputeSystem": _obj({
        "Owner": _str("Who asks (free text, e.g. the client's name)", maxLength=256),
        "SchemaVersion": _ref("SchemaVersion"),
        "Container": _ref("ContainerSettings"),
    }, ["SchemaVersion", "Container"],
        doc="A compute system: today a process-isolated container (HCS schema 2)"),
    "ContainerSettings": _obj({
        "GuestOs": _ref("GuestOs"),
        "Storage": _ref("Storage"),
        "MappedDirectories": {"type": "array", "items": _ref("MappedDirectory")},
        "Memory": _ref("Memory"),
        "Processor": _ref("Processor"),
        "Networking": _ref("Networking"),
        "Linux": _ref("LinuxContainer"),
    }, ["Linux"]),
    "GuestOs": _obj({
        "HostName": _str("The container's hostname", pattern=HOSTNAME_PATTERN, maxLength=64,
                         **{"x-reason": "must be a host name (letters, digits, '-', '.')"}),
    }),
    "Storage": _obj({
        "Image": _str("The image to run: a reference or an id in silod's image store",
                      minLength=1),
        "ScratchSizeInMB": _int(8, 1 << 30, "Linux: cap the container's writable (scratch) "
                                "layer at this many MiB (8 .. 2^30); absent: no cap"),
        "Layers": {"type": "array", "items": _ref("Layer"), "readOnly": True,
                   "description": "Filled in by silod with what the image resolved to; "
                                  "refused in requests"},
    }, ["Image"]),
    "Layer": _obj({
        "Id": _str("The layer's digest", minLength=1),
        "Path": _str("Where the layer is unpacked on the host", minLength=1),
    }, ["Id", "Path"]),
    "MappedDirectory": _obj({
        "HostPath": _str("Absolute host path", minLength=1),
        "ContainerPath": _str("Absolute path in the container, not '/'", minLength=1),
        "ReadOnly": _bool("Mount it read-only"),
    }, ["HostPath", "ContainerPath"]),
    "Memory": _obj({
        "SizeInMB": _int(4, _MAX_MB, "Memory limit in MiB"),
    }, ["SizeInMB"]),
    "Processor": _obj({
        "Count": _int(1, doc="CPUs' worth of time (1..host CPUs)"),
        "Maximum": _int(1, CPU_PERIOD_MAX_WEIGHT,
                        "Hard cap in 0.01 % of the whole host (1..10000)"),
        "Weight": _int(1, CPU_PERIOD_MAX_WEIGHT, "Relative share under contention (1..10000)"),
    }, doc="At most one of Count, Maximum and Weight"),
    "Networking": _obj({
        "Namespace": _str("The HNS namespace (HostComputeNamespace ID) to join, or a network "
                          "namespace path (/run/netns/NAME, /proc/PID/ns/net); absent, and no "
                          "Network: a namespace of its own with only loopback", minLength=1),
        "Network": _str("silo: the HNS network (name or ID) on which silod gives the container "
                        "an endpoint, in a namespace of its own that is created and removed "
                        "with it (Docker's run --network); 'nat' is made on first use. Not with "
                        "Namespace", minLength=1),
        "PortMappings": {"type": "array", "items": hns.POLICY_SETTINGS["PortMapping"],
                         "description": "silo: PortMapping policies of that endpoint (needs "
                                        "Network); Flags default to LocalRoutedVip (1): the "
                                        "host reaches them too"},
    }),
    "LinuxContainer": _obj({
        "Process": _ref("ProcessParameters"),
        "ReadonlyRootfs": _bool("Mount the root filesystem read-only"),
        "PidsLimit": _int(0, doc="Most tasks in the container; 0: no limit"),
        "StopSignal": {"type": ["string", "integer"],
                       "description": "Signal that shutdown sends first (default SIGTERM)"},
        "Annotations": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "OCI annotations; keys under io.silo. are silod's"},
        "CapAdd": {"type": "array",
                   "items": _str(pattern=CAPABILITY_PATTERN,
                                 **{"x-reason": "must be a capability name or ALL"}),
                   "description": "Capabilities added to the default set (NET_ADMIN or "
                                  "CAP_NET_ADMIN; ALL)"},
        "CapDrop": {"type": "array",
                    "items": _str(pattern=CAPABILITY_PATTERN,
                                  **{"x-reason": "must be a capability name or ALL"}),
                    "description": "Capabilities dropped from the default set (applied before "
                                   "CapAdd)"},
    }, ["Process"], doc="What a Linux container needs that Windows has not (Container.Linux)"),
    "ProcessParameters": _obj({
        "CommandArgs": {"type": "array", "items": {"type": "string"},
                        "description": "argv; for a container's first process an empty list "
                                       "runs the image's Entrypoint and Cmd"},
        "Environment": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Set over the image's Env"},
        "WorkingDirectory": _str("Absolute; default: the image's WorkingDir, else /"),
        "User": _str("'uid', 'uid:gid', 'name' or 'name:group' (from the image's "
                     "/etc/passwd and /etc/group)", minLength=1),
        "EmulateConsole": _bool("Give the process a pseudo-terminal"),
        "CreateStdInPipe": _bool("Keep its stdin open for attaching"),
        "CreateStdOutPipe": _bool("Capture its stdout"),
        "CreateStdErrPipe": _bool("Capture its stderr"),
        "ConsoleSize": {"type": "array", "items": _int(1, 65535), "minItems": 2,
                        "maxItems": 2, "description": "[height, width] of the terminal"},
    }, ["CommandArgs"]),
    "CreateRequest": _obj({
        "Id": _id("Default: generated"),
        "Name": _id("Default: the id"),
        "Configuration": _ref("ComputeSystem"),
    }, ["Configuration"]),
    "ShutdownRequest": _obj({"TimeoutSeconds": _TIMEOUT}),
    "WaitRequest": _obj({"TimeoutSeconds": _TIMEOUT}),
    "PropertyQuery": _obj({
        "PropertyTypes": {"type": "array",
                          "items": {"type": "string", "enum": PROPERTY_TYPES}},
    }),
    "ModifySettingRequest": _obj({
        "ResourcePath": _str(", ".join(RESOURCE_PATHS), minLength=1),
        "RequestType": {"type": "string", "enum": ["Add", "Remove", "Update"],
                        "description": "Only Update is done; default Update"},
        "Settings": {"description": "SizeInMB (an integer) or a Processor object"},
    }, ["ResourcePath", "Settings"]),
    "SignalRequest": _obj({
        "Signal": {"type": ["string", "integer"],
                   "description": "A name (SIGTERM, TERM, RTMIN+3) or a number"},
    }, ["Signal"]),
    "ResizeRequest": _obj({
        "Height": _int(1, 65535),
        "Width": _int(1, 65535),
    }, ["Height", "Width"]),
    "Summary": _obj(dict(_SUMMARY_PROPS), _SUMMARY_REQUIRED, closed=False),
    "Properties": _obj({
        **_SUMMARY_PROPS,
        "Configuration": _ref("ComputeSystem"),
        "Statistics": _ref("Statistics"),
        "ProcessList": {"type": "array", "items": _obj({
            "ProcessId": _int(0),
            "CommandLine": {"type": "string"},
            "UserName": {"type": "string"},
        }, ["ProcessId", "CommandLine"], closed=False)},
    }, [*_SUMMARY_REQUIRED, "Configuration"], closed=False,
        doc="Summary, the stored document, and what the PropertyQuery asked for"),
    "Statistics": _obj({
        "Memory": _obj({
            "UsageBytes": _int(0),
            "LimitBytes": {"type": ["integer", "null"], "description": "null: no limit"},
            "MaxUsageBytes": _int(0),
        }, closed=False),
        "Processor": _obj({"TotalRuntimeNs": _int(0)}, closed=False),
        "Pids": _obj({
            "Current": _int(0),
            "Limit": {"type": ["integer", "null"], "description": "null: no limit"},
        }, closed=False),
    }, closed=False),
    "ProcessInfo": _obj({
        "ProcessId": _int(0),
        "Stdio": _obj({
            "AttachSocket": _str("The monitor's attach socket"),
            "ControlFifo": _str("The monitor's control fifo (resize, close stdin)"),
        }, closed=False),
    }, ["ProcessId"], closed=False, doc="The answer to creating a process"),
    "ProcessStatus": _obj({
        "ProcessId": _int(0),
        "Exited": {"type": "boolean"},
        "ExitCode": _int(),
    }, ["ProcessId", "Exited"], closed=False),
    "ExitStatus": _obj({
        "ExitCode": _int(),
        "ExitType": {"type": "string", "enum": EXIT_TYPES},
    }, ["ExitCode", "ExitType"], closed=False, doc="The answer to waiting for a system"),
    "LogLine": _obj({
        "Time": _str("RFC 3339"),
        "Stream": {"type": "string", "enum": ["stdout", "stderr"]},
        "Line": {"type": "string"},
    }, ["Time", "Stream", "Line"], closed=False),
    "Event": _obj({
        "Time": _str("RFC 3339"),
        "Type": {"type": "string", "enum": EVENT_TYPES},
        "Id": _str("The compute system's id"),
        "ProcessId": _int(0),
        "ExitCode": _int(),
        "ExitType": {"type": "string", "enum": EXIT_TYPES},
    }, ["Time", "Type", "Id"], closed=False),
    "Error": _obj({
        "Code": {"type": "string", "enum": ERROR_CODES},
        "Message": _str("Starts with the field, when there is one"),
        "Field": _str("Dotted path of the wrong field"),
        "Operation": {"type": "string"},
        "Id": {"type": "string"},
    }, ["Code", "Message"], closed=False),
}

SCHEMAS.update(image.SCHEMAS)  # silod's image documents share the registry and the OpenAPI
SCHEMAS.update(hns.SCHEMAS)  # and so do its network (HNS v2) documents


def openapi_components() -> dict[str, Any]:
    """``components`` of the OpenAPI document: the schemas, as a copy the caller may change."""
    import copy

    return {"schemas": copy.deepcopy(SCHEMAS)}


def validate(name: str, doc: object) -> dict[str, Any]:
    """Check a request document of type ``name`` (a key of :data:`SCHEMAS`); return it.

    Raises InvalidArgument naming the field, or NotSupported for a schema major version other
    than 2 and a modify of a resource silo does not change.
    """
    schema = SCHEMAS.get(name)
    if schema is None:
        raise KeyError(f"no schema named {name!r}")
    if not isinstance(doc, dict):
        raise invalid(name, "must be a JSON object")
    if name == "ComputeSystem":
        _check_version(doc, "")
    elif name == "CreateRequest" and isinstance(doc.get("Configuration"), dict):
        _check_version(doc["Configuration"], "Configuration")
    jsonschema.validate(schema, doc, "", SCHEMAS)
    check = _SEMANTIC.get(name)
    if check is not None:
        check(doc, "")
    return doc


def host_cpus() -> int:
    return os.cpu_count() or 1


def signal_number(value: object, field: str) -> int:
    """A signal given as a name (``SIGTERM``, ``term``, ``RTMIN+3``), a numeric string or a number,
    as its number; InvalidArgument naming ``field`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 < value <= SIGRTMAX:
            return value
        raise invalid(field, f"{value} is not a signal number (1..{SIGRTMAX})")
    if not isinstance(value, str):
        raise invalid(field, "must be a signal name or number")
    text = value.strip()
    if text.isascii() and text.isdigit():
        return signal_number(int(text), field)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in SIGNALS:
        return SIGNALS[name]
    for base, number, sign in (("SIGRTMIN", SIGRTMIN, 1), ("SIGRTMAX", SIGRTMAX, -1)):
        if name == base:
            return number
        op = "+" if sign > 0 else "-"
        off = name[len(base) + 1:]
        if name.startswith(base + op) and off.isascii() and off.isdigit():
            sig = number + sign * int(off)
            if SIGRTMIN <= sig <= SIGRTMAX:
                return sig
    raise invalid(field, f"unknown signal {value!r}")


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_version(doc: dict[str, Any], where: str) -> None:
    version = doc.get("SchemaVersion")
    if not isinstance(version, dict):
        return  # the schema says what is wrong
    major = version.get("Major")
    if isinstance(major, int) and not isinstance(major, bool) and major != SCHEMA_MAJOR:
        field = _at(where, "SchemaVersion.Major")
        raise NotSupported(f"{field}: schema version {major}.x is not supported (2.x is)",
                           field=field)


def _absolute(value: str, field: str) -> None:
    if not value.startswith("/"):
        raise invalid(field, f"must be an absolute path, got {value!r}")
    if "\0" in value:
        raise invalid(field, "must not contain NUL")


def _check_compute_system(doc: dict[str, Any], where: str) -> None:
    _check_container(doc["Container"], _at(where, "Container"))


def _check_create_request(doc: dict[str, Any], where: str) -> None:
    _check_compute_system(doc["Configuration"], _at(where, "Configuration"))


def _check_container(c: dict[str, Any], where: str) -> None:
    storage = c.get("Storage", {})
    if "Layers" in storage:
        raise invalid(_at(where, "Storage.Layers"),
                      "is filled in by silod from Storage.Image; leave it out")
    if "Processor" in c:
        check_processor(c["Processor"], _at(where, "Processor"))
    seen: dict[str, int] = {}
    for i, m in enumerate(c.get("MappedDirectories", ())):
        f = f"{_at(where, 'MappedDirectories')}[{i}]"
        _absolute(m["HostPath"], f + ".HostPath")
        cpath = m["ContainerPath"]
        _absolute(cpath, f + ".ContainerPath")
        parts = [p for p in cpath.split("/") if p not in ("", ".")]
        if not parts:
            raise invalid(f + ".ContainerPath", "must not be the container's root")
        if ".." in parts:
            raise invalid(f + ".ContainerPath", f"must not contain '..', got {cpath!r}")
        norm = "/" + "/".join(parts)
        if norm in seen:
            raise invalid(f + ".ContainerPath",
                          f"{norm} is already mapped by MappedDirectories[{seen[norm]}]")
        seen[norm] = i
    net = c.get("Networking", {})
    ns = net.get("Namespace")
    if ns is not None and not hns.is_guid(ns):
        _absolute(ns, _at(where, "Networking.Namespace"))
    if ns is not None and "Network" in net:
        raise invalid(_at(where, "Networking.Network"),
                      "cannot be given with Networking.Namespace (the endpoint's namespace "
                      "is the container's own)")
    if net.get("PortMappings") and "Network" not in net:
        raise invalid(_at(where, "Networking.PortMappings"), "needs Networking.Network")
    for i, mapping in enumerate(net.get("PortMappings", [])):
        if "VIP" in mapping:
            hns.parse_address(mapping["VIP"], _at(where, f"Networking.PortMappings[{i}].VIP"))
    linux = c["Linux"]
    lw = _at(where, "Linux")
    check_process(linux["Process"], _at(lw, "Process"), first=True)
    if "StopSignal" in linux:
        signal_number(linux["StopSignal"], _at(lw, "StopSignal"))
    for key in linux.get("Annotations", {}):
        if not key:
            raise invalid(_at(lw, "Annotations"), "keys must not be empty")
        if key.startswith("io.silo."):
            raise invalid(_at(lw, f"Annotations.{key}"), "io.silo. keys are set by silod")


def check_processor(p: dict[str, Any], where: str) -> None:
    """Processor's rules beyond its schema: one of Count, Maximum and Weight, Count ≤ host CPUs."""
    given = [k for k in ("Count", "Maximum", "Weight") if k in p]
    if len(given) > 1:
        raise invalid(where, "Count, Maximum and Weight are mutually exclusive")
    cpus = host_cpus()
    if "Count" in p and p["Count"] > cpus:
        raise invalid(_at(where, "Count"), f"must be <= {cpus} (the host's CPUs)")


def check_process(p: dict[str, Any], where: str, *, first: bool = False) -> None:
    """ProcessParameters' rules beyond its schema. ``first``: the container's first process,
    whose CommandArgs may be empty (the image's Entrypoint and Cmd run)."""
    args = p["CommandArgs"]
    if not args and not first:
        raise invalid(_at(where, "CommandArgs"), "must not be empty")
    for i, a in enumerate(args):
        if "\0" in a:
            raise invalid(f"{_at(where, 'CommandArgs')}[{i}]", "must not contain NUL")
    for key, value in p.get("Environment", {}).items():
        f = _at(where, f"Environment.{key}")
        if not key:
            raise invalid(_at(where, "Environment"), "names must not be empty")
        if "=" in key or "\0" in key:
            raise invalid(f, "names must not contain '=' or NUL")
        if "\0" in value:
            raise invalid(f, "must not contain NUL")
    if "WorkingDirectory" in p:
        _absolute(p["WorkingDirectory"], _at(where, "WorkingDirectory"))
    if "User" in p:
        check_user(p["User"], _at(where, "User"))


def check_user(user: str, field: str) -> None:
    """``uid``, ``uid:gid``, ``name`` or ``name:group``; numbers within 0..2^32-2."""
    parts = user.split(":")
    if len(parts) > 2 or any(not part for part in parts):
        raise invalid(field, f"must be 'user' or 'user:group', got {user!r}")
    for part in parts:
        if "\0" in part or "/" in part or part != part.strip():
            raise invalid(field, f"{part!r} is not a user or group name")
        if part.isascii() and part.isdigit() and int(part) > 0xFFFFFFFE:
            raise invalid(field, f"{part} is out of range (0..4294967294)")


def _check_modify(doc: dict[str, Any], where: str) -> None:
    path_field = _at(where, "ResourcePath")
    path = doc["ResourcePath"]
    if path not in RESOURCE_PATHS:
        raise NotSupported(f"{path_field}: silo does not modify {path!r} "
                           f"(it does {', '.join(RESOURCE_PATHS)})", field=path_field)
    kind = doc.get("RequestType", "Update")
    if kind != "Update":
        f = _at(where, "RequestType")
        raise NotSupported(f"{f}: only Update is done for {path}", field=f)
    settings_field = _at(where, "Settings")
    if path == "Container/Memory/SizeInMB":
        jsonschema.validate(SCHEMAS["Memory"]["properties"]["SizeInMB"], doc["Settings"],
                            settings_field)
    else:
        jsonschema.validate(SCHEMAS["Processor"], doc["Settings"], settings_field)
        if not doc["Settings"]:
            raise invalid(settings_field, "must set one of Count, Maximum and Weight")
        check_processor(doc["Settings"], settings_field)


def _check_signal(doc: dict[str, Any], where: str) -> None:
    signal_number(doc["Signal"], _at(where, "Signal"))


def _check_process_parameters(doc: dict[str, Any], where: str) -> None:
    check_process(doc, where)


if TYPE_CHECKING:
    from collections.abc import Callable

_SEMANTIC: dict[str, Callable[[dict[str, Any], str], None]] = {
    "ComputeSystem": _check_compute_system,
    "CreateRequest": _check_create_request,
    "ProcessParameters": _check_process_parameters,
    "ModifySettingRequest": _check_modify,
    "SignalRequest": _check_signal,
}
