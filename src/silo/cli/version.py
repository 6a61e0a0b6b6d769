"""silo version: silo's version, and silod's (from system info) when it can be reached."""

from __future__ import annotations

import sys

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import HELP

USAGE = "\n\nShow silo's and silod's versions."


def main(ctx: Context, args: list[str]) -> int:
    parse_args("version", USAGE, [HELP], args, max_args=0)
    from silo import __version__

    v = sys.version_info
    out(f"Client:\n Version:      {__version__}\n API version:  v1\n"
        f" Python:       {v.major}.{v.minor}.{v.micro}\n")
    info = ctx.client().system_info()  # Unavailable: silo's own failure, 125
    server = info.get("Version") or (info.get("Runtime") or {}).get("Version") or "unknown"
    out(f"Server:\n Version:      {server}\n Host:         {ctx.client().host}")
    return 0
