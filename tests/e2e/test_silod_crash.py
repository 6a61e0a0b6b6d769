"""silod's crash safety: SIGKILL it at randomised points inside create, start, stop and delete,
restart it, and check that its database and the kernel agree.

Each round issues one operation through ``silo.client`` (in a thread) and kills silod after a
random delay in [0, T], T being that operation's measured duration, so most kills land while
silod is half-way through it. Then silod is started again (it reconciles before it serves) and
the invariants are checked:

- every system the API lists agrees with the kernel: Running/Paused ⇒ its pid lives, in its
  cgroup; Stopped ⇒ nothing lives in its cgroup, and it has an exit code;
- nothing is left on the host for ids the API does not list: monitors, mounts, cgroups,
  runtime state, bundles, scratch;
- no system is lost that the client was told had been created (and not deleted);
  an answer that arrived before the kill holds (started ⇒ not Created, stopped ⇒ Stopped,
  deleted ⇒ gone); an exit code, once recorded, never changes;
- a create whose answer never arrived may or may not have happened; if it did, the system is
  fully usable: it starts, stops and is deleted.

``SILO_CRASH_ROUNDS`` (default 100) and ``SILO_CRASH_SEED`` (default fixed, printed) make a run
reproducible in its choices (the kernel's timing still varies).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from silod_host import Silod, kernel_view

from silo.client import Client
from silo.errors import SiloError, Unavailable

pytestmark = pytest.mark.e2e

ROUNDS = int(os.environ.get("SILO_CRASH_ROUNDS", "100"))
SEED = int(os.environ.get("SILO_CRASH_SEED", "20261128"))
MAX_SYSTEMS = 6
SETTLE = 10.0  # seconds the host may take to agree after a restart (exits being recorded)


def config(args: list[str]) -> dict[str, Any]:
    return {"Owner": "silo-crash-test", "SchemaVersion": {"Major": 2, "Minor": 1},
            "Container": {"Storage": {"Image": "busybox"},
                          "Linux": {"Process": {"CommandArgs": args}}}}


def long_config() -> dict[str, Any]:
    return config(["sleep", "1000"])


def short_config(code: int) -> dict[str, Any]:
    return config(["sh", "-c", f"exit {code}"])


class Call:
    """One client call in a thread: its answer, or the error it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.answer: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.answer = self.fn()
            self.done = True
        except BaseException as err:  # reported by the test, not by the thread
            self.error = err

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "a client call hung after silod was killed"


class Model:
    """What the client has been told."""

    def __init__(self) -> None:
        self.must_exist: set[str] = set()         # created, answered, not deleted
        self.not_created: set[str] = set()        # start answered: must not be Created
        self.stopped: set[str] = set()            # stop answered: must be Stopped
        self.deleted: set[str] = set()            # delete answered: must be gone
        self.codes: dict[str, int] = {}           # exit codes once seen

    def forget(self, sid: str) -> None:
        for s in (self.must_exist, self.not_created, self.stopped):
            s.discard(sid)
        self.codes.pop(sid, None)


def settle(check: Callable[[], list[str]], timeout: float = SETTLE) -> list[str]:
    """Run ``check`` until it finds nothing or ``timeout`` passes; its last findings."""
    deadline = time.monotonic() + timeout
    while True:
        problems = check()
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.1)


