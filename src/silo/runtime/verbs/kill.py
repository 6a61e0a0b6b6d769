"""``kill [--all] ID [SIGNAL]``: signal by number or name (default SIGTERM)."""

from __future__ import annotations

from silo.runtime.flags import BOOL, Flag, parse
from silo.runtime.verbs._common import container_id, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [Flag("all", BOOL, short="a", help="signal every process of the container")]


def run(g: Globals, argv: list[str]) -> int:
    from silo.kernel import signals

    opts, args = parse(FLAGS, argv, "kill")
    cid = container_id(args, "kill", extra=1)
    sig = signals.parse(args[1]) if len(args) > 1 else signals.SIGTERM
    load(g, cid).kill(sig, all_processes=opts["all"])
    return 0
