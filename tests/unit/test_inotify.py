"""kernel.inotify: a write into a watched directory wakes the waiter; silence times out."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from silo.kernel.inotify import Inotify

pytestmark = pytest.mark.unit


def test_a_file_written_into_the_directory_wakes_the_waiter(tmp_path: Path) -> None:
    watcher = Inotify()
    try:
        watcher.add(str(tmp_path))
        assert watcher.wait(0.05) is False  # nothing happened yet
        writer = threading.Timer(0.05, lambda: (tmp_path / "exit").write_text("0"))
        writer.start()
        assert watcher.wait(10) is True
        writer.join()
        # A write is several events (create, then close-write); once they are all read, a
        # quiet directory times out again.
        for _ in range(5):
            if not watcher.wait(0.05):
                break
        assert watcher.wait(0.05) is False
    finally:
        watcher.close()


def test_a_rename_into_the_directory_wakes_the_waiter(tmp_path: Path) -> None:
    watched, elsewhere = tmp_path / "watched", tmp_path / "elsewhere"
    watched.mkdir()
    elsewhere.mkdir()
    (elsewhere / "f").write_text("1")
    watcher = Inotify()
    try:
        watcher.add(str(watched))
        os.rename(elsewhere / "f", watched / "f")
        assert watcher.wait(10) is True
    finally:
        watcher.close()


def test_a_missing_directory_is_an_oserror(tmp_path: Path) -> None:
    watcher = Inotify()
    try:
        with pytest.raises(OSError):
            watcher.add(str(tmp_path / "nope"))
    finally:
        watcher.close()
