"""silo start: start created containers; with -a, keep the (one) container in the foreground
and exit with its exit code."""

from __future__ import annotations

from silo.cli.common import Context, parse_args
from silo.cli.flags import BOOL, HELP, STR, Flag

FLAGS = [
    Flag("attach", BOOL, "a", help="show the container's output; exit with its exit code"),
    Flag("interactive", BOOL, "i", help="attach this stdin to the container's"),
    Flag("detach-keys", STR, default="ctrl-p,ctrl-q", help="keys that detach (-ai)"),
    HELP,
]
USAGE = "[OPTIONS] CONTAINER [CONTAINER...]\n\nStart created containers."


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("start", USAGE, FLAGS, args, min_args=1)
    if values["attach"] or values["interactive"]:
        from silo.cli.attached import detach_keys, foreground
        from silo.cli.flags import UsageError

        if len(refs) > 1:
            raise UsageError("you cannot attach to several containers at once", field="--attach")
        props = ctx.on(refs[0], ctx.client().get_system)
        sid = str(props["Id"])
        tty = bool(((props.get("Configuration") or {}).get("Container") or {})
                   .get("Linux", {}).get("Process", {}).get("EmulateConsole"))
        return foreground(ctx, sid, props.get("Stdio"), interactive=values["interactive"],
                          tty=tty, keys=detach_keys(values["detach_keys"]))
    from silo.cli.common import for_each

    return for_each(ctx, refs, ctx.client().start)
