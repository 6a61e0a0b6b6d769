"""The parts of rootfs.py that need no root: size checks, and the container dir's layout, the
fallback before ``lowerdir+`` and the undoing of a failed create, against recording fakes of
the kernel's mounts and loop devices (the real ones: tests/kernel/storage/test_rootfs.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from silo.errors import Internal, InvalidArgument, NotSupported
from silo.kernel.fsmount import NoNewMountAPI
from silo.storage import rootfs
from tests import probes

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, -1, 1000, rootfs.MIN_SIZE - 1, rootfs.MAX_SIZE + 1,
                                  True, 1.5, "8M"])
def test_bad_sizes(size: object) -> None:
    with pytest.raises(InvalidArgument) as e:
        rootfs.check_size(size)
    assert e.value.field == "size"
    assert str(size) in str(e.value)


def test_good_sizes() -> None:
    assert rootfs.check_size(None) is None
    assert rootfs.check_size(rootfs.MIN_SIZE) == rootfs.MIN_SIZE


class FakeMounts:
    """A mount table in memory; records every call. ``new_api=False`` answers as a kernel
    before 6.8; ``fail_overlay`` makes the overlay mount fail as a bad lower dir would."""

    def __init__(self, *, new_api: bool = True, fail_overlay: bool = False,
                 stuck: bool = False) -> None:
        self.table: list[str] = []
        self.calls: list[tuple[str, ...]] = []
        self.new_api, self.fail_overlay, self.stuck = new_api, fail_overlay, stuck

    def overlay(self, lowers: Sequence[str], upper: str, work: str, target: str) -> None:
        self.calls.append(("overlay", ":".join(lowers), upper, work, target))
        if not self.new_api:
            raise NoNewMountAPI("no lowerdir+")
        self._mount(target)

    def overlay_by_options(self, lowers: Sequence[str], upper: str, work: str,
                           target: str) -> None:
        self.calls.append(("overlay_by_options", ":".join(lowers), upper, work, target))
        self._mount(target)

    def _mount(self, target: str) -> None:
        if self.fail_overlay:
            raise Internal(f"mounting overlay on {target}: Not a directory")
        self.table.append(target)

    def unmount(self, target: str) -> None:
        self.calls.append(("unmount", target))
        if not self.stuck and target in self.table:
            self.table.remove(target)

    def mounts_below(self, path: str) -> list[str]:
        path = os.path.realpath(path)
        return [p for p in reversed(self.table) if p == path or p.startswith(path + "/")]


class FakeLoops:
    def __init__(self, mounts: FakeMounts) -> None:
        self.mounts = mounts
        self.bound: dict[str, str] = {}
        self.calls: list[tuple[str, ...]] = []

    def mount(self, image: str, target: str, fstype: str, flags: int = 0) -> str:
        dev = f"/dev/loop{len(self.bound) + 7}"
        self.calls.append(("mount", image, target, fstype))
        self.bound[dev] = os.path.realpath(image)
        self.mounts.table.append(target)
        return dev

    def detach(self, dev: str, backing: str) -> None:
        self.calls.append(("detach", dev, backing))
        if self.bound.get(dev) == backing:
            del self.bound[dev]


LOWERS = ["/store/layers/top/diff", "/store/layers/base/diff"]
SHORT = ["/store/l/1", "/store/l/0"]


def test_create_and_destroy(tmp_path: Path) -> None:
    m = FakeMounts()
    cdir = str(tmp_path / "c1")
    merged = rootfs.create(cdir, LOWERS, short=SHORT, mounts=m, loops=FakeLoops(m))
    assert merged == f"{cdir}/merged"
    assert m.calls == [("overlay", ":".join(LOWERS), f"{cdir}/upper", f"{cdir}/work", merged)]
    assert sorted(os.listdir(cdir)) == ["merged", "upper", "work"]
    assert m.table == [merged]
    rootfs.destroy(cdir, mounts=m, loops=FakeLoops(m))
    assert m.calls[-1] == ("unmount", merged) and m.table == [] and not os.path.exists(cdir)
    rootfs.destroy(cdir, mounts=m, loops=FakeLoops(m))  # idempotent
    assert m.calls[-1] == ("unmount", merged)


@pytest.mark.parametrize(("short", "want"), [(SHORT, SHORT), ((), LOWERS)])
def test_before_lowerdir_plus_the_short_links_are_mounted(tmp_path: Path, short: list[str],
                                                          want: list[str]) -> None:
    m = FakeMounts(new_api=False)
    cdir = str(tmp_path / "c1")
    merged = rootfs.create(cdir, LOWERS, short=short, mounts=m, loops=FakeLoops(m))
    assert [c[0] for c in m.calls] == ["overlay", "overlay_by_options"]
    assert m.calls[1] == ("overlay_by_options", ":".join(want), f"{cdir}/upper",
                          f"{cdir}/work", merged)


def test_too_many_layers_mount_nothing(tmp_path: Path) -> None:
    m = FakeMounts()
    cdir = str(tmp_path / "c1")
    with pytest.raises(NotSupported, match=f"the image has {rootfs.MAX_LOWERS + 1}"):
        rootfs.create(cdir, ["/l"] * (rootfs.MAX_LOWERS + 1), mounts=m, loops=FakeLoops(m))
    assert m.calls == [] and not os.path.exists(cdir)


def test_an_existing_dir_is_refused_and_kept(tmp_path: Path) -> None:
    m = FakeMounts()
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "mine").write_bytes(b"1")
    with pytest.raises(InvalidArgument) as e:
        rootfs.create(str(tmp_path / "c1"), LOWERS, mounts=m, loops=FakeLoops(m))
    assert e.value.field == "container_id"
    assert m.calls == [] and (tmp_path / "c1" / "mine").read_bytes() == b"1"


NEED_MKFS = probes.need_binary("mkfs.ext4")


@pytest.mark.skipif(bool(NEED_MKFS), reason=NEED_MKFS or "")
def test_a_capped_scratch_layout(tmp_path: Path) -> None:
    m = FakeMounts()
    loops = FakeLoops(m)
    cdir = str(tmp_path / "c1")
    merged = rootfs.create(cdir, LOWERS, size=8 << 20, mounts=m, loops=loops)
    image, scratch = f"{cdir}/scratch.img", f"{cdir}/scratch"
    assert loops.calls == [("mount", image, scratch, "ext4")]
    assert m.calls == [("overlay", ":".join(LOWERS), f"{scratch}/upper", f"{scratch}/work",
                        merged)]
    assert sorted(os.listdir(cdir)) == ["loop", "merged", "scratch", "scratch.img"]
    assert Path(cdir, "loop").read_text() == "/dev/loop7"
    assert os.stat(image).st_size == 8 << 20 and os.stat(image).st_blocks * 512 < 8 << 20
    rootfs.destroy(cdir, mounts=m, loops=loops)
    assert [c for c in m.calls if c[0] == "unmount"] == [("unmount", merged),
                                                          ("unmount", scratch)]
    assert loops.calls[-1] == ("detach", "/dev/loop7", os.path.realpath(image))
    assert loops.bound == {} and m.table == [] and not os.path.exists(cdir)


@pytest.mark.skipif(bool(NEED_MKFS), reason=NEED_MKFS or "")
def test_a_failed_overlay_undoes_the_scratch(tmp_path: Path) -> None:
    m = FakeMounts(fail_overlay=True)
    loops = FakeLoops(m)
    cdir = str(tmp_path / "c1")
    with pytest.raises(Internal, match="overlay"):
        rootfs.create(cdir, LOWERS, size=8 << 20, mounts=m, loops=loops)
    assert m.calls[1:] == [("unmount", f"{cdir}/scratch")]
    assert loops.calls[-1] == ("detach", "/dev/loop7", os.path.realpath(f"{cdir}/scratch.img"))
    assert loops.bound == {} and m.table == [] and not os.path.exists(cdir)


def test_what_stays_mounted_is_not_removed(tmp_path: Path) -> None:
    m = FakeMounts(stuck=True)
    cdir = str(tmp_path / "c1")
    merged = rootfs.create(cdir, LOWERS, mounts=m, loops=FakeLoops(m))
    with pytest.raises(Internal, match="still mounted") as e:
        rootfs.destroy(cdir, mounts=m, loops=FakeLoops(m))
    assert merged in str(e.value)
    assert os.path.isdir(f"{cdir}/upper")  # never rmtree through a live mount
