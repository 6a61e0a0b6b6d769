"""silo.kernel.capabilities without root: the name table, validation, masks, and the order of
kernel calls (recorded by replacing the libc wrappers, so nothing reaches the kernel)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from silo import errors
from silo.kernel import capabilities, libc

pytestmark = pytest.mark.unit

HEADER = "/usr/include/linux/capability.h"


def _missing_header() -> str:
    return "" if os.path.exists(HEADER) else f"{HEADER} is missing (linux-libc-dev)"


def _missing_capsh() -> str:
    return "" if shutil.which("capsh") else "capsh is missing (libcap2-bin)"


def test_table_has_the_41_capabilities_numbered_0_to_40() -> None:
    assert len(capabilities.CAPS) == 41
    assert sorted(capabilities.CAPS.values()) == list(range(41))
    assert capabilities.CAPS["CAP_CHOWN"] == 0
    assert capabilities.CAPS["CAP_SYS_ADMIN"] == 21
    assert capabilities.CAPS["CAP_CHECKPOINT_RESTORE"] == 40


@pytest.mark.skipif(bool(_missing_header()), reason=_missing_header())
def test_table_matches_linux_capability_h() -> None:
    with open(HEADER) as f:
        defined = {m[1]: int(m[2]) for m in
                   re.finditer(r"^#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$", f.read(), re.M)}
    defined.pop("CAP_LAST_CAP", None)
    assert defined == capabilities.CAPS


@pytest.mark.skipif(bool(_missing_capsh()), reason=_missing_capsh())
def test_table_matches_capsh_decode() -> None:
    out = subprocess.run(["capsh", f"--decode={(1 << 41) - 1:#x}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    decoded = out.split("=", 1)[1].split(",")
    assert decoded == [name.lower() for name in capabilities.CAPS]


def test_last_cap_reads_proc_and_agrees_with_the_prctl_probe() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        expected = int(f.read())
    assert capabilities.last_cap() == expected
    assert capabilities._probe_last_cap() == expected


def test_to_mask_sets_one_bit_per_name() -> None:
    assert capabilities.to_mask([]) == 0
    assert capabilities.to_mask(None) == 0
    assert capabilities.to_mask(["CAP_CHOWN", "CAP_KILL"]) == 0b100001
    assert capabilities.to_mask(["CAP_KILL", "CAP_KILL"]) == 1 << 5
    assert capabilities.to_mask(list(capabilities.CAPS)) == (1 << (capabilities.last_cap() + 1)) - 1


def test_to_mask_ignores_capabilities_newer_than_the_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "_last_cap", 37)
    assert capabilities.to_mask(["CAP_KILL", "CAP_PERFMON", "CAP_BPF", "CAP_AUDIT_READ"]) == (
        1 << 5 | 1 << 37)


def test_to_mask_names_an_unknown_capability() -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        capabilities.to_mask(["CAP_KILL", "CAP_FOO"], "process.capabilities.effective")
    assert str(info.value) == 'process.capabilities.effective[1]: unknown capability "CAP_FOO"'


def test_names_inverts_to_mask() -> None:
    names = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_BPF"]
    assert capabilities.names(capabilities.to_mask(names)) == names
    assert capabilities.names(0) == []


DOCKER_DEFAULT = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                  "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                  "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


@pytest.mark.parametrize("caps", [
    None,
    {},
    {"bounding": DOCKER_DEFAULT, "effective": DOCKER_DEFAULT, "permitted": DOCKER_DEFAULT},
    {"bounding": DOCKER_DEFAULT, "effective": DOCKER_DEFAULT, "inheritable": [],
     "permitted": DOCKER_DEFAULT, "ambient": ["CAP_KILL"]},
    {"bounding": None},
])
def test_validate_accepts(caps: object) -> None:
    capabilities.validate(caps)


@pytest.mark.parametrize("caps, field, reason", [
    ([], "process.capabilities", "must be an object, not a list"),
    ({"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_FOO"]},
     "process.capabilities.bounding[2]", 'unknown capability "CAP_FOO"'),
    ({"ambient": ["cap_kill"]}, "process.capabilities.ambient[0]",
     'unknown capability "cap_kill"'),
    ({"effective": ["KILL"]}, "process.capabilities.effective[0]", 'unknown capability "KILL"'),
    ({"permitted": "CAP_KILL"}, "process.capabilities.permitted",
     "must be a list of capability names, not a string"),
    ({"inheritable": [5]}, "process.capabilities.inheritable[0]",
     "must be a capability name, not a number"),
    ({"bonding": []}, "process.capabilities.bonding", "unknown capability set 'bonding'"),
])
def test_validate_names_the_field(caps: object, field: str, reason: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        capabilities.validate(caps)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: {reason}")


def test_validate_uses_the_given_prefix() -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        capabilities.validate({"bounding": ["CAP_X"]}, where="Process.Capabilities")
    assert info.value.field == "Process.Capabilities.bounding[0]"


class Recorder:
    """Stands in for the libc wrappers: records prctl/capset, reports a full bounding set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, bounding: int) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.bounding = bounding
        monkeypatch.setattr(libc, "prctl", self.prctl)
        monkeypatch.setattr(libc, "capset", self.capset)
        monkeypatch.setattr(capabilities, "_last_cap", 40)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        if option == libc.PR_CAPBSET_READ:
            return self.bounding >> arg2 & 1
        self.calls.append(("prctl", option, arg2, arg3))
        return 0

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self.calls.append(("capset", effective, permitted, inheritable))


