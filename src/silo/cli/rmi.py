"""silo rmi (also silo image rm): untag images, and delete those left without a name
(-f: an id with several names too). An image a container uses is refused, naming it."""

from __future__ import annotations

from silo.cli.common import Context, err, out, parse_args
from silo.cli.flags import BOOL, HELP, Flag

FLAGS = [Flag("force", BOOL, "f", help="delete an image id that has several names"),
         Flag("no-prune", BOOL, help="(accepted for docker's habits)"), HELP]
USAGE = "[OPTIONS] IMAGE [IMAGE...]\n\nRemove images."


def main(ctx: Context, args: list[str], verb: str = "rmi") -> int:
    values, refs = parse_args(verb, USAGE, FLAGS, args, min_args=1)
    from silo.errors import SiloError, Unavailable

    client = ctx.client()
    status = 0
    for ref in refs:
        try:
            done = client.remove_image(ref, force=values["force"])
        except Unavailable:
            raise
        except SiloError as e:
            err(e.message)
            status = 1
            continue
        for item in done:
            for key in ("Untagged", "Deleted"):
                if key in item:
                    out(f"{key}: {item[key]}")
    return status
