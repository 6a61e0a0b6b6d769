"""silod's state database: compute systems, their processes, and the operations journal.

One SQLite file (``DaemonConfig.db_path``) in WAL mode with ``synchronous=NORMAL``: a commit
survives silod crashing (the WAL is in the page cache), and only a power loss can drop the last
few. Every table is written through this module; callers get plain rows back.

The ``operations`` table is a write-ahead intent journal for the multi-step operations of the
compute service (create, start, shutdown, terminate, delete). A row is written *before* the
first side effect and removed after the last, so that a silod that dies half-way leaves a note
saying what was in flight and where its pieces are (``detail``: bundle, scratch, cgroup);
reconcile reads the notes and finishes or undoes each one.

Thread-safety: one connection, shared by all threads, behind a lock. SQLite serialises writers
anyway and every statement here is short, so a pool would buy nothing; the busy timeout covers
another process (a second silod by mistake, or the sqlite3 shell) holding the file.

Imports only the standard library, :mod:`silo.errors` and :mod:`silo.service.sqlitedb`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from silo import errors
from silo.service.sqlitedb import close_quietly, open_database

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS systems (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    owner          TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL,
    pid            INTEGER NOT NULL DEFAULT 0,
    pid_start      INTEGER,
    conmon_pid     INTEGER NOT NULL DEFAULT 0,
    conmon_start   INTEGER,
    image          TEXT NOT NULL DEFAULT '',
    document       TEXT NOT NULL,
    created        REAL NOT NULL,
    started        REAL,
    finished       REAL,
    exit_code      INTEGER,
    exit_type      TEXT,
    stop_requested TEXT,
    bundle         TEXT NOT NULL,
    scratch        TEXT NOT NULL,
    cgroup         TEXT NOT NULL,
    oom_kills      INTEGER NOT NULL DEFAULT 0,
    terminal       INTEGER NOT NULL DEFAULT 0,
    stdin          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS processes (
    system_id    TEXT NOT NULL REFERENCES systems(id) ON DELETE CASCADE,
    exec_id      TEXT NOT NULL,
    pid          INTEGER NOT NULL DEFAULT 0,
    pid_start    INTEGER,
    conmon_pid   INTEGER NOT NULL DEFAULT 0,
    conmon_start INTEGER,
    params       TEXT NOT NULL,
    dir          TEXT NOT NULL,
    created      REAL NOT NULL,
    exited       INTEGER NOT NULL DEFAULT 0,
    exit_code    INTEGER,
    finished     REAL,
    PRIMARY KEY (system_id, exec_id)
);
CREATE INDEX IF NOT EXISTS processes_by_pid ON processes (system_id, pid);
CREATE TABLE IF NOT EXISTS operations (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    system_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT '{}',
    started   REAL NOT NULL
);
"""

# Written with the tables, once: the version of the schema the file was made with.
_SCHEMA_ROW = f"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '{SCHEMA_VERSION}');\n"

OPERATION_KINDS = ("create", "start", "shutdown", "terminate", "delete", "exec")


@dataclass
class SystemRow:
    """One compute system as stored. ``document`` is the Configuration as created (and as
    modified since); times are seconds since the epoch."""

    id: str
    name: str
    owner: str
    state: str
    document: dict[str, Any]
    created: float
    bundle: str
    scratch: str
    cgroup: str
    image: str = ""
    pid: int = 0
    pid_start: int | None = None
    conmon_pid: int = 0
    conmon_start: int | None = None
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    exit_type: str | None = None
    stop_requested: str | None = None
    oom_kills: int = 0
    terminal: bool = False
    stdin: bool = False


@dataclass
class ProcessRow:
    """One process started in a compute system after its first (an exec)."""

    system_id: str
    exec_id: str
    params: dict[str, Any]
    dir: str
    created: float
    pid: int = 0
    pid_start: int | None = None
    conmon_pid: int = 0
    conmon_start: int | None = None
    exited: bool = False
    exit_code: int | None = None
    finished: float | None = None


@dataclass
class Operation:
    """An intent-journal entry: ``kind`` was begun on ``system_id`` and not finished."""

    id: int
    system_id: str
    kind: str
    started: float
    detail: dict[str, Any] = field(default_factory=dict)


