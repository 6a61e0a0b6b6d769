"""One conmon per container (and per exec'd process): it runs ``silo-runtime create`` or
``exec``, keeps the process's stdio and log, and writes its exit code to a file.

conmon double-forks away from silod, so containers, their stdio and their exit codes outlive a
silod restart; silod finds them again from the files conmon leaves (conmon's pid file, the
container pid file, the exit file) and re-adopts them. What this module owns:

- the conmon command line and the sync-pipe protocol (``_OCI_SYNCPIPE``: conmon writes one JSON
  line ``{"data": PID}`` once the runtime has made the process, or ``{"data": -1, "message":
  STDERR}`` when it failed; for an exec, a second line carries the exit code);
- the exit watcher: a thread that polls the exit files every 50 ms (a stat each, cheaper than it
  sounds and immune to the missed-event corners of inotify), and reports a monitor that died
  without writing one;
- conmon's control fifo (``ctl``: window resizes) and attach socket (``attach``, SOCK_SEQPACKET;
  closing a connection to it closes the process's stdin pipe);
- conmon's ``k8s-file`` log format: ``TIMESTAMP STREAM P|F TEXT`` lines, ``P`` for a partial
  line that the next record continues.

Files, per container (``bundle`` is ``<run_dir>/bundles/<id>``): ``conmon.pid``, ``pidfile``,
``ctr.log``, ``attach``, ``ctl``, ``winsz``, and the exit file ``<run_dir>/exits/<id>``. Per
exec'd process, the same in ``<bundle>/exec/<exec_id>/`` with its exit file in ``exit/<id>``
there (conmon names exit files after the container).
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from silo import errors
from silo.kernel import proc
from silo.kernel.inotify import Inotify

log = logging.getLogger("silod.monitor")

_LAUNCH_TIMEOUT = 60.0
WIN_RESIZE_EVENT = 1  # conmon's ctl message types
REOPEN_LOGS_EVENT = 2


@dataclass
class Launched:
    """What conmon reports once the runtime made the process: both pids, with their start
    times (a pid and its start time together name one process)."""

    pid: int
    pid_start: int | None
    conmon_pid: int
    conmon_start: int | None


@dataclass
class Paths:
    """Where conmon keeps one process's files."""

    dir: str          # conmon's -b: the bundle, or the exec's directory
    exit_dir: str

    @property
    def pidfile(self) -> str:
        return os.path.join(self.dir, "pidfile")

    @property
    def conmon_pidfile(self) -> str:
        return os.path.join(self.dir, "conmon.pid")

    @property
    def log(self) -> str:
        return os.path.join(self.dir, "ctr.log")

    @property
    def attach(self) -> str:
        return os.path.join(self.dir, "attach")

    @property
    def ctl(self) -> str:
        return os.path.join(self.dir, "ctl")

    def exit_file(self, container_id: str) -> str:
        return os.path.join(self.exit_dir, container_id)


def container_paths(bundle: str, exits_dir: str) -> Paths:
    return Paths(dir=bundle, exit_dir=exits_dir)


def exec_paths(bundle: str, exec_id: str) -> Paths:
    d = os.path.join(bundle, "exec", exec_id)
    return Paths(dir=d, exit_dir=os.path.join(d, "exit"))


def command(conmon: str, runtime: str, runtime_root: str, container_id: str, paths: Paths, *,
            uuid: str, name: str, terminal: bool, stdin: bool,
            exec_spec: str | None = None) -> list[str]:
    """conmon's command line, as podman builds it (api version 1, full attach path so the
    attach socket sits in ``paths.dir``), for ``runtime create`` or, with ``exec_spec``,
    ``runtime exec --process SPEC --detach``."""
    argv = [conmon, "--api-version", "1", "-c", container_id, "-u", uuid, "-r", runtime,
            "-b", paths.dir, "-p", paths.pidfile, "-n", name, "--exit-dir", paths.exit_dir,
            "--full-attach", "-l", f"k8s-file:{paths.log}", "--log-level", "info",
            "--conmon-pidfile", paths.conmon_pidfile,
            "--runtime-arg", "--root", "--runtime-arg", runtime_root]
    if terminal:
        argv.append("--terminal")
    if stdin:
        argv.append("--stdin")
    if exec_spec is not None:
        argv += ["--exec", "--exec-process-spec", exec_spec]
    return argv


