"""``delete [--force] ID``."""

from __future__ import annotations

import os

from silo.errors import NotFound
from silo.runtime.flags import BOOL, Flag, parse
from silo.runtime.verbs._common import container_id, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [Flag("force", BOOL, short="f", help="kill the container if it still runs")]


def run(g: Globals, argv: list[str]) -> int:
    opts, args = parse(FLAGS, argv, "delete")
    cid = container_id(args, "delete")
    if opts["force"] and "/" not in cid and not os.path.exists(os.path.join(g.root, cid)):
        return 0  # containerd's cleanup deletes again with --force: gone is fine, and cheap
    try:
        c = load(g, cid)
    except NotFound:
        if opts["force"]:
            return 0  # containerd's cleanup deletes again with --force: nothing left is fine
        raise
    c.delete(force=opts["force"])
    return 0
