"""The entry point of silo-cni: the environment and the configuration in, one result or one
error document out (CNI spec, "Plugin execution" and "Error").

``main(env, stdin, stdout)`` is the whole plugin, so tests call it in-process; ``run()`` is the
command (``.venv/bin/silo-cni``, a lean launcher). Exit status 0, or 1 with the error as JSON
on stdout: ``{"cniVersion", "code", "msg", "details"?}``. A message for people goes to stderr
as well, since runtimes log it.

Lean: imports the client and the CNI schema only; each command's module when it is the one
asked for.
"""

from __future__ import annotations

import os
import sys

from silo.errors import SiloError
from silo.schema import cni, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any

    from silo.client import Client
    from silo.cni.common import Call

_MODULES = {"ADD": "add", "DEL": "delete", "CHECK": "check", "GC": "gc", "STATUS": "status"}


def main(env: Mapping[str, str], stdin: IO[bytes], stdout: IO[str],
         stderr: IO[str] | None = None,
         client: Callable[[str], Client] | None = None) -> int:
    """Run one CNI command. ``client``: makes the silod client for an address (tests)."""
    version = cni.LATEST
    try:
        command = env.get("CNI_COMMAND", "")
        if not command:
            raise cni.CniError(cni.INVALID_ENVIRONMENT, "CNI_COMMAND: required (ADD, DEL, "
                               "CHECK, STATUS, GC or VERSION)")
        if command == "VERSION":
            return _version(stdin, stdout)
        if command not in _MODULES:
            raise cni.CniError(cni.INVALID_ENVIRONMENT, f"CNI_COMMAND: unknown command "
                               f"{command!r} (ADD, DEL, CHECK, STATUS, GC or VERSION)")
        conf = cni.parse_config(stdin.read(), command)
        version = conf["cniVersion"]
        if not cni.allows(version, command):
            raise cni.CniError(cni.INCOMPATIBLE_VERSION, f"cniVersion: {command} is not part "
                               f"of CNI {version} (from {cni.COMMANDS[command]})")
        from silo.cni.common import make_call

        call = make_call(command, env, conf, client)
        out = _run(command, call)
        if out is not None:
            stdout.write(jsonio.dumps(out))
            stdout.write("\n")
        return 0
    except cni.CniError as err:
        return _fail(err, version, stdout, stderr)
    except SiloError as err:  # a silod answer no command translated: still the spec's form
        from silo.cni.common import translate

        return _fail(translate(err, "silod"), version, stdout, stderr)
    except Exception as err:  # a bug of ours: the runtime still gets an error it can read
        return _fail(cni.CniError(cni.INTERNAL, f"silo-cni failed: {err}",
                                  type(err).__name__), version, stdout, stderr)


def _run(command: str, call: Call) -> dict[str, Any] | None:
    import importlib

    module = importlib.import_module(f"silo.cni.{_MODULES[command]}")
    return module.run(call)  # type: ignore[no-any-return]


def _version(stdin: IO[bytes], stdout: IO[str]) -> int:
    asked = cni.LATEST
    data = stdin.read() if stdin is not None else b""
    if data.strip():
        try:
            doc = jsonio.loads(data, "the VERSION request")
        except SiloError:
            doc = {}
        if isinstance(doc, dict) and doc.get("cniVersion") in cni.SUPPORTED_VERSIONS:
            asked = doc["cniVersion"]
    stdout.write(jsonio.dumps({"cniVersion": asked,
                               "supportedVersions": list(cni.SUPPORTED_VERSIONS)}) + "\n")
    return 0


def _fail(err: cni.CniError, version: str, stdout: IO[str], stderr: IO[str] | None) -> int:
    stdout.write(jsonio.dumps(err.document(version)) + "\n")
    if stderr is not None:
        stderr.write(f"silo-cni: {err.msg}" + (f" ({err.details})" if err.details else "")
                     + "\n")
    return 1


def run() -> None:
    """The command: exit without tearing the interpreter down (it is a one-shot)."""
    code = main(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
