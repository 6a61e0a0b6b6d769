"""Seccomp filters from the OCI ``linux.seccomp`` object, built and loaded through libseccomp.

Owns validation of the object (pure Python, libseccomp is not loaded), its translation into
libseccomp calls, loading the filter into the calling process, and the report for
``silo-runtime features``. Imports only :mod:`silo.errors` and :mod:`silo.kernel.libc`; ctypes
and libseccomp.so.2 are loaded by the first call that needs them.

The translation follows runc (libcontainer/seccomp), so a profile behaves the same under both:

- A syscall name the native architecture does not know is skipped: profiles such as Docker's
  list the names of every architecture at once.
- A rule whose action equals the default action is skipped; libseccomp refuses it.
- The args of one rule are ANDed in one libseccomp rule. libseccomp cannot compare the same
  argument twice in a rule, so when an index repeats, every condition of that rule becomes a
  rule of its own, and the conditions are then ORed. runc does exactly this.
- ``errnoRet``/``defaultErrnoRet`` default to EPERM for SCMP_ACT_ERRNO and SCMP_ACT_TRACE; on
  any other action they are an error, as the OCI spec requires.
- libseccomp's no_new_privs attribute is turned off: ``process.noNewPrivileges`` decides that.
  Without no_new_privs the kernel only lets a process holding CAP_SYS_ADMIN load a filter, so
  the container init must call :func:`load` before it drops capabilities in that case, and
  right before ``execve`` otherwise (as runc does). Between ``load`` and ``execve`` the Python
  interpreter still makes syscalls; a profile that denies them fails the start, loudly.
- SCMP_ACT_NOTIFY and ``listenerPath`` raise NotSupported: silo has no seccomp agent.
- Not done: runc's ENOSYS stub for syscalls newer than the profile (its ``patchbpf``); such a
  syscall gets the default action.
"""

from __future__ import annotations

import os

from silo import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Condition = tuple[int, int, int, int]
    Rule = tuple[str, str, int, list[Condition]]

_EPERM = 1

# OCI action -> libseccomp action value (the low 16 bits carry the errno for ERRNO and TRACE).
_ACTION_VALUES = {
    "SCMP_ACT_KILL": 0x00000000,  # = KILL_THREAD, as in libseccomp
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
ACTIONS: list[str] = list(_ACTION_VALUES)
_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
# Actions libseccomp only accepts from this API level on (it probes the kernel for them).
_ACTION_API = {"SCMP_ACT_KILL_PROCESS": 3, "SCMP_ACT_LOG": 3, "SCMP_ACT_NOTIFY": 5}

_OPERATOR_VALUES = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
OPERATORS: list[str] = list(_OPERATOR_VALUES)

# libseccomp architecture tokens: the kernel's AUDIT_ARCH_* values (EM_* | 64-bit | LE bits),
# except x32, which libseccomp tells apart from x86_64 by leaving out the 64-bit bit.
ARCHES: dict[str, int] = {
    "SCMP_ARCH_X86": 0x40000003,
    "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X32": 0x4000003E,
    "SCMP_ARCH_ARM": 0x40000028,
    "SCMP_ARCH_AARCH64": 0xC00000B7,
    "SCMP_ARCH_MIPS": 0x00000008,
    "SCMP_ARCH_MIPS64": 0x80000008,
    "SCMP_ARCH_MIPS64N32": 0xA0000008,
    "SCMP_ARCH_MIPSEL": 0x40000008,
    "SCMP_ARCH_MIPSEL64": 0xC0000008,
    "SCMP_ARCH_MIPSEL64N32": 0xE0000008,
    "SCMP_ARCH_PPC": 0x00000014,
    "SCMP_ARCH_PPC64": 0x80000015,
    "SCMP_ARCH_PPC64LE": 0xC0000015,
    "SCMP_ARCH_S390": 0x00000016,
    "SCMP_ARCH_S390X": 0x80000016,
    "SCMP_ARCH_PARISC": 0x0000000F,
    "SCMP_ARCH_PARISC64": 0x8000000F,
    "SCMP_ARCH_RISCV64": 0xC00000F3,
    # Newer than libseccomp 2.5; accepted in documents, NotSupported at load where unknown.
    "SCMP_ARCH_LOONGARCH64": 0xC0000102,
    "SCMP_ARCH_M68K": 0x00000004,
    "SCMP_ARCH_SH": 0x4000002A,
    "SCMP_ARCH_SHEB": 0x0000002A,
}

# libseccomp filter attributes (enum scmp_filter_attr).
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_API_SYSRAWRC = 9

# OCI flag -> (libseccomp attribute, API level at which libseccomp and the kernel support it).
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": (_ATTR_CTL_TSYNC, 2),
    "SECCOMP_FILTER_FLAG_LOG": (_ATTR_CTL_LOG, 3),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (_ATTR_CTL_SSB, 4),
}
FLAGS: list[str] = list(_FLAGS)

