"""Opening silod's state database: one SQLite file, shared by the services that keep state.

Owns how a connection to ``DaemonConfig.db_path`` is set up (WAL, ``synchronous=NORMAL``, the
busy timeout, the file's mode) so that :mod:`silo.service.store` and
:mod:`silo.service.netstore`, each on a connection of its own, open it alike. Imports the
standard library and :mod:`silo.errors`.
"""

from __future__ import annotations

import os
import sqlite3

from silo import errors


def open_database(path: str, schema: str, *, busy_timeout: float, op: str,
                  foreign_keys: bool = False) -> sqlite3.Connection:
    """A connection to ``path`` (made, with its folder, when absent) with ``schema`` run.

    The connection is in autocommit mode (callers begin their own transactions) and may be
    used from any thread, behind the caller's lock. Errors: Internal naming ``op``, cause kept.
    """
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                             check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        if foreign_keys:
            db.execute("PRAGMA foreign_keys = ON")
        db.executescript(schema)
    except sqlite3.Error as err:
        raise errors.Internal(f"open the state database {path}: {err}", op=op) from err
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass
    return db


def close_quietly(db: sqlite3.Connection) -> None:
    """Closes ``db``; a connection SQLite will not close is left to the process's exit."""
    try:
        db.close()
    except sqlite3.Error:
        pass
