"""silo top: the processes of a container."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args, table
from silo.cli.flags import HELP

USAGE = "CONTAINER\n\nShow a container's processes."


def main(ctx: Context, args: list[str]) -> int:
    _, rest = parse_args("top", USAGE, [HELP], args, min_args=1, max_args=1)
    client = ctx.client()
    props = ctx.on(rest[0], lambda ref: client.properties(ref, ["ProcessList"]))
    rows = [["PID", "USER", "CMD"]]
    for p in props.get("ProcessList") or []:
        rows.append([str(p.get("ProcessId", "")), str(p.get("UserName", "")),
                     str(p.get("CommandLine", ""))])
    out(table(rows))
    return 0