def test_silod_survives_sigkill_inside_its_operations(silod: Silod) -> None:
    rng = random.Random(SEED)
    print(f"silod crash test: {ROUNDS} rounds, seed {SEED} (SILO_CRASH_SEED, SILO_CRASH_ROUNDS)")
    client = silod.client(timeout=30.0)
    model = Model()

    # -- each operation's typical duration, the window the kills are spread over --
    durations: dict[str, float] = {}
    for _ in range(2):
        t0 = time.monotonic()
        sid = client.create_system(long_config())["Id"]
        durations["create"] = time.monotonic() - t0
        t0 = time.monotonic()
        client.start(sid)
        durations["start"] = time.monotonic() - t0
        t0 = time.monotonic()
        client.shutdown(sid, timeout=0)
        durations["stop"] = time.monotonic() - t0
        t0 = time.monotonic()
        client.delete(sid)
        durations["delete"] = time.monotonic() - t0
    print("durations (ms): " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in durations.items()))

    def systems() -> dict[str, dict[str, Any]]:
        return {s["Id"]: s for s in client.list_systems()}

    def new_system(short: bool) -> str:
        cfg = short_config(rng.randint(1, 120)) if short else long_config()
        sid = client.create_system(cfg)["Id"]
        model.must_exist.add(sid)
        return sid

    def prepare(kind: str, now: dict[str, dict[str, Any]]) -> str | None:
        """A system in the state ``kind`` needs, made (without a crash) when there is none."""
        want = {"start": ("Created",), "stop": ("Running",),
                "delete": ("Created", "Stopped", "Running")}[kind]
        candidates = sorted(s for s, v in now.items() if v["State"] in want)
        if candidates:
            return rng.choice(candidates)
        sid = new_system(short=kind != "stop" and rng.random() < 0.4)
        if kind in ("stop", "delete"):
            client.start(sid)
            model.not_created.add(sid)
        return sid

    def operation(kind: str, sid: str | None) -> tuple[Callable[[], Any], str]:
        if kind == "create":
            short = rng.random() < 0.4
            cfg = short_config(rng.randint(1, 120)) if short else long_config()
            name = f"crash-{rng.getrandbits(40):010x}"
            return (lambda: client.create_system(cfg, name=name)), name
        assert sid is not None
        if kind == "start":
            return (lambda: client.start(sid)), sid
        if kind == "stop":
            if rng.random() < 0.5:
                return (lambda: client.shutdown(sid, timeout=0)), sid
            return (lambda: client.terminate(sid)), sid
        # a live system needs Force (a refusal would be an answer, not a crash)
        force = rng.random() < 0.5 or systems()[sid]["State"] != "Stopped"
        return (lambda: client.delete(sid, force=force)), sid

    in_flight = 0
    by_kind: dict[str, int] = {}
    usable_checked = 0
    for round_no in range(ROUNDS):
        now = systems()
        for extra in sorted(now)[:max(0, len(now) - MAX_SYSTEMS)]:
            client.delete(extra, force=True)
            model.forget(extra)
            model.deleted.add(extra)
            del now[extra]

        kind = rng.choice(["create", "start", "stop", "delete"])
        sid = None if kind == "create" else prepare(kind, systems())
        fn, target = operation(kind, sid)
        delay = rng.uniform(0.0, durations[kind])
        where = f"round {round_no}: {kind} {target} killed after {delay * 1000:.1f} ms"

        call = Call(fn)
        call.start()
        time.sleep(delay)
        silod.kill9()
        call.join()
        answered = call.done
        if not answered:
            in_flight += 1
            by_kind[kind] = by_kind.get(kind, 0) + 1
            assert isinstance(call.error, (Unavailable, SiloError)), f"{where}: {call.error!r}"
            if not isinstance(call.error, Unavailable):
                # silod answered with a refusal before it died: the call was wrong, not a crash
                pytest.fail(f"{where}: silod refused: {call.error!r}\n{silod.log()}")

        # what the answer (if it came) promised
        created: str | None = None
        if kind == "create" and answered:
            created = call.answer["Id"]
            model.must_exist.add(created)
        elif kind == "start" and answered:
            model.not_created.add(target)
        elif kind == "stop" and answered:
            model.stopped.add(target)
            model.not_created.add(target)
        elif kind == "delete":
            model.must_exist.discard(target)  # a delete without an answer may have happened
            if answered:
                model.forget(target)
                model.deleted.add(target)

        silod.start()

        def check() -> list[str]:
            problems = []
            try:
                listed = systems()
            except SiloError as err:
                return [f"list: {err}"]
            for s in listed.values():
                why = kernel_view(silod, s)
                if why:
                    problems.append(why)
            leaks = silod.leftovers(known=set(listed))
            if leaks:
                problems.append(f"left on the host: {leaks}")
            for sid_ in model.must_exist - set(listed):
                problems.append(f"{sid_} was created (answered) and is gone")
            for sid_ in model.deleted & set(listed):
                problems.append(f"{sid_} was deleted (answered) and is back")
            for sid_ in model.not_created & set(listed):
                if listed[sid_]["State"] == "Created":
                    problems.append(f"{sid_} was started (answered) and is Created")
            for sid_ in model.stopped & set(listed):
                if listed[sid_]["State"] != "Stopped":
                    problems.append(f"{sid_} was stopped (answered) and is "
                                    f"{listed[sid_]['State']}")
            for sid_, code in model.codes.items():
                if sid_ in listed and listed[sid_].get("ExitCode") != code:
                    problems.append(f"{sid_} exited with {code}, now says "
                                    f"{listed[sid_].get('ExitCode')}")
            return problems

        problems = settle(check)
        assert not problems, f"{where}:\n" + "\n".join(problems) + f"\n{silod.log()}"

        listed = systems()
        for s in listed.values():
            if s["State"] == "Stopped":
                model.codes.setdefault(s["Id"], s["ExitCode"])

        # a create whose answer never came: if it happened, the system must be fully usable
        if kind == "create" and not answered:
            maybe = [s for s in listed.values() if s["Name"] == target]
            if maybe:
                usable_checked += 1
                check_usable(client, silod, maybe[0]["Id"], where)
                model.forget(maybe[0]["Id"])

    print(f"{in_flight} of {ROUNDS} kills landed inside an operation ({by_kind}); "
          f"{usable_checked} half-answered creates checked usable")
    assert in_flight >= ROUNDS // 4, "too few kills landed inside an operation to mean much"


def check_usable(client: Client, silod: Silod, sid: str, where: str) -> None:
    state = client.get_system(sid)["State"]
    if state == "Created":
        state = client.start(sid)["State"]
        assert state in ("Running", "Stopped"), f"{where}: {sid} started into {state}"
    stopped = client.shutdown(sid, timeout=0)
    assert stopped["State"] == "Stopped" and "ExitCode" in stopped, f"{where}: {stopped}"
    client.delete(sid)
    assert sid not in {s["Id"] for s in client.list_systems()}
    problems = settle(lambda: [f"{sid} left {k}" for k, v in silod.leftovers().items()
                               if any(sid in str(x) for x in v)])
    assert not problems, f"{where}: {problems}"
