"""silo push (also silo image push): push an image to a registry, with progress as pull's."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import BOOL, HELP, Flag
from silo.cli.imagefmt import REGISTRY_FLAGS

FLAGS = [Flag("quiet", BOOL, "q", help="print nothing but errors"), *REGISTRY_FLAGS, HELP]
USAGE = ("[OPTIONS] NAME[:TAG] [DESTINATION]\n\nPush an image to a registry (to DESTINATION, "
         "a reference, when given).")


def main(ctx: Context, args: list[str], verb: str = "push") -> int:
    values, rest = parse_args(verb, USAGE, FLAGS, args, min_args=1, max_args=2)
    import os

    from silo.cli.imagefmt import registry_options, show_progress

    opts = registry_options(values)
    target = rest[1] if len(rest) > 1 else None
    quiet = values["quiet"]
    with ctx.client().push(rest[0], target, **opts) as stream:
        last, _ = show_progress(stream, tty=os.isatty(1),
                                write=(lambda s: None) if quiet else None)
    if not quiet:
        out(f"{target or rest[0]}: digest: {last.get('Digest', '')}")
    return 0
