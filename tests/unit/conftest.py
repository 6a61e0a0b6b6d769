"""Fixtures the unit tests of the CLI share: ``silod``, a fake silod (tests/unit/fake_silod.py)
the CLI is pointed at through ``SILO_HOST``, and ``silo``, which runs the CLI in-process and
gives back its exit status and what it printed. A module that needs other answers overrides
``silod`` and asks for this one."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from silo.cli.main import main
from tests.unit.fake_silod import FakeSilod


@pytest.fixture
def silod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSilod]:
    with FakeSilod(str(tmp_path / "silod.sock")) as fake:
        monkeypatch.setenv("SILO_HOST", fake.host)
        yield fake


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"<exit {self.code}, out {self.out!r}, err {self.err!r}>"


@pytest.fixture
def silo(capfd: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def call(*argv: str) -> Result:
        code = main(list(argv))
        sys.stdout.flush()
        sys.stderr.flush()
        captured = capfd.readouterr()
        return Result(code, captured.out, captured.err)
    return call
