"""What several verbs share: the container id argument and loading a container."""

from __future__ import annotations

import os

from silo.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.compute.container import Container
    from silo.runtime.main import Globals


def container_id(args: list[str], verb: str, extra: int = 0) -> str:
    if not args:
        raise InvalidArgument(f'"{verb}" requires a container id', field="id")
    if len(args) > 1 + extra:
        raise InvalidArgument(f'"{verb}" takes {1 + extra} argument(s), got {len(args)}',
                              field="id")
    return args[0]


def load(g: Globals, cid: str) -> Container:
    from silo.compute.container import Container

    return Container.load(g.root, cid)


def write_out(text: str) -> None:
    data = text.encode()
    while data:
        n = os.write(1, data)
        data = data[n:]
