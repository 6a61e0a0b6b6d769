"""nftables through libnftables (``libnftables.so.1``, by ctypes), in-process: one script is
one atomic transaction, so a failed apply changes nothing. Without the library, the ``nft``
command (``nft -f -``) does the same, one process per call.

An :class:`Nft` for a network namespace path talks to that namespace. libnftables opens its
netlink socket inside the library (and may reopen it), so that context lives on a worker
thread of its own that entered the namespace once and does nothing but this context's calls;
no thread serving other work is ever moved. The subprocess fallback enters the namespace with
``nsenter --net``.

nft's own error text (message, the failing line and the caret line under it) is carried in
the raised error: InvalidArgument for what nft or the kernel refused as written, NotFound /
AlreadyExists for a missing / existing object, Internal for the rest.

nft 1.0.6 has no switch to stop it resolving a host name found where an address belongs: a
script must hold literal addresses only (the rule compiler writes only validated ones).

Imports :mod:`silo.errors`, :mod:`silo.kernel.netns`.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from silo.errors import AlreadyExists, Internal, InvalidArgument, NotFound, SiloError, invalid
from silo.kernel import libc

T = TypeVar("T")

LIBRARY = "libnftables.so.1"
NFT_CTX_OUTPUT_JSON = 1 << 4
_LINE = re.compile(r"^(?:/dev/stdin|/proc/self/fd/\d+|<cmdline>|-):(\d+):", re.M)


def _load() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_run_cmd_from_filename.restype = ctypes.c_int
    lib.nft_run_cmd_from_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


_lib: ctypes.CDLL | None = None
_lib_loaded = False
_lib_lock = threading.Lock()


def library() -> ctypes.CDLL | None:
    """libnftables, or None when it is not installed (then ``nft`` is used)."""
    global _lib, _lib_loaded
    with _lib_lock:
        if not _lib_loaded:
            _lib, _lib_loaded = _load(), True
    return _lib


def error_from_nft(text: str, script: str, *, op: str, obj: str = "") -> SiloError:
    """The silo error for nft's error output on ``script``: the message names the failing line
    (``line N: <its text>``) and keeps nft's own words."""
    text = text.strip() or "nft failed without a message"
    lines = script.splitlines()
    where = ""
    m = _LINE.search(text)
    if m:
        n = int(m.group(1))
        if 1 <= n <= len(lines):
            where = f"line {n}: {lines[n - 1].strip()}: "
    first = next((ln for ln in text.splitlines() if "Error:" in ln), text.splitlines()[0])
    message = first.split("Error:", 1)[-1].strip()
    full = f"{where}{message}\n{text}" if where else f"{message}\n{text}"
    low = text.lower()
    if "no such file or directory" in low:
        return NotFound(full, op=op, obj=obj)
    if "file exists" in low:
        return AlreadyExists(full, op=op, obj=obj)
    if "operation not permitted" in low or "permission denied" in low:
        return Internal(full, op=op, obj=obj)
    return InvalidArgument(full, op=op, obj=obj, field="script")


class _Worker:
    """A thread that entered one network namespace and runs only the calls handed to it."""

    def __init__(self, path: str) -> None:
        from silo.kernel import netns as ns

        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any]] | None] = \
            queue.SimpleQueue()
        fd = ns.open_fd(path)
        started: list[BaseException | None] = []
        ready = threading.Event()

        def loop() -> None:
            try:
                libc.setns(fd, ns.CLONE_NEWNET)
                started.append(None)
            except OSError as err:
                started.append(Internal(f"setns {path}: {err.strerror}", op="nft::open",
                                        obj=path))
            finally:
                os.close(fd)
                ready.set()
            if started[0] is not None:
                return
            while (job := self._jobs.get()) is not None:
                fn, box = job
                try:
                    box.append((True, fn()))
                except BaseException as err:
                    box.append((False, err))
                self._done.set()

        self._done = threading.Event()
        self._call_lock = threading.Lock()
        self._thread = threading.Thread(target=loop, name=f"silo-nft-{path}", daemon=True)
        self._thread.start()
        ready.wait()
        if started[0] is not None:
            raise started[0]

    def call(self, fn: Callable[[], T]) -> T:
        with self._call_lock:
            box: list[Any] = []
            self._done.clear()
            self._jobs.put((fn, box))
            self._done.wait()
        ok, value = box[0]
        if ok:
            result: T = value
            return result
        raise value

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()