_KEYS = ("defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
         "listenerMetadata", "syscalls")
_SYSCALL_KEYS = ("names", "action", "errnoRet", "args")
_ARG_KEYS = ("index", "value", "valueTwo", "op")
_MAX_ARGS = 6
_NR_SCMP_ERROR = -1  # what seccomp_syscall_resolve_name returns for an unknown name


def validate(seccomp: Any, where: str = "linux.seccomp") -> None:
    """Check an OCI seccomp object without loading libseccomp.

    Raises InvalidArgument naming the first bad field, or NotSupported for a seccomp notify
    listener. Syscall names are not checked: a profile carries names of other architectures.
    """
    if seccomp is None:
        return
    _object(seccomp, where, _KEYS)
    _action(seccomp, where, "defaultAction", "defaultErrnoRet")
    for key, table, what in (("architectures", ARCHES, "architecture"),
                             ("flags", _FLAGS, "flag")):
        for i, name in enumerate(_list(seccomp, where, key)):
            if not isinstance(name, str):
                raise errors.invalid(f"{where}.{key}[{i}]", f"must be a string, not {_kind(name)}")
            if name not in table:
                raise errors.invalid(f"{where}.{key}[{i}]", f'unknown {what} "{name}"')
    for key in ("listenerPath", "listenerMetadata"):
        value = seccomp.get(key)
        if value is not None and not isinstance(value, str):
            raise errors.invalid(f"{where}.{key}", f"must be a string, not {_kind(value)}")
    if seccomp.get("listenerPath"):
        raise _not_supported(f"{where}.listenerPath",
                             "seccomp notify listeners are not supported")
    for i, call in enumerate(_list(seccomp, where, "syscalls")):
        field = f"{where}.syscalls[{i}]"
        _object(call, field, _SYSCALL_KEYS)
        call_names = call.get("names")
        if not isinstance(call_names, list) or not call_names:
            raise errors.invalid(f"{field}.names", "must be a non-empty list of syscall names")
        for j, name in enumerate(call_names):
            if not isinstance(name, str) or not name:
                raise errors.invalid(f"{field}.names[{j}]", "must be a non-empty string")
        _action(call, field, "action", "errnoRet")
        for k, arg in enumerate(_list(call, field, "args")):
            arg_field = f"{field}.args[{k}]"
            _object(arg, arg_field, _ARG_KEYS)
            index = arg.get("index")
            if not _is_int(index) or not 0 <= index < _MAX_ARGS:
                raise errors.invalid(f"{arg_field}.index",
                                     f"must be an argument index from 0 to {_MAX_ARGS - 1}, "
                                     f"not {index!r}")
            for key in ("value", "valueTwo"):
                value = arg.get(key)
                if (value is None and key == "valueTwo") or (_is_int(value)
                                                             and 0 <= value < 1 << 64):
                    continue
                raise errors.invalid(f"{arg_field}.{key}",
                                     f"must be an unsigned 64-bit integer, not {value!r}")
            op = arg.get("op")
            if op not in _OPERATOR_VALUES:
                raise errors.invalid(f"{arg_field}.op", f"unknown operator {_quote(op)} "
                                                        f"(known: {', '.join(OPERATORS)})")


