"""silo image COMMAND: docker's image management verbs under one word.

    ls (list)   inspect   rm   prune [-a] [-f]   tag   push   pull   save   load   import
"""

from __future__ import annotations

from silo.cli.common import Context, inspect_each, out, parse_args
from silo.cli.flags import BOOL, HELP, Flag, UsageError

USAGE = """Usage:  silo image COMMAND

Manage images.

Commands:
  ls        List images
  inspect   Show images' documents as JSON
  rm        Remove images
  prune     Remove unused images
  tag       Give an image another name
  pull      Pull an image from a registry
  push      Push an image to a registry
  save      Save images to an archive
  load      Load images from an archive
  import    Import a root filesystem tarball as an image
"""

# subcommand -> (module, function's verb name)
COMMANDS = {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi", "tag": "tag",
            "pull": "pull", "push": "push", "save": "save", "load": "load",
            "import": "import_"}

INSPECT_FLAGS = [HELP]
INSPECT_USAGE = "IMAGE [IMAGE...]\n\nShow images' documents as JSON."
PRUNE_FLAGS = [Flag("all", BOOL, "a", help="every image no container uses, not only dangling "
                                          "ones"),
               Flag("force", BOOL, "f", help="do not ask for confirmation"), HELP]
PRUNE_USAGE = "[OPTIONS]\n\nRemove unused images."


def inspect(ctx: Context, args: list[str]) -> int:
    _, refs = parse_args("image inspect", INSPECT_USAGE, INSPECT_FLAGS, args, min_args=1)
    return inspect_each(refs, ctx.client().inspect_image)


def prune(ctx: Context, args: list[str]) -> int:
    values, _ = parse_args("image prune", PRUNE_USAGE, PRUNE_FLAGS, args, max_args=0)
    import sys

    from silo.cli.imagefmt import human_size

    if not values["force"]:
        what = ("all images without at least one container associated to them"
                if values["all"] else "all dangling images")
        sys.stdout.write(f"WARNING! This will remove {what}.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    report = ctx.client().prune_images(all=values["all"])
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        out("Deleted Images:")
        for item in deleted:
            for key in ("Untagged", "Deleted"):
                if key in item:
                    out(f"{key.lower()}: {item[key]}")
        out()
    out(f"Total reclaimed space: {human_size(int(report.get('SpaceReclaimed', 0)))}")
    return 0


def main(ctx: Context, args: list[str]) -> int:
    if not args or args[0] in ("--help", "-h", "help"):
        out(USAGE)
        return 0 if args else 125
    sub, rest = args[0], args[1:]
    if sub == "inspect":
        return inspect(ctx, rest)
    if sub == "prune":
        return prune(ctx, rest)
    module_name = COMMANDS.get(sub)
    if module_name is None:
        raise UsageError(f"silo image {sub}: not an image command (ls, inspect, rm, prune, tag, "
                         "pull, push, save, load, import)", field="image")
    module = __import__(f"silo.cli.{module_name}", fromlist=["main"])
    code: int = module.main(ctx, rest, verb=f"image {sub}")
    return code