def test_drop_bounding_drops_every_capability_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch, bounding=(1 << 41) - 1 & ~(1 << 24))  # no CAP_SYS_RESOURCE
    capabilities.drop_bounding({"bounding": ["CAP_KILL", "CAP_CHOWN"]})
    dropped = [c[2] for c in rec.calls if c[1] == libc.PR_CAPBSET_DROP]
    assert dropped == [c for c in range(41) if c not in (0, 5, 24)]
    assert all(c[1] == libc.PR_CAPBSET_DROP for c in rec.calls)


def test_drop_bounding_without_bounding_drops_all(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch, bounding=(1 << 41) - 1)
    capabilities.drop_bounding({"effective": ["CAP_KILL"]})
    assert [c[2] for c in rec.calls] == list(range(41))


def test_none_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch, bounding=(1 << 41) - 1)
    capabilities.drop_bounding(None)
    capabilities.apply(None)
    assert rec.calls == []


def test_apply_sets_the_sets_then_raises_only_raisable_ambient(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch, bounding=(1 << 41) - 1)
    capabilities.apply({
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        # CAP_KILL is not inheritable and CAP_CHOWN not permitted: the kernel refuses both.
        "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_CHOWN"],
    })
    assert rec.calls == [
        ("capset", 1 << 5 | 1 << 10, 1 << 5 | 1 << 10 | 1 << 13, 1 << 10 | 1 << 13),
        ("prctl", libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL, 0),
        ("prctl", libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, 10),
        ("prctl", libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, 13),
        ("prctl", libc.PR_SET_KEEPCAPS, 0, 0),
    ]


def test_apply_translates_a_refused_capset(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(effective: int, permitted: int, inheritable: int) -> None:
        raise OSError(1, "capset: Operation not permitted")

    monkeypatch.setattr(libc, "capset", refuse)
    with pytest.raises(errors.Internal) as info:
        capabilities.apply({"effective": ["CAP_SYS_ADMIN"]})
    assert "CAP_SYS_ADMIN" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_current_reads_the_status_masks() -> None:
    masks = capabilities.current()
    assert set(masks) == set(capabilities.SETS)
    effective, permitted, inheritable = libc.capget()
    assert (masks["effective"], masks["permitted"], masks["inheritable"]) == (
        effective, permitted, inheritable)


def test_current_of_a_missing_process_is_not_found() -> None:
    with pytest.raises(errors.NotFound):
        capabilities.current(2**22 + 1)  # above pid_max's ceiling
