"""``events [--stats] [--interval 5s] ID``: resource statistics (once with --stats, else a
stream every interval) and OOM notifications, as JSON lines like runc's."""

from __future__ import annotations

import time

from silo.errors import InvalidArgument, SiloError
from silo.runtime.flags import BOOL, STR, Flag, parse
from silo.runtime.verbs._common import container_id, load, write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.runtime.main import Globals

FLAGS = [Flag("stats", BOOL, help="print the statistics once and exit"),
         Flag("interval", STR, default="5s", help="statistics interval (e.g. 5s, 500ms)")]


def duration(text: str) -> float:
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            try:
                value = float(text[: -len(suffix)]) * mult
            except ValueError:
                break
            if value > 0:
                return value
            break
    raise InvalidArgument(f"--interval: {text!r} is not a duration like 5s", field="interval")


def run(g: Globals, argv: list[str]) -> int:
    from silo.schema import jsonio

    opts, args = parse(FLAGS, argv, "events")
    c = load(g, container_id(args, "events"))
    if opts["stats"]:
        write_out(jsonio.dumps({"type": "stats", "id": c.id, "data": c.stats()}) + "\n")
        return 0
    interval = duration(opts["interval"])
    cg = c.cgroup()
    ooms = cg.oom_kill_count()
    while True:
        try:
            data = c.stats()
        except SiloError:
            return 0  # the container is gone
        write_out(jsonio.dumps({"type": "stats", "id": c.id, "data": data}) + "\n")
        now = cg.oom_kill_count()
        if now > ooms:
            write_out(jsonio.dumps({"type": "oom", "id": c.id}) + "\n")
            ooms = now
        time.sleep(interval)
