"""Run a piece of a test in a forked child, so that what it does to its own process (seccomp
filters, capabilities, user ids) never reaches the pytest process."""

from __future__ import annotations

import json
import os
import resource
from collections.abc import Callable
from typing import Any


def run_in_child(body: Callable[[], dict[str, Any] | None]) -> tuple[int, bytes]:
    """Fork; the child runs ``body`` with its stdout on a pipe and either returns a report
    (sent as JSON) or executes a program that writes to that stdout. Returns the child's wait
    status and everything it wrote."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            os.dup2(w, 1)
            # A seccomp kill would otherwise dump core.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            report = body()
        except BaseException as err:
            report, code = {"child error": repr(err)}, 1
        try:
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks)
