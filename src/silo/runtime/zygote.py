"""A warm interpreter for silo-runtime's small verbs (the zygote).

containerd calls the runtime four times for one ``ctr run --rm``; runc answers ``state`` or
``delete`` in 4-5 ms, while CPython alone needs 6-7 ms to start. The zygote is a resident
interpreter with the runtime already imported: the ``silo-runtime`` launcher (C,
``runtime/launcher.c``) connects to it, hands over its argv, environment, cwd, umask and
stdio (SCM_RIGHTS), and a forked child of the zygote runs the verb as the launcher would have.

Only verbs that start no process the caller must parent go this way (``create``, ``run`` and
``exec`` make the container's processes, which containerd's shim, a subreaper, must be able to
wait for; they always run in a fresh interpreter). The child refuses, and the launcher falls
back to a fresh interpreter, when the caller is not root, lives in other namespaces or under
another root directory than the zygote, or when the runtime's source changed since the zygote
started (then the zygote also goes away, so the next call starts a fresh one).

The zygote is started by the launcher (detached, stdio on /dev/null, cwd /), keeps no thread,
and exits after ``IDLE`` seconds without a request. One zygote per launcher build: its socket
name is fixed in the launcher at setup.

Wire format (SOCK_SEQPACKET): the launcher sends one message, NUL-separated fields
``SILO1, cwd, umask (octal), argc, argv..., envc, env...`` with fds 0, 1, 2 attached; the
child answers a 4-byte pid (0: refused, fall back), then a 4-byte exit status.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import sys

from silo.kernel import cgroups, proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

IDLE = 20.0                       # seconds without a request before the zygote exits
SPARES = 2                        # forked children waiting for a request
VERBS = ("start", "state", "kill", "delete", "list", "ps", "pause", "resume", "update",
         "features")              # keep in step with ZYGOTE_VERBS in launcher.c
_MAX_MSG = 1 << 20
_INT = struct.Struct("=i")


class Request:
    """What the launcher sent, decoded."""

    def __init__(self, cwd: str, umask: int, argv: list[str], env: dict[str, str]) -> None:
        self.cwd, self.umask, self.argv, self.env = cwd, umask, argv, env


def decode(data: bytes) -> Request:
    """The launcher's message → :class:`Request`; ValueError when it is malformed."""
    fields = data.split(b"\0")
    if not fields or fields[0] != b"SILO1":
        raise ValueError("not a SILO1 request")
    try:
        cwd, umask = os.fsdecode(fields[1]), int(fields[2], 8)
        argc = int(fields[3])
        argv = [os.fsdecode(a) for a in fields[4:4 + argc]]
        envc = int(fields[4 + argc])
        raw_env = fields[5 + argc:5 + argc + envc]
    except (IndexError, ValueError) as err:
        raise ValueError(f"malformed request: {err}") from None
    if len(argv) != argc or len(raw_env) != envc:
        raise ValueError("malformed request: short argv or env")
    env = {}
    for item in raw_env:
        key, sep, value = item.partition(b"=")
        if sep:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return Request(cwd, umask, argv, env)


def encode(cwd: str, umask: int, argv: list[str], env: dict[str, str]) -> bytes:
    """The inverse of :func:`decode` (the launcher's format, for tests and Python callers)."""
    parts = [b"SILO1", os.fsencode(cwd), b"%o" % umask, b"%d" % len(argv)]
    parts += [os.fsencode(a) for a in argv]
    parts.append(b"%d" % len(env))
    parts += [os.fsencode(f"{k}={v}") for k, v in env.items()]
    return b"\0".join(parts)


# -- the zygote ------------------------------------------------------------------------------

def _sources() -> dict[str, float]:
    """mtime of every loaded silo module's file (a change makes the zygote stale)."""
    out = {}
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if path and getattr(mod, "__name__", "").startswith("silo"):
            try:
                out[path] = os.stat(path).st_mtime
            except OSError:
                out[path] = -1.0
    return out


def _stale(sources: dict[str, float]) -> bool:
    for path, mtime in sources.items():
        try:
            if os.stat(path).st_mtime != mtime:
                return True
        except OSError:
            return True
    return False


def _import_all() -> None:
    """Import what the verbs use (their first call otherwise costs ~1.5 ms of lazy imports)."""
    import importlib
    import pkgutil

    import silo.compute
    import silo.kernel
    import silo.schema

    for pkg in (silo.compute, silo.kernel, silo.schema):
        for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(info.name)
    for verb in VERBS:
        importlib.import_module(f"silo.runtime.verbs.{verb}")


