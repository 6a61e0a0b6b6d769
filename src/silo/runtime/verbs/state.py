"""``state ID``: the OCI state document, as runc prints it."""

from __future__ import annotations

from silo.runtime.flags import parse
from silo.runtime.verbs._common import container_id, load, write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals


def run(g: Globals, argv: list[str]) -> int:
    from silo.schema.jsonio import dumps_pretty

    _opts, args = parse([], argv, "state")
    write_out(dumps_pretty(load(g, container_id(args, "state")).state()) + "\n")
    return 0
