"""``start ID``: let a created container's process run."""

from __future__ import annotations

from silo.runtime.flags import parse
from silo.runtime.verbs._common import container_id, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals


def run(g: Globals, argv: list[str]) -> int:
    _opts, args = parse([], argv, "start")
    load(g, container_id(args, "start")).start()
    return 0
