"""silo import (also silo image import): an image of one layer from a root filesystem
tarball (a file, or ``-`` for stdin), with docker's ``--change`` instructions.

    -c 'CMD ["sh"]'    -c 'CMD sh -c x' (shell form)   -c 'ENTRYPOINT [...]'
    -c 'ENV K=V'       -c 'WORKDIR /app'   -c 'USER 1000'   -c 'STOPSIGNAL SIGQUIT'
    -c 'LABEL k=v'
"""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args
from silo.cli.flags import HELP, MULTI, Flag, UsageError

FLAGS = [Flag("change", MULTI, "c", help="a Dockerfile instruction for the image config "
                                         "(CMD, ENTRYPOINT, ENV, WORKDIR, USER, STOPSIGNAL, "
                                         "LABEL)"), HELP]
USAGE = "[OPTIONS] FILE|- REPOSITORY[:TAG]\n\nImport a root filesystem tarball as an image."

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _command(text: str, what: str) -> list[str]:
    if text.startswith("["):
        from silo.errors import InvalidArgument
        from silo.schema import jsonio

        try:
            value = jsonio.loads(text, what)
        except InvalidArgument:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"--change {what}: {text!r} is not a JSON array of strings",
                             field="--change")
        return value
    return ["/bin/sh", "-c", text]


def _pair(text: str, what: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq:
        key, _, value = text.partition(" ")
    key, value = key.strip(), value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if not key:
        raise UsageError(f"--change {what}: {text!r} is not KEY=VALUE", field="--change")
    return key, value


def changes(lines: list[str]) -> dict[str, Any]:
    """The image config from ``--change`` instructions; UsageError naming a bad one."""
    config: dict[str, Any] = {}
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        what, rest = word.upper(), rest.strip()
        if not rest:
            raise UsageError(f"--change {line!r}: {what or 'an instruction'} needs a value",
                             field="--change")
        if what in ("CMD", "ENTRYPOINT"):
            config["Cmd" if what == "CMD" else "Entrypoint"] = _command(rest, what)
        elif what == "ENV":
            k, v = _pair(rest, what)
            config.setdefault("Env", []).append(f"{k}={v}")
        elif what == "LABEL":
            k, v = _pair(rest, what)
            config.setdefault("Labels", {})[k] = v
        elif what in ("WORKDIR", "USER", "STOPSIGNAL"):
            config[{"WORKDIR": "WorkingDir", "USER": "User",
                    "STOPSIGNAL": "StopSignal"}[what]] = rest
        else:
            raise UsageError(f"--change {line!r}: {word!r} is not one of CMD, ENTRYPOINT, ENV, "
                             "WORKDIR, USER, STOPSIGNAL, LABEL", field="--change")
    return config


def main(ctx: Context, args: list[str], verb: str = "import") -> int:
    values, rest = parse_args(verb, USAGE, FLAGS, args, min_args=2, max_args=2)
    import os

    source, name = rest
    config = changes(values["change"])
    made = ""
    if source == "-":
        from silo.cli.imagefmt import stdin_to_file

        source = made = stdin_to_file(".silo-import-")
    try:
        summary = ctx.client().import_image(source, name, config=config or None)
    finally:
        if made:
            os.unlink(made)
    out(str(summary.get("Id", "")))
    return 0
