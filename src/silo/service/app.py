"""The routes of silod's compute API (docs/api.md), bound to a :class:`ComputeAPI`.

Owns the route table (:data:`OPERATIONS`) and the checks at the boundary: path and query
parameters parsed with their names in the errors, bodies validated with
:func:`silo.schema.hcs.validate` before the service sees them. A rejected request never reaches
the service, so it changes nothing. The service's errors pass through untouched;
:mod:`silo.service.http` turns them into statuses.

Imports the HTTP layer, the OpenAPI builder and the schemas; the compute service only through
its interface.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from silo.errors import InvalidArgument, invalid
from silo.schema import hcs
from silo.service import images_api, network_api, openapi
from silo.service.http import Request, Response, Router, Stream
from silo.service.interface import ComputeAPI
from silo.service.openapi import Operation, Param

_BASE = "/v1/compute-systems"
_SYSTEM = _BASE + "/{id}"
_PROCESS = _SYSTEM + "/processes/{pid}"
_MAX_PID = 2**31 - 1


@dataclass(frozen=True)
class Call:
    """A request as the operations see it: checked parameters and a validated body."""

    id: str
    pid: int
    query: Mapping[str, Any]
    body: dict[str, Any]
    ref: str = ""   # an image reference ({ref} of the image routes)


# ---------------------------------------------------------------------------------------------
# What each operation does


def _create(api: ComputeAPI, c: Call) -> Response:
    return Response(201, api.create(c.body))


def _list(api: ComputeAPI, c: Call) -> Response:
    q = c.query
    return Response(200, api.list(owner=q.get("Owner"), name=q.get("Name"),
                                  state=q.get("State")))


def _get(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.get(c.id))


def _start(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.start(c.id))


def _shutdown(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.shutdown(c.id, timeout=c.body.get("TimeoutSeconds")))


def _terminate(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.terminate(c.id))


def _pause(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.pause(c.id))


def _resume(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.resume(c.id))


def _properties(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.properties(c.id, c.body))


def _modify(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.modify(c.id, c.body))


def _wait(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.wait(c.id, timeout=c.body.get("TimeoutSeconds")))


def _delete(api: ComputeAPI, c: Call) -> Response:
    api.delete(c.id, force=c.query.get("Force", False))
    return Response(204)


def _logs(api: ComputeAPI, c: Call) -> Stream:
    q = c.query
    return Stream(api.logs(c.id, follow=q.get("Follow", False), tail=q.get("Tail"),
                           timestamps=q.get("Timestamps", False)))


def _process_logs(api: ComputeAPI, c: Call) -> Stream:
    q = c.query
    return Stream(api.process_logs(c.id, c.pid, follow=q.get("Follow", False),
                                   tail=q.get("Tail")))


def _create_process(api: ComputeAPI, c: Call) -> Response:
    return Response(201, api.create_process(c.id, c.body))


def _process_status(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.process_status(c.id, c.pid))


def _signal(api: ComputeAPI, c: Call) -> Response:
    api.signal_process(c.id, c.pid, hcs.signal_number(c.body["Signal"], "Signal"))
    return Response(204)


def _resize(api: ComputeAPI, c: Call) -> Response:
    api.resize_console(c.id, c.pid, c.body["Height"], c.body["Width"])
    return Response(204)


def _close_stdin(api: ComputeAPI, c: Call) -> Response:
    api.close_stdin(c.id, c.pid)
    return Response(204)


def _wait_process(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.wait_process(c.id, c.pid, timeout=c.body.get("TimeoutSeconds")))


def _events(api: ComputeAPI, c: Call) -> Stream:
    q = c.query
    return Stream(api.events(since=q.get("Since"), types=q.get("Type"), ids=q.get("Id")))


def _system_info(api: ComputeAPI, c: Call) -> Response:
    return Response(200, api.system_info())


def _openapi(api: ComputeAPI, c: Call) -> Response:
    return Response(200, openapi_document())


# ---------------------------------------------------------------------------------------------
# The route table

_SYSTEM_ERRORS = (400, 404, 409, 500, 501, 503, 504)
_TAG_SYSTEMS = ("compute-systems",)
_TAG_PROCESSES = ("processes",)

OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", _BASE, "createComputeSystem", "Create a compute system (not started)",
              _create, status=201, request="CreateRequest", body_required=True,
              response="Summary", errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS),
    Operation("GET", _BASE, "listComputeSystems", "List compute systems", _list,
              response="Summary", many=True, tags=_TAG_SYSTEMS, query=(
                  Param("Owner", "string", "Only those of this Owner"),
                  Param("Name", "string", "Only the one of this name"),
                  Param("State", "string", "Only those in this state", enum=tuple(hcs.STATES)),
              )),
    Operation("GET", _SYSTEM, "getComputeSystem", "A compute system's properties", _get,
              response="Properties", errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/start", "startComputeSystem", "Start its first process",
              _start, response="Summary", errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/shutdown", "shutdownComputeSystem",
              "Stop it: the stop signal, then SIGKILL after TimeoutSeconds", _shutdown,
              request="ShutdownRequest", response="Summary", errors=_SYSTEM_ERRORS,
              tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/terminate", "terminateComputeSystem", "Kill it (SIGKILL)",
              _terminate, response="Summary", errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/pause", "pauseComputeSystem", "Freeze its processes", _pause,
              response="Summary", errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/resume", "resumeComputeSystem", "Thaw its processes",
              _resume, response="Summary", errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/properties", "queryComputeSystemProperties",
              "Its properties, with what the PropertyQuery asks for", _properties,
              request="PropertyQuery", response="Properties", errors=_SYSTEM_ERRORS,
              tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/modify", "modifyComputeSystem",
              "Change its memory or processor limits while it runs", _modify,
              request="ModifySettingRequest", body_required=True, response="Summary",
              errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS),
    Operation("POST", _SYSTEM + "/wait", "waitComputeSystem", "Wait until it stops", _wait,
              request="WaitRequest", response="ExitStatus", errors=_SYSTEM_ERRORS,
              tags=_TAG_SYSTEMS),
    Operation("DELETE", _SYSTEM, "deleteComputeSystem",
              "Delete it (Force: even when it runs)", _delete, status=204,
              errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS, query=(
                  Param("Force", "boolean", "Kill it first if it runs"),
              )),
    Operation("GET", _SYSTEM + "/logs", "getComputeSystemLogs",
              "Its first process's output; with Follow, streamed as it comes", _logs,
              response="LogLine", stream=True, errors=_SYSTEM_ERRORS, tags=_TAG_SYSTEMS,
              query=(
                  Param("Follow", "boolean", "Keep streaming until the system stops"),
                  Param("Tail", "integer", "Only the last N lines", minimum=0),
                  Param("Timestamps", "boolean", "Fill in each line's Time"),
              )),
    Operation("POST", _SYSTEM + "/processes", "createProcess",
              "Run another process in the compute system", _create_process, status=201,
              request="ProcessParameters", body_required=True, response="ProcessInfo",
              errors=_SYSTEM_ERRORS, tags=_TAG_PROCESSES),
    Operation("GET", _PROCESS, "getProcess", "A process's status", _process_status,
              response="ProcessStatus", errors=_SYSTEM_ERRORS, tags=_TAG_PROCESSES),
    Operation("GET", _PROCESS + "/logs", "getProcessLogs",
              "A process's output from its first byte; with Follow, streamed until it exits",
              _process_logs, response="LogLine", stream=True, errors=_SYSTEM_ERRORS,
              tags=_TAG_PROCESSES, query=(
                  Param("Follow", "boolean", "Keep streaming until the process exits"),
                  Param("Tail", "integer", "Only the last N lines", minimum=0),
              )),
    Operation("POST", _PROCESS + "/signal", "signalProcess", "Send a process a signal",
              _signal, status=204, request="SignalRequest", body_required=True,
              errors=_SYSTEM_ERRORS, tags=_TAG_PROCESSES),
    Operation("POST", _PROCESS + "/resize", "resizeProcessConsole",
              "Resize a process's terminal", _resize, status=204, request="ResizeRequest",
              body_required=True, errors=_SYSTEM_ERRORS, tags=_TAG_PROCESSES),
    Operation("POST", _PROCESS + "/close-stdin", "closeProcessStdin",
              "Close a process's stdin", _close_stdin, status=204, errors=_SYSTEM_ERRORS,
              tags=_TAG_PROCESSES),
    Operation("POST", _PROCESS + "/wait", "waitProcess", "Wait until a process exits",
              _wait_process, request="WaitRequest", response="ProcessStatus",
              errors=_SYSTEM_ERRORS, tags=_TAG_PROCESSES),
    Operation("GET", "/v1/events", "streamEvents",
              "Events as they happen (after those since Since), until the client leaves",
              _events, response="Event", stream=True, tags=("events",), query=(
                  Param("Since", "time", "Replay the events after this time first"),
                  Param("Type", "string", "Only these event types",
                        enum=tuple(hcs.EVENT_TYPES), repeated=True),
                  Param("Id", "string", "Only the events of these compute systems",
                        repeated=True),
              )),
    Operation("GET", "/v1/system/info", "getSystemInfo",
              "Host facts: cgroup layout, overlayfs, nftables, KVM, the runtime",
              _system_info, response_schema={"type": "object"}, errors=(500, 503),
              tags=("system",)),
    Operation("GET", "/v1/openapi.json", "getOpenAPI", "This API's OpenAPI document",
              _openapi, response_schema={"type": "object"}, errors=(500,), tags=("system",)),
    *images_api.OPERATIONS,
    *network_api.OPERATIONS,
)


@functools.cache
def openapi_document() -> dict[str, Any]:
    return openapi.build(OPERATIONS)


def make_router(api: ComputeAPI) -> Router:
    """A router that serves every operation of :data:`OPERATIONS` with ``api``."""
    router = Router()
    for op in OPERATIONS:
        serve = network_api.serve if network_api.is_network_operation(op) else _serve
        router.add(op.method, op.path, functools.partial(serve, api, op))
    return router


def _serve(api: ComputeAPI, op: Operation, request: Request) -> Response | Stream:
    system_id = request.params.get("id", "")
    pid = _pid(request.params["pid"]) if "pid" in request.params else 0
    query = parse_query(op, request.query)
    body = _body(op, request)
    if system_id:
        system_id = api.resolve(system_id)  # an id, a name, or a unique id prefix
    return op.call(api, Call(id=system_id, pid=pid, query=query, body=body,
                             ref=request.params.get("ref", "")))


# ---------------------------------------------------------------------------------------------
# Parameters and bodies


def _pid(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _MAX_PID:
        raise invalid("pid", f"must be a process id (1..{_MAX_PID}), got {text!r}")
    return int(text)


def parse_query(op: Operation, query: Mapping[str, list[str]]) -> dict[str, Any]:
    """The operation's query parameters, typed; InvalidArgument naming the parameter."""
    known = {p.name: p for p in op.query}
    out: dict[str, Any] = {}
    for name, values in query.items():
        p = known.get(name)
        if p is None:
            if not name:
                raise invalid("query", "a parameter has no name")
            if known:
                raise invalid(name, "unknown query parameter (known: "
                              f"{', '.join(sorted(known))})")
            raise invalid(name, "unknown query parameter (this path takes none)")
        if p.repeated:
            items = {v.strip() for value in values for v in value.split(",") if v.strip()}
            for item in items:
                _one(p, item)
            out[name] = items or None
            continue
        if len(values) > 1:
            raise invalid(name, "given more than once")
        out[name] = _one(p, values[0])
    return out


