"""The routes of silod's network API (docs/api.md, Networks), joined into
:mod:`silo.service.app`'s route table.

HCN v2 over HTTP: ``/v1/networks``, ``/v1/endpoints`` and ``/v1/namespaces``, each with create
(POST), query (GET, ``filter`` a JSON object of field equality as HCN's HostComputeQuery),
get and delete by ID or Name, and ``/modify`` (policies, DNS; a namespace's modify attaches or
detaches an endpoint); ``/v1/endpoints/{id}/stats`` (counters) and ``/v1/networks/{id}/rules``
(the compiled layers). Bodies are checked with :mod:`silo.schema.hns` here, before the service
is reached, so a bad one is a 400 naming its field even when silod serves no network.

The service is :class:`~silo.network.hns.HostNetworkService`, reached as the served object's
``network`` (503 when there is none).

Imports the HTTP layer's answer types, the OpenAPI declarations and the HNS schemas; app's
parameter parsing only when serving (app imports this module).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from silo.errors import Unavailable, invalid
from silo.schema import hns
from silo.service.http import Request, Response, Stream
from silo.service.openapi import Operation, Param

if TYPE_CHECKING:
    from silo.network.hns import HostNetworkService

PATHS = {"network": "/v1/networks", "endpoint": "/v1/endpoints",
         "namespace": "/v1/namespaces"}
PREFIXES = tuple(PATHS.values())
_TITLE = {"network": "Network", "endpoint": "Endpoint", "namespace": "Namespace"}
_ERRORS = (400, 404, 409, 500, 501, 503)


@dataclass(frozen=True)
class NetCall:
    kind: str
    id: str
    query: dict[str, Any]
    body: dict[str, Any]


def network_service(api: Any) -> HostNetworkService:
    service: HostNetworkService | None = getattr(api, "network", None)
    if service is None:
        raise Unavailable("this silod serves no network service", op="hns::serve")
    return service


# ---------------------------------------------------------------------------------------------
# What each operation does


def _create(api: Any, c: NetCall) -> Response:
    return Response(201, network_service(api).create(c.kind, c.body))


def _query(api: Any, c: NetCall) -> Response:
    filter = dict(c.query.get("filter") or {})
    for key in ("Name", "HostComputeNetwork"):
        if c.query.get(key) is not None:
            filter[key] = c.query[key]
    return Response(200, network_service(api).query(c.kind, filter))


def _get(api: Any, c: NetCall) -> Response:
    return Response(200, network_service(api).get(c.kind, c.id))


def _modify(api: Any, c: NetCall) -> Response:
    return Response(200, network_service(api).modify(c.kind, c.id, c.body))


def _delete(api: Any, c: NetCall) -> Response:
    network_service(api).delete(c.kind, c.id, force=bool(c.query.get("force", False)))
    return Response(204)


def _stats(api: Any, c: NetCall) -> Response:
    return Response(200, network_service(api).endpoint_stats(c.id))


def _rules(api: Any, c: NetCall) -> Response:
    return Response(200, network_service(api).rules(c.id))


# ---------------------------------------------------------------------------------------------
# The route table

_FILTER = Param("filter", "string", 'JSON object of field equality, e.g. {"Name":"nat"}')
_NAME = Param("Name", "string", "Only the one of this name")


def _operations(kind: str) -> tuple[Operation, ...]:
    base = PATHS[kind]
    one = base + "/{id}"
    title = _TITLE[kind]
    doc = hns.DOCUMENT[kind]
    tags = (f"{kind}s",)
    query: tuple[Param, ...] = (_FILTER, _NAME)
    if kind == "endpoint":
        query += (Param("HostComputeNetwork", "string", "Only those of this network (ID or "
                        "Name)"),)
    delete_query = (Param("force", "boolean", "Also delete the network's endpoints"),) \
        if kind == "network" else ()
    modify = {"network": "Add, remove or update policies; set or remove DNS",
              "endpoint": "Add, remove or update policies in place",
              "namespace": "Attach (Add) or detach (Remove) an endpoint"}[kind]
    return (
        Operation("POST", base, f"create{title}", f"Create a {doc}", _create, status=201,
                  request=doc, body_required=True, response=doc, errors=_ERRORS, tags=tags),
        Operation("GET", base, f"query{title}s", f"{doc}s matching a filter (all without one)",
                  _query, response=doc, many=True, errors=_ERRORS, tags=tags, query=query),
        Operation("GET", one, f"get{title}", f"A {doc} by ID or Name", _get, response=doc,
                  errors=_ERRORS, tags=tags),
        Operation("POST", one + "/modify", f"modify{title}", modify, _modify,
                  request=f"{title}ModifyRequest", body_required=True, response=doc,
                  errors=_ERRORS, tags=tags),
        Operation("DELETE", one, f"delete{title}", f"Delete a {doc}", _delete, status=204,
                  errors=_ERRORS, tags=tags, query=delete_query),
    )


OPERATIONS: tuple[Operation, ...] = (
    *_operations("network"),
    Operation("GET", PATHS["network"] + "/{id}/rules", "getNetworkRules",
              "The network's compiled rule layers, readable (vfpctrl /list-rule)", _rules,
              response="NetworkRules", errors=_ERRORS, tags=("networks",)),
    *_operations("endpoint"),
    Operation("GET", PATHS["endpoint"] + "/{id}/stats", "getEndpointStats",
              "The endpoint's counters: bytes, packets, drops", _stats,
              response="EndpointStats", errors=_ERRORS, tags=("endpoints",)),
    *_operations("namespace"),
)


def is_network_operation(op: Operation) -> bool:
    return op.path.startswith(PREFIXES)


# ---------------------------------------------------------------------------------------------
# Serving


def serve(api: Any, op: Operation, request: Request) -> Response | Stream:
    """Parse and check the request, then call the operation with the served object."""
    from silo.service.app import parse_query

    kind = next(k for k, p in PATHS.items() if op.path.startswith(p))
    query = parse_query(op, request.query)
    if "filter" in query:
        query["filter"] = _filter(query["filter"])
    body = _body(op, request, kind)
    return op.call(api, NetCall(kind=kind, id=request.params.get("id", ""), query=query,
                                body=body))


def _filter(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise invalid("filter", f"not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise invalid("filter", 'must be a JSON object, e.g. {"Name":"nat"}')
    return doc


def _body(op: Operation, request: Request, kind: str) -> dict[str, Any]:
    from silo.service.app import json_body

    def check(_schema: str, doc: dict[str, Any]) -> dict[str, Any]:
        # Checked, not replaced: the network service normalises the documents it stores.
        if op.path.endswith("/modify"):
            hns.validate_modify(kind, doc)
        else:
            hns.validate(kind, doc)
        return doc

    return json_body(op, request, check, required=True)
