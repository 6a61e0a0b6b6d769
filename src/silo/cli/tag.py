"""silo tag (also silo image tag): give an image another name."""

from __future__ import annotations

from silo.cli.common import Context, parse_args
from silo.cli.flags import HELP

FLAGS = [HELP]
USAGE = "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]\n\nGive an image another name."


def main(ctx: Context, args: list[str], verb: str = "tag") -> int:
    _, rest = parse_args(verb, USAGE, FLAGS, args, min_args=2, max_args=2)
    ctx.client().tag_image(rest[0], rest[1])
    return 0
