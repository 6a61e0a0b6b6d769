"""``spec [--bundle DIR]``: write a default config.json (refuses to overwrite one)."""

from __future__ import annotations

import os

from silo.errors import AlreadyExists
from silo.runtime.flags import BOOL, STR, Flag, parse
from silo.runtime.verbs._common import write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [Flag("bundle", STR, short="b", default=".", help="directory for config.json"),
         Flag("rootless", BOOL, help="(not supported: accepted, ignored)"),
         Flag("stdout", BOOL, help="print the spec instead of writing config.json")]


def run(g: Globals, argv: list[str]) -> int:
    from silo.schema.jsonio import dumps_pretty
    from silo.schema.oci_defaults import default_spec

    opts, _args = parse(FLAGS, argv, "spec")
    text = dumps_pretty(default_spec()) + "\n"
    if opts["stdout"]:
        write_out(text)
        return 0
    path = os.path.join(opts["bundle"], "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise AlreadyExists(f"{path}: file already exists", field="bundle") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return 0
