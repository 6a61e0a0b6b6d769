"""Builders of the JSON Schemas that :mod:`silo.schema.hcs`, :mod:`silo.schema.hns` and
:mod:`silo.schema.image` register: one small function per JSON type.

Owns only the shape of a schema fragment; the documents themselves live in those modules. The
key order is the order the committed ``docs/openapi.json`` shows, so keep it. Imports only
:mod:`silo.schema.jsonschema` (for the ``$ref`` prefix): the per-call commands import this.
"""

from __future__ import annotations

from silo.schema import jsonschema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to ``name`` in the registry's ``components/schemas``."""
    return {"$ref": jsonschema.REF_PREFIX + name}


def integer(lo: int | None = None, hi: int | None = None, doc: str = "") -> Schema:
    s: Schema = {"type": "integer"}
    if lo is not None:
        s["minimum"] = lo
    if hi is not None:
        s["maximum"] = hi
    if doc:
        s["description"] = doc
    return s


def string(doc: str = "", **more: Any) -> Schema:
    """A string; ``more`` holds its other keywords (``pattern``, ``x-reason``, ``maxLength``)."""
    s: Schema = {"type": "string", **more}
    if doc:
        s["description"] = doc
    return s


def boolean(doc: str) -> Schema:
    return {"type": "boolean", "description": doc}


def array(items: Schema, doc: str = "") -> Schema:
    s: Schema = {"type": "array", "items": items}
    if doc:
        s["description"] = doc
    return s


def obj(props: dict[str, Schema], required: list[str] | None = None, *, doc: str = "",
        closed: bool = True) -> Schema:
    """An object of ``props``; ``closed`` refuses any other key (``additionalProperties``)."""
    s: Schema = {"type": "object"}
    if doc:
        s["description"] = doc
    s["properties"] = props
    if required:
        s["required"] = required
    if closed:
        s["additionalProperties"] = False
    return s
