"""silo.schema.jsonschema: each keyword accepts what it should and refuses the rest, naming the
field by its dotted path and giving a human reason."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from silo.errors import Internal, InvalidArgument
from silo.schema import jsonschema

pytestmark = pytest.mark.unit

REGISTRY = {
    "Memory": {"type": "object", "properties": {"SizeInMB": {"type": "integer", "minimum": 4}},
               "required": ["SizeInMB"], "additionalProperties": False},
    "Alias": {"$ref": "#/components/schemas/Memory"},
}

DOC_SCHEMA = {
    "type": "object",
    "properties": {
        "Name": {"type": "string", "minLength": 1, "maxLength": 8,
                 "pattern": "^[a-z][a-z0-9]*$"},
        "Memory": {"$ref": "#/components/schemas/Memory"},
        "Args": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "Size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "Env": {"type": "object", "additionalProperties": {"type": "string"}},
        "Ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "Limit": {"type": "integer", "minimum": 0, "maximum": 10},
        "Kind": {"type": "string", "enum": ["A", "B"]},
        "Fixed": {"const": 2},
        "Flag": {"type": "boolean"},
        "Maybe": {"type": ["integer", "null"]},
        "Signal": {"oneOf": [{"type": "string", "minLength": 1},
                             {"type": "integer", "minimum": 1}]},
        "Either": {"anyOf": [{"type": "string"}, {"type": "array"}]},
        "Nested": {"type": "object", "properties": {"Items": {"type": "array", "items": {
            "type": "object", "properties": {"X": {"type": "integer"}},
            "additionalProperties": False}}}},
        "Named": {"type": "string", "pattern": "^x$", "x-reason": "must be the letter x"},
    },
    "required": ["Name"],
    "additionalProperties": False,
}


def check(doc: object) -> None:
    jsonschema.validate(DOC_SCHEMA, doc, "", REGISTRY)


def test_a_good_document_passes() -> None:
    check({"Name": "web1", "Memory": {"SizeInMB": 4}, "Args": ["a", "b"], "Size": [24, 80],
           "Env": {"A": "1"}, "Ratio": 0.5, "Limit": 10, "Kind": "B", "Fixed": 2,
           "Flag": False, "Maybe": None, "Signal": 15, "Either": [], "Named": "x",
           "Nested": {"Items": [{"X": 1}, {}]}})


@pytest.mark.parametrize(("doc", "field", "reason"), [
    ([], "document", "must be an object"),
    ({}, "Name", "is required"),
    ({"Name": 3}, "Name", "must be a string"),
    ({"Name": ""}, "Name", "must not be empty"),
    ({"Name": "abcdefghi"}, "Name", "must be at most 8 characters long"),
    ({"Name": "9a"}, "Name", "must match ^[a-z][a-z0-9]*$, got '9a'"),
    ({"Name": "a\n"}, "Name", "must match ^[a-z][a-z0-9]*$, got 'a\\n'"),
    ({"Name": "a", "Bogus": 1}, "Bogus", "unknown field (allowed: Name, Memory, Args, "
     "Size, Env, Ratio, Limit, Kind, Fixed, Flag, Maybe, Signal, Either, Nested, Named)"),
    ({"Name": "a", "Memory": {}}, "Memory.SizeInMB", "is required"),
    ({"Name": "a", "Memory": {"SizeInMB": 3}}, "Memory.SizeInMB", "must be >= 4"),
    ({"Name": "a", "Memory": {"SizeInMB": True}}, "Memory.SizeInMB", "must be an integer"),
    ({"Name": "a", "Memory": {"SizeInMB": 4.0}}, "Memory.SizeInMB", "must be an integer"),
    ({"Name": "a", "Memory": {"SizeInMB": 8, "X": 1}}, "Memory.X",
     "unknown field (allowed: SizeInMB)"),
    ({"Name": "a", "Args": []}, "Args", "must not be empty"),
    ({"Name": "a", "Args": ["a", "b", "c", "d"]}, "Args", "must have at most 3 items"),
    ({"Name": "a", "Args": ["a", 2]}, "Args[1]", "must be a string"),
    ({"Name": "a", "Size": [1]}, "Size", "must have exactly 2 items"),
    ({"Name": "a", "Env": {"A": 1}}, "Env.A", "must be a string"),
    ({"Name": "a", "Ratio": 0}, "Ratio", "must be > 0"),
    ({"Name": "a", "Ratio": 1}, "Ratio", "must be < 1"),
    ({"Name": "a", "Ratio": "1"}, "Ratio", "must be a number"),
    ({"Name": "a", "Limit": -1}, "Limit", "must be >= 0"),
    ({"Name": "a", "Limit": 11}, "Limit", "must be <= 10"),
    ({"Name": "a", "Kind": "C"}, "Kind", "must be one of A, B"),
    ({"Name": "a", "Fixed": 3}, "Fixed", "must be 2"),
    ({"Name": "a", "Fixed": True}, "Fixed", "must be 2"),
    ({"Name": "a", "Flag": 0}, "Flag", "must be true or false"),
    ({"Name": "a", "Maybe": "x"}, "Maybe", "must be an integer or null"),
    ({"Name": "a", "Signal": 0}, "Signal", "must be >= 1"),
    ({"Name": "a", "Signal": ""}, "Signal", "must not be empty"),
    ({"Name": "a", "Signal": [1]}, "Signal", "must be a string or an integer"),
    ({"Name": "a", "Either": 1}, "Either", "must be a string or an array"),
    ({"Name": "a", "Nested": {"Items": [{"X": 1}, {"X": "2"}]}}, "Nested.Items[1].X",
     "must be an integer"),
    ({"Name": "a", "Named": "y"}, "Named", "must be the letter x, got 'y'"),
])
def test_a_bad_document_names_its_field(doc: object, field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check(doc)
    assert err.value.field == field
    assert err.value.message == f"{field}: {reason}"


def test_where_prefixes_the_path() -> None:
    with pytest.raises(InvalidArgument) as err:
        jsonschema.validate(DOC_SCHEMA, {"Name": 1}, "Body", REGISTRY)
    assert err.value.field == "Body.Name"


def test_a_ref_chain_resolves() -> None:
    schema = {"$ref": "#/components/schemas/Alias"}
    jsonschema.validate(schema, {"SizeInMB": 5}, "", REGISTRY)
    with pytest.raises(InvalidArgument, match=r"^SizeInMB: must be >= 4$"):
        jsonschema.validate(schema, {"SizeInMB": 1}, "", REGISTRY)


@pytest.mark.parametrize("ref", ["#/components/schemas/Nope", "#/$defs/Memory", "other.json"])
def test_a_ref_silo_cannot_follow_is_an_internal_error(ref: str) -> None:
    with pytest.raises(Internal):
        jsonschema.validate({"$ref": ref}, {}, "", REGISTRY)


def test_one_of_refuses_a_value_matching_two_branches() -> None:
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    jsonschema.validate(schema, 1.5, "N")
    with pytest.raises(InvalidArgument, match=r"^N: matches more than one"):
        jsonschema.validate(schema, 1, "N")


def test_any_of_with_untyped_branches_says_no_form_matched() -> None:
    schema = {"anyOf": [{"const": 1}, {"const": 2}]}
    jsonschema.validate(schema, 2, "N")
    with pytest.raises(InvalidArgument, match=r"^N: does not match any of the allowed forms$"):
        jsonschema.validate(schema, 3, "N")


@pytest.mark.parametrize(("value", "name", "expected"), [
    (True, "integer", False), (1, "integer", True), (1.0, "integer", False),
    (True, "number", False), (1.5, "number", True), (False, "boolean", True),
    (None, "null", True), ({}, "object", True), ([], "array", True), ("", "string", True),
])
def test_is_type(value: object, name: str, expected: bool) -> None:
    assert jsonschema.is_type(value, name) is expected


def test_importing_it_does_not_load_re() -> None:
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")
    code = ("import sys; import silo.schema.jsonschema as j; assert 're' not in sys.modules; "
            "j.validate({'type': 'string'}, 'x'); assert 're' not in sys.modules; "
            "j.validate({'pattern': 'x'}, 'x'); assert 're' in sys.modules")
    subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {src!r}); "
                    + code], check=True)
