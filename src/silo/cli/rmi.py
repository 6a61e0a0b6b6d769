"""silo rmi (also silo image rm): untag images, and delete those left without a name
(-f: an id with several names too). An image a container uses is refused, naming it."""

from __future__ import annotations

from silo.cli.common import Context, each, out, parse_args
from silo.cli.flags import BOOL, HELP, Flag

FLAGS = [Flag("force", BOOL, "f", help="delete an image id that has several names"),
         Flag("no-prune", BOOL, help="(accepted for docker's habits)"), HELP]
USAGE = "[OPTIONS] IMAGE [IMAGE...]\n\nRemove images."


def main(ctx: Context, args: list[str], verb: str = "rmi") -> int:
    values, refs = parse_args(verb, USAGE, FLAGS, args, min_args=1)
    client = ctx.client()
    return each(refs, lambda ref: client.remove_image(ref, force=values["force"]), _removed)


def _removed(_ref: str, done: list[dict[str, str]]) -> None:
    for item in done:
        for key in ("Untagged", "Deleted"):
            if key in item:
                out(f"{key}: {item[key]}")
