"""silo kill: send a signal (default SIGKILL) to containers' first process."""

from __future__ import annotations

from silo.cli.common import Context, for_each, parse_args, parse_signal
from silo.cli.flags import HELP, STR, Flag

FLAGS = [Flag("signal", STR, "s", default="KILL", help="the signal (name or number)"), HELP]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]\n\nSend a signal to containers."


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("kill", USAGE, FLAGS, args, min_args=1)
    sig = parse_signal(values["signal"])
    client = ctx.client()

    def kill(ref: str) -> None:
        if sig in (9, "SIGKILL"):
            client.terminate(ref)
            return
        # Another signal goes to the first process, by its pid (the Summary's Pid).
        summary = client.get_system(ref)
        if summary.get("State") != "Running" or not summary.get("Pid"):
            from silo.errors import InvalidState

            raise InvalidState(f"container {ref} is not running", obj=ref)
        client.signal_process(summary["Id"], int(summary["Pid"]), sig)

    return for_each(ctx, refs, kill)
