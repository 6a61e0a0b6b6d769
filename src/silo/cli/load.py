"""silo load (also silo image load): the images of an archive (-i FILE, else stdin):
docker-archive (docker save), oci-archive or an OCI layout directory."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import BOOL, HELP, STR, Flag

FLAGS = [Flag("input", STR, "i", default="", help="read this file (or directory), not stdin"),
         Flag("quiet", BOOL, "q", help="print nothing"), HELP]
USAGE = "[OPTIONS]\n\nLoad images from an archive."


def main(ctx: Context, args: list[str], verb: str = "load") -> int:
    values, _ = parse_args(verb, USAGE, FLAGS, args, max_args=0)
    import os

    made = ""
    source = values["input"]
    if not source:
        from silo.cli.imagefmt import stdin_to_file

        source = made = stdin_to_file(".silo-load-")
    try:
        report = ctx.client().load_images(source)
    finally:
        if made:
            os.unlink(made)
    if not values["quiet"]:
        for image in report.get("Images", []):
            tags = image.get("RepoTags") or []
            for tag in tags:
                out(f"Loaded image: {tag}")
            if not tags:
                out(f"Loaded image ID: {image.get('Id', '')}")
    return 0
