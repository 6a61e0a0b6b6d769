"""silo save (also silo image save): images to an archive (-o FILE, else stdout when it is not
a terminal); docker-archive by default, --format oci-archive for an OCI layout."""

from __future__ import annotations

from silo.cli.common import Context, parse_args
from silo.cli.flags import HELP, STR, Flag, UsageError

FORMATS = ("docker-archive", "oci-archive")
FLAGS = [Flag("output", STR, "o", default="", help="write to this file, not stdout"),
         Flag("format", STR, default="docker-archive", help=" or ".join(FORMATS)), HELP]
USAGE = "[OPTIONS] IMAGE [IMAGE...]\n\nSave images to an archive (streamed to stdout by default)."


def main(ctx: Context, args: list[str], verb: str = "save") -> int:
    values, refs = parse_args(verb, USAGE, FLAGS, args, min_args=1)
    import os

    if values["format"] not in FORMATS:
        raise UsageError(f"--format: {values['format']!r} is not {' or '.join(FORMATS)}",
                         field="--format")
    client = ctx.client()
    if values["output"]:
        client.save_images(refs, values["output"], values["format"])
        return 0
    if os.isatty(1):
        raise UsageError("cowardly refusing to write an archive to a terminal: use -o FILE "
                         "or redirect stdout", field="--output")
    from silo.cli.imagefmt import copy_fd, private_temp

    path, fd = private_temp(".silo-save-")
    os.close(fd)
    try:
        client.save_images(refs, path, values["format"])
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            copy_fd(fd, 1)
        finally:
            os.close(fd)
    finally:
        os.unlink(path)
    return 0