def load(seccomp: Any, where: str = "linux.seccomp") -> None:
    """Build the filter and load it into the calling process (a no-op for ``None``).

    InvalidArgument/NotSupported name the field libseccomp or the kernel refused; a failing
    ``seccomp_load`` (e.g. EACCES: neither no_new_privs nor CAP_SYS_ADMIN) is Internal.
    """
    if seccomp is None:
        return
    lib, ctx = _build(seccomp, where)
    try:
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise _lib_error(errors.Internal, where, "seccomp_load", rc)
    finally:
        lib.seccomp_release(ctx)


def render(seccomp: Any, where: str = "linux.seccomp") -> str:
    """libseccomp's pseudo filter code (PFC) for the object, without loading it: for debugging
    and for tests that check the translation with no kernel state. Empty for ``None``."""
    if seccomp is None:
        return ""
    lib, ctx = _build(seccomp, where)
    try:
        fd = os.memfd_create("silo-seccomp-pfc")
        try:
            rc = lib.seccomp_export_pfc(ctx, fd)
            if rc < 0:
                raise _lib_error(errors.Internal, where, "seccomp_export_pfc", rc)
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0).decode()
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def features() -> dict[str, Any]:
    """The ``linux.seccomp`` part of ``silo-runtime features``, in runc's shape."""
    from silo.kernel import libc

    try:
        lib = libc.libseccomp()
    except OSError:
        return {"enabled": False}
    api = int(lib.seccomp_api_get())
    return {
        "enabled": True,
        "actions": [a for a in ACTIONS
                    if a != "SCMP_ACT_NOTIFY" and api >= _ACTION_API.get(a, 0)],
        "operators": list(OPERATORS),
        "archs": [name for name, token in ARCHES.items()
                  if lib.seccomp_arch_resolve_name(name[len("SCMP_ARCH_"):].lower().encode())
                  == token],
        "knownFlags": list(FLAGS),
        "supportedFlags": [flag for flag, (_, level) in _FLAGS.items() if api >= level],
    }


def _compile(seccomp: Any, where: str) -> tuple[int, list[tuple[str, int]],
                                                  list[tuple[str, int]], list[Rule]]:
    """The validated object as (default action, [(field, arch token)], [(field, attribute)],
    [(field, syscall name, action, [(index, op, datum_a, datum_b)])]), all plain values."""
    validate(seccomp, where)
    default = _action_value(seccomp, "defaultAction", "defaultErrnoRet")
    arches = [(f"{where}.architectures[{i}]", ARCHES[name])
              for i, name in enumerate(seccomp.get("architectures") or ())]
    attrs = [(f"{where}.flags[{i}]", _FLAGS[name][0])
             for i, name in enumerate(seccomp.get("flags") or ())]
    rules: list[Rule] = []
    for i, call in enumerate(seccomp.get("syscalls") or ()):
        action = _action_value(call, "action", "errnoRet")
        if action == default:
            continue
        conditions = []
        for arg in call.get("args") or ():
            op = _OPERATOR_VALUES[arg["op"]]
            conditions.append((arg["index"], op, arg["value"], arg.get("valueTwo") or 0))
        indexes = [c[0] for c in conditions]
        repeated = len(set(indexes)) != len(indexes)
        groups = [[c] for c in conditions] if repeated else [conditions]
        for j, name in enumerate(call["names"]):
            for group in groups:
                rules.append((f"{where}.syscalls[{i}].names[{j}]", name, action, group))
    return default, arches, attrs, rules


