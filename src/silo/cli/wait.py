"""silo wait: wait for containers to stop and print their exit codes; the exit status is the
last one's."""

from __future__ import annotations

from silo.cli.common import Context, err, out, parse_args
from silo.cli.flags import HELP

USAGE = "CONTAINER [CONTAINER...]\n\nWait for containers to stop; print their exit codes."


def main(ctx: Context, args: list[str]) -> int:
    _, refs = parse_args("wait", USAGE, [HELP], args, min_args=1)
    from silo.cli.attached import exit_code
    from silo.errors import SiloError, Unavailable

    client = ctx.client()
    status = 0
    for ref in refs:
        try:
            result = ctx.on(ref, client.wait)
        except Unavailable:
            raise
        except SiloError as e:
            err(e.message)
            status = 1
            continue
        code = result.get("ExitCode")
        out(str(code if code is not None else exit_code(result)))
        status = exit_code(result)
    return status
