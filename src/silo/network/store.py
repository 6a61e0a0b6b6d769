"""Where the Host Network Service keeps its documents: the :class:`NetworkStore` Protocol and
:class:`MemoryStore` (tests, and a service that need not outlive its process).

silod's SQLite implementation is :class:`silo.service.netstore.SQLiteNetworkStore`. A store
holds whole documents by kind (``network``, ``endpoint``, ``namespace``) and ID; it checks
nothing: the service validates before it writes.

Imports nothing of silo but the kinds' names.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Protocol

KINDS = ("network", "endpoint", "namespace")


class NetworkStore(Protocol):
    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every document: ``{kind: {id: doc}}``, every kind present."""

    def put(self, kind: str, id: str, doc: dict[str, Any]) -> None:
        """Insert or replace one document."""

    def delete(self, kind: str, id: str) -> None:
        """Remove one document (nothing happens when there is none)."""


class MemoryStore:
    """A NetworkStore in a dict. ``fail_on`` makes the next ``put``/``delete`` of that kind
    raise it (tests of the undo paths)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self.fail_on: dict[str, BaseException] = {}

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        with self._lock:
            return copy.deepcopy(self._docs)

    def put(self, kind: str, id: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._fail(kind)
            self._docs[kind][id] = copy.deepcopy(doc)

    def delete(self, kind: str, id: str) -> None:
        with self._lock:
            self._fail(kind)
            self._docs[kind].pop(id, None)

    def _fail(self, kind: str) -> None:
        err = self.fail_on.pop(kind, None)
        if err is not None:
            raise err
