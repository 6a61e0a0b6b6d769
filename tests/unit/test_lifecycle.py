"""silo.compute.lifecycle: every verb against every state, written out here as runc behaves
(a table kept apart from the module's, so a change to either shows up)."""

from __future__ import annotations

import pytest

from silo.compute import lifecycle
from silo.errors import InvalidState

pytestmark = pytest.mark.unit

STATES = ("creating", "created", "running", "paused", "stopped")

EXPECTED: dict[str, set[str]] = {
    "start": {"created"},
    "pause": {"running"},
    "resume": {"paused"},
    "kill": {"created", "running", "paused"},
    "exec": {"created", "running"},  # runc refuses stopped and (without a flag) paused
    "update": {"created", "running", "paused"},
    "delete": {"created", "stopped"},  # a running or paused one needs --force (a kill first)
    "ps": {"created", "running", "paused"},
    "stats": {"created", "running", "paused"},
}

CASES = [(verb, state) for verb in EXPECTED for state in STATES]


def test_state_names() -> None:
    assert (lifecycle.CREATING, lifecycle.CREATED, lifecycle.RUNNING, lifecycle.PAUSED,
            lifecycle.STOPPED) == STATES


def test_table_covers_exactly_these_verbs() -> None:
    assert set(lifecycle.ALLOWED) == set(EXPECTED)


@pytest.mark.parametrize(("verb", "state"), CASES)
def test_can(verb: str, state: str) -> None:
    assert lifecycle.can(verb, state) is (state in EXPECTED[verb])


@pytest.mark.parametrize(("verb", "state"), CASES)
def test_require(verb: str, state: str) -> None:
    if state in EXPECTED[verb]:
        lifecycle.require(verb, state, "c1")
        return
    with pytest.raises(InvalidState) as exc:
        lifecycle.require(verb, state, "c1")
    err = exc.value
    assert err.op == f"compute::{verb}"
    assert err.obj == "c1"
    msg = str(err)
    assert verb in msg
    assert "'c1'" in msg
    assert f"it is {state}" in msg
    for allowed in EXPECTED[verb]:
        assert allowed in msg.split("(needs ", 1)[1]


def test_require_message() -> None:
    with pytest.raises(InvalidState) as exc:
        lifecycle.require("delete", "running", "web-1")
    assert str(exc.value) == \
        "cannot delete container 'web-1': it is running (needs created or stopped)"
    assert exc.value.describe() == f"compute::delete web-1: {exc.value}"
    assert exc.value.to_wire()["Code"] == "invalid_state"


@pytest.mark.parametrize("state", STATES)
def test_named_predicates(state: str) -> None:
    assert lifecycle.can_start(state) is (state == "created")
    assert lifecycle.can_pause(state) is (state == "running")
    assert lifecycle.can_resume(state) is (state == "paused")


@pytest.mark.parametrize(("verb", "state"), [("frobnicate", "running"), ("start", "unknown"),
                                             ("", "")])
def test_unknown_verbs_and_states_are_refused(verb: str, state: str) -> None:
    assert not lifecycle.can(verb, state)
    with pytest.raises(InvalidState):
        lifecycle.require(verb, state, "c1")
