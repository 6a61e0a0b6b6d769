"""A small flag parser with runc's (urfave/cli) habits: flags before positional arguments,
``--flag value``, ``--flag=value``, ``-f value``, booleans, repeated flags, ``--``.

``argparse`` costs several milliseconds to import (it imports ``re`` and ``gettext``); this
parser is all silo-runtime needs.
"""

from __future__ import annotations

from silo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BOOL = "bool"
STR = "str"
INT = "int"
MULTI = "multi"


class Flag:
    __slots__ = ("default", "help", "kind", "name", "short")

    def __init__(self, name: str, kind: str, short: str = "", default: Any = None,
                 help: str = "") -> None:
        self.name = name
        self.kind = kind
        self.short = short
        self.default = default
        self.help = help


def parse(flags: list[Flag], argv: list[str], where: str) -> tuple[dict[str, Any], list[str]]:
    """Parse ``argv``; returns (values by flag name with dashes as underscores, positionals).

    ``where`` (the verb) is not repeated in error messages: ``main.report`` already puts
    "silo-runtime VERB:" in front of them."""
    by_name: dict[str, Flag] = {}
    for f in flags:
        by_name["--" + f.name] = f
        by_name["-" + f.name] = f  # urfave accepts a single dash for long names
        if f.short:
            by_name["-" + f.short] = f
    values: dict[str, Any] = {}
    for f in flags:
        values[f.name.replace("-", "_")] = [] if f.kind == MULTI else (
            False if f.kind == BOOL and f.default is None else f.default)
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return values, argv[i + 1:]
        if not tok.startswith("-") or tok == "-":
            return values, argv[i:]
        name, eq, inline = tok.partition("=")
        found = by_name.get(name)
        if found is None:
            raise InvalidArgument(f"flag provided but not defined: {name}", field=name)
        f = found
        key = f.name.replace("-", "_")
        if f.kind == BOOL:
            if eq:
                if inline not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"{name}: {inline!r} is not a boolean",
                                          field=name)
                values[key] = inline in ("true", "1")
            else:
                values[key] = True
            i += 1
            continue
        if eq:
            val = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                raise InvalidArgument(f"flag needs an argument: {name}", field=name)
            val = argv[i + 1]
            i += 2
        if f.kind == INT:
            try:
                values[key] = int(val)
            except ValueError:
                raise InvalidArgument(f"{name}: {val!r} is not an integer",
                                      field=name) from None
        elif f.kind == MULTI:
            values[key].append(val)
        else:
            values[key] = val
    return values, []


def usage(flags: list[Flag]) -> str:
    lines = []
    for f in flags:
        names = f"--{f.name}" + (f", -{f.short}" if f.short else "")
        arg = "" if f.kind == BOOL else " value"
        lines.append(f"   {names}{arg}\t{f.help}")
    return "\n".join(lines)
