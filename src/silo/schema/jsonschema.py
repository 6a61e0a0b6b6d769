"""A small JSON Schema (draft 2020-12) validator: the subset silo's wire documents use.

Owns checking a decoded JSON document against a schema and naming the first wrong field. Imports
only :mod:`silo.errors`; ``re`` is imported when a schema with a ``pattern`` is first used, so the
per-call commands that import :mod:`silo.schema` do not pay for it.

Keywords understood: ``type`` (one name or a list), ``properties``, ``required``,
``additionalProperties`` (bool or schema), ``items``, ``minItems``, ``maxItems``, ``minLength``,
``maxLength``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``enum``,
``const``, ``pattern``, ``oneOf``, ``anyOf`` and ``$ref`` to ``#/components/schemas/NAME``
(resolved in the ``registry`` given). Annotations (``description``, ``default``, ``readOnly``,
``examples``, ``title``, ``format``) are ignored, as the standard allows. ``x-reason`` is silo's
own: the reason given when ``pattern`` does not match, instead of the pattern itself.

Deliberate departures from the standard, both on the strict side:

- an integer is a Python ``int`` (not ``bool``, not ``2.0``): what passes here is what the code
  behind it can use without converting;
- ``pattern`` is searched as ECMA-262 does, but a ``$`` at its end matches only at the very end of
  the string (Python's ``$`` also matches before a final newline, which would let ``"web\\n"``
  through an id pattern).

Errors are :class:`~silo.errors.InvalidArgument` whose ``field`` is the dotted path of the value
(``Container.Memory.SizeInMB``, ``CommandArgs[0]``) and whose message is ``"<field>: <reason>"``.
"""

from __future__ import annotations

from silo.errors import Internal, InvalidArgument, invalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Schema = dict[str, Any]
    Registry = dict[str, Schema]

KEYWORDS = frozenset((
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "enum", "const", "pattern", "oneOf", "anyOf", "$ref",
    # annotations: no effect on validation
    "description", "default", "readOnly", "examples", "title", "format", "x-reason",
))

REF_PREFIX = "#/components/schemas/"

_TYPE_WORDS = {
    "object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
    "number": "a number", "boolean": "true or false", "null": "null",
}

_patterns: dict[str, Any] = {}


def validate(schema: Schema, doc: object, where: str = "",
             registry: Registry | None = None) -> None:
    """Check ``doc`` against ``schema``; raise InvalidArgument naming the first wrong field.

    ``where`` is the path of ``doc`` itself (``""`` for a whole document); ``registry`` maps the
    names that ``$ref`` uses to their schemas.
    """
    _check(schema, doc, where, registry or {})


def is_type(value: object, name: str) -> bool:
    """Whether ``value`` (decoded JSON) is of JSON Schema type ``name``."""
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    raise Internal(f"json schema: unknown type {name!r}")


def resolve(schema: Schema, registry: Registry) -> Schema:
    """Follow ``$ref`` (possibly a chain of them) to the schema it names."""
    seen = 0
    while "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith(REF_PREFIX):
            raise Internal(f"json schema: unsupported $ref {ref!r}")
        name = ref[len(REF_PREFIX):]
        if name not in registry:
            raise Internal(f"json schema: $ref to unknown schema {name!r}")
        schema = registry[name]
        seen += 1
        if seen > 32:
            raise Internal(f"json schema: $ref loop through {name!r}")
    return schema