_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def _one(p: Param, text: str) -> Any:
    if p.kind == "boolean":
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise invalid(p.name, f"must be true or false, got {text!r}")
    if p.kind == "integer":
        t = text.strip()
        digits = t[1:] if t.startswith("-") else t
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            raise invalid(p.name, f"must be an integer, got {text!r}")
        value = int(t)
        if p.minimum is not None and value < p.minimum:
            raise invalid(p.name, f"must be >= {p.minimum}, got {value}")
        return value
    if p.kind == "time":
        return _time(p.name, text)
    if p.enum and text not in p.enum:
        raise invalid(p.name, f"must be one of {', '.join(p.enum)}, got {text!r}")
    return text


def _time(name: str, text: str) -> float:
    """RFC 3339 (``2024-05-01T12:00:00Z``) or Unix seconds, as Unix seconds."""
    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        pass
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise invalid(name, f"must be a time, got {text!r}")
        return value
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        raise invalid(name, f"must be an RFC 3339 time or Unix seconds, got {text!r}") from None
    if when.tzinfo is None:
        raise invalid(name, f"must say its time zone (Z or +hh:mm), got {text!r}")
    return when.timestamp()


def _body(op: Operation, request: Request) -> dict[str, Any]:
    """The body validated against the operation's schema; ``{}`` for an empty optional one."""
    return json_body(op, request, hcs.validate, required=op.body_required)


