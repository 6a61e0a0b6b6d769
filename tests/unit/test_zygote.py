"""The zygote's wire format and the launcher's verb list (src/silo/runtime/zygote.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from silo.runtime import main as runtime_main
from silo.runtime import zygote

pytestmark = pytest.mark.unit

LAUNCHER_C = Path(zygote.__file__).with_name("launcher.c")


def test_a_request_round_trips() -> None:
    data = zygote.encode("/tmp/x y", 0o027, ["silo-runtime", "--root", "/r", "state", "c1"],
                         {"PATH": "/bin", "EMPTY": "", "EQ": "a=b"})
    req = zygote.decode(data)
    assert (req.cwd, req.umask) == ("/tmp/x y", 0o027)
    assert req.argv == ["silo-runtime", "--root", "/r", "state", "c1"]
    assert req.env == {"PATH": "/bin", "EMPTY": "", "EQ": "a=b"}


@pytest.mark.parametrize("data", [
    b"", b"SILO2\0/\x0022\x000\x000", b"SILO1\0/\0zz\x000\x000", b"SILO1\0/\x0022\x003\0a\0b",
    b"SILO1\0/\x0022\x001\0a\x002\0A=1",
])
def test_a_malformed_request_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        zygote.decode(data)


def test_the_launcher_sends_the_verbs_the_zygote_serves() -> None:
    block = re.search(r"ZYGOTE_VERBS\[\] = \{(.*?)NULL\}", LAUNCHER_C.read_text(), re.S)
    assert block, "ZYGOTE_VERBS not found in launcher.c"
    assert tuple(re.findall(r'"([a-z]+)"', block.group(1))) == zygote.VERBS


def test_no_verb_that_creates_processes_goes_to_the_zygote() -> None:
    """create/run/exec start processes the caller (a subreaping shim) must be able to wait
    for; a forked child of the zygote is nobody's child there."""
    assert not {"create", "run", "exec", "events"} & set(zygote.VERBS)
    assert set(zygote.VERBS) <= set(runtime_main.VERBS)


def test_a_changed_source_makes_the_zygote_stale(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    sources = {str(f): f.stat().st_mtime}
    assert not zygote._stale(sources)
    f.write_text("x = 2\n")
    os.utime(f, (1, 1))
    assert zygote._stale(sources)
    f.unlink()
    assert zygote._stale(sources)
