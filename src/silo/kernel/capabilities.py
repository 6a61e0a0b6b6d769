"""Linux capabilities of the container's first process: the OCI ``process.capabilities`` object.

Owns the capability name table, validation of the OCI object, and the calls that set the five
sets (bounding, permitted, effective, inheritable, ambient) in the container init. Imports only
:mod:`silo.errors` and :mod:`silo.kernel.libc`; ctypes is loaded on the first kernel call.

The order matters, and follows runc's ``finalizeNamespace``::

    drop_bounding(caps)          # needs CAP_SETPCAP, so while still uid 0
    prepare_for_user_change()    # PR_SET_KEEPCAPS: setuid away from 0 keeps the permitted set
    os.setgroups(...); os.setgid(gid); os.setuid(uid)
    apply(caps)                  # capset(E, P, I), ambient, then PR_SET_KEEPCAPS 0

A setuid from uid 0 clears the effective set even with keep-caps, which is why ``apply`` comes
after it. Ambient capabilities are what lets a non-root process keep capabilities across
``execve``; the kernel only raises one that is in both the permitted and the inheritable set,
so ``apply`` raises exactly those (runc warns about the others and carries on).

A ``None`` capabilities object leaves every set as it is (runc: nil capabilities). An object
without ``bounding`` empties the bounding set.
"""

from __future__ import annotations

from silo import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# linux/capability.h
CAPS: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

# /proc/<pid>/status line prefix for each set.
_STATUS_KEYS = {"CapInh": "inheritable", "CapPrm": "permitted", "CapEff": "effective",
                "CapBnd": "bounding", "CapAmb": "ambient"}

_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read())
        except (OSError, ValueError):
            _last_cap = _probe_last_cap()
    return _last_cap


def _probe_last_cap() -> int:
    # Without /proc/sys: PR_CAPBSET_READ fails with EINVAL past the last valid capability.
    from silo.kernel import libc

    cap = 0
    while True:
        try:
            libc.prctl(libc.PR_CAPBSET_READ, cap + 1)
        except OSError:
            return cap
        cap += 1


def validate(caps: Any, where: str = "process.capabilities") -> None:
    """Check an OCI capabilities object; raise InvalidArgument naming the first bad field.

    Names must be ``CAP_``-prefixed and known to silo's table, which runc also requires; a name
    the running kernel does not have is not an error here (``to_mask`` skips it).
    """
    if caps is None:
        return
    if not isinstance(caps, dict):
        raise errors.invalid(where, f"must be an object, not {_kind(caps)}")
    for key, names in caps.items():
        field = f"{where}.{key}"
        if key not in SETS:
            raise errors.invalid(field, f"unknown capability set {key!r} "
                                        f"(known: {', '.join(SETS)})")
        if names is None:
            continue
        if not isinstance(names, list):
            raise errors.invalid(field, f"must be a list of capability names, not {_kind(names)}")
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise errors.invalid(f"{field}[{i}]",
                                     f"must be a capability name, not {_kind(name)}")
            if name not in CAPS:
                raise errors.invalid(f"{field}[{i}]", f'unknown capability "{name}"')


def to_mask(names: list[str] | None, where: str = "process.capabilities") -> int:
    """The bit mask of ``names``; capabilities newer than the running kernel are left out."""
    mask = 0
    top = last_cap()
    for i, name in enumerate(names or ()):
        try:
            cap = CAPS[name]
        except KeyError:
            raise errors.invalid(f"{where}[{i}]", f'unknown capability "{name}"') from None
        if cap <= top:
            mask |= 1 << cap
    return mask


def names(mask: int) -> list[str]:
    """The capability names set in ``mask``, in number order (unknown bits are left out)."""
    return [name for name, cap in CAPS.items() if mask >> cap & 1]


def drop_bounding(caps: Any) -> None:
    """Drop from the bounding set every capability not in ``caps["bounding"]``.

    Needs CAP_SETPCAP in the effective set, so it runs before the switch to the container user.
    """
    if caps is None:
        return
    from silo.kernel import libc

    keep = to_mask(caps.get("bounding"), "process.capabilities.bounding")
    for cap in range(last_cap() + 1):
        if keep >> cap & 1:
            continue
        try:
            if libc.prctl(libc.PR_CAPBSET_READ, cap) == 0:
                continue
            libc.prctl(libc.PR_CAPBSET_DROP, cap)
        except OSError as err:
            raise _kernel_error(f"drop {_name(cap)} from the bounding set", err,
                                "capabilities::drop_bounding") from err


def prepare_for_user_change() -> None:
    """Keep the permitted set across the coming setuid away from uid 0 (PR_SET_KEEPCAPS 1)."""
    from silo.kernel import libc

    try:
        libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    except OSError as err:
        raise _kernel_error("set keep-caps", err, "capabilities::prepare_for_user_change") from err


def apply(caps: Any) -> None:
    """Set effective, permitted and inheritable, then ambient; clear keep-caps.

    Runs after setgid/setuid. Fails (Internal, with the OSError as cause) when the object asks
    for more than the process holds, e.g. an effective capability outside permitted.
    """
    if caps is None:
        return
    from silo.kernel import libc

    where = "process.capabilities"
    effective = to_mask(caps.get("effective"), f"{where}.effective")
    permitted = to_mask(caps.get("permitted"), f"{where}.permitted")
    inheritable = to_mask(caps.get("inheritable"), f"{where}.inheritable")
    ambient = to_mask(caps.get("ambient"), f"{where}.ambient")
    try:
        libc.capset(effective, permitted, inheritable)
    except OSError as err:
        raise _kernel_error(f"set capabilities effective={names(effective)} "
                            f"permitted={names(permitted)} "
                            f"inheritable={names(inheritable)}", err) from err
    try:
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as err:
        raise _kernel_error("clear the ambient set", err) from err
    raisable = ambient & permitted & inheritable
    for cap in range(last_cap() + 1):
        if raisable >> cap & 1:
            try:
                libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, cap)
            except OSError as err:
                raise _kernel_error(f"raise ambient {_name(cap)}", err) from err
    try:
        libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    except OSError as err:
        raise _kernel_error("clear keep-caps", err) from err


def current(pid: int | str = "self") -> dict[str, int]:
    """The five capability masks of a process, from /proc/<pid>/status, keyed by OCI set name."""
    masks: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                key, _, value = line.decode().partition(":")
                if key in _STATUS_KEYS:
                    masks[_STATUS_KEYS[key]] = int(value, 16)
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise errors.NotFound(f"no process {pid}", op="capabilities::current",
                                  obj=str(pid)) from err
        raise _kernel_error(f"read /proc/{pid}/status", err, "capabilities::current") from err
    return masks


def _name(cap: int) -> str:
    for name, number in CAPS.items():
        if number == cap:
            return name
    return f"capability {cap}"


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                       type(value).__name__)


def _kernel_error(what: str, err: OSError, op: str = "capabilities::apply") -> errors.SiloError:
    return errors.Internal(f"{what}: {err.strerror or err}", op=op)