def _field(where: str) -> str:
    return where or "document"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _show(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _type_reason(types: list[str]) -> str:
    words = [_TYPE_WORDS.get(t, t) for t in types]
    if len(words) == 1:
        return f"must be {words[0]}"
    return "must be " + ", ".join(words[:-1]) + " or " + words[-1]


def _search(pattern: str, text: str) -> bool:
    compiled = _patterns.get(pattern)
    if compiled is None:
        import re  # lazily: re costs milliseconds the per-call commands do not have

        source = pattern
        if source.endswith("$") and not source.endswith("\\$"):
            source = source[:-1] + r"\Z"
        compiled = _patterns[pattern] = re.compile(source)
    return compiled.search(text) is not None


def _check(schema: Schema, doc: object, where: str, registry: Registry) -> None:
    if "$ref" in schema:
        schema = resolve(schema, registry)

    if "type" in schema:
        types = schema["type"]
        if isinstance(types, str):
            types = [types]
        if not any(is_type(doc, t) for t in types):
            raise invalid(_field(where), _type_reason(types))

    if "const" in schema and not _same(doc, schema["const"]):
        raise invalid(_field(where), f"must be {_show(schema['const'])}")
    if "enum" in schema and not any(_same(doc, v) for v in schema["enum"]):
        allowed = ", ".join(_show(v) for v in schema["enum"])
        raise invalid(_field(where), f"must be one of {allowed}")

    if isinstance(doc, dict):
        _check_object(schema, doc, where, registry)
    elif isinstance(doc, list):
        _check_array(schema, doc, where, registry)
    elif isinstance(doc, str):
        _check_string(schema, doc, where)
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        _check_number(schema, doc, where)

    if "anyOf" in schema:
        _check_any_of(schema["anyOf"], doc, where, registry)
    if "oneOf" in schema:
        _check_one_of(schema["oneOf"], doc, where, registry)


def _same(a: object, b: object) -> bool:
    # JSON equality: true is not 1, 1 is 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _check_object(schema: Schema, doc: dict[str, Any], where: str, registry: Registry) -> None:
    for key in schema.get("required", ()):
        if key not in doc:
            raise invalid(_join(where, key), "is required")
    props: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, value in doc.items():
        sub = props.get(key)
        if sub is not None:
            _check(sub, value, _join(where, key), registry)
        elif extra is False:
            allowed = ", ".join(props) or "none"
            raise invalid(_join(where, key), f"unknown field (allowed: {allowed})")
        elif isinstance(extra, dict):
            _check(extra, value, _join(where, key), registry)


def _check_array(schema: Schema, doc: list[Any], where: str, registry: Registry) -> None:
    lo = schema.get("minItems")
    hi = schema.get("maxItems")
    if lo is not None and hi is not None and lo == hi and len(doc) != lo:
        raise invalid(_field(where), f"must have exactly {lo} item{'s' if lo != 1 else ''}")
    if lo is not None and len(doc) < lo:
        reason = "must not be empty" if lo == 1 else f"must have at least {lo} items"
        raise invalid(_field(where), reason)
    if hi is not None and len(doc) > hi:
        raise invalid(_field(where), f"must have at most {hi} item{'s' if hi != 1 else ''}")
    items = schema.get("items")
    if isinstance(items, dict):
        for i, value in enumerate(doc):
            _check(items, value, f"{_field(where)}[{i}]", registry)


def _check_string(schema: Schema, doc: str, where: str) -> None:
    lo = schema.get("minLength")
    hi = schema.get("maxLength")
    if lo is not None and len(doc) < lo:
        reason = "must not be empty" if lo == 1 else f"must be at least {lo} characters long"
        raise invalid(_field(where), reason)
    if hi is not None and len(doc) > hi:
        raise invalid(_field(where), f"must be at most {hi} characters long")
    pattern = schema.get("pattern")
    if pattern is not None and not _search(pattern, doc):
        reason = schema.get("x-reason") or f"must match {pattern}"
        raise invalid(_field(where), f"{reason}, got {doc!r}")


def _check_number(schema: Schema, doc: float, where: str) -> None:
    if "minimum" in schema and doc < schema["minimum"]:
        raise invalid(_field(where), f"must be >= {schema['minimum']}")
    if "maximum" in schema and doc > schema["maximum"]:
        raise invalid(_field(where), f"must be <= {schema['maximum']}")
    if "exclusiveMinimum" in schema and doc <= schema["exclusiveMinimum"]:
        raise invalid(_field(where), f"must be > {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and doc >= schema["exclusiveMaximum"]:
        raise invalid(_field(where), f"must be < {schema['exclusiveMaximum']}")


def _matches(schema: Schema, doc: object, where: str, registry: Registry) -> InvalidArgument | None:
    try:
        _check(schema, doc, where, registry)
    except InvalidArgument as err:
        return err
    return None


def _branch_types(branches: list[Schema], registry: Registry) -> list[str]:
    types: list[str] = []
    for b in branches:
        t = resolve(b, registry).get("type")
        for name in [t] if isinstance(t, str) else (t or ()):
            if name not in types:
                types.append(name)
    return types


def _no_branch(branches: list[Schema], doc: object, where: str, registry: Registry,
               errors: list[InvalidArgument | None]) -> InvalidArgument:
    # One branch of the value's own type: its error says more than "matches no form".
    fitting = [err for b, err in zip(branches, errors, strict=True)
               if err is not None and _fits_type(resolve(b, registry), doc)]
    if len(fitting) == 1:
        return fitting[0]
    types = _branch_types(branches, registry)
    if types and not any(is_type(doc, t) for t in types):
        return invalid(_field(where), _type_reason(types))
    return invalid(_field(where), "does not match any of the allowed forms")


def _fits_type(schema: Schema, doc: object) -> bool:
    t = schema.get("type")
    if t is None:
        return False
    return any(is_type(doc, name) for name in ([t] if isinstance(t, str) else t))


def _check_any_of(branches: list[Schema], doc: object, where: str, registry: Registry) -> None:
    errors: list[InvalidArgument | None] = []
    for b in branches:
        err = _matches(b, doc, where, registry)
        if err is None:
            return
        errors.append(err)
    raise _no_branch(branches, doc, where, registry, errors)


def _check_one_of(branches: list[Schema], doc: object, where: str, registry: Registry) -> None:
    errors = [_matches(b, doc, where, registry) for b in branches]
    passed = sum(err is None for err in errors)
    if passed == 1:
        return
    if passed > 1:
        raise invalid(_field(where), "matches more than one of the allowed forms")
    raise _no_branch(branches, doc, where, registry, errors)
