"""silod's HTTP routes served on a unix socket in a temporary directory, over the services a
test gives (the others absent, as silod answers without them)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from silo.service.app import make_router
from silo.service.http import APIServer


class Served:
    """What silod serves: only the services given (``network``, ``images``)."""

    def __init__(self, network: Any = None, images: Any = None) -> None:
        self.network = network
        self.images = images


@contextlib.contextmanager
def serving(tmp_path: Path, **services: Any) -> Iterator[str]:
    """The socket's path while the routes are served."""
    sock = str(tmp_path / "silod.sock")
    server = APIServer(make_router(Served(**services)), socket_path=sock)  # type: ignore[arg-type]
    server.start()
    try:
        yield sock
    finally:
        server.stop()
