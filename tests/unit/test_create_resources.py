"""The resources a container's cgroup gets (silo.compute.create.effective_resources), and the
value parsers of ``update`` (sizes) and ``events`` (the interval)."""

from __future__ import annotations

import copy

import pytest

from silo.compute.create import effective_resources
from silo.errors import InvalidArgument
from silo.runtime.verbs.events import duration
from silo.runtime.verbs.update import size

pytestmark = pytest.mark.unit


def allow(typ: str, major: int | None, minor: int | None, access: str) -> dict[str, object]:
    rule: dict[str, object] = {"allow": True, "type": typ, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


# runc's AllowedDevices: mknod of anything, then null, zero, full, random, urandom, tty,
# console, ptmx, the pts devices and /dev/net/tun.
DEFAULTS = [
    allow("c", None, None, "m"),
    allow("b", None, None, "m"),
    *(allow("c", major, minor, "rwm") for major, minor in
      ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200))),
    allow("c", 136, None, "rwm"),
]

LINUX = {
    "resources": {
        "memory": {"limit": 1 << 30},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}],
    },
    "devices": [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
        {"path": "/dev/unbuffered", "type": "u", "major": 4, "minor": 64},
        {"path": "/dev/fifo", "type": "p"},
    ],
}


def test_spec_rules_then_defaults_then_listed_devices() -> None:
    got = effective_resources(copy.deepcopy(LINUX))
    assert got["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
        *DEFAULTS,
        allow("c", 10, 229, "rwm"),
        allow("b", 8, 0, "rwm"),
        allow("c", 4, 64, "rwm"),  # "u" (unbuffered) is a character device to the cgroup
    ]


def test_other_resources_are_kept() -> None:
    got = effective_resources(copy.deepcopy(LINUX))
    assert got["memory"] == {"limit": 1 << 30}
    assert set(got) == {"memory", "devices"}


def test_the_input_is_not_mutated() -> None:
    linux = copy.deepcopy(LINUX)
    got = effective_resources(linux)
    assert linux == LINUX
    assert got is not linux["resources"]
    assert got["devices"] is not linux["resources"]["devices"]


@pytest.mark.parametrize("linux", [{}, {"resources": None}, {"resources": {}},
                                   {"resources": {"devices": None}}, {"devices": None},
                                   {"devices": [{"path": "/dev/p", "type": "p"}]}])
def test_without_rules_or_devices_only_the_defaults(linux: dict[str, object]) -> None:
    assert effective_resources(linux) == {"devices": DEFAULTS}


def test_calls_do_not_accumulate() -> None:
    first = effective_resources(copy.deepcopy(LINUX))
    second = effective_resources(copy.deepcopy(LINUX))
    assert first == second
    assert effective_resources({}) == {"devices": DEFAULTS}


@pytest.mark.parametrize(("text", "value"), [
    ("512", 512),
    ("0", 0),
    ("10k", 10 << 10),
    ("10kb", 10 << 10),
    ("10KB", 10 << 10),
    ("64m", 64 << 20),
    ("64M", 64 << 20),
    ("64mb", 64 << 20),
    ("1g", 1 << 30),
    ("1G", 1 << 30),
    ("2t", 2 << 40),
    (" 2k ", 2 << 10),
    ("512b", 512),
])
def test_size(text: str, value: int) -> None:
    assert size(text, "memory") == value


@pytest.mark.parametrize("text", ["", "abc", "m", "b", "10x", "0x10", "1e3"])
def test_bad_size_names_the_flag(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        size(text, "memory-swap")
    assert exc.value.field == "memory-swap"
    assert str(exc.value) == f"--memory-swap: {text!r} is not a size"


@pytest.mark.parametrize(("text", "seconds"), [
    ("5s", 5.0),
    ("500ms", 0.5),
    ("1m", 60.0),
    ("1.5s", 1.5),
    ("2m", 120.0),
    ("10ms", 0.01),
])
def test_duration(text: str, seconds: float) -> None:
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "ms", "5h", "abc", "5sec", "five s"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        duration(text)
    assert exc.value.field == "interval"
    assert repr(text) in str(exc.value)


@pytest.mark.parametrize("text", ["0s", "-1s", "-500ms"])
def test_interval_must_be_positive(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        duration(text)
    assert exc.value.field == "interval"
