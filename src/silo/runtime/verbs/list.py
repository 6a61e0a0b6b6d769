"""``list [--format table|json] [--quiet]``."""

from __future__ import annotations

from silo.errors import InvalidArgument
from silo.runtime.flags import BOOL, STR, Flag, parse
from silo.runtime.verbs._common import write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [Flag("format", STR, short="f", default="table", help="table or json"),
         Flag("quiet", BOOL, short="q", help="ids only")]


def run(g: Globals, argv: list[str]) -> int:
    from silo.compute.container import Container
    from silo.schema import jsonio

    opts, args = parse(FLAGS, argv, "list")
    if args:
        raise InvalidArgument('"list" takes no arguments', field="args")
    states = [c.state() for c in Container.list_all(g.root)]
    if opts["quiet"]:
        write_out("".join(s["id"] + "\n" for s in states))
    elif opts["format"] == "json":
        write_out(jsonio.dumps(states) + "\n")
    elif opts["format"] == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                 for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        write_out("".join("".join(c.ljust(w + 3) for c, w in zip(r, widths, strict=True))
                          .rstrip() + "\n" for r in rows))
    else:
        raise InvalidArgument(f"--format: {opts['format']!r} is not table or json",
                              field="format")
    return 0
