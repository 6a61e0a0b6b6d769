"""OCI hooks: run a hook with the container state on stdin, its env and args, and a timeout."""

from __future__ import annotations

import os
import time

from silo.errors import Internal, Timeout
from silo.schema import jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def run(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    """Run each hook of one kind in order; the first failure raises and stops the rest."""
    data = jsonio.dumps(state).encode()
    for i, hook in enumerate(hooks):
        run_one(f"hooks.{kind}[{i}]", hook, data)


def run_one(field: str, hook: dict[str, Any], stdin: bytes) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(e.split("=", 1) for e in hook.get("env") or [])
    timeout = hook.get("timeout")
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(path, args, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_CLOSE, w)])
    except OSError as err:
        os.close(r)
        os.close(w)
        raise Internal(f"{field}: cannot run {path}: {err.strerror}", field=field) from err
    os.close(r)
    try:
        os.write(w, stdin)
    except BrokenPipeError:
        pass
    finally:
        os.close(w)
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise Timeout(f"{field}: {path} did not finish in {timeout}s", field=field)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise Internal(f"{field}: {path} exited with status {code}", field=field)
