"""silo pull: pull an image from a registry into silod's store; one progress bar per layer on
a terminal, plain lines otherwise."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import BOOL, HELP, STR, Flag
from silo.cli.imagefmt import REGISTRY_FLAGS

FLAGS = [
    Flag("platform", STR, help="os/arch[/variant] (default: this host's)"),
    Flag("quiet", BOOL, "q", help="print only the image's name"),
    *REGISTRY_FLAGS,
    HELP,
]
USAGE = "[OPTIONS] NAME[:TAG|@DIGEST]\n\nPull an image from a registry."


def main(ctx: Context, args: list[str], verb: str = "pull") -> int:
    values, rest = parse_args(verb, USAGE, FLAGS, args, min_args=1, max_args=1)
    import os

    from silo.cli.imagefmt import registry_options, show_progress

    name = rest[0]
    opts = registry_options(values)
    quiet = values["quiet"]
    if not quiet and ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        out("Using default tag: latest")
    with ctx.client().pull(name, platform=values["platform"], **opts) as stream:
        last, moved = show_progress(stream, tty=os.isatty(1), write=(lambda s: None)
                                    if quiet else None)
    tags = last.get("RepoTags") or []
    shown = str(last.get("Reference") or (tags[0] if tags else name))
    if not quiet:
        digests = last.get("RepoDigests") or []
        out("Digest: " + (digests[0].rsplit("@", 1)[-1] if digests else str(last.get("Id"))))
        out(f"Status: Downloaded newer image for {shown}" if moved
            else f"Status: Image is up to date for {shown}")
    out(shown)
    return 0
