"""silo create: create a container from an image (not started); print its Id."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.spec import CREATE_FLAGS

USAGE = "[OPTIONS] IMAGE [COMMAND] [ARG...]\n\nCreate a container (start it with silo start)."


def main(ctx: Context, args: list[str]) -> int:
    values, rest = parse_args("create", USAGE, CREATE_FLAGS, args, interspersed=False,
                              min_args=1)
    from silo.cli.run import create

    out(create(ctx, values, rest)["Id"])
    return 0
