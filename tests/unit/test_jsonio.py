"""silo.schema.jsonio against the json module: same values read, same bytes written, errors that
name the document, and an import that pulls in neither json nor re."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from silo.errors import InvalidArgument
from silo.schema import jsonio

pytestmark = pytest.mark.unit

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")

TEXTS = [
    "{}",
    "[]",
    "null",
    "true",
    "0",
    "-0",
    '""',
    '{"a": 1, "b": [true, false, null], "c": {"d": [[], {}, [1, [2, [3]]]]}}',
    '"caf\\u00e9 \u00e9 \\ud83d\\ude00 \U0001f600 \\u2028 \\u0000"',
    '"\\"quote\\" back\\\\slash \\/ \\b\\f\\n\\r\\t"',
    '"\\ud800 lone surrogate"',
    "[0.1, -0.0, 1e-7, 1E+16, 2.5e300, 1e400, -1e400, 123456789.123456789]",
    "[340282366920938463463374607431768211456, -9223372036854775809]",
    "[NaN, Infinity, -Infinity]",
    '{"dup": 1, "dup": 2}',
    ' \t\r\n{"ws": [ 1 , 2 ]}\n\n ',
    '{"ociVersion":"1.2.0","process":{"args":["sh"],"env":["A=b=c"]}}',
]


def same(a: object, b: object) -> bool:
    """Equality that also holds for NaN in the same place."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("text", TEXTS)
def test_loads_matches_json(text: str) -> None:
    assert same(jsonio.loads(text), json.loads(text))


@pytest.mark.parametrize("text", TEXTS)
def test_loads_bytes_matches_json(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    assert same(jsonio.loads(raw), json.loads(raw))


def test_loads_utf8_bytes() -> None:
    assert jsonio.loads('{"k": "\u00e9\u4e2d\U0001f600"}'.encode()) == {
        "k": "\u00e9\u4e2d\U0001f600"}


VALUES: list[object] = [
    {},
    [],
    None,
    {"a": 1, "b": [True, False, None], "c": {"d": [1.5, -2, "x"]}},
    "caf\u00e9 \u4e2d \U0001f600 \u2028 \x00 \x1f \x7f \"\\/\b\f\n\r\t",
    "\ud800",
    [0.1, -0.0, 1e-7, 1e16, 2.5e300, 1 / 3, 5e-324],
    [2 ** 100, -(2 ** 63) - 1, 0],
    [float("nan"), float("inf"), float("-inf")],
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
    ("tuple", "becomes", "array"),
    {"z": 1, "a": {"y": 2, "b": 3}},
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_equals_compact_json_dumps(value: object) -> None:
    assert jsonio.dumps(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("value", VALUES)
def test_dumps_sorted_equals_json_dumps_sorted(value: object) -> None:
    if isinstance(value, dict) and len({type(k) for k in value}) > 1:
        with pytest.raises(TypeError):
            jsonio.dumps(value, sort_keys=True)
        return
    assert jsonio.dumps(value, sort_keys=True) == json.dumps(value, separators=(",", ":"),
                                                              sort_keys=True)


def test_sort_keys_sorts_nested_objects_and_keeps_order_otherwise() -> None:
    doc = {"z": 1, "a": {"y": 2, "b": 3}}
    assert jsonio.dumps(doc) == '{"z":1,"a":{"y":2,"b":3}}'
    assert jsonio.dumps(doc, sort_keys=True) == '{"a":{"b":3,"y":2},"z":1}'


@pytest.mark.parametrize("value", VALUES)
def test_round_trip(value: object) -> None:
    assert same(jsonio.loads(jsonio.dumps(value)), json.loads(json.dumps(value)))


def test_dumps_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        jsonio.dumps({"s": {1, 2}})
    with pytest.raises(TypeError):
        jsonio.dumps({("tuple", "key"): 1})


def test_dumps_pretty_equals_json_indent_2() -> None:
    doc = {"a": [1, {"b": None}], "c": "\u00e9"}
    assert jsonio.dumps_pretty(doc) == json.dumps(doc, indent=2)


@pytest.mark.parametrize(("text", "detail"), [
    ("", "expecting a value at char 0"),
    ("   \n", "expecting a value at char 4"),
    ("{", ""),
    ("[1,]", ""),
    ("{'a': 1}", ""),
    ('{"a" 1}', ""),
    ('"unterminated', ""),
    ('"tab\there"', ""),  # strict: control characters must be escaped
    ('"\\x41"', ""),
    ("[1 2]", ""),
    ("tru", ""),
    ("nan", ""),
    ("+1", ""),
    ("01", "extra data"),
    ('{"a": 1} {"b": 2}', "extra data"),
    ("[] x", "extra data"),
    ("\u00a0{}", ""),
    ("\ufeff{}", ""),
    ("1" * 5000, ""),  # above int's digit limit: json raises ValueError too
])
def test_invalid_json_names_the_document(text: str, detail: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(InvalidArgument) as exc:
        jsonio.loads(text, "config.json")
    assert exc.value.field == "config.json"
    assert str(exc.value).startswith("config.json: not valid JSON")
    assert detail in str(exc.value)


def test_error_positions_count_in_the_document_as_given() -> None:
    text = " [1] x"
    with pytest.raises(json.JSONDecodeError) as want:
        json.loads(text)
    assert want.value.pos == 5
    with pytest.raises(InvalidArgument) as exc:
        jsonio.loads(text, "config.json")
    assert str(exc.value).endswith(f"at char {want.value.pos}")


def test_default_document_name() -> None:
    with pytest.raises(InvalidArgument) as exc:
        jsonio.loads("{")
    assert exc.value.field == "document"
    assert str(exc.value).startswith("document: not valid JSON")


@pytest.mark.parametrize("raw", [b"\xff", b'{"a": "\xc3"}', b'"\xed\xa0\x80"', b"\x80{}"])
def test_invalid_utf8_names_the_document(raw: bytes) -> None:
    with pytest.raises(InvalidArgument) as exc:
        jsonio.loads(raw, "process.json")
    assert exc.value.field == "process.json"
    assert str(exc.value).startswith("process.json: not UTF-8")


def test_empty_bytes() -> None:
    with pytest.raises(InvalidArgument) as exc:
        jsonio.loads(b"", "state.json")
    assert str(exc.value) == "state.json: not valid JSON: expecting a value at char 0"


def test_a_failure_leaves_the_scanner_usable() -> None:
    with pytest.raises(InvalidArgument):
        jsonio.loads('{"a": "b", "a": [1,', "x")
    assert jsonio.loads('{"a": "b"}') == {"a": "b"}


def test_deep_nesting_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument) as exc:
        jsonio.loads("[" * 100_000 + "]" * 100_000, "config.json")
    assert exc.value.field == "config.json"


def test_import_pulls_in_neither_json_nor_re() -> None:
    code = (
        "import sys\n"
        f"sys.path.insert(0, {SRC!r})\n"
        "from silo.schema import jsonio\n"
        "jsonio.dumps(jsonio.loads(b'{\"a\": [1, 2.5, \"x\"]}'), sort_keys=True)\n"
        "print(','.join(sorted(m for m in ('json', 're') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "", f"importing silo.schema.jsonio imported: {out}"
