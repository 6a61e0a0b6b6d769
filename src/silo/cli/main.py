"""silo: docker's command line over silod's API (docs/api.md), through :mod:`silo.client`.

``silo [-H HOST] VERB [flags] [args]``; each verb is one module of ``silo.cli``, imported only
when it is the one asked for, and the entry point exits without tearing the interpreter down:
the command stays as fast to start as ``silo-runtime`` (no json, re, typing, argparse,
http.client or subprocess on its path; see tests/unit/test_cli.py).

Exit statuses are docker's (silo.cli.common): 125 for silo's own failures, 126/127 when the
container's command cannot be run / is not there, else the verb's or the container's.
"""

from __future__ import annotations

import os
import sys

from silo.cli.flags import BOOL, STR, Flag, UsageError, parse
from silo.errors import SiloError

VERBS = {
    "run": "run", "create": "create", "start": "start", "ps": "ps", "exec": "exec",
    "logs": "logs", "stop": "stop", "kill": "kill", "rm": "rm", "inspect": "inspect",
    "stats": "stats", "top": "top", "pause": "pause", "unpause": "unpause",
    "update": "update", "wait": "wait", "events": "events", "system": "system",
    "info": "system", "version": "version",
    "images": "images", "image": "image", "pull": "pull", "push": "push", "rmi": "rmi",
    "tag": "tag", "save": "save", "load": "load", "import": "import_",
    "network": "network", "endpoint": "endpoint",
}
# Verbs whose every failure is silo's own (docker run/create exit 125 when refused).
EXIT_125_VERBS = ("run", "create")

GLOBAL_FLAGS = [
    Flag("host", STR, "H", default=None, help="silod's address (unix:///PATH, tcp://HOST:PORT; "
                                               "default $SILO_HOST, /run/silo/silod.sock)"),
    Flag("version", BOOL, "v", help="print the version"),
    Flag("help", BOOL, help="print usage"),
]

USAGE = """Usage:  silo [OPTIONS] COMMAND

Containers on silod, the host compute service, with docker's habits.

Commands:
  run       Create and start a container from an image
  create    Create a container
  start     Start created containers
  ps        List containers
  exec      Run a command in a running container
  logs      Show a container's output
  stop      Stop containers (SIGTERM, then SIGKILL)
  kill      Send a signal to containers
  rm        Remove containers
  inspect   Show containers' documents as JSON
  stats     Show containers' resource use
  top       Show a container's processes
  pause     Freeze containers
  unpause   Thaw containers
  update    Change containers' memory and CPU limits
  wait      Wait for containers to stop; print their exit codes
  events    Show silod's events as they happen
  system    silod's host (system info)
  images    List images
  image     Manage images (ls, inspect, rm, prune, tag, pull, push, save, load, import)
  pull      Pull an image from a registry
  push      Push an image to a registry
  rmi       Remove images
  tag       Give an image another name
  save      Save images to an archive
  load      Load images from an archive
  import    Import a root filesystem tarball as an image
  network   Manage networks (create, ls, inspect, rm, rules)
  endpoint  Show network endpoints and their counters (ls, inspect, stats)
  version   Show silo's and silod's versions

Options:
"""


def main(argv: list[str] | None = None) -> int:
    from silo.cli.common import EXIT_SILO, Context, ShowedHelp, err, out

    args = sys.argv[1:] if argv is None else argv
    verb = ""
    try:
        from silo.cli.flags import usage

        values, rest = parse(GLOBAL_FLAGS, args, interspersed=False)
        if values["version"]:
            from silo import __version__

            out(f"silo version {__version__}")
            return 0
        if values["help"] or not rest:
            out(USAGE + usage(GLOBAL_FLAGS))
            return 0 if values["help"] else EXIT_SILO
        verb = rest[0]
        if verb not in VERBS:
            raise UsageError(f"{verb!r} is not a silo command.\nSee 'silo --help'",
                             field="command")
        module = __import__(f"silo.cli.{VERBS[verb]}", fromlist=["main"])
        verb_args = ["info", *rest[1:]] if verb == "info" else rest[1:]
        code: int = module.main(Context(values["host"]), verb_args)
        return code
    except ShowedHelp:
        return 0
    except UsageError as e:
        err(e.message + (f"\nSee 'silo {verb} --help'." if verb and "Usage:" not in e.message
                         else ""))
        return EXIT_SILO
    except SiloError as e:
        from silo.errors import Unavailable

        err(e.message)
        if isinstance(e, Unavailable):
            return EXIT_SILO
        if verb == "run":  # silod checks the command when it creates the container
            from silo.cli.common import invoke_failure_code

            return invoke_failure_code(e)
        return EXIT_SILO if verb in EXIT_125_VERBS else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # silo ps | head
        return 0


def run() -> None:
    """The command's entry point: ``main``, then exit without interpreter teardown."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    finally:
        os._exit(code)


if __name__ == "__main__":
    run()
