"""Times as silod sends them (RFC 3339, or seconds since the epoch) and as docker prints them
("5 minutes ago", "Up 2 hours"). ``datetime``/``time.strptime`` would cost imports; this is
the arithmetic they would do."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: days since 1970-01-01 of a proleptic Gregorian date.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def epoch(value: Any) -> float | None:
    """Seconds since the epoch of ``2026-11-27T23:47:51.123456789Z`` (or ``+01:00``), or of a
    number; None when it is neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or len(value) < 19:
        return None
    s = value.strip()
    try:
        y, mo, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
        h, mi, sec = int(s[11:13]), int(s[14:16]), int(s[17:19])
        rest = s[19:]
        frac = 0.0
        if rest.startswith("."):
            n = 1
            while n < len(rest) and rest[n].isdigit():
                n += 1
            frac = float("0" + rest[:n])
            rest = rest[n:]
        offset = 0
        if rest in ("Z", "z", ""):
            pass
        elif rest[0] in "+-" and len(rest) == 6 and rest[3] == ":":
            offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+"
                                                                       else -1)
        else:
            return None
    except ValueError:
        return None
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + frac - offset


def human_duration(seconds: float) -> str:
    """docker's (go-units) HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def ago(value: Any, now: float | None = None) -> str:
    t = epoch(value)
    if t is None:
        return ""
    if now is None:
        import time

        now = time.time()
    return human_duration(max(0.0, now - t)) + " ago"


def status(summary: dict[str, Any], now: float | None = None) -> str:
    """docker ps's STATUS column: ``Up 5 minutes``, ``Up 2 hours (Paused)``, ``Exited (0) 3
    seconds ago``, ``Created``."""
    if now is None:
        import time

        now = time.time()
    state = summary.get("State", "")
    if state in ("Running", "Paused"):
        t = epoch(summary.get("Started") or summary.get("Created"))
        up = "Up " + human_duration(now - t) if t is not None else "Up"
        return up + (" (Paused)" if state == "Paused" else "")
    if state == "Stopped":
        code = summary.get("ExitCode")
        when = ago(summary.get("Finished") or summary.get("Exited"), now)
        return f"Exited ({code if code is not None else '?'})" + (f" {when}" if when else "")
    return str(state)