class Nft:
    """An nftables context (for the namespace at ``netns``, or the caller's). Calls are
    serialised by a lock; the context is freed by :meth:`close` (or the ``with`` block)."""

    def __init__(self, netns: str | None = None, *, use_library: bool = True) -> None:
        self.netns = netns
        self._lock = threading.Lock()
        self._ctx: int | None = None
        self._worker: _Worker | None = None
        self._lib = library() if use_library else None
        if self._lib is None:
            if shutil.which("nft") is None:
                raise Internal("neither libnftables nor the nft command is installed",
                               op="nft::open")
            if netns is not None and shutil.which("nsenter") is None:
                raise Internal("nsenter is needed to run nft in a namespace", op="nft::open")
            return
        lib = self._lib

        def new() -> int:
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise Internal("nft_ctx_new failed", op="nft::open")
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            return int(ctx)

        self._worker = None if netns is None else _Worker(netns)
        self._ctx = self._call(new)

    def _call(self, fn: Callable[[], T]) -> T:
        return fn() if self._worker is None else self._worker.call(fn)

    @property
    def in_process(self) -> bool:
        return self._lib is not None

    def close(self) -> None:
        with self._lock:
            if self._lib is not None and self._ctx is not None:
                lib, ctx = self._lib, self._ctx
                self._call(lambda: lib.nft_ctx_free(ctx))
            self._ctx = None
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def __enter__(self) -> Nft:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, script: str, op: str, *, json_out: bool = False) -> str:
        if not isinstance(script, str) or "\0" in script:
            raise invalid("script", "must be text without NUL bytes", op=op)
        if self._lib is None:
            return self._run_command(script, op, json_out=json_out)
        lib = self._lib
        with self._lock:
            if self._ctx is None:
                raise Internal("the nft context is closed", op=op)
            flags = lib.nft_ctx_output_get_flags(self._ctx)
            want = flags | NFT_CTX_OUTPUT_JSON if json_out else flags & ~NFT_CTX_OUTPUT_JSON
            ctx = self._ctx

            def go() -> tuple[int, bytes, bytes]:
                lib.nft_ctx_output_set_flags(ctx, want)
                # From a file, not a buffer: nft 1.0.6 reports an error in a multi-line
                # buffer against the wrong line. A memfd costs no disk and no name.
                fd = os.memfd_create("nft", os.MFD_CLOEXEC)
                try:
                    os.write(fd, script.encode())
                    rc = lib.nft_run_cmd_from_filename(ctx, f"/proc/self/fd/{fd}".encode())
                finally:
                    os.close(fd)
                return (rc, lib.nft_ctx_get_output_buffer(ctx) or b"",
                        lib.nft_ctx_get_error_buffer(ctx) or b"")

            rc, raw_out, raw_err = self._call(go)
            out = raw_out.decode(errors="replace")
            err = raw_err.decode(errors="replace")
        if rc != 0:
            raise error_from_nft(err, script, op=op)
        return out

    def _run_command(self, script: str, op: str, *, json_out: bool) -> str:
        # nft 1.0.6 prints no JSON for a listing read from a file: give it as arguments.
        argv = ["nft", "-j", *script.split()] if json_out else ["nft", "-f", "-"]
        if self.netns is not None:
            argv = ["nsenter", f"--net={self.netns}", "--", *argv]
        try:
            done = subprocess.run(argv, input=script, capture_output=True, text=True,
                                  check=False)
        except OSError as err:
            raise Internal(f"{argv[0]}: {err.strerror}", op=op) from err
        if done.returncode != 0:
            raise error_from_nft(done.stderr, script, op=op)
        return done.stdout

    def apply(self, script: str) -> None:
        """Run ``script`` (nft syntax, several commands) as ONE transaction: all of it or
        nothing."""
        self._run(script, "nft::apply")

    def run(self, cmd: str) -> str:
        """A command's text output (``list table inet silo``)."""
        return self._run(cmd, "nft::run")

    def list_json(self, what: str = "ruleset") -> dict[str, Any]:
        """``list <what>`` as nft's JSON document (``{"nftables": [...]}``); ``what`` is one
        object (``ruleset``, ``table inet silo``, ``map inet silo ep``)."""
        if not isinstance(what, str) or not what.strip() or any(c in what for c in "\n\r;{}#"):
            raise invalid("what", f"must name one nft object, got {what!r}", op="nft::list")
        out = self._run(f"list {what}", "nft::list", json_out=True)
        try:
            doc: dict[str, Any] = json.loads(out) if out.strip() else {"nftables": []}
        except ValueError as err:
            raise Internal(f"nft printed JSON that does not parse: {err}", op="nft::list",
                           obj=what) from err
        return doc

    def table_exists(self, family: str, name: str) -> bool:
        try:
            self.run(f"list table {family} {name}")
        except NotFound:
            return False
        return True


__all__ = ["LIBRARY", "Nft", "error_from_nft", "library"]
