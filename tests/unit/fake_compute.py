"""An in-memory ComputeAPI for the HTTP layer's tests: no kernel, no processes.

It keeps the states of docs/api.md (Created, Running, Paused, Stopped), answers with documents
in the shapes of silo.schema.hcs, raises the silo.errors the real service raises for the same
mistakes, and changes nothing when it refuses. ``state()`` snapshots everything it holds, so a
test can prove that a refused request left it as it was.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

from silo.errors import AlreadyExists, InvalidState, NotFound, Timeout

CLOCK = "2024-05-01T12:00:00Z"


class FakeCompute:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._systems: dict[str, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._next = 1
        self._closed = False
        self.raise_on_get: dict[str, BaseException] = {}   # id → what get() raises
        self.streams_closed = 0                              # event iterators that ended

    # -- what tests look at ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy({"systems": self._systems, "events": self._events,
                                  "next": self._next})

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)
            self._lock.notify_all()

    # -- ComputeAPI ------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            system_id = body.get("Id") or f"cs{self._next}"
            name = body.get("Name") or system_id
            if system_id in self._systems:
                raise AlreadyExists(f"compute system {system_id} exists", op="compute::create",
                                    obj=system_id)
            if any(s["summary"]["Name"] == name for s in self._systems.values()):
                raise AlreadyExists(f"a compute system is named {name}", op="compute::create",
                                    obj=system_id)
            self._next += 1
            config = copy.deepcopy(body["Configuration"])
            summary = {
                "Id": system_id, "Name": name, "Owner": config.get("Owner", ""),
                "SystemType": "Container", "State": "Created", "Pid": 0, "Created": CLOCK,
                "Image": config["Container"].get("Storage", {}).get("Image", ""),
            }
            self._systems[system_id] = {"summary": summary, "config": config,
                                        "processes": {}, "logs": []}
            self._event("SystemCreated", system_id)
            return dict(summary)

    def list(self, owner: str | None = None, name: str | None = None,
             state: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for s in self._systems.values():
                summary = s["summary"]
                if owner is not None and summary["Owner"] != owner:
                    continue
                if name is not None and summary["Name"] != name:
                    continue
                if state is not None and summary["State"] != state:
                    continue
                out.append(dict(summary))
            return out

    def get(self, system_id: str) -> dict[str, Any]:
        if system_id in self.raise_on_get:
            raise self.raise_on_get[system_id]
        with self._lock:
            s = self._system(system_id)
            return {**s["summary"], "Configuration": copy.deepcopy(s["config"])}

    def start(self, system_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._system(system_id)
            self._need(s, "Created")
            self._set(s, State="Running", Pid=1000 + self._next, Started=CLOCK)
            self._next += 1
            s["logs"].append({"Time": CLOCK, "Stream": "stdout", "Line": "hello"})
            self._event("SystemStarted", system_id)
            return dict(s["summary"])

    def shutdown(self, system_id: str, timeout: float | None = None) -> dict[str, Any]:
        return self._stop(system_id, 0, "GracefulExit")

    def terminate(self, system_id: str) -> dict[str, Any]:
        return self._stop(system_id, 137, "ForcedExit")

    def pause(self, system_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._system(system_id)
            self._need(s, "Running")
            self._set(s, State="Paused")
            self._event("SystemPaused", system_id)
            return dict(s["summary"])

    def resume(self, system_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._system(system_id)
            self._need(s, "Paused")
            self._set(s, State="Running")
            self._event("SystemResumed", system_id)
            return dict(s["summary"])

    def properties(self, system_id: str, query: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            s = self._system(system_id)
            props = {**s["summary"], "Configuration": copy.deepcopy(s["config"])}
            kinds = set(query.get("PropertyTypes", ()))
            if "Statistics" in kinds or "Memory" in kinds:
                props["Statistics"] = {
                    "Memory": {"UsageBytes": 4096, "LimitBytes": None, "MaxUsageBytes": 8192},
                    "Processor": {"TotalRuntimeNs": 1000},
                    "Pids": {"Current": 1, "Limit": None},
                }
            if "ProcessList" in kinds:
                props["ProcessList"] = [
                    {"ProcessId": pid, "CommandLine": " ".join(p["args"])}
                    for pid, p in s["processes"].items() if not p["status"]["Exited"]
                ]
            return props

    def modify(self, system_id: str, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            s = self._system(system_id)
            if s["summary"]["State"] == "Stopped":
                raise InvalidState(f"{system_id} is Stopped", obj=system_id)
            container = s["config"]["Container"]
            if request["ResourcePath"] == "Container/Memory/SizeInMB":
                container["Memory"] = {"SizeInMB": request["Settings"]}
            else:
                container["Processor"] = dict(request["Settings"])
            return dict(s["summary"])

    def wait(self, system_id: str, timeout: float | None = None) -> dict[str, Any]:
        with self._lock:
            summary = self._system(system_id)["summary"]
            if summary["State"] != "Stopped":
                raise Timeout(f"{system_id} did not stop in time", obj=system_id)
            return {"ExitCode": summary["ExitCode"], "ExitType": summary["ExitType"]}

    def delete(self, system_id: str, force: bool = False) -> None:
        with self._lock:
            s = self._system(system_id)
            if s["summary"]["State"] in ("Running", "Paused") and not force:
                raise InvalidState(f"{system_id} runs; stop it or delete with Force",
                                   obj=system_id)
            del self._systems[system_id]
            self._event("SystemDeleted", system_id)

    def logs(self, system_id: str, follow: bool = False, tail: int | None = None,
             timestamps: bool = False) -> Iterator[dict[str, Any]]:
        with self._lock:
            lines = list(self._system(system_id)["logs"])
        if tail is not None:
            lines = lines[len(lines) - tail:] if tail else []
        return iter(lines)

    def create_process(self, system_id: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            s = self._system(system_id)
            self._need(s, "Running")
            pid = 2000 + self._next
            self._next += 1
            s["processes"][pid] = {"args": list(params["CommandArgs"]),
                                   "console": bool(params.get("EmulateConsole")),
                                   "status": {"ProcessId": pid, "Exited": False}}
            self._event("ProcessCreated", system_id, ProcessId=pid)
            return {"ProcessId": pid}

    def process_status(self, system_id: str, pid: int) -> dict[str, Any]:
        with self._lock:
            return dict(self._process(system_id, pid)["status"])

    def process_logs(self, system_id: str, pid: int, follow: bool = False,
                     tail: int | None = None) -> Iterator[dict[str, Any]]:
        with self._lock:
            self._process(system_id, pid)
        return iter([])

    def signal_process(self, system_id: str, pid: int, signal: int) -> None:
        with self._lock:
            p = self._process(system_id, pid)
            if p["status"]["Exited"]:
                raise InvalidState(f"process {pid} has exited", obj=system_id)
            if signal in (9, 15):
                p["status"] = {"ProcessId": pid, "Exited": True, "ExitCode": 128 + signal}
                self._event("ProcessExited", system_id, ProcessId=pid, ExitCode=128 + signal)

    def resize_console(self, system_id: str, pid: int, height: int, width: int) -> None:
        with self._lock:
            p = self._process(system_id, pid)
            if not p["console"]:
                raise InvalidState(f"process {pid} has no console", obj=system_id)

    def close_stdin(self, system_id: str, pid: int) -> None:
        with self._lock:
            self._process(system_id, pid)

    def wait_process(self, system_id: str, pid: int,
                     timeout: float | None = None) -> dict[str, Any]:
        with self._lock:
            status = self._process(system_id, pid)["status"]
            if not status["Exited"]:
                raise Timeout(f"process {pid} did not exit in time", obj=system_id)
            return dict(status)

    def events(self, since: float | None = None, types: set[str] | None = None,
               ids: set[str] | None = None) -> Iterator[dict[str, Any]]:
        # Past events first when Since is given, then the new ones as they come, until closed.
        with self._lock:
            seen = 0 if since is not None else len(self._events)
        return _Subscription(self, seen, types, ids)

    def system_info(self) -> dict[str, Any]:
        return {"Cgroup": "v2", "Overlayfs": True, "Nftables": True, "Kvm": False,
                "Runtime": "silo-runtime"}

    def reconcile(self) -> dict[str, list[str]]:
        return {"adopted": [], "removed": []}

    def adopt_network(self, network: Any) -> list[str]:
        self.network = network
        return []

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    # -- helpers (called with the lock held) -----------------------------------------------------

    def resolve(self, ref: str) -> str:
        # Names resolve to ids; anything else goes on to the operation, which decides.
        with self._lock:
            for sid, s in self._systems.items():
                if ref not in self._systems and s.get("Name") == ref:
                    return sid
        return ref

    def _system(self, system_id: str) -> dict[str, Any]:
        s = self._systems.get(system_id)
        if s is None:
            raise NotFound(f"compute system {system_id} not found", obj=system_id)
        return s

    def _process(self, system_id: str, pid: int) -> dict[str, Any]:
        p = self._system(system_id)["processes"].get(pid)
        if p is None:
            raise NotFound(f"process {pid} not found in {system_id}", obj=system_id)
        return p

    @staticmethod
    def _need(s: dict[str, Any], state: str) -> None:
        now = s["summary"]["State"]
        if now != state:
            raise InvalidState(f"{s['summary']['Id']} is {now}, not {state}",
                               obj=s["summary"]["Id"])

    def _set(self, s: dict[str, Any], **fields: Any) -> None:
        s["summary"].update(fields)

    def _stop(self, system_id: str, code: int, how: str) -> dict[str, Any]:
        with self._lock:
            s = self._system(system_id)
            if s["summary"]["State"] not in ("Running", "Paused"):
                raise InvalidState(f"{system_id} is {s['summary']['State']}, not running",
                                   obj=system_id)
            self._set(s, State="Stopped", Pid=0, ExitCode=code, ExitType=how)
            for p in s["processes"].values():
                if not p["status"]["Exited"]:
                    p["status"] = {"ProcessId": p["status"]["ProcessId"], "Exited": True,
                                   "ExitCode": code}
            self._event("SystemExited", system_id, ExitCode=code, ExitType=how)
            return dict(s["summary"])

    def _event(self, kind: str, system_id: str, **more: Any) -> None:
        self._events.append({"Time": CLOCK, "Type": kind, "Id": system_id, **more})
        self._lock.notify_all()


class _Subscription(Iterator[dict[str, Any]]):
    """Like silod's event subscriptions: ``get(timeout)`` comes up for air with None;
    StopIteration once closed (by close() from any thread, or the service's close())."""

    def __init__(self, fake: FakeCompute, seen: int, types: set[str] | None,
                 ids: set[str] | None) -> None:
        self._fake = fake
        self._seen = seen
        self._types = types
        self._ids = ids
        self._closed = False

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        fake = self._fake
        with fake._lock:
            while True:
                if self._closed or fake._closed:
                    self._finish()
                    raise StopIteration
                while self._seen < len(fake._events):
                    event = fake._events[self._seen]
                    self._seen += 1
                    if self._types and event["Type"] not in self._types:
                        continue
                    if self._ids and event["Id"] not in self._ids:
                        continue
                    return event
                if not fake._lock.wait(timeout):
                    return None

    def __next__(self) -> dict[str, Any]:
        event = self.get(None)
        assert event is not None
        return event

    def close(self) -> None:
        with self._fake._lock:
            self._finish()
            self._fake._lock.notify_all()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._fake.streams_closed += 1
