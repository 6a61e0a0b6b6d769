"""silo inspect: containers' Properties documents (Summary and Configuration) as a JSON
array."""

from __future__ import annotations

from silo.cli.common import Context, err, out, parse_args
from silo.cli.flags import HELP, MULTI, Flag

FLAGS = [Flag("type", MULTI, help="also ask for these PropertyTypes (Statistics, ProcessList,"
                                  " Memory)"), HELP]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]\n\nShow containers' documents as JSON."


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("inspect", USAGE, FLAGS, args, min_args=1)
    from silo.errors import SiloError, Unavailable
    from silo.schema import jsonio

    client = ctx.client()
    docs = []
    status = 0
    for ref in refs:
        try:
            docs.append(ctx.on(ref, lambda r: client.properties(r, values["type"])
                               if values["type"] else client.get_system(r)))
        except Unavailable:
            raise
        except SiloError as e:
            err(e.message)
            status = 1
    out(jsonio.dumps_pretty(docs, indent="    "))
    return status
