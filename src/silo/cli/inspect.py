"""silo inspect: containers' Properties documents (Summary and Configuration) as a JSON
array."""

from __future__ import annotations

from silo.cli.common import Context, inspect_each, parse_args
from silo.cli.flags import HELP, MULTI, Flag

FLAGS = [Flag("type", MULTI, help="also ask for these PropertyTypes (Statistics, ProcessList,"
                                  " Memory)"), HELP]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]\n\nShow containers' documents as JSON."


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("inspect", USAGE, FLAGS, args, min_args=1)
    client = ctx.client()
    types = values["type"]

    def document(sid: str) -> object:
        return client.properties(sid, types) if types else client.get_system(sid)

    return inspect_each(refs, lambda ref: ctx.on(ref, document))
