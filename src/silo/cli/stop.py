"""silo stop: stop containers: their stop signal (SIGTERM), then SIGKILL after -t seconds."""

from __future__ import annotations

from silo.cli.common import Context, for_each, parse_args
from silo.cli.flags import HELP, INT, Flag

FLAGS = [Flag("time", INT, "t", help="seconds to wait before killing (default 10)"), HELP]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]\n\nStop containers."


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("stop", USAGE, FLAGS, args, min_args=1)
    client = ctx.client()
    return for_each(ctx, refs, lambda sid: client.shutdown(sid, timeout=values["time"]))
