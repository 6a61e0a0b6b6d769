"""The lifecycle of a compute system: created → running ⇄ paused → stopped.

Every verb asks :func:`require` first; an illegal transition is refused with
:class:`~silo.errors.InvalidState` naming the verb, the object and the state it is in.
"""

from __future__ import annotations

from silo.errors import InvalidState

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"

# verb -> states it may be applied in
ALLOWED: dict[str, tuple[str, ...]] = {
    "start": (CREATED,),
    "pause": (RUNNING,),
    "resume": (PAUSED,),
    "kill": (CREATED, RUNNING, PAUSED),
    "exec": (CREATED, RUNNING),
    "update": (CREATED, RUNNING, PAUSED),
    "delete": (CREATED, STOPPED),
    "ps": (CREATED, RUNNING, PAUSED),
    "stats": (CREATED, RUNNING, PAUSED),
}


def can(verb: str, state: str) -> bool:
    return state in ALLOWED.get(verb, ())


def can_start(state: str) -> bool:
    return can("start", state)


def can_pause(state: str) -> bool:
    return can("pause", state)


def can_resume(state: str) -> bool:
    return can("resume", state)


def require(verb: str, state: str, obj: str) -> None:
    if not can(verb, state):
        allowed = " or ".join(ALLOWED.get(verb, ()))
        raise InvalidState(
            f"cannot {verb} container {obj!r}: it is {state} (needs {allowed})",
            op=f"compute::{verb}", obj=obj,
        )
