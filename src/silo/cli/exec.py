"""silo exec: run a command in a running container; without -d, in the foreground, exiting
with its exit code."""

from __future__ import annotations

from silo.cli.common import Context, parse_args
from silo.cli.flags import BOOL, HELP, MULTI, STR, Flag

FLAGS = [
    Flag("detach", BOOL, "d", help="run in the background"),
    Flag("interactive", BOOL, "i", help="keep stdin open"),
    Flag("tty", BOOL, "t", help="allocate a terminal"),
    Flag("env", MULTI, "e", help="set an environment variable (K=V, or K from here)"),
    Flag("workdir", STR, "w", default="", help="working directory in the container"),
    Flag("user", STR, "u", default="", help="uid[:gid] or name"),
    Flag("detach-keys", STR, default="ctrl-p,ctrl-q", help="keys that detach (-it)"),
    HELP,
]
USAGE = "[OPTIONS] CONTAINER COMMAND [ARG...]\n\nRun a command in a running container."


def main(ctx: Context, args: list[str]) -> int:
    values, rest = parse_args("exec", USAGE, FLAGS, args, interspersed=False, min_args=2)
    from silo.cli.attached import Session, detach_keys, exit_code
    from silo.cli.common import err, invoke_failure_code
    from silo.cli.spec import process
    from silo.errors import SiloError

    keys = detach_keys(values["detach_keys"])
    if values["interactive"] and values["tty"]:
        import os

        if not os.isatty(0):
            from silo.cli.flags import UsageError

            raise UsageError("the input device is not a TTY (drop -t, or run from a terminal)",
                             field="--tty")
    params = process(values, rest[1:])
    if values["detach"]:
        params.update(CreateStdInPipe=False, CreateStdOutPipe=False, CreateStdErrPipe=False)
    client = ctx.client()
    try:
        created = ctx.on(rest[0], lambda ref: client.create_process(ref, params))
    except SiloError as e:
        code = invoke_failure_code(e)
        if code == 125:
            raise
        err(e.message)
        return code
    sid = ctx.id_for(rest[0])
    pid = int(created["ProcessId"])
    if values["detach"]:
        return 0
    tty = bool(values["tty"])
    interactive = bool(values["interactive"])
    if not tty and not interactive:
        # Nothing to send: read the output from the monitor's log, which has it from the first
        # byte (the attach socket only has what comes after the client connects).
        from silo.cli.attached import write_line

        with client.process_logs(sid, pid, follow=True) as lines:
            for doc in lines:
                write_line(doc, timestamps=False)
        return exit_code(client.wait_process(sid, pid))
    stdio = created.get("Stdio")
    attachment = None
    if stdio and stdio.get("AttachSocket"):
        from silo.client import attach

        attachment = attach(stdio)
    else:
        err("silod gave no attach socket for the process: its output is not shown")
    import os

    try:
        with Session(ctx, sid, pid, attachment, raw=tty and interactive and os.isatty(0),
                     console=tty and os.isatty(0)):
            if attachment is not None and attachment.relay(
                    stdin=0 if interactive else None,
                    detach_keys=keys if interactive else None):
                return 0
        return exit_code(client.wait_process(sid, pid))
    finally:
        if attachment is not None:
            attachment.close()
