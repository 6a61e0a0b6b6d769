"""silo.kernel.loop on the real kernel: a file bound to a free loop device with autoclear
(freed when its fd goes), an ext4 image mounted through one (nosuid,nodev; freed with the
mount, or explicitly after a lazy unmount), and a failed mount leaving no device bound. Every
test works in a temp dir of its own and leaves no mount or loop device behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from silo.errors import Internal
from silo.kernel import fsmount, loop
from tests import probes
from tests.kernel.conftest import loops_backed_below, mounts_below

SKIP = probes.need_all(probes.need_root(), probes.need_loop(), probes.need_binary("mkfs.ext4"))
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(bool(SKIP), reason=SKIP or "")]


def bound_below(path: str) -> list[str]:
    """Loop devices whose backing file is below ``path``, read from /sys independently."""
    return list(loops_backed_below(path))


def eventually_unbound(path: str) -> list[str]:
    for _ in range(100):  # autoclear runs when the last reference is dropped; allow a moment
        if not bound_below(path):
            return []
        time.sleep(0.02)
    return bound_below(path)


@pytest.fixture
def work() -> Iterator[Path]:
    root = os.path.realpath(tempfile.mkdtemp(prefix="silo-loop-test-"))
    yield Path(root)
    mounts, devs = mounts_below(root), eventually_unbound(root)
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", point], capture_output=True)
    for dev in bound_below(root):
        subprocess.run(["losetup", "-d", dev], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
    assert (mounts, devs) == ([], []), "left behind"


def ext4(path: Path, size: int = 8 << 20) -> str:
    with open(path, "xb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(path)], check=True)
    return str(path)


def test_attach_binds_a_free_device_until_its_fd_goes(work: Path) -> None:
    img = work / "file.img"
    img.write_bytes(bytes(1 << 20))
    fd, dev = loop.attach(str(img))
    try:
        assert dev.startswith("/dev/loop") and loop.backing_file(dev) == str(img)
        assert bound_below(str(work)) == [dev]
        fd2, dev2 = loop.attach(str(img))  # another caller: another device
        os.close(fd2)
        assert dev2 != dev
    finally:
        os.close(fd)
    assert eventually_unbound(str(work)) == []
    assert loop.backing_file(dev) is None


def test_mount_an_image_nosuid_nodev_and_freed_with_the_mount(work: Path) -> None:
    img = ext4(work / "scratch.img")
    (work / "mnt").mkdir()
    dev = loop.mount(img, str(work / "mnt"), "ext4")
    assert loop.backing_file(dev) == img
    with open("/proc/self/mountinfo") as f:
        line = next(ln for ln in f if ln.split()[4] == str(work / "mnt"))
    opts = line.split()[5].split(",")
    assert "nosuid" in opts and "nodev" in opts and " - ext4 " in line
    (work / "mnt" / "f").write_bytes(b"x")
    fsmount.unmount(str(work / "mnt"))
    assert eventually_unbound(str(work)) == []  # autoclear: the mount held the device


def test_a_failed_mount_leaves_no_device(work: Path) -> None:
    img = work / "zeros.img"
    img.write_bytes(bytes(1 << 20))  # no filesystem in it
    (work / "mnt").mkdir()
    with pytest.raises(Internal) as e:
        loop.mount(str(img), str(work / "mnt"), "ext4")
    assert str(img) in str(e.value) and "ext4" in str(e.value)
    assert isinstance(e.value.__cause__, OSError)
    assert mounts_below(str(work)) == [] and eventually_unbound(str(work)) == []


def test_a_missing_backing_file(work: Path) -> None:
    with pytest.raises(Internal, match=r"missing\.img"):
        loop.attach(str(work / "missing.img"))


def test_detach_after_a_lazy_unmount(work: Path) -> None:
    """A busy mount is only detached from the tree; detach then unbinds the device as soon as
    the last user goes, and leaves a device that serves another file alone."""
    img = ext4(work / "scratch.img")
    other = work / "other.img"
    other.write_bytes(bytes(1 << 20))
    (work / "mnt").mkdir()
    dev = loop.mount(img, str(work / "mnt"), "ext4")
    fd = os.open(work / "mnt", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsmount.unmount(str(work / "mnt"))  # EBUSY -> MNT_DETACH
        assert mounts_below(str(work)) == [] and loop.backing_file(dev) == img
        loop.detach(dev, str(other))  # not bound to that: nothing happens
        assert loop.backing_file(dev) == img
        loop.detach(dev, img)
    finally:
        os.close(fd)
    assert eventually_unbound(str(work)) == []
    loop.detach(dev, img)  # idempotent


@pytest.mark.skipif(bool(probes.need_binary("losetup")), reason=probes.need_binary("losetup")
                    or "")
def test_detach_unbinds_a_device_without_autoclear(work: Path) -> None:
    """A device someone bound without autoclear (losetup) stays bound with no user:
    LOOP_CLR_FD is what frees it."""
    img = work / "file.img"
    img.write_bytes(bytes(1 << 20))
    dev = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                         capture_output=True, text=True).stdout.strip()
    time.sleep(0.05)
    assert bound_below(str(work)) == [dev]
    loop.detach(dev, str(img))
    assert bound_below(str(work)) == []
