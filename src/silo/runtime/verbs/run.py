"""``run [--bundle DIR] [--detach] [--pid-file F] [--console-socket S] [--keep] ID``:
create, start, and (unless detached) wait for the container and delete it."""

from __future__ import annotations

import os

from silo.runtime.flags import BOOL, Flag, parse
from silo.runtime.verbs import create as create_verb
from silo.runtime.verbs._common import container_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [
    *create_verb.FLAGS,
    Flag("detach", BOOL, short="d", help="do not wait for the container"),
    Flag("keep", BOOL, help="do not delete the container after it exits"),
]


def run(g: Globals, argv: list[str]) -> int:
    from silo.compute import relay
    from silo.compute.create import CreateOptions, create

    opts, args = parse(FLAGS, argv, "run")
    cid = container_id(args, "run")
    detach = opts["detach"]
    own_tty = theirs = -1
    if not detach and not opts["console_socket"]:
        import _socket

        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        own_tty, theirs = a.detach(), b.detach()
    try:
        c = create(CreateOptions(g.root, cid, opts["bundle"], pid_file=opts["pid_file"],
                                 console_socket=opts["console_socket"], console_fd=theirs,
                                 subreaper=not detach))
    finally:
        if theirs >= 0:
            os.close(theirs)
    master = -1
    try:
        if own_tty >= 0:
            if (c.config.get("process") or {}).get("terminal"):
                from silo.kernel import console

                master, _ = console.recv_fd(own_tty)
                # The container's terminal takes our size before its process starts: a
                # process that asks at once must not see 0x0.
                if os.isatty(0):
                    console.set_size(master, *console.get_size(0))
            os.close(own_tty)
        c.start()
    except BaseException:
        c.delete(force=True)
        raise
    if detach:
        return 0
    code = relay.wait(c.pid, master)
    if not opts["keep"]:
        c.delete(force=True)
    return code