def launch(argv: list[str], paths: Paths, *, timeout: float = _LAUNCH_TIMEOUT,
           op: str = "monitor::launch", obj: str = "",
           command_field: str = "") -> tuple[Launched, int | None]:
    """Run conmon and wait for the runtime's verdict on the sync pipe.

    Returns the pids, and for an exec the read end of the sync pipe (the exit code arrives on
    it later; the caller may close it). Raises NotFound naming ``command_field`` (the request's
    CommandArgs) when the runtime found no such executable, Internal with the runtime's
    message when it failed otherwise, Timeout when conmon says nothing for ``timeout`` seconds.
    """
    os.makedirs(paths.exit_dir, exist_ok=True)
    r, w = os.pipe2(os.O_CLOEXEC)
    keep_reader = "--exec" in argv
    try:
        env = dict(os.environ, _OCI_SYNCPIPE=str(w))
        with tempfile.TemporaryFile() as err_file:
            # conmon forks its monitor and exits at once; the monitor swaps its stdio for
            # /dev/null. A file, not a pipe, catches what conmon says before that.
            # cwd: conmon drops an "oom" file into its working directory on an OOM kill
            first = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=err_file,
                                   stderr=err_file, env=env, pass_fds=(w,), timeout=timeout,
                                   cwd=paths.dir, check=False)
            os.close(w)
            w = -1
            if first.returncode != 0:
                err_file.seek(0)
                said = err_file.read().decode(errors="replace").strip()
                raise errors.Internal(f"conmon failed (exit {first.returncode}): {said}",
                                      op=op, obj=obj)
        message = _read_line(r, timeout, op=op, obj=obj)
        pid = message.get("data")
        if not isinstance(pid, int) or pid <= 0:
            said = str(message.get("message") or "").strip()
            if command_field and "executable file not found" in said:
                raise errors.NotFound(f"{command_field}: {said}", op=op, obj=obj,
                                      field=command_field)
            raise errors.Internal(f"the runtime failed: {said or message}", op=op, obj=obj)
        conmon_pid = _read_pidfile(paths.conmon_pidfile)
        launched = Launched(pid=pid, pid_start=proc.start_time(pid), conmon_pid=conmon_pid,
                            conmon_start=proc.start_time(conmon_pid) if conmon_pid else None)
        if keep_reader:
            reader, r = r, -1
            return launched, reader
        return launched, None
    except subprocess.TimeoutExpired as err:
        raise errors.Timeout(f"conmon did not return in {timeout:g}s", op=op, obj=obj) from err
    except OSError as err:
        raise errors.Internal(f"run conmon: {err}", op=op, obj=obj) from err
    finally:
        if w >= 0:
            os.close(w)
        if r >= 0:
            os.close(r)


def _read_line(fd: int, timeout: float, *, op: str, obj: str) -> dict[str, Any]:
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.Timeout(f"conmon said nothing in {timeout:g}s", op=op, obj=obj)
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace")
    if not line:
        raise errors.Internal("conmon exited without reporting on the sync pipe", op=op, obj=obj)
    try:
        # conmon 2.1.6 escapes little of the runtime's stderr: control characters stay raw
        doc = json.loads(line, strict=False)
    except ValueError:
        return {"data": -1, "message": line}
    return doc if isinstance(doc, dict) else {"data": -1, "message": line}


