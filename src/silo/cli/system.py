"""silo system info (also silo info): what silod knows of its host."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import HELP, STR, Flag, UsageError

FLAGS = [Flag("format", STR, "f", default="", help="json"), HELP]
USAGE = "info [OPTIONS]\n\nShow what silod knows of its host."

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def lines(doc: Any, pad: str = "") -> list[str]:
    """A document as indented ``Key: value`` lines, as docker info prints."""
    result = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, (dict, list)) and v:
                result.append(f"{pad}{k}:")
                result += lines(v, pad + " ")
            else:
                result.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(doc, list):
        for v in doc:
            if isinstance(v, (dict, list)):
                result += lines(v, pad + " ")
            else:
                result.append(f"{pad}{_scalar(v)}")
    else:
        result.append(pad + _scalar(doc))
    return result


def _scalar(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None or v == {} or v == []:
        return ""
    return str(v)


def main(ctx: Context, args: list[str]) -> int:
    values, rest = parse_args("system", USAGE, FLAGS, args, min_args=1)
    if rest != ["info"]:
        raise UsageError(f"silo system {' '.join(rest)!s}: the one subcommand is info",
                         field="system")
    info = ctx.client().system_info()
    if values["format"] == "json":
        from silo.schema import jsonio

        out(jsonio.dumps(info))
    else:
        out("\n".join(lines(info)))
    return 0
