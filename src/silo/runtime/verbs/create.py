"""``create [--bundle DIR] [--pid-file F] [--console-socket S] ID``."""

from __future__ import annotations

from silo.runtime.flags import BOOL, INT, STR, Flag, parse
from silo.runtime.verbs._common import container_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [
    Flag("bundle", STR, short="b", default=".", help="path to the bundle directory"),
    Flag("console-socket", STR, default="", help="unix socket to receive the pty master"),
    Flag("pid-file", STR, default="", help="file to write the init's pid to"),
    Flag("no-pivot", BOOL, help="(accepted; silo always uses pivot_root)"),
    Flag("no-new-keyring", BOOL, help="(accepted)"),
    Flag("preserve-fds", INT, default=0, help="(accepted)"),
]


def run(g: Globals, argv: list[str]) -> int:
    from silo.compute.create import CreateOptions, create

    opts, args = parse(FLAGS, argv, "create")
    cid = container_id(args, "create")
    create(CreateOptions(g.root, cid, opts["bundle"], pid_file=opts["pid_file"],
                         console_socket=opts["console_socket"]))
    return 0
