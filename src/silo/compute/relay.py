"""Foreground waiting: forward signals to the container process and relay a terminal.

Used by ``run`` and ``exec`` without ``--detach``. The runtime is a child subreaper at this
point, so the container process (a grandchild, behind the pid-namespace fork) is re-parented
to it and can be waited for.
"""

from __future__ import annotations

import _signal
import os

FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def wait(pid: int, master: int = -1) -> int:
    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for name in FORWARDED:
        _signal.signal(getattr(_signal, name), forward)
    if master >= 0:
        relay_tty(master, pid)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if got == pid:
            return exit_code(status)


def relay_tty(master: int, pid: int) -> None:
    """Copy stdin → master and master → stdout until the terminal closes."""
    import select

    from silo.kernel import console

    saved = None
    if os.isatty(0):
        import termios
        import tty

        saved = termios.tcgetattr(0)
        # TCSANOW, not setraw's default TCSAFLUSH: input typed ahead of the container's
        # start is the container's, not to be thrown away (runc keeps it too).
        tty.setraw(0, termios.TCSANOW)
        h, w = console.get_size(0)
        console.set_size(master, h, w)

        def winch(_sig: int, _frame: object) -> None:
            h, w = console.get_size(0)
            console.set_size(master, h, w)

        _signal.signal(_signal.SIGWINCH, winch)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    stdin_open = True
    try:
        poller.register(0, select.POLLIN)
    except (OSError, ValueError):
        stdin_open = False
    try:
        while True:
            for fd, _ev in poller.poll():
                if fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        return
                    os.write(1, data)
                elif stdin_open:
                    data = os.read(0, 65536)
                    if not data:
                        poller.unregister(0)
                        stdin_open = False
                        os.write(master, b"\x04")
                    else:
                        os.write(master, data)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
