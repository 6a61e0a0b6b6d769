"""silo unpause: thaw paused containers."""

from __future__ import annotations

from silo.cli.common import Context, for_each, parse_args
from silo.cli.flags import HELP

USAGE = "CONTAINER [CONTAINER...]\n\nThaw containers."


def main(ctx: Context, args: list[str]) -> int:
    _, refs = parse_args("unpause", USAGE, [HELP], args, min_args=1)
    return for_each(ctx, refs, ctx.client().resume)
