"""silod's OpenAPI 3.1 document, built from the route table and the HCS schemas.

Owns how a route is declared (:class:`Operation`, :class:`Param`: method, path, the request and
response schema names, statuses, query parameters) and how those declarations become the
document. The route table itself is :data:`silo.service.app.OPERATIONS`; the schemas are
:func:`silo.schema.hcs.openapi_components`, the very ones requests are validated with.

``python -m silo.service.openapi > docs/openapi.json`` (or ``scripts/openapi``) writes the
committed copy; a unit test fails when it differs from what this module builds.

Imports :mod:`silo.schema.hcs` and the standard library; never :mod:`silo.service.app` at import
time (app imports this module).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from silo.schema import hcs

if TYPE_CHECKING:
    from silo.service.http import Response, Stream

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
JSON = "application/json"
JSON_LINES = "application/x-ndjson"

# The error answers, shared by the operations as components/responses (name, description).
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("InvalidArgument", "A parameter or the body is wrong; Field names it "
                             "(Code invalid_argument)"),
    404: ("NotFound", "No such compute system, process or image (Code not_found)"),
    409: ("Conflict", "It exists already, or its state forbids the verb "
                      "(Code already_exists, invalid_state)"),
    413: ("BodyTooLarge", "The body is larger than silod accepts (Code invalid_argument)"),
    500: ("Internal", "silod failed; its log says why (Code internal)"),
    501: ("NotSupported", "silo does not do this (Code not_supported)"),
    503: ("Unavailable", "Something silod needs cannot be reached now (Code unavailable)"),
    504: ("Timeout", "The operation did not finish in time (Code timeout)"),
}
_SUCCESS = {200: "OK", 201: "Created", 204: "Done; no body"}


@dataclass(frozen=True)
class Param:
    """A query parameter. ``kind``: "string", "integer", "boolean" or "time" (RFC 3339 or Unix
    seconds). ``repeated``: given several times or comma-separated, parsed as a set."""

    name: str
    kind: str
    doc: str
    enum: tuple[str, ...] = ()
    repeated: bool = False
    minimum: int | None = None


@dataclass(frozen=True)
class Operation:
    """One route of the API, as both the router and the OpenAPI document see it.

    ``request``: the schema name the body is validated with (None: no body);
    ``body_required``: an empty body is refused rather than read as ``{}``.
    ``response``: the schema name of a success answer (None: no body, or ``response_schema``);
    ``many``: the answer is a JSON array of it; ``stream``: JSON lines of it, chunked.
    ``errors``: the error statuses it may answer with (each with an ``Error`` body).
    ``call``: what it does, given the compute service and the parsed request.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    call: Callable[[Any, Any], Response | Stream]
    status: int = 200
    request: str | None = None
    body_required: bool = False
    response: str | None = None
    response_schema: dict[str, Any] | None = None
    many: bool = False
    stream: bool = False
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 500, 503)
    tags: tuple[str, ...] = field(default=())

    @property
    def path_params(self) -> list[str]:
        return [s[1:-1] for s in self.path.split("/") if s.startswith("{") and s.endswith("}")]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


PATH_PARAMS: dict[str, dict[str, Any]] = {
    "id": {"name": "id", "in": "path", "required": True,
           "description": "The compute system's id",
           "schema": {"type": "string", "minLength": 1}},
    "ref": {"name": "ref", "in": "path", "required": True,
            "description": "An image: name[:tag], name@digest, id or unique id prefix "
                           "(percent-encoded: '/' is %2F)",
            "schema": {"type": "string", "minLength": 1}},
    "pid": {"name": "pid", "in": "path", "required": True,
            "description": "A process id (as the container's host sees it)",
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
}


def param_schema(p: Param) -> dict[str, Any]:
    one: dict[str, Any]
    if p.kind == "integer":
        one = {"type": "integer"}
        if p.minimum is not None:
            one["minimum"] = p.minimum
    elif p.kind == "boolean":
        one = {"type": "boolean"}
    elif p.kind == "time":
        one = {"type": "string", "description": "RFC 3339 time or Unix seconds"}
    else:
        one = {"type": "string"}
    if p.enum:
        one["enum"] = list(p.enum)
    if p.repeated:
        return {"type": "array", "items": one}
    return one


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.tags:
        doc["tags"] = list(op.tags)
    params: list[dict[str, Any]] = [PATH_PARAMS[name] for name in op.path_params]
    for p in op.query:
        entry: dict[str, Any] = {"name": p.name, "in": "query", "required": False,
                                 "description": p.doc, "schema": param_schema(p)}
        if p.repeated:
            entry["style"] = "form"
            entry["explode"] = True
        params.append(entry)
    if params:
        doc["parameters"] = params
    if op.request is not None:
        doc["requestBody"] = {"required": op.body_required,
                              "content": {JSON: {"schema": _ref(op.request)}}}
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": _SUCCESS.get(op.status, "OK")}
    schema: dict[str, Any] | None = None
    if op.response is not None:
        schema = _ref(op.response)
    elif op.response_schema is not None:
        schema = op.response_schema
    if schema is not None:
        if op.many:
            schema = {"type": "array", "items": schema}
        media = JSON_LINES if op.stream else JSON
        if op.stream:
            success["description"] += ": JSON lines, one document each, chunked"
        success["content"] = {media: {"schema": schema}}
    responses[str(op.status)] = success
    errors = set(op.errors)
    if op.request is not None:
        errors.add(413)
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    doc["responses"] = responses
    return doc


def build(operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` with the HCS schemas as components."""
    components = hcs.openapi_components()
    components["responses"] = {
        name: {"description": text, "content": {JSON: {"schema": _ref("Error")}}}
        for name, text in ERROR_RESPONSES.values()
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "silod compute API",
            "version": API_VERSION,
            "description": "HCS compute systems and processes on Linux, as JSON over HTTP/1.1 "
                           "on silod's unix socket. Errors carry a Code that maps one-to-one "
                           "to the HTTP status (docs/api.md).",
        },
        "paths": paths,
        "components": components,
    }


def dumps(document: dict[str, Any]) -> str:
    """The committed form of the document: indented, keys in build order, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from silo.service.app import OPERATIONS

    sys.stdout.write(dumps(build(OPERATIONS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
