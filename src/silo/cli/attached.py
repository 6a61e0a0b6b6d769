"""A process in the foreground of ``silo``: its output here, this terminal's input and signals
there. Used by ``run`` (without ``-d``), ``start -a`` and ``exec`` (without ``-d``).

- Output: through the monitor's attach socket when silod gave one (``Stdio``), else by
  following the container's log (``GET .../logs?Follow=true``: everything since it started).
  ``-i`` needs the attach socket.
- Signals (``--sig-proxy``, on by default, as docker's): SIGINT, SIGTERM, SIGHUP, SIGQUIT,
  SIGUSR1 and SIGUSR2 received here are sent to the process through the API. A second Ctrl-C
  kills the container (``terminate``); a third detaches (exit 130), leaving it to silod.
- ``-it`` on a terminal: the terminal goes raw (Ctrl-C reaches the container as a byte, as
  with docker), SIGWINCH resizes the container's console (through conmon's control fifo when
  attached, else the API's resize), ctrl-p ctrl-q (``--detach-keys``) detaches.
"""

from __future__ import annotations

import _signal
import os

from silo.cli.common import EXIT_SILO, Context, err, invoke_failure_code, write_fd
from silo.errors import SiloError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from silo.client._attach import Attachment

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGUSR1, _signal.SIGUSR2)


def detach_keys(spec: str) -> bytes:
    """docker's ``--detach-keys`` (``ctrl-p,ctrl-q``, ``ctrl-@``, ``a``) as bytes."""
    from silo.cli.flags import UsageError

    out = bytearray()
    for key in spec.split(","):
        key = key.strip().lower()
        if len(key) == 1:
            out.append(ord(key))
        elif key.startswith("ctrl-") and len(key) == 6 and "@" <= key[5].upper() <= "_":
            out.append(ord(key[5].upper()) - 64)
        else:
            raise UsageError(f"--detach-keys: {key!r} is not a key (a letter, or ctrl-X)",
                             field="--detach-keys")
    return bytes(out)


class Session:
    """The signal handlers and terminal state while a process is in the foreground."""

    def __init__(self, ctx: Context, sid: str, pid: int | None,
                 attachment: Attachment | None = None, sig_proxy: bool = True,
                 raw: bool = False, console: bool = False) -> None:
        self.ctx = ctx
        self.sid = sid
        self.pid = pid
        self.attachment = attachment
        self.sig_proxy = sig_proxy
        self.raw = raw
        self.console = console
        self.interrupts = 0
        self._saved: dict[int, Any] = {}
        self._termios: list[Any] | None = None

    def on_signal(self, signum: int, frame: object = None) -> None:
        client = self.ctx.client()
        if signum == _signal.SIGINT:
            self.interrupts += 1
            if self.interrupts == 2:
                err("a second interrupt: killing the container (a third one detaches)")
                try:
                    client.terminate(self.sid)
                except SiloError as e:
                    err(e.message)
                return
            if self.interrupts > 2:
                raise KeyboardInterrupt
        try:
            if self.pid:
                client.signal_process(self.sid, self.pid, signum)
            elif signum == _signal.SIGINT:
                client.terminate(self.sid)
        except SiloError as e:
            err(f"forwarding signal {signum}: {e.message}")

    def on_winch(self, signum: int = 0, frame: object = None) -> None:
        from silo.cli.spec import console_size

        size = console_size()
        if not size:
            return
        try:
            if self.attachment is not None and self.attachment.control_fifo:
                self.attachment.resize(*size)
            elif self.pid:
                self.ctx.client().resize(self.sid, self.pid, *size)
        except SiloError:
            pass  # the process may be gone; its exit is what the user sees next

    def __enter__(self) -> Session:
        if self.sig_proxy and not self.raw:
            for sig in FORWARDED:
                self._saved[sig] = _signal.signal(sig, self.on_signal)
        if self.console:
            self._saved[_signal.SIGWINCH] = _signal.signal(_signal.SIGWINCH, self.on_winch)
            self.on_winch()
        if self.raw:
            self._termios = _make_raw(0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._termios is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._termios)
            self._termios = None
        for sig, handler in self._saved.items():
            _signal.signal(sig, handler)
        self._saved.clear()


def _make_raw(fd: int) -> list[Any]:
    """Put the terminal in raw mode (as cfmakeraw); returns the attributes to restore."""
    import termios

    saved = termios.tcgetattr(fd)
    mode = list(saved)
    mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP
                 | termios.IXON)
    mode[1] &= ~termios.OPOST
    mode[2] &= ~(termios.CSIZE | termios.PARENB)
    mode[2] |= termios.CS8
    mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    mode[6] = list(mode[6])
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSAFLUSH, mode)
    return saved


def follow_logs(ctx: Context, sid: str) -> None:
    """The container's output from its log, until it stops."""
    with ctx.client().logs(sid, follow=True) as stream:
        for doc in stream:
            write_line(doc)


def write_line(doc: dict[str, Any], timestamps: bool = False) -> None:
    line = str(doc.get("Line", ""))
    if not doc.get("Partial") and not line.endswith("\n"):
        line += "\n"
    if timestamps:
        line = f"{doc.get('Time', '')} {line}"
    write_fd(2 if doc.get("Stream") == "stderr" else 1, line.encode())


def exit_code(result: dict[str, Any]) -> int:
    code = result.get("ExitCode")
    if isinstance(code, int) and 0 <= code <= 255:
        return code
    if result.get("ExitType") == "ForcedExit":
        return 137
    return EXIT_SILO


def foreground(ctx: Context, sid: str, stdio: dict[str, Any] | None, *, interactive: bool,
               tty: bool, sig_proxy: bool = True, keys: bytes = b"\x10\x11",
               start: bool = True, rm: bool = False, pid: int | None = None) -> int:
    """Start (when ``start``) the container ``sid`` and keep it in the foreground until it
    exits; its exit code, or 0 when detached. With ``rm``, remove it once it has exited."""
    from silo.errors import NotSupported

    client = ctx.client()
    attachment = None
    if stdio and stdio.get("AttachSocket"):
        from silo.client import attach

        attachment = attach(stdio)
    elif interactive:
        if start:  # created for this run, and never to be started: not left behind
            _remove(ctx, sid)
        raise NotSupported("-i: silod gave no attach socket for the container's stdin",
                           field="--interactive")
    try:
        if start:
            try:
                started = client.start(sid)
            except SiloError as e:
                err(e.message)
                if rm:
                    _remove(ctx, sid)
                return invoke_failure_code(e)
            pid = started.get("Pid") or pid
        raw = tty and interactive and os.isatty(0)
        with Session(ctx, sid, pid, attachment, sig_proxy=sig_proxy, raw=raw,
                     console=tty and os.isatty(0)):
            if attachment is not None:
                detached = attachment.relay(stdin=0 if interactive else None, stdout=1,
                                            stderr=2, detach_keys=keys if interactive else None)
            else:
                follow_logs(ctx, sid)
                detached = False
        if detached:
            write_fd(2, b"\r\n")
            return 0
        code = exit_code(client.wait(sid))
    finally:
        if attachment is not None:
            attachment.close()
    if rm:
        _remove(ctx, sid)
    return code


def _remove(ctx: Context, sid: str) -> None:
    try:
        ctx.client().delete(sid, force=True)
    except SiloError as e:
        err(f"--rm: {e.message}")
