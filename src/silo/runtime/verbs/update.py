"""``update [--resources FILE|-] [--memory N] [--cpu-quota N] ... ID``: change the limits of a
container's cgroup (LinuxResources JSON, as containerd and podman send it)."""

from __future__ import annotations

import os

from silo.errors import InvalidArgument
from silo.runtime.flags import STR, Flag, parse
from silo.runtime.verbs._common import container_id, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from silo.runtime.main import Globals

# flag -> (resources section, key)
SINGLE = {
    "memory": ("memory", "limit"), "memory-reservation": ("memory", "reservation"),
    "memory-swap": ("memory", "swap"), "cpu-period": ("cpu", "period"),
    "cpu-quota": ("cpu", "quota"), "cpu-share": ("cpu", "shares"),
    "cpu-rt-period": ("cpu", "realtimePeriod"), "cpu-rt-runtime": ("cpu", "realtimeRuntime"),
    "cpuset-cpus": ("cpu", "cpus"), "cpuset-mems": ("cpu", "mems"),
    "pids-limit": ("pids", "limit"), "blkio-weight": ("blockIO", "weight"),
}
FLAGS = [Flag("resources", STR, short="r", default="", help="LinuxResources JSON file, or -"),
         *[Flag(name, STR, default="", help=f"{sec}.{key}") for name, (sec, key) in
           SINGLE.items()]]


def size(text: str, flag: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b")
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        return int(t) * mult
    except ValueError:
        raise InvalidArgument(f"--{flag}: {text!r} is not a size", field=flag) from None


def run(g: Globals, argv: list[str]) -> int:
    from silo.schema import jsonio

    opts, args = parse(FLAGS, argv, "update")
    cid = container_id(args, "update")
    resources: dict[str, Any] = {}
    if opts["resources"]:
        if opts["resources"] == "-":
            raw = b""
            while chunk := os.read(0, 65536):
                raw += chunk
        else:
            try:
                with open(opts["resources"], "rb") as f:
                    raw = f.read()
            except OSError as err:
                raise InvalidArgument(f"--resources: cannot read {opts['resources']!r}: "
                                      f"{err.strerror}", field="resources") from err
        resources = jsonio.loads(raw, "resources")
        if not isinstance(resources, dict):
            raise InvalidArgument("resources: must be a JSON object", field="resources")
    for name, (sec, key) in SINGLE.items():
        val = opts[name.replace("-", "_")]
        if val:
            if key in ("cpus", "mems"):
                parsed: Any = val
            elif sec == "memory":
                parsed = -1 if val == "-1" else size(val, name)
            else:
                try:
                    parsed = int(val)
                except ValueError:
                    raise InvalidArgument(f"--{name}: {val!r} is not an integer",
                                          field=name) from None
            resources.setdefault(sec, {})[key] = parsed
    load(g, cid).update(resources)
    return 0
