"""The per-call commands' import path stays lean (CONTRIBUTING.md): importing any module that
``silo-runtime`` loads, in a fresh ``python -I -S``, pulls in none of the slow or heavy stdlib
modules. A failure names the module and the chain of imports that brought it in, read from
``-X importtime``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")

FORBIDDEN = ("typing", "json", "re", "dataclasses", "enum", "argparse", "subprocess",
             "pathlib", "logging", "ctypes", "signal", "socket")

MODULES = [
    "silo.errors",
    "silo.schema.jsonio",
    "silo.schema.oci",
    "silo.schema.oci_defaults",
    "silo.runtime.main",
    *(f"silo.runtime.verbs.{v}" for v in ("create", "run", "start", "state", "kill", "delete",
                                          "exec")),
    *(f"silo.compute.{m}" for m in ("create", "exec", "container", "init")),
    *(f"silo.kernel.{m}" for m in ("cgroups", "seccomp", "capabilities", "mounts", "rootfs",
                                   "proc", "console", "signals")),
]


def _importtime_lines(stderr: str) -> list[tuple[int, str]]:
    """(depth, module) for each ``import time:`` line, in the order Python prints them (a
    module's line comes after the lines of everything it imported)."""
    lines = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        field = line.rsplit("|", 1)[1]
        name = field.lstrip(" ")
        lines.append(((len(field) - len(name) - 1) // 2, name))
    return lines


def import_chain(stderr: str, module: str) -> list[str]:
    """The modules from the top-level import down to ``module``, or [] if it has no line."""
    lines = _importtime_lines(stderr)
    for i, (depth, name) in enumerate(lines):
        if name != module:
            continue
        chain = [name]
        for later_depth, later in lines[i + 1:]:
            if later_depth < depth:
                chain.append(later)
                depth = later_depth
        return chain[::-1]
    return []


def forbidden_imports(module: str) -> tuple[list[str], str]:
    """Import ``module`` in a fresh interpreter; returns (forbidden modules now loaded, a
    report with the chain that loaded each)."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {SRC!r})\n"
        "before = set(sys.modules)\n"
        f"__import__({module!r})\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(repr((bad, [m for m in bad if m in before])))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"importing {module} failed:\n{proc.stderr[-4000:]}"
    bad, at_startup = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
    report = []
    for name in bad:
        if name in at_startup:
            report.append(f"{name}: already loaded when the interpreter started")
        else:
            chain = import_chain(proc.stderr, name)
            report.append(f"{name}: " + (" -> ".join(chain) if chain else "(no import line)"))
    return bad, "\n".join(report)


@pytest.mark.parametrize("module", MODULES)
def test_import_is_lean(module: str) -> None:
    bad, report = forbidden_imports(module)
    assert not bad, f"importing {module} loads {', '.join(bad)}:\n{report}"


def test_the_check_catches_an_import_and_names_the_chain() -> None:
    # The json package imports re through json.decoder: the check must see it and say so.
    bad, report = forbidden_imports("json")
    assert "json" in bad
    assert "re" in bad
    assert "re: json -> json.decoder -> re" in report.splitlines()


def test_chain_reading() -> None:
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:        10 |         10 |       re",
        "import time:        10 |         10 |       other",
        "import time:        10 |         20 |     silo.b",
        "import time:        10 |         30 |   silo.a",
        "import time:        10 |         40 | silo.top",
        "import time:        10 |         10 | re2",
    ])
    assert import_chain(stderr, "re") == ["silo.top", "silo.a", "silo.b", "re"]
    assert import_chain(stderr, "re2") == ["re2"]
    assert import_chain(stderr, "missing") == []
