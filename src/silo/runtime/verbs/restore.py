"""``restore``: not supported (no CRIU integration); podman probes ``checkpoint --help``."""

from __future__ import annotations

from silo.errors import NotSupported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals


def run(g: Globals, argv: list[str]) -> int:
    raise NotSupported("restore is not supported by silo-runtime (no CRIU)", field="restore")
