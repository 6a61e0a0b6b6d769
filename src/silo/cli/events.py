"""silo events: silod's events as they happen (``--since`` replays from a time), until
interrupted.

    --filter type=SystemExited   (also event=...) the event Type; repeat for several
    --filter container=web       a container, by name, Id or Id prefix
"""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import HELP, MULTI, STR, Flag, UsageError

FLAGS = [
    Flag("filter", MULTI, "f", help="type=TYPE, event=TYPE or container=NAME"),
    Flag("since", STR, help="replay from this time (RFC 3339, seconds, or 10m/2h ago)"),
    Flag("format", STR, default="", help="json: a JSON line per event"),
    HELP,
]
USAGE = "[OPTIONS]\n\nShow silod's events as they happen."

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def since_seconds(text: str, now: float | None = None) -> float:
    from silo.cli.timefmt import epoch

    t = text.strip()
    if t and t[-1] in "smh" and t[:-1].replace(".", "", 1).isdigit():
        import time

        scale = {"s": 1, "m": 60, "h": 3600}[t[-1]]
        return (time.time() if now is None else now) - float(t[:-1]) * scale
    if t.replace(".", "", 1).isdigit():
        return float(t)
    at = epoch(t)
    if at is None:
        raise UsageError(f"--since: {text!r} is not a time (RFC 3339, seconds since the "
                         "epoch, or a duration such as 10m)", field="--since")
    return at


def describe(event: dict[str, Any]) -> str:
    extra = [f"{k}={event[k]}" for k in ("ProcessId", "ExitCode", "ExitType") if k in event]
    return f"{event.get('Time', '')} {event.get('Type', '')} {event.get('Id', '')}" + (
        f" ({', '.join(extra)})" if extra else "")


def main(ctx: Context, args: list[str]) -> int:
    values, _ = parse_args("events", USAGE, FLAGS, args, max_args=0)
    from silo.errors import NotFound

    types: list[str] = []
    ids: list[str] = []
    for f in values["filter"]:
        key, eq, value = f.partition("=")
        if not eq or not value:
            raise UsageError(f"--filter {f!r}: use KEY=VALUE", field="--filter")
        if key in ("type", "event"):
            types.append(value)
        elif key in ("container", "id"):
            try:  # the stream filters on Ids: a name is resolved here
                ids.append(ctx.client().resolve(value))
            except NotFound:
                ids.append(value)  # gone already: its events may still be there
        else:
            raise UsageError(f"--filter: {key!r} is not type, event or container",
                             field="--filter")
    since = since_seconds(values["since"]) if values["since"] is not None else None
    try:
        with ctx.client().events(since=since, types=types or None, ids=ids or None) as stream:
            for event in stream:
                if values["format"] == "json":
                    from silo.schema import jsonio

                    out(jsonio.dumps(event))
                else:
                    out(describe(event))
                import sys

                sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    return 0