def _warm(run_main: Callable[[list[str]], int], root: str, verbs: tuple[str, ...]) -> None:
    """Run each verb once on a container that does not exist under ``root``: in the zygote
    this settles every lazy start-up cost; in a spare it takes, before any request, the
    copy-on-write faults a request would otherwise pay."""
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        for verb in verbs:
            args = ["--root", root, verb]
            if verb not in ("list", "features"):
                args.append("warm-up")
            try:
                run_main(args)
            except BaseException:          # a warm-up must never stop the zygote
                pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def serve(sock_path: str) -> None:
    """Run the zygote on ``sock_path`` until it has been idle for :data:`IDLE` seconds.

    The zygote itself never answers: it keeps :data:`SPARES` forked children waiting in
    ``accept`` (the fork and its copy-on-write faults happen before a request arrives), and
    forks a new spare each time one takes a request and says so on a pipe.
    """
    import gc

    from silo.runtime import main as runtime_main

    # it outlives the call that started it: that caller's cgroups must stay removable
    cgroups.move_to_roots()
    _import_all()
    warm_root = sock_path + ".warm"         # an empty state root, only ever read
    os.makedirs(warm_root, mode=0o700, exist_ok=True)
    _warm(runtime_main.main, warm_root, VERBS)
    sources = _sources()
    me = proc.identity("self")
    gc.collect()
    gc.freeze()                             # children leave the warm heap untouched by GC

    os.makedirs(os.path.dirname(sock_path), mode=0o700, exist_ok=True)
    lock = os.open(sock_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return                              # another zygote serves this socket
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    listener.bind(sock_path)
    os.chmod(sock_path, 0o600)
    listener.listen(64)
    taken_r, taken_w = os.pipe2(os.O_CLOEXEC)
    spares: set[int] = set()
    busy: set[int] = set()

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            os.close(taken_r)
            os.close(lock)
            _warm(runtime_main.main, warm_root, ("state", "kill", "delete"))
            _spare(listener, taken_w, me, sources, sock_path, runtime_main.main)
        spares.add(pid)

    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        for _ in range(SPARES):
            spawn()
        while True:
            ready, _, _ = select.select([taken_r], [], [], IDLE)
            if ready:
                data = os.read(taken_r, 4 * 64)
                for (pid,) in _INT.iter_unpack(data[: len(data) // 4 * 4]):
                    spares.discard(pid)
                    busy.add(pid)
                    spawn()
            _reap(spares, busy)
            if not ready and not busy:
                return
            while len(spares) < SPARES:     # a spare that died (stale sources, a signal)
                spawn()
    finally:
        for pid in spares:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(spares, busy)
        try:
            if os.stat(sock_path).st_ino == os.fstat(listener.fileno()).st_ino:
                os.unlink(sock_path)
        except OSError:
            pass
        listener.close()
        os.close(lock)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _reap(*groups: set[int]) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        for g in groups:
            g.discard(pid)


def _spare(listener: socket.socket, taken: int, me: tuple[object, ...],
           sources: dict[str, float], sock_path: str,
           run_main: Callable[[list[str]], int]) -> NoReturn:
    """A forked child waiting for one request; never returns."""
    import gc

    gc.disable()                            # a short life: nothing for the collector to do
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _stale(sources):                     # make way for a zygote with the current code
        _retire(sock_path)
    import time

    since = time.monotonic()
    try:
        conn, _ = listener.accept()
        os.write(taken, _INT.pack(os.getpid()))
    except OSError:
        os._exit(1)
    os.close(taken)
    listener.close()
    if time.monotonic() - since < 1.0:      # checked just now: no need to stat them again
        sources = {}
    _child(conn, me, sources, sock_path, run_main)


def _retire(sock_path: str) -> NoReturn:
    try:
        os.unlink(sock_path)
    except OSError:
        pass
    os.kill(os.getppid(), signal.SIGTERM)
    os._exit(0)


def _child(conn: socket.socket, me: tuple[object, ...], sources: dict[str, float],
           sock_path: str, run_main: Callable[[list[str]], int]) -> NoReturn:
    """Serve one request in a fresh fork; never returns."""
    try:
        data, anc, _, _ = conn.recvmsg(_MAX_MSG, socket.CMSG_SPACE(3 * 4))
        fds: list[int] = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack(f"={len(payload) // 4}i", payload))
        refusal = _refusal(conn, me, sources, fds)
        if refusal == "stale":              # make way for a zygote with the current code
            try:
                os.unlink(sock_path)
            except OSError:
                pass
            os.kill(os.getppid(), signal.SIGTERM)
        req = None if refusal else decode(data)
        if req is not None:
            os.chdir(req.cwd)               # a cwd we cannot reach: refused below
    except (OSError, ValueError):
        req = None
    if req is None:                         # the launcher runs the verb itself
        try:
            conn.sendall(_INT.pack(0))
        finally:
            os._exit(0)
    code = 1
    try:
        conn.sendall(_INT.pack(os.getpid()))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)             # dup2 clears O_CLOEXEC: stdio stays inheritable
            os.close(fd)
        os.umask(req.umask)
        os.environ.clear()
        os.environ.update(req.env)
        sys.argv = [req.argv[0] if req.argv else "silo-runtime", *req.argv[1:]]
        code = run_main(req.argv[1:])
    except BaseException:                  # the status is the answer
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    try:
        conn.sendall(_INT.pack(code & 0xFF))
    except OSError:
        pass
    os._exit(code & 0xFF)


def _refusal(conn: socket.socket, me: tuple[object, ...], sources: dict[str, float],
             fds: list[int]) -> str:
    """Why this child must not act for the caller ('' when it may)."""
    if len(fds) != 3:
        return "stdio"
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    if uid != os.getuid():
        return "user"
    try:
        if proc.identity(pid) != me:
            return "namespaces"
    except OSError:
        return "namespaces"
    if _stale(sources):
        return "stale"
    return ""


if __name__ == "__main__":
    serve(sys.argv[1])
