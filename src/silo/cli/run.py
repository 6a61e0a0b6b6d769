"""silo run: create a container from an image, start it, and (without -d) keep it in the
foreground until it exits; the exit status is its exit code."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import BOOL, STR, Flag
from silo.cli.spec import CREATE_FLAGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAGS = [
    Flag("detach", BOOL, "d", help="run in the background; print the container's Id"),
    Flag("sig-proxy", BOOL, default=True, help="forward signals to the container"),
    Flag("detach-keys", STR, default="ctrl-p,ctrl-q", help="keys that detach (-it)"),
    *CREATE_FLAGS,
]
USAGE = "[OPTIONS] IMAGE [COMMAND] [ARG...]\n\nCreate and start a container from an image."


def create(ctx: Context, values: dict[str, Any], rest: list[str]) -> dict[str, Any]:
    """Create the container the flags describe; its Summary. A generated name that is taken
    is drawn again."""
    from silo.cli.spec import build, new_name
    from silo.errors import AlreadyExists

    config = build(values, rest[0], rest[1:])
    client = ctx.client()
    if values["name"]:
        return client.create_system(config, name=values["name"])
    for attempt in range(5):
        try:
            return client.create_system(config, name=new_name())
        except AlreadyExists:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def main(ctx: Context, args: list[str]) -> int:
    values, rest = parse_args("run", USAGE, FLAGS, args, interspersed=False, min_args=1)
    from silo.cli.attached import detach_keys, foreground

    keys = detach_keys(values["detach_keys"])
    summary = create(ctx, values, rest)
    sid = summary["Id"]
    if values["detach"]:
        from silo.cli.common import err, invoke_failure_code
        from silo.errors import SiloError

        try:
            ctx.client().start(sid)
        except SiloError as e:
            err(e.message)
            return invoke_failure_code(e)
        out(sid)
        return 0
    return foreground(ctx, sid, summary.get("Stdio"), interactive=values["interactive"],
                      tty=values["tty"], sig_proxy=values["sig_proxy"], keys=keys,
                      rm=values["rm"])
