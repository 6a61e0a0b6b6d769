"""``ps [--format table|json] ID [ps args]``: the container's processes."""

from __future__ import annotations

import os

from silo.errors import InvalidArgument
from silo.runtime.flags import STR, Flag, parse
from silo.runtime.verbs._common import load, write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [Flag("format", STR, short="f", default="table", help="table or json")]


def run(g: Globals, argv: list[str]) -> int:
    opts, args = parse(FLAGS, argv, "ps")
    if not args:
        raise InvalidArgument('"ps" requires a container id', field="id")
    pids = load(g, args[0]).pids()
    if opts["format"] == "json":
        from silo.schema import jsonio

        write_out(jsonio.dumps(pids) + "\n")
        return 0
    if opts["format"] != "table":
        raise InvalidArgument(f"--format: {opts['format']!r} is not table or json",
                              field="format")
    ps_args = args[1:] or ["-ef"]
    r, w = os.pipe()
    child = os.posix_spawnp("ps", ["ps", *ps_args], dict(os.environ),
                            file_actions=[(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)])
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    os.waitpid(child, 0)
    lines = out.decode(errors="replace").splitlines()
    if not lines:
        return 1
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidArgument("ps: the output has no PID column", field="args")
    col = header.index("PID")
    keep = {str(p) for p in pids}
    write_out("\n".join([lines[0]] + [ln for ln in lines[1:]
                                      if len(ln.split()) > col and ln.split()[col] in keep])
              + "\n")
    return 0
