"""What the verbs of ``silo`` share: the client, names → ids, output, exit statuses.

Exit statuses, as docker's: 0 done; 1 silod refused one of the objects asked for; 125 silo's
own failure (a bad command line, silod unreachable, ``run``/``create`` refused); 126 the
container's command cannot be invoked; 127 it does not exist; else, for ``run`` in the
foreground and ``wait``, the container's exit code.
"""

from __future__ import annotations

import os
import sys

from silo.errors import SiloError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from silo.client import Client

    T = TypeVar("T")

EXIT_SILO = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


class Context:
    """One invocation: where silod is, and the client, made on first use."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host
        self._client: Client | None = None
        self._ids: dict[str, str] = {}  # names resolved here, when silod did not

    def client(self) -> Client:
        if self._client is None:
            from silo.client import Client

            self._client = Client(self.host)
        return self._client

    def on(self, ref: str, action: Callable[[str], T]) -> T:
        """``action(ref)`` for the container ``ref`` names: its Id, its Name or a unique Id
        prefix. silod is asked with ``ref`` as it is (it resolves names itself); when it
        answers NotFound about the container, the name is resolved here (``Client.resolve``)
        and the action asked again with the Id, so either silod works, at one request in the
        common case."""
        from silo.errors import NotFound

        try:
            return action(self.id_for(ref))
        except NotFound as e:
            if e.field or e.obj not in ("", ref) or ref in self._ids:
                raise  # not about the container (a command, an image, a process)
            sid = self.client().resolve(ref)
            if sid == ref:
                raise
        self._ids[ref] = sid
        return action(sid)

    def id_for(self, ref: str) -> str:
        """``ref``, or the Id it was resolved to by :meth:`on`."""
        return self._ids.get(ref, ref)


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"silo: {text}\n")
    sys.stderr.flush()


def write_fd(fd: int, data: bytes) -> None:
    """Raw bytes to a descriptor, after what ``print`` buffered for it."""
    (sys.stderr if fd == 2 else sys.stdout).flush()
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def each(refs: list[str], action: Callable[[str], T],
         done: Callable[[str, T], object] | None = None) -> int:
    """``action(ref)`` for each object named, then ``done(ref, result)``; a refusal is
    reported and the others still done; Unavailable (silod out of reach) ends the loop. 0, or 1
    if any was refused."""
    status = 0
    for ref in refs:
        try:
            result = action(ref)
        except SiloError as e:
            from silo.errors import Unavailable

            if isinstance(e, Unavailable):
                raise
            err(e.message)
            status = 1
            continue
        if done is not None:
            done(ref, result)
    return status


def for_each(ctx: Context, refs: list[str], action: Callable[[str], Any],
             echo: bool = True) -> int:
    """``action(id)`` for each container named, echoing each name done (as docker does); a
    failure is reported and the others still done. 0, or 1 if any failed."""
    return each(refs, lambda ref: ctx.on(ref, action), print_ref if echo else None)


def print_ref(ref: str, _result: object) -> None:
    """The ``done`` of :func:`each` that echoes each name done, as docker does."""
    out(ref)


def inspect_each(refs: list[str], get: Callable[[str], Any]) -> int:
    """The documents ``get(ref)`` returns, as one JSON array (docker's ``inspect``); a refusal
    is reported and left out. 0, or 1 if any was refused."""
    from silo.schema import jsonio

    docs: list[Any] = []
    status = each(refs, get, lambda _ref, doc: docs.append(doc))
    out(jsonio.dumps_pretty(docs, indent="    "))
    return status


def invoke_failure_code(e: SiloError) -> int:
    """The exit status for a failure to start a container's (or exec's) command: 127 when the
    executable does not exist, 126 when it cannot be run, else 125."""
    from silo.errors import NotFound

    text = e.message.lower()
    field = e.field.lower().replace("_", "")
    command_field = field.endswith(("args", "commandargs"))
    if "executable file not found" in text or (isinstance(e, NotFound) and command_field):
        return EXIT_NOT_FOUND
    if command_field or field.endswith(("cwd", "workingdirectory", "user")) or \
            "permission denied" in text or "exec format error" in text:
        return EXIT_CANNOT_INVOKE
    return EXIT_SILO


def table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as docker prints them."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def print_template(fmt: str, rows: list[dict[str, str]]) -> None:
    """Each row through a ``--format`` Go template as docker's listing verbs take it: every
    ``{{.Field}}`` (or ``{{ .Field }}``) replaced by the row's value, ``\\t`` and ``\\n`` as a
    tab and a newline, a leading ``table `` dropped."""
    template = fmt.replace("\\t", "\t").replace("\\n", "\n")
    if template.startswith("table "):
        template = template[len("table "):]
    for r in rows:
        line = template
        for k, v in r.items():
            line = line.replace("{{." + k + "}}", v).replace("{{ ." + k + " }}", v)
        out(line)


def custom_size(n: float, base: int, units: tuple[str, ...]) -> str:
    """``n`` in the largest of ``units`` (each ``base`` times the one before) it reaches, to 4
    significant digits: go-units' CustomSize, behind every size docker prints."""
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return f"{n:.4g}{units[i]}"


def short_id(sid: str) -> str:
    return sid[:12]


def parse_signal(text: str) -> int | str:
    """A signal as the API takes it: a number, or a name with its ``SIG`` prefix."""
    if text.isdigit():
        return int(text)
    name = text.upper()
    return name if name.startswith("SIG") else "SIG" + name


class ShowedHelp(Exception):
    """``--help`` was asked for and printed: exit 0."""


def parse_args(verb: str, usage: str, flags: list[Any], args: list[str], *,
               interspersed: bool = True, min_args: int = 0,
               max_args: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """A verb's flags and arguments; prints its help and raises ShowedHelp on ``--help``.
    ``usage`` is the line after ``silo VERB`` followed by a description."""
    from silo.cli.flags import UsageError, parse
    from silo.cli.flags import usage as flag_usage

    values, rest = parse(flags, args, interspersed)
    if values.get("help"):
        out(f"Usage:  silo {verb} {usage}\n\nOptions:\n{flag_usage(flags)}")
        raise ShowedHelp
    if len(rest) < min_args:
        what = "argument" if min_args == 1 else "arguments"
        raise UsageError(f'"silo {verb}" requires at least {min_args} {what}.\n'
                         f"Usage:  silo {verb} {usage.splitlines()[0]}", field=verb)
    if max_args is not None and len(rest) > max_args:
        raise UsageError(f'"silo {verb}" accepts at most {max_args} arguments.\n'
                         f"Usage:  silo {verb} {usage.splitlines()[0]}", field=verb)
    return values, rest
