"""silo stats: containers' resource use: CPU (over the last interval), memory, pids. A live
table refreshed every second, or one table with --no-stream."""

from __future__ import annotations

from silo.cli.common import Context, custom_size, out, parse_args, short_id, table
from silo.cli.flags import BOOL, HELP, STR, Flag

FLAGS = [
    Flag("no-stream", BOOL, help="print one table and exit"),
    Flag("all", BOOL, "a", help="every container (default: running ones)"),
    Flag("format", STR, default="table", help="table or json"),
    HELP,
]
USAGE = "[OPTIONS] [CONTAINER...]\n\nShow containers' resource use."
REFRESH_SECONDS = 1.0
SAMPLE_SECONDS = 0.5  # --no-stream: the interval CPU use is measured over

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from silo.client import Client


def size(n: float) -> str:
    """Bytes as docker prints them (go-units BytesSize): ``7.5MiB``."""
    return custom_size(n, 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"))


class Sampler:
    """Statistics of each container, with the CPU share since the previous sample."""

    def __init__(self, client: Client, ids: list[str]) -> None:
        self.client = client
        self.ids = ids
        self.previous: dict[str, tuple[int, float]] = {}

    def sample(self) -> list[dict[str, Any]]:
        import time

        from silo.errors import NotFound

        rows = []
        for sid in list(self.ids):
            try:
                props = self.client.properties(sid, ["Statistics"])
            except NotFound:
                self.ids.remove(sid)
                continue
            stats = props.get("Statistics") or {}
            mem = stats.get("Memory") or {}
            pids = stats.get("Pids") or {}
            cpu_ns = int((stats.get("Processor") or {}).get("TotalRuntimeNs") or 0)
            now = time.monotonic()
            cpu = ""
            if sid in self.previous:
                before_ns, before = self.previous[sid]
                if now > before:
                    cpu = f"{(cpu_ns - before_ns) / ((now - before) * 1e9) * 100:.2f}%"
            self.previous[sid] = (cpu_ns, now)
            usage, limit = int(mem.get("UsageBytes") or 0), int(mem.get("LimitBytes") or 0)
            rows.append({
                "ID": short_id(sid), "Name": str(props.get("Name", "")),
                "CPUPerc": cpu or "--", "MemUsage": f"{size(usage)} / {size(limit)}"
                if limit else f"{size(usage)} / --",
                "MemPerc": f"{usage / limit * 100:.2f}%" if limit else "--",
                "PIDs": str(pids.get("Current", "")),
            })
        return rows


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        from silo.schema import jsonio

        return "\n".join(jsonio.dumps(r) for r in rows)
    header = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]
    return table([header, *([r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"],
                              r["PIDs"]] for r in rows)])


def main(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("stats", USAGE, FLAGS, args)
    import time

    from silo.cli.flags import UsageError

    if values["format"] not in ("table", "json"):
        raise UsageError(f"--format: {values['format']!r} is not table or json",
                         field="--format")
    client = ctx.client()
    if refs:
        ids = [str(ctx.on(r, client.get_system)["Id"]) for r in refs]
    else:
        ids = [str(s["Id"]) for s in client.list_systems()
               if values["all"] or s.get("State") == "Running"]
    sampler = Sampler(client, ids)
    if values["no_stream"]:
        sampler.sample()
        time.sleep(SAMPLE_SECONDS)
        out(render(sampler.sample(), values["format"]))
        return 0
    try:
        while True:
            rows = sampler.sample()
            text = render(rows, values["format"])
            if values["format"] == "table":
                text = "\x1b[2J\x1b[H" + text  # clear the screen, cursor home
            out(text)
            import sys

            sys.stdout.flush()
            time.sleep(REFRESH_SECONDS)
    except KeyboardInterrupt:
        return 0