_SYSTEM_COLUMNS = [f.name for f in fields(SystemRow)]
_PROCESS_COLUMNS = [f.name for f in fields(ProcessRow)]
_JSON_COLUMNS = {"document", "params", "detail"}
_BOOL_COLUMNS = {"terminal", "stdin", "exited"}


def _encode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return json.dumps(value, sort_keys=True)
    if column in _BOOL_COLUMNS:
        return int(bool(value))
    return value


def _decode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return json.loads(value)
    if column in _BOOL_COLUMNS:
        return bool(value)
    return value


class Store:
    """The database. Errors: AlreadyExists when an id or name is taken; Internal (cause
    kept) for anything SQLite refuses otherwise."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = open_database(path, _SCHEMA + _SCHEMA_ROW, busy_timeout=busy_timeout,
                                 op="store::open", foreign_keys=True)

    def close(self) -> None:
        with self._lock:
            close_quietly(self._db)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; SQLite errors become silo errors."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as err:
                if "UNIQUE" in str(err):
                    raise errors.AlreadyExists(f"state database: {err}", op="store") from err
                raise errors.Internal(f"state database: {err}", op="store") from err
            except sqlite3.Error as err:
                raise errors.Internal(f"state database: {err}", op="store") from err

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self._db.execute(sql, args)
                cur.row_factory = sqlite3.Row
                return list(cur.fetchall())
            except sqlite3.Error as err:
                raise errors.Internal(f"state database: {err}", op="store") from err

    # -- settings of the database itself ----------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # -- compute systems ---------------------------------------------------------------------

    def insert_system(self, row: SystemRow) -> None:
        """Raises AlreadyExists naming the id or the name that is taken."""
        with self._lock:
            taken = self._query("SELECT id, name FROM systems WHERE id = ? OR name = ?",
                                (row.id, row.name))
            for hit in taken:
                if hit["id"] == row.id:
                    raise errors.AlreadyExists(f"a compute system with Id {row.id!r} exists",
                                               op="store::insert", obj=row.id)
                raise errors.AlreadyExists(f"a compute system named {row.name!r} exists",
                                           op="store::insert", obj=hit["id"])
            cols = ", ".join(_SYSTEM_COLUMNS)
            marks = ", ".join("?" for _ in _SYSTEM_COLUMNS)
            with self._tx() as db:
                db.execute(f"INSERT INTO systems ({cols}) VALUES ({marks})",
                           tuple(_encode(c, getattr(row, c)) for c in _SYSTEM_COLUMNS))

    def update_system(self, system_id: str, *, where_state: tuple[str, ...] = (),
                      **values: Any) -> bool:
        """Set columns of one system; with ``where_state``, only if its state is one of those.
        True if a row changed (the compare-and-set the service uses against racing exits)."""
        unknown = set(values) - set(_SYSTEM_COLUMNS)
        if unknown:
            raise errors.Internal(f"store: no system columns {sorted(unknown)}")
        sets = ", ".join(f"{c} = ?" for c in values)
        args: list[Any] = [_encode(c, v) for c, v in values.items()]
        sql = f"UPDATE systems SET {sets} WHERE id = ?"
        args.append(system_id)
        if where_state:
            sql += f" AND state IN ({', '.join('?' for _ in where_state)})"
            args.extend(where_state)
        with self._tx() as db:
            return db.execute(sql, tuple(args)).rowcount > 0

    def get_system(self, system_id: str) -> SystemRow | None:
        rows = self._query("SELECT * FROM systems WHERE id = ?", (system_id,))
        return _system(rows[0]) if rows else None

    def find_system(self, id_or_name: str) -> SystemRow | None:
        rows = self._query("SELECT * FROM systems WHERE id = ? OR name = ? "
                           "ORDER BY id = ? DESC LIMIT 1", (id_or_name, id_or_name, id_or_name))
        return _system(rows[0]) if rows else None

    def list_systems(self, *, owner: str | None = None, name: str | None = None,
                     state: str | None = None) -> list[SystemRow]:
        sql, args = "SELECT * FROM systems", []
        conds = []
        for column, value in (("owner", owner), ("name", name), ("state", state)):
            if value is not None:
                conds.append(f"{column} = ?")
                args.append(value)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY created, id"
        return [_system(r) for r in self._query(sql, tuple(args))]

    def delete_system(self, system_id: str) -> None:
        """Remove the system with its processes (its journal entries are the caller's)."""
        with self._tx() as db:
            db.execute("DELETE FROM processes WHERE system_id = ?", (system_id,))
            db.execute("DELETE FROM systems WHERE id = ?", (system_id,))

    # -- processes ---------------------------------------------------------------------------

    def insert_process(self, row: ProcessRow) -> None:
        cols = ", ".join(_PROCESS_COLUMNS)
        marks = ", ".join("?" for _ in _PROCESS_COLUMNS)
        with self._tx() as db:
            db.execute(f"INSERT INTO processes ({cols}) VALUES ({marks})",
                       tuple(_encode(c, getattr(row, c)) for c in _PROCESS_COLUMNS))

    def update_process(self, system_id: str, exec_id: str, *, only_running: bool = False,
                       **values: Any) -> bool:
        unknown = set(values) - set(_PROCESS_COLUMNS)
        if unknown:
            raise errors.Internal(f"store: no process columns {sorted(unknown)}")
        sets = ", ".join(f"{c} = ?" for c in values)
        sql = f"UPDATE processes SET {sets} WHERE system_id = ? AND exec_id = ?"
        if only_running:
            sql += " AND exited = 0"
        args = (*(_encode(c, v) for c, v in values.items()), system_id, exec_id)
        with self._tx() as db:
            return db.execute(sql, args).rowcount > 0

    def get_process(self, system_id: str, pid: int) -> ProcessRow | None:
        """The newest process of that system with that host pid (pids are reused)."""
        rows = self._query("SELECT * FROM processes WHERE system_id = ? AND pid = ? "
                           "ORDER BY created DESC LIMIT 1", (system_id, pid))
        return _process(rows[0]) if rows else None

    def get_process_by_exec(self, system_id: str, exec_id: str) -> ProcessRow | None:
        rows = self._query("SELECT * FROM processes WHERE system_id = ? AND exec_id = ?",
                           (system_id, exec_id))
        return _process(rows[0]) if rows else None

    def list_processes(self, system_id: str | None = None, *,
                       running_only: bool = False) -> list[ProcessRow]:
        sql, args = "SELECT * FROM processes", []
        conds = []
        if system_id is not None:
            conds.append("system_id = ?")
            args.append(system_id)
        if running_only:
            conds.append("exited = 0")
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY created"
        return [_process(r) for r in self._query(sql, tuple(args))]

    def delete_process(self, system_id: str, exec_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM processes WHERE system_id = ? AND exec_id = ?",
                       (system_id, exec_id))

    # -- the operations journal --------------------------------------------------------------

    def begin(self, system_id: str, kind: str, detail: dict[str, Any] | None = None) -> int:
        """Record the intent to do ``kind`` to ``system_id``; returns the entry's id."""
        if kind not in OPERATION_KINDS:
            raise errors.Internal(f"store: unknown operation kind {kind!r}")
        with self._tx() as db:
            cur = db.execute("INSERT INTO operations (system_id, kind, detail, started) "
                             "VALUES (?, ?, ?, ?)",
                             (system_id, kind, _encode("detail", detail or {}), time.time()))
            return int(cur.lastrowid or 0)

    def note(self, op_id: int, **detail: Any) -> None:
        """Add to an entry's detail (what exists so far, for an undo)."""
        with self._lock:
            rows = self._query("SELECT detail FROM operations WHERE id = ?", (op_id,))
            if not rows:
                return
            merged = {**json.loads(rows[0]["detail"]), **detail}
            with self._tx() as db:
                db.execute("UPDATE operations SET detail = ? WHERE id = ?",
                           (_encode("detail", merged), op_id))

    def end(self, op_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM operations WHERE id = ?", (op_id,))

    def operations(self, system_id: str | None = None) -> list[Operation]:
        sql, args = "SELECT * FROM operations", []
        if system_id is not None:
            sql, args = sql + " WHERE system_id = ?", [system_id]
        rows = self._query(sql + " ORDER BY id", tuple(args))
        return [Operation(id=r["id"], system_id=r["system_id"], kind=r["kind"],
                          started=r["started"], detail=json.loads(r["detail"])) for r in rows]


def _system(row: sqlite3.Row) -> SystemRow:
    return SystemRow(**{c: _decode(c, row[c]) for c in _SYSTEM_COLUMNS})


def _process(row: sqlite3.Row) -> ProcessRow:
    return ProcessRow(**{c: _decode(c, row[c]) for c in _PROCESS_COLUMNS})
