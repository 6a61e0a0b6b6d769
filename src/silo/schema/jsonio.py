"""JSON reading and writing without importing :mod:`json`.

``import json`` pulls in ``re`` and costs ~6 ms here, a third of silo-runtime's budget. The C
scanner and encoder behind it (``_json``) are what does the work, so this module drives them
directly. Output is compact and byte-compatible with ``json.dumps(obj, separators=(",", ":"))``.
"""

from __future__ import annotations

import _json

from silo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"


class _Context:
    # The attributes the C scanner reads from its "context" (a JSONDecoder, normally).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, object] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scan_once = _json.make_scanner(_Context())  # type: ignore[arg-type]


def _floatstr(o: float) -> str:
    if o != o:
        return "NaN"
    if o == float("inf"):
        return "Infinity"
    if o == float("-inf"):
        return "-Infinity"
    return float.__repr__(o)


def _default(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_encode = _json.make_encoder(
    None, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)
_encode_sorted = _json.make_encoder(
    None, _default, _json.encode_basestring_ascii, None, ":", ",", True, False, True
)


def _scan(text: str, start: int) -> tuple[Any, int]:
    try:
        return _scan_once(text, start)
    except SystemError:
        # _json raises syntax errors as json.decoder.JSONDecodeError, which it looks up in
        # sys.modules without importing it: with json.decoder never imported, the error comes
        # out as "returned NULL without setting an exception". Only a failed parse pays.
        import json.decoder  # noqa: F401

        _Context.memo.clear()
        return _scan_once(text, start)


def loads(text: str | bytes, what: str = "document") -> Any:
    """Parse one JSON value; ``what`` names the document in the error (e.g. "config.json")."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidArgument(f"{what}: not UTF-8: {err}", field=what) from err
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise InvalidArgument(
            f"{what}: not valid JSON: expecting a value at char {stop.value}", field=what
        ) from None
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise InvalidArgument(f"{what}: not valid JSON: {err}", field=what) from None
    except RecursionError:
        raise InvalidArgument(f"{what}: not valid JSON: nested too deeply",
                              field=what) from None
    finally:
        _Context.memo.clear()
    rest = len(text) - len(text[end:].lstrip(_WS))
    if rest != len(text):
        raise InvalidArgument(f"{what}: not valid JSON: extra data at char {rest}", field=what)
    return value


def dumps(obj: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text of ``obj``."""
    return "".join((_encode_sorted if sort_keys else _encode)(obj, 0))


def dumps_pretty(obj: Any, indent: str = "  ") -> str:
    """Indented JSON for people to read, as ``json.dumps(obj, indent=2)`` writes it."""
    out: list[str] = []
    _pretty(obj, indent, "", out)
    return "".join(out)


def _key(k: object) -> str:
    # JSON object keys are strings; json.dumps converts these scalar keys the same way.
    if isinstance(k, str):
        return k
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, float):
        return _floatstr(k)
    if isinstance(k, int):
        return int.__repr__(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def _pretty(obj: Any, step: str, pad: str, out: list[str]) -> None:
    inner = pad + step
    if isinstance(obj, dict) and obj:
        out.append("{\n")
        for i, (k, v) in enumerate(obj.items()):
            if i:
                out.append(",\n")
            out.append(inner + _json.encode_basestring_ascii(_key(k)) + ": ")
            _pretty(v, step, inner, out)
        out.append("\n" + pad + "}")
    elif isinstance(obj, (list, tuple)) and obj:
        out.append("[\n")
        for i, v in enumerate(obj):
            if i:
                out.append(",\n")
            out.append(inner)
            _pretty(v, step, inner, out)
        out.append("\n" + pad + "]")
    else:
        out.append(dumps(obj))
