"""silod's record of the Host Network Service: HNS documents in the state database.

One table, ``hns_documents (kind, id, document)``, in the same SQLite file as the compute
service's tables (``DaemonConfig.db_path``), on a connection of its own in WAL mode: the two
services write independently and SQLite serialises them. A document is stored whole, as the
service returns it; :class:`~silo.network.hns.HostNetworkService` validates before it writes.

Implements :class:`silo.network.store.NetworkStore`. Imports the standard library,
:mod:`silo.errors` and :mod:`silo.service.sqlitedb`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from silo import errors
from silo.service.sqlitedb import close_quietly, open_database

KINDS = ("network", "endpoint", "namespace")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hns_documents (
    kind     TEXT NOT NULL CHECK (kind IN ('network', 'endpoint', 'namespace')),
    id       TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
"""


class SQLiteNetworkStore:
    """The NetworkStore of silod. Errors: Internal (cause kept) for what SQLite refuses."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA, busy_timeout=busy_timeout, op="netstore::open")

    def close(self) -> None:
        with self._lock:
            close_quietly(self._db)

    def load(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        with self._lock:
            try:
                rows = self._db.execute("SELECT kind, id, document FROM hns_documents "
                                        "ORDER BY kind, id").fetchall()
            except sqlite3.Error as err:
                raise errors.Internal(f"state database: {err}", op="netstore::load") from err
        for kind, doc_id, text in rows:
            out[kind][doc_id] = json.loads(text)
        return out

    def put(self, kind: str, id: str, doc: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO hns_documents (kind, id, document) VALUES (?, ?, ?)",
                    (kind, id, json.dumps(doc, separators=(",", ":"))))

    def delete(self, kind: str, id: str) -> None:
        self._write("DELETE FROM hns_documents WHERE kind = ? AND id = ?", (kind, id))

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as err:
                raise errors.Internal(f"state database: {err}", op="netstore::write") from err
