"""``exec [--process FILE | ID CMD ARGS...] [--detach] [--tty] [--console-socket S]
[--pid-file F] [--cwd D] [--env K=V]... [--user UID[:GID]] [--cap CAP]... ID``."""

from __future__ import annotations

from silo.errors import InvalidArgument
from silo.runtime.flags import BOOL, INT, MULTI, STR, Flag, parse
from silo.runtime.verbs._common import load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [
    Flag("console-socket", STR, default="", help="unix socket to receive the pty master"),
    Flag("cwd", STR, default="", help="working directory in the container"),
    Flag("env", MULTI, short="e", help="set an environment variable"),
    Flag("tty", BOOL, short="t", help="allocate a pseudo-TTY"),
    Flag("user", STR, short="u", default="", help="UID[:GID]"),
    Flag("additional-gids", MULTI, short="g", help="additional gids"),
    Flag("process", STR, short="p", default="", help="path to a process.json"),
    Flag("detach", BOOL, short="d", help="detach from the process"),
    Flag("pid-file", STR, default="", help="file to write the process's pid to"),
    Flag("process-label", STR, default="", help="(accepted)"),
    Flag("apparmor", STR, default="", help="(accepted)"),
    Flag("no-new-privs", BOOL, help="set no_new_privs"),
    Flag("cap", MULTI, short="c", help="add a capability"),
    Flag("preserve-fds", INT, default=0, help="(accepted)"),
    Flag("cgroup", MULTI, help="(accepted)"),
    Flag("ignore-paused", BOOL, help="(accepted)"),
]


def run(g: Globals, argv: list[str]) -> int:
    from silo.compute.exec import process_from_args

    opts, args = parse(FLAGS, argv, "exec")
    if not args:
        raise InvalidArgument('"exec" requires a container id', field="id")
    c = load(g, args[0])
    if opts["process"]:
        if len(args) > 1:
            raise InvalidArgument("exec: give either --process or a command, not both",
                                  field="process")
        from silo.schema import jsonio

        try:
            with open(opts["process"], "rb") as f:
                process = jsonio.loads(f.read(), "process.json")
        except FileNotFoundError:
            raise InvalidArgument(f"--process: {opts['process']!r} does not exist",
                                  field="process") from None
    else:
        if len(args) < 2:
            raise InvalidArgument("exec: a command is required (or --process)", field="args")
        process = process_from_args(c, args[1:], cwd=opts["cwd"], env=opts["env"],
                                    tty=opts["tty"], user=opts["user"], caps=opts["cap"],
                                    no_new_privs=True if opts["no_new_privs"] else None)
        if opts["additional_gids"]:
            process.setdefault("user", {})["additionalGids"] = [
                int(x) for x in opts["additional_gids"]]
    result = c.exec(process, console_socket=opts["console_socket"],
                    pid_file=opts["pid_file"], detach=opts["detach"])
    return 0 if opts["detach"] else result
