"""Signal names and numbers, without the ``signal`` module (it imports ``enum``)."""

from __future__ import annotations

import _signal

from silo.errors import InvalidArgument

NAMES: dict[str, int] = {
    n: getattr(_signal, n)
    for n in dir(_signal)
    if n.startswith("SIG") and not n.startswith("SIG_") and n not in ("SIGRTMIN", "SIGRTMAX")
}
SIGRTMIN: int = _signal.SIGRTMIN
SIGRTMAX: int = _signal.SIGRTMAX
SIGKILL: int = _signal.SIGKILL
SIGTERM: int = _signal.SIGTERM
SIGCONT: int = _signal.SIGCONT
SIGCHLD: int = _signal.SIGCHLD
SIGWINCH: int = _signal.SIGWINCH


def parse(text: str) -> int:
    """``"15"``, ``"TERM"``, ``"SIGTERM"``, ``"sigterm"``, ``"RTMIN+3"`` → a signal number."""
    t = text.strip()
    if t.isascii() and t.isdigit():
        num = int(t)
        if 0 < num <= SIGRTMAX:
            return num
        raise InvalidArgument(f"signal: {text!r} is not a valid signal number", field="signal")
    name = t.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in NAMES:
        return NAMES[name]
    for base, value, sign in (("SIGRTMIN", SIGRTMIN, 1), ("SIGRTMAX", SIGRTMAX, -1)):
        if name == base:
            return value
        if name.startswith(base + ("+" if sign > 0 else "-")):
            off = name[len(base) + 1:]
            if off.isascii() and off.isdigit() and SIGRTMIN <= value + sign * int(off) <= SIGRTMAX:
                return value + sign * int(off)
    raise InvalidArgument(f"signal: unknown signal {text!r}", field="signal")