def _read_pidfile(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def read_pids(paths: Paths) -> tuple[int, int]:
    """(process pid, conmon pid) from conmon's files; 0 where a file is missing."""
    return _read_pidfile(paths.pidfile), _read_pidfile(paths.conmon_pidfile)


def read_exit_file(path: str) -> int | None:
    """The exit code conmon wrote (128+N for a signal), or None if there is no file yet."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise errors.Internal(f"read the exit file {path}: {err}", op="monitor::exit") from err
    try:
        return int(text)
    except ValueError:
        return -1  # conmon writes the file in one go; a garbled one is no exit code


# -- the control fifo and the attach socket ------------------------------------------------

def resize(paths: Paths, height: int, width: int) -> None:
    """Ask conmon to set the process's pty window size. InvalidState if conmon is gone."""
    msg = f"{WIN_RESIZE_EVENT} {height} {width}\n".encode()
    try:
        fd = os.open(paths.ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, OSError) as err:
        # ENXIO: no reader, the monitor has exited
        raise errors.InvalidState(f"the process's monitor is gone ({err.strerror})",
                                  op="monitor::resize") from err
    try:
        os.write(fd, msg)
    except OSError as err:
        raise errors.Internal(f"write to {paths.ctl}: {err}", op="monitor::resize") from err
    finally:
        os.close(fd)


def _connect_attach(path: str) -> socket.socket:
    """Connect to an attach socket whose path may exceed sun_path (108 bytes): through the
    directory's /proc/self/fd entry, as conmon binds it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dfd)
    return sock


def close_stdin(paths: Paths) -> None:
    """Close the process's stdin pipe: conmon closes it when an attach connection ends (it
    runs without --leave-stdin-open)."""
    try:
        sock = _connect_attach(paths.attach)
    except OSError as err:
        raise errors.InvalidState(f"the process's monitor is gone ({err.strerror})",
                                  op="monitor::close-stdin") from err
    try:
        sock.shutdown(socket.SHUT_WR)
        # wait for conmon to see the hangup before answering: it closes stdin then
        sock.settimeout(0.2)
        try:
            sock.recv(1)
        except OSError:
            pass
    finally:
        sock.close()


# -- the k8s-file log ----------------------------------------------------------------------

@dataclass
class LogLine:
    time: str
    stream: str
    line: str


def utc_time(stamp: str) -> str:
    """conmon's local-time RFC 3339 stamp (``2024-05-01T14:00:00.123456789+02:00``) in UTC
    with a ``Z``, as silod writes times, keeping the nanoseconds; unparseable ones unchanged."""
    base, dot, rest = stamp.partition(".")
    offset = rest.lstrip("0123456789")
    fraction = rest[: len(rest) - len(offset)]
    try:
        if not dot:
            t = datetime.fromisoformat(stamp)
        else:
            t = datetime.fromisoformat(base + offset.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if t.tzinfo is None:
        return stamp
    out = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{out}.{fraction}Z" if fraction else out + "Z"


def _record(raw: str) -> tuple[str, str, str, str] | None:
    raw = raw.rstrip("\n")
    parts = raw.split(" ", 3)
    if len(parts) < 3:
        return None
    t, stream, tag = utc_time(parts[0]), parts[1], parts[2]
    text = parts[3] if len(parts) > 3 else ""
    if tag not in ("P", "F"):
        # older conmon wrote no tag: the rest is the text
        text = raw.split(" ", 2)[2] if len(parts) > 2 else ""
        tag = "F"
    return t, stream, tag, text


class LogFollower:
    """Reads a growing k8s-file log: whole records only (a record that is still being written
    is left for the next read)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        self._pending = ""
        self._partial: dict[str, tuple[str, list[str]]] = {}

    def read(self) -> list[LogLine]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        text = self._pending + data.decode(errors="replace")
        lines = text.split("\n")
        self._pending = lines.pop()
        out = []
        for raw in lines:
            rec = _record(raw)
            if rec is None:
                continue
            t, stream, tag, body = rec
            if tag == "P":
                self._partial.setdefault(stream, (t, []))[1].append(body)
                continue
            if stream in self._partial:
                first_t, parts = self._partial.pop(stream)
                out.append(LogLine(first_t, stream, "".join(parts) + body))
            else:
                out.append(LogLine(t, stream, body))
        return out

    def flush(self) -> list[LogLine]:
        """What is left at the end: a last record without a newline, unfinished partials."""
        out = self.read()
        if self._pending:
            rec = _record(self._pending)
            self._pending = ""
            if rec is not None:
                out.append(LogLine(rec[0], rec[1], rec[3]))
        for stream, (t, parts) in self._partial.items():
            out.append(LogLine(t, stream, "".join(parts)))
        self._partial.clear()
        return out


# -- the exit watcher ----------------------------------------------------------------------

ExitCallback = Callable[[int | None], None]


@dataclass
class _Watch:
    exit_file: str
    alive: Callable[[], bool]
    callback: ExitCallback


class ExitWatcher:
    """Watches exit files and reports each once: ``callback(code)`` with conmon's exit code, or
    ``callback(None)`` when ``alive()`` turned false without an exit file (the monitor was
    killed, or the process had none). Callbacks run on the watcher's thread.

    inotify on the exit files' directories wakes the watcher as soon as a monitor writes one;
    a poll every ``interval`` remains for monitors that die without writing (and for a host
    without inotify)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._inotify: Inotify | None
        try:
            self._inotify = Inotify()
        except OSError:
            self._inotify = None
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="silod-exit-watcher",
                                        daemon=True)
        self._thread.start()

    def watch(self, key: str, exit_file: str, alive: Callable[[], bool],
              callback: ExitCallback) -> None:
        with self._lock:
            self._watches[key] = _Watch(exit_file, alive, callback)
            if self._inotify is not None:
                try:
                    self._inotify.add(os.path.dirname(exit_file))
                except OSError:
                    pass  # the poll still finds it

    def unwatch(self, key: str) -> None:
        with self._lock:
            self._watches.pop(key, None)

    def watching(self, key: str) -> bool:
        with self._lock:
            return key in self._watches

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._inotify is not None and not self._thread.is_alive():
            self._inotify.close()

    def _sleep(self) -> bool:
        """Wait for an inotify event or the poll interval; False once closed."""
        if self._inotify is None:
            return not self._stop.wait(self.interval)
        self._inotify.wait(self.interval * 4)
        return not self._stop.is_set()

    def _run(self) -> None:
        while self._sleep():
            with self._lock:
                items = list(self._watches.items())
            for key, w in items:
                try:
                    code = read_exit_file(w.exit_file)
                    if code is None:
                        if w.alive():
                            continue
                        # the exit file is written before conmon exits: look once more
                        code = read_exit_file(w.exit_file)
                except Exception:
                    log.exception("exit watcher: checking %s", key)
                    continue
                with self._lock:
                    if self._watches.get(key) is not w:
                        continue
                    del self._watches[key]
                try:
                    w.callback(code)
                except Exception:
                    log.exception("exit watcher: reporting the exit of %s", key)


def alive_check(pid: int, start: int | None) -> Callable[[], bool]:
    return lambda: proc.is_alive(pid, start)
