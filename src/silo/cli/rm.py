"""silo rm: remove containers (-f: running ones too, killed first)."""

from __future__ import annotations

from silo.cli.common import Context, for_each, parse_args
from silo.cli.flags import BOOL, HELP, Flag

FLAGS = [Flag("force", BOOL, "f", help="remove running containers too"),
         Flag("volumes", BOOL, "v", help="(accepted for docker's habits; silo has no volumes)"),
         HELP]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]\n\nRemove containers."


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("rm", USAGE, FLAGS, args, min_args=1)
    client = ctx.client()
    return for_each(ctx, refs, lambda sid: client.delete(sid, force=values["force"]))
