"""silo.kernel.fsmount on the real kernel: overlays by the new mount API (one ``lowerdir+``
per layer) and by mount(2) options, what the kernel answers when it lacks a parameter or a
lower dir is wrong, unmounting a busy mount, and the mount table below a path. Every test
works in a temp dir of its own and leaves no mount behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from silo.errors import Internal
from silo.kernel import fsmount, libc
from tests import probes

SKIP = probes.need_all(probes.need_root(), probes.need_overlay())
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(bool(SKIP), reason=SKIP or "")]


def mounted_below(path: str) -> list[str]:
    """Read independently of the module under test (the paths here have spaces only)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


@pytest.fixture
def work() -> Iterator[Path]:
    root = os.path.realpath(tempfile.mkdtemp(prefix="silo-fsmount-test "))  # a space: escapes
    yield Path(root)
    left = mounted_below(root)
    for point in reversed(left):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    assert left == [], f"left mounted: {left}"


def layers(work: Path) -> tuple[list[str], str, str, str]:
    for name, files in (("base", {"a": b"base a\n", "b": b"base b\n"}), ("top", {"a": b"top\n"})):
        (work / name).mkdir()
        for f, data in files.items():
            (work / name / f).write_bytes(data)
    for d in ("upper", "work", "merged"):
        (work / d).mkdir()
    return [str(work / "top"), str(work / "base")], str(work / "upper"), str(work / "work"), \
        str(work / "merged")


def test_an_overlay_by_lowerdir_plus(work: Path) -> None:
    lowers, upper, wdir, merged = layers(work)
    fsmount.overlay(lowers, upper, wdir, merged)
    assert mounted_below(str(work)) == [merged]
    assert fsmount.mounts_below(str(work)) == [merged]
    assert Path(merged, "a").read_bytes() == b"top\n"
    assert Path(merged, "b").read_bytes() == b"base b\n"
    Path(merged, "new").write_bytes(b"new\n")
    assert Path(upper, "new").read_bytes() == b"new\n"
    fsmount.unmount(merged)
    assert mounted_below(str(work)) == []
    fsmount.unmount(merged)  # not a mount any more: nothing to do


def test_an_overlay_by_options(work: Path) -> None:
    """mount(2) as before 6.8, through short links (the store's l/), which the kernel then
    shows in the mount's options."""
    lowers, upper, wdir, merged = layers(work)
    with pytest.raises(Internal, match=f"mounting overlay on {merged}") as e:
        fsmount.overlay_by_options(lowers, upper, str(work / "missing"), merged)
    assert isinstance(e.value.__cause__, OSError)
    short = tempfile.mkdtemp(prefix="silo-fsmount-l-")  # no space: options cannot escape it
    try:
        os.symlink(lowers[0], f"{short}/1")
        os.symlink(lowers[1], f"{short}/0")
        fsmount.overlay_by_options([f"{short}/1", f"{short}/0"], upper, wdir, merged)
        assert Path(merged, "a").read_bytes() == b"top\n"
        with open("/proc/self/mountinfo") as f:
            line = next(ln for ln in f if ln.split()[4] == merged.replace(" ", "\\040"))
        assert f"lowerdir={short}/1:{short}/0" in line
    finally:
        fsmount.unmount(merged)
        shutil.rmtree(short)


def test_an_unknown_parameter_says_fall_back(work: Path) -> None:
    lowers, upper, _, merged = layers(work)
    with pytest.raises(fsmount.NoNewMountAPI, match="nonsense"):
        fsmount.mount("overlay", [("nonsense+", lowers[0]), ("upperdir", upper)], merged)
    assert mounted_below(str(work)) == []


def test_a_bad_lower_names_it_and_what_overlayfs_said(work: Path) -> None:
    lowers, upper, wdir, merged = layers(work)
    (work / "file").write_bytes(b"not a dir")
    with pytest.raises(Internal) as e:
        fsmount.overlay([str(work / "file"), *lowers], upper, wdir, merged)
    assert not isinstance(e.value, fsmount.NoNewMountAPI)
    assert "lowerdir+" in str(e.value) and str(work / "file") in str(e.value)
    assert "overlay" in str(e.value) and e.value.obj == merged
    assert isinstance(e.value.__cause__, OSError)
    assert mounted_below(str(work)) == []


def test_an_unknown_filesystem_type(work: Path) -> None:
    with pytest.raises(Internal, match="fsopen") as e:
        fsmount.mount("silo-no-such-fs", [], str(work))
    assert not isinstance(e.value, fsmount.NoNewMountAPI)


def test_a_busy_mount_is_detached(work: Path) -> None:
    (work / "m").mkdir()
    libc.mount("tmpfs", str(work / "m"), "tmpfs", 0, "size=1m")
    fd = os.open(work / "m", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsmount.unmount(str(work / "m"))
        assert mounted_below(str(work)) == []
    finally:
        os.close(fd)


def test_unmounting_what_is_not_mounted(work: Path) -> None:
    fsmount.unmount(str(work))
    fsmount.unmount(str(work / "missing"))
    assert mounted_below(str(work)) == []


def test_mounts_below_latest_first(work: Path) -> None:
    (work / "a").mkdir()
    libc.mount("tmpfs", str(work / "a"), "tmpfs", 0, "size=1m")
    os.mkdir(work / "a" / "b c")
    libc.mount("tmpfs", str(work / "a" / "b c"), "tmpfs", 0, "size=1m")
    (work / "z").mkdir()
    libc.mount("tmpfs", str(work / "z"), "tmpfs", 0, "size=1m")
    assert fsmount.mounts_below(str(work)) == [str(work / "z"), str(work / "a" / "b c"),
                                               str(work / "a")]
    assert fsmount.mounts_below(str(work / "a")) == [str(work / "a" / "b c"), str(work / "a")]
    assert fsmount.mounts_below(str(work / "a" / "b")) == []  # a prefix is not a parent
    for point in fsmount.mounts_below(str(work)):
        fsmount.unmount(point)
    assert mounted_below(str(work)) == []
