"""silo update: change running containers' memory and CPU limits (``modify``)."""

from __future__ import annotations

from silo.cli.common import Context, for_each, parse_args
from silo.cli.flags import HELP, STR, Flag, UsageError

FLAGS = [Flag("memory", STR, "m", default="", help="memory limit (64m, 1g)"),
         Flag("cpus", STR, default="", help="number of CPUs (1.5)"), HELP]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]\n\nChange containers' limits."


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("update", USAGE, FLAGS, args, min_args=1)
    from silo.cli.spec import cpus_maximum, memory_mb

    changes: list[tuple[str, object]] = []
    if values["memory"]:
        changes.append(("Container/Memory/SizeInMB", memory_mb(values["memory"])))
    if values["cpus"]:
        changes.append(("Container/Processor", {"Maximum": cpus_maximum(values["cpus"])}))
    if not changes:
        raise UsageError("nothing to update: give --memory or --cpus", field="update")
    client = ctx.client()

    def update(sid: str) -> None:
        for path, settings in changes:
            client.modify(sid, path, settings)

    return for_each(ctx, refs, update)
