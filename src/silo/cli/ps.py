"""silo ps: list containers (running and paused; -a for all)."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args, print_template, short_id, table
from silo.cli.flags import BOOL, HELP, STR, Flag

FLAGS = [
    Flag("all", BOOL, "a", help="show every container (default: running and paused)"),
    Flag("quiet", BOOL, "q", help="only Ids"),
    Flag("no-trunc", BOOL, help="full Ids"),
    Flag("format", STR, default="table",
         help="table, json (a JSON line per container) or a template: '{{.ID}} {{.Names}}'"),
    HELP,
]
USAGE = "[OPTIONS]\n\nList containers."

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def fields(s: dict[str, Any], trunc: bool, now: float) -> dict[str, str]:
    from silo.cli.timefmt import ago, status

    sid = str(s.get("Id", ""))
    return {"ID": short_id(sid) if trunc else sid, "Image": str(s.get("Image", "")),
            "CreatedAt": str(s.get("Created", "")), "RunningFor": ago(s.get("Created"), now),
            "Status": status(s, now), "State": str(s.get("State", "")).lower(),
            "Names": str(s.get("Name", "")), "Owner": str(s.get("Owner", "")),
            "Pid": str(s.get("Pid", ""))}


def main(ctx: Context, args: list[str]) -> int:
    values, _ = parse_args("ps", USAGE, FLAGS, args, max_args=0)
    systems = ctx.client().list_systems()
    if not values["all"]:
        systems = [s for s in systems if s.get("State") in ("Running", "Paused")]
    if values["quiet"]:
        for s in systems:
            sid = str(s.get("Id", ""))
            out(sid if values["no_trunc"] else short_id(sid))
        return 0
    fmt = values["format"]
    if fmt == "json":
        from silo.schema import jsonio

        for s in systems:
            out(jsonio.dumps(s))
        return 0
    import time

    now = time.time()
    rows = [fields(s, not values["no_trunc"], now) for s in systems]
    if fmt == "table":
        header = ["CONTAINER ID", "IMAGE", "CREATED", "STATUS", "NAMES"]
        cells = [[r["ID"], r["Image"], r["RunningFor"], r["Status"], r["Names"]] for r in rows]
        out(table([header, *cells]))
        return 0
    print_template(fmt, rows)
    return 0
