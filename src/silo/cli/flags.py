"""The flag parser of ``silo``, with docker's (pflag's) habits:

- long flags: ``--name web``, ``--name=web``, booleans ``--rm`` and ``--rm=false``;
- short flags: ``-e K=V``, the value attached (``-eK=V``, ``-p8080:80``, ``-t5``, ``-e=K=V``),
  booleans combined (``-it``, ``-dit``), a value flag last in a group taking the next argument
  (``-dp 80:80``);
- repeated flags (``-e A=1 -e B=2``, ``-v a:b -v c:d:ro``);
- ``--`` ends the flags; a lone ``-`` is an argument;
- ``run``, ``create`` and ``exec`` stop at the first argument (``silo run busybox ls -l``:
  ``-l`` is the command's); other verbs take flags anywhere (``silo rm web -f``).

``argparse`` costs milliseconds (it imports ``re`` and ``gettext``); this is all ``silo`` needs.
Imports only silo.errors.
"""

from __future__ import annotations

from silo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BOOL = "bool"
STR = "string"
INT = "int"
MULTI = "list"


class UsageError(InvalidArgument):
    """A command line silo cannot read: exit status 125, like docker's."""


class Flag:
    __slots__ = ("default", "help", "kind", "name", "short")

    def __init__(self, name: str, kind: str = BOOL, short: str = "", default: Any = None,
                 help: str = "") -> None:
        self.name = name
        self.kind = kind
        self.short = short
        self.default = default
        self.help = help

    @property
    def key(self) -> str:
        return self.name.replace("-", "_")


HELP = Flag("help", BOOL, help="print usage")


def _bool(flag: str, text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "t", "yes"):
        return True
    if low in ("false", "0", "f", "no"):
        return False
    raise UsageError(f"invalid argument {text!r} for {flag!r} flag: not a boolean", field=flag)


def parse(flags: list[Flag], argv: list[str], interspersed: bool = True
          ) -> tuple[dict[str, Any], list[str]]:
    """(values by flag key (dashes as underscores), arguments). Raises UsageError."""
    long = {f.name: f for f in flags}
    short = {f.short: f for f in flags if f.short}
    values: dict[str, Any] = {}
    for f in flags:
        values[f.key] = [] if f.kind == MULTI else (
            False if f.kind == BOOL and f.default is None else f.default)
    args: list[str] = []

    def store(f: Flag, shown: str, text: str) -> None:
        if f.kind == BOOL:
            values[f.key] = _bool(shown, text)
        elif f.kind == INT:
            try:
                values[f.key] = int(text)
            except ValueError:
                raise UsageError(f"invalid argument {text!r} for {shown!r} flag: not an "
                                 "integer", field=shown) from None
        elif f.kind == MULTI:
            values[f.key].append(text)
        else:
            values[f.key] = text

    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            args += argv[i:]
            break
        if tok == "-" or not tok.startswith("-"):
            args.append(tok)
            if not interspersed:
                args += argv[i:]
                break
            continue
        if tok.startswith("--"):
            name, eq, inline = tok[2:].partition("=")
            found = long.get(name)
            if found is None:
                raise UsageError(f"unknown flag: --{name}", field="--" + name)
            f = found
            if eq:
                store(f, "--" + name, inline)
            elif f.kind == BOOL:
                values[f.key] = True
            elif i < len(argv):
                store(f, "--" + name, argv[i])
                i += 1
            else:
                raise UsageError(f"flag needs an argument: --{name}", field="--" + name)
            continue
        group = tok[1:]
        for j, ch in enumerate(group):
            found = short.get(ch)
            if found is None:
                raise UsageError(f"unknown shorthand flag: {ch!r} in {tok}", field="-" + ch)
            f = found
            rest = group[j + 1:]
            if f.kind == BOOL:
                if rest.startswith("="):
                    store(f, "-" + ch, rest[1:])
                    break
                values[f.key] = True
                continue
            if rest:
                store(f, "-" + ch, rest[1:] if rest.startswith("=") else rest)
            elif i < len(argv):
                store(f, "-" + ch, argv[i])
                i += 1
            else:
                raise UsageError(f"flag needs an argument: {ch!r} in {tok}", field="-" + ch)
            break
    return values, args


def usage(flags: list[Flag]) -> str:
    lines = []
    for f in flags:
        names = (f"-{f.short}, " if f.short else "    ") + f"--{f.name}"
        if f.kind != BOOL:
            names += f" {f.kind}"
        lines.append(f"  {names:<28} {f.help}")
    return "\n".join(lines)