def json_body(op: Operation, request: Request,
              validate: Callable[[str, dict[str, Any]], dict[str, Any]], *,
              required: bool) -> dict[str, Any]:
    """The body of a request to ``op``: a JSON object that ``validate(op.request, body)``
    accepts, as it returns it; ``{}`` when ``op`` takes none, or when it is absent and not
    ``required``. The compute, image and network operations all read their bodies here.
    Errors: InvalidArgument naming ``Content-Type``, ``body`` or a field in the body."""
    ctype = request.headers.get("Content-Type")
    if request.body.strip() and ctype is not None:
        media = ctype.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise invalid("Content-Type", f"must be application/json, got {ctype!r}")
    doc = request.json()
    if op.request is None:
        if doc is None or doc == {}:
            return {}
        raise invalid("body", f"{op.method} {op.path} takes no body")
    if doc is None and request.body.strip():   # a literal null is not an absent body
        raise invalid("body", f"must be a JSON object (a {op.request} document), got null")
    if doc is None:
        if required:
            raise invalid("body", f"required: a {op.request} document")
        doc = {}
    if not isinstance(doc, dict):
        raise invalid("body", f"must be a JSON object (a {op.request} document)")
    try:
        return validate(op.request, doc)
    except InvalidArgument as err:
        if err.field:
            raise
        # Every refusal names a field; one the validator could not name (a key "" at the
        # top) is the body's.
        raise invalid("body", err.message.lstrip(": ")) from err