def _build(seccomp: Any, where: str) -> tuple[Any, int]:
    """A libseccomp filter context for the object; the caller releases it."""
    from silo.kernel import libc

    default, arches, attrs, rules = _compile(seccomp, where)
    try:
        lib = libc.libseccomp()
    except OSError as err:
        raise errors.NotSupported(f"{where}: seccomp needs libseccomp: {err.strerror}",
                                  op="seccomp::load", field=where) from err
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise _not_supported(f"{where}.defaultAction",
                             f'libseccomp or the kernel refuses "{seccomp["defaultAction"]}"')
    try:
        # Raw kernel errnos rather than libseccomp's ECANCELED; older libseccomp lacks the knob.
        lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)
        _check(lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0), errors.Internal, where,
               "seccomp_attr_set(CTL_NNP)")
        for field, attr in attrs:
            _check(lib.seccomp_attr_set(ctx, attr, 1), errors.NotSupported, field,
                   "seccomp_attr_set")
        for field, token in arches:
            if lib.seccomp_arch_exist(ctx, token) != 0:
                _check(lib.seccomp_arch_add(ctx, token), errors.NotSupported, field,
                       "seccomp_arch_add")
        resolved: dict[str, int] = {}
        for field, name, action, conditions in rules:
            nr = resolved.get(name)
            if nr is None:
                nr = resolved[name] = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # not a syscall of this architecture
            array = libc.scmp_arg_cmp_array(conditions) if conditions else None
            _check(lib.seccomp_rule_add_array(ctx, action, nr, len(conditions), array),
                   errors.InvalidArgument, field, f'seccomp_rule_add "{name}"')
    except BaseException:
        lib.seccomp_release(ctx)
        raise
    return lib, ctx


def _action_value(obj: dict[str, Any], key: str, errno_key: str) -> int:
    name = obj[key]
    value = _ACTION_VALUES[name]
    if name in _ERRNO_ACTIONS:
        errno = obj.get(errno_key)
        value |= _EPERM if errno is None else errno
    return value


def _action(obj: dict[str, Any], where: str, key: str, errno_key: str) -> None:
    field = f"{where}.{key}"
    name = obj.get(key)
    if name is None:
        raise errors.invalid(field, "is required")
    if name not in _ACTION_VALUES:
        raise errors.invalid(field, f"unknown action {_quote(name)} "
                                    f"(known: {', '.join(ACTIONS)})")
    if name == "SCMP_ACT_NOTIFY":
        raise _not_supported(field, "SCMP_ACT_NOTIFY needs a seccomp agent; silo has none")
    errno = obj.get(errno_key)
    if errno is None:
        return
    if name not in _ERRNO_ACTIONS:
        raise errors.invalid(f"{where}.{errno_key}",
                             f"{name} takes no errno (only {' and '.join(_ERRNO_ACTIONS)} do)")
    if not _is_int(errno) or not 0 <= errno <= 0xFFFF:
        raise errors.invalid(f"{where}.{errno_key}",
                             f"must be an errno number from 0 to 65535, not {errno!r}")


def _object(value: Any, where: str, keys: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise errors.invalid(where, f"must be an object, not {_kind(value)}")
    for key in value:
        if key not in keys:
            raise errors.invalid(f"{where}.{key}", f"unknown field (known: {', '.join(keys)})")


def _list(obj: dict[str, Any], where: str, key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.invalid(f"{where}.{key}", f"must be a list, not {_kind(value)}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quote(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else _kind(value)


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                       type(value).__name__)


def _not_supported(field: str, reason: str) -> errors.NotSupported:
    return errors.NotSupported(f"{field}: {reason}", op="seccomp::load", field=field)


def _check(rc: int, kind: type[errors.SiloError], field: str, call: str) -> None:
    if rc < 0:
        raise _lib_error(kind, field, call, rc)


def _lib_error(kind: type[errors.SiloError], field: str, call: str,
               rc: int) -> errors.SiloError:
    cause = OSError(-rc, f"{call}: {os.strerror(-rc)}")
    err = kind(f"{field}: {call}: {os.strerror(-rc)}", op="seccomp::load", field=field)
    err.__cause__ = cause
    return err
