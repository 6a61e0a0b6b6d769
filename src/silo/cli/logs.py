"""silo logs: a container's output (-f: and what it writes from now on)."""

from __future__ import annotations

from silo.cli.common import Context, parse_args
from silo.cli.flags import BOOL, HELP, STR, Flag

FLAGS = [
    Flag("follow", BOOL, "f", help="keep showing output until the container stops"),
    Flag("tail", STR, "n", default="all", help="only the last N lines"),
    Flag("timestamps", BOOL, "t", help="show each line's time"),
    HELP,
]
USAGE = "[OPTIONS] CONTAINER\n\nShow a container's output."


def main(ctx: Context, args: list[str]) -> int:
    values, rest = parse_args("logs", USAGE, FLAGS, args, min_args=1, max_args=1)
    from silo.cli.attached import write_line

    tail = None
    if values["tail"] != "all":
        if not values["tail"].isdigit():
            from silo.cli.flags import UsageError

            raise UsageError(f"--tail: {values['tail']!r} is not a number or all",
                             field="--tail")
        tail = int(values["tail"])
    client = ctx.client()
    with ctx.on(rest[0], lambda ref: client.logs(ref, follow=values["follow"], tail=tail,
                                                 timestamps=values["timestamps"])) as stream:
        for doc in stream:
            write_line(doc, timestamps=values["timestamps"])
    return 0
