"""What the image verbs of ``silo`` share: sizes as docker prints them, the registry flags,
the progress of a pull or push (one bar per layer on a terminal, plain lines otherwise), and
files handed to silod by path.

silod reads and writes archives by path on its host (the CLI runs on the same host, as root):
``-`` (stdin) and stdout are bridged through a private temporary file here. Imports what
``silo.cli.common`` does.
"""

from __future__ import annotations

import os
import sys

from silo.cli.common import custom_size
from silo.cli.flags import BOOL, STR, Flag, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

REGISTRY_FLAGS = [
    Flag("insecure", BOOL, help="plain HTTP, or HTTPS without checking the certificate"),
    Flag("ca-file", STR, help="PEM file of CAs to trust for the registry"),
    Flag("username", STR, "u", help="registry user name"),
    Flag("password-stdin", BOOL, help="read the registry password (or token) from stdin"),
]


def human_size(n: float) -> str:
    """docker's (go-units) HumanSize: decimal units, 4 significant digits (``4.261MB``)."""
    return custom_size(n, 1000, ("B", "kB", "MB", "GB", "TB", "PB"))


def short_image_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def registry_options(values: dict[str, Any], stdin: BinaryIO | None = None) -> dict[str, Any]:
    """The client's keyword arguments for the registry flags; the password from stdin."""
    opts: dict[str, Any] = {"insecure": values["insecure"], "ca_file": values["ca_file"]}
    if values["password_stdin"]:
        if not values["username"]:
            raise UsageError("--password-stdin needs --username", field="--password-stdin")
        raw = (stdin or sys.stdin.buffer).read()
        opts["password"] = raw.decode(errors="replace").rstrip("\r\n")
    if values["username"]:
        opts["username"] = values["username"]
        opts.setdefault("password", "")
    return opts


# -- progress -------------------------------------------------------------------------------------

_BAR = 50


def bar(current: int, total: int) -> str:
    """``[=====>      ]  1.2MB/3.4MB`` as docker draws a layer."""
    if total <= 0:
        return ""
    filled = min(_BAR, current * _BAR // total)
    arrow = ">" if filled < _BAR else ""
    body = "=" * filled + arrow + " " * (_BAR - filled - len(arrow))
    return f"[{body}] {human_size(current):>8}/{human_size(total)}"


def layer_line(doc: dict[str, Any]) -> str:
    status = str(doc.get("Status", ""))
    text = {"Exists": "Already exists", "Done": "Complete", "Waiting": "Waiting"}.get(status,
                                                                                     status)
    line = f"{doc.get('Id', '')}: {text}"
    if status in ("Downloading", "Uploading", "Unpacking") and doc.get("Total"):
        line += " " + bar(int(doc.get("Current", 0)), int(doc["Total"]))
    return line


def show_progress(lines: Iterator[dict[str, Any]], tty: bool,
                  write: Any = None) -> tuple[dict[str, Any], bool]:
    """Draw a pull's or push's lines; returns the last one (the summary) and whether any
    layer moved (downloaded or uploaded). On a terminal each layer keeps one line, redrawn in
    place; otherwise a line is printed when a layer's status changes. An error in the stream
    is raised by the client's Stream."""
    emit = write or sys.stdout.write
    order: list[str] = []
    shown: dict[str, str] = {}
    last: dict[str, Any] = {}
    moved = False
    for doc in lines:
        if "Status" not in doc:
            last = doc
            continue
        moved = moved or doc["Status"] in ("Downloading", "Uploading")
        key = str(doc.get("Id", ""))
        status = str(doc["Status"])
        if key not in shown:
            order.append(key)
            shown[key] = ""
            if tty:
                emit(layer_line(doc) + "\n")
                shown[key] = status
                continue
        if tty:
            up = len(order) - order.index(key)
            emit(f"\x1b[{up}A\r\x1b[2K{layer_line(doc)}\x1b[{up}B\r")
        elif shown[key] != status:
            emit(layer_line({"Id": key, "Status": status}) + "\n")
        shown[key] = status
        if write is None:
            sys.stdout.flush()
    return last, moved


# -- files by path --------------------------------------------------------------------------------

def private_temp(prefix: str) -> tuple[str, int]:
    """A new file only this user can read, in $TMPDIR or /tmp: (path, fd)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    for _ in range(100):
        path = os.path.join(base, f"{prefix}{os.urandom(8).hex()}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600)
        except FileExistsError:
            continue
        return path, fd
    raise UsageError(f"cannot make a temporary file in {base}", field="TMPDIR")


def copy_fd(src: int, dst: int) -> None:
    while True:
        chunk = os.read(src, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


def stdin_to_file(prefix: str) -> str:
    """Stdin, copied to a private temporary file; its path (the caller removes it)."""
    if os.isatty(0):
        raise UsageError("stdin is a terminal: give a file, or pipe the archive in",
                         field="input")
    path, fd = private_temp(prefix)
    try:
        copy_fd(0, fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return path
