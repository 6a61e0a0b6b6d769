"""silo.storage.unpack as root: devices, ownership, xattrs, whiteouts under a real overlayfs,
and a round trip of the embedded busybox rootfs.

The overlay mounts happen in a child ``unshare --mount`` with private propagation, so they
vanish with the child whatever the test does. Escape cases are in tests/unit/test_unpack.py
(they need no root); the ones here need root to matter (devices, hardlinks to device nodes).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import stat
import struct
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from silo.errors import InvalidArgument
from silo.storage.unpack import unpack
from tests import probes
from tests.unit import test_unpack as unit
from tests.unit.test_unpack import OCI_GZIP, OCI_ZSTD, Layer, blob, diff_id, run, tree

SKIP = probes.need_root()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(bool(SKIP), reason=SKIP or "")]
OVERLAY_SKIP = probes.need_all(probes.need_overlay(), probes.need_binary("unshare"))
dest = unit.dest            # the unit tests' fixtures: the layer's dir, and what is next to it
sentinel = unit.sentinel

CAP_NET_RAW = 13


def vfs_cap_v2(permitted: int, effective: bool = True) -> bytes:
    """A security.capability value (struct vfs_cap_data, revision 2)."""
    magic = 0x02000000 | (1 if effective else 0)
    return struct.pack("<IIIII", magic, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)


def test_devices_fifos_and_their_owners(dest: Path) -> None:
    tar = (Layer().add("dev/null", tarfile.CHRTYPE, mode=0o666, major=1, minor=3, uid=5, gid=6)
           .add("dev/loop9", tarfile.BLKTYPE, mode=0o660, major=7, minor=9, gid=6)
           .add("run/fifo", tarfile.FIFOTYPE, mode=0o620, uid=7, gid=8, mtime=12345)
           .hardlink("dev/null2", "dev/null").tar())
    run(tar, dest)
    null = (dest / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and stat.S_IMODE(null.st_mode) == 0o666
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert (null.st_uid, null.st_gid) == (5, 6)
    loop = (dest / "dev/loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode) and stat.S_IMODE(loop.st_mode) == 0o660
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 9)
    fifo = (dest / "run/fifo").lstat()
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620
    assert (fifo.st_uid, fifo.st_gid, fifo.st_mtime) == (7, 8, 12345)
    assert (dest / "dev/null2").lstat().st_ino == null.st_ino


def test_ownership_of_every_kind_and_setuid_kept_after_chown(dest: Path) -> None:
    tar = (Layer().dir("home/u", uid=1000, gid=1001, mode=0o2750)
           .file("home/u/su", b"x", uid=1000, gid=1001, mode=0o6755)
           .symlink("home/u/l", "/nowhere", uid=1002, gid=1003)
           .file("big-ids", b"", uid=2**32 - 2, gid=70000).tar())
    run(tar, dest)
    d = (dest / "home/u").stat()
    assert (d.st_uid, d.st_gid, stat.S_IMODE(d.st_mode)) == (1000, 1001, 0o2750)
    f = (dest / "home/u/su").stat()
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 1001, 0o6755)
    link = (dest / "home/u/l").lstat()
    assert (link.st_uid, link.st_gid) == (1002, 1003)
    big = (dest / "big-ids").stat()
    assert (big.st_uid, big.st_gid) == (2**32 - 2, 70000)


def test_owner_out_of_range_is_invalid(dest: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"'f'.*out of range"):
        run(Layer(tarfile.GNU_FORMAT).file("f", b"", uid=2**40).tar(), dest)


def test_xattrs_kept_and_dropped(dest: Path) -> None:
    cap = vfs_cap_v2(1 << CAP_NET_RAW)
    binary = bytes(range(256))
    tar = (Layer().file("bin/ping", b"\x7fELF", mode=0o755, uid=0, xattrs={
               "security.capability": cap, "user.binary": binary,
               "trusted.overlay.redirect": b"/etc", "security.selinux": b"system_u:x"})
           .dir("d", xattrs={"user.note": b"dir", "trusted.overlay.opaque": b"y"})
           .tar())
    run(tar, dest)
    ping = str(dest / "bin/ping")
    assert os.getxattr(ping, "security.capability") == cap   # survived chown and write
    assert os.getxattr(ping, "user.binary") == binary
    assert os.getxattr(str(dest / "d"), "user.note") == b"dir"
    for path, key in ((ping, "trusted.overlay.redirect"), (ping, "security.selinux"),
                      (str(dest / "d"), "trusted.overlay.opaque")):
        with pytest.raises(OSError) as exc:
            os.getxattr(path, key)
        assert exc.value.errno == errno.ENODATA, key


def test_whiteouts_become_overlay_whiteouts(dest: Path) -> None:
    tar = (Layer().file("etc/.wh.gone", b"").dir("opq").file("opq/.wh..wh..opq", b"")
           .file("opq/new", b"n").file("x/.wh..wh.plnk", b"").file(".wh..wh..opq", b"")
           .file("f").file(".wh.f").tar())   # a whiteout replaces a file of its own layer
    run(tar, dest)
    for path in ("etc/gone", "f"):
        st = (dest / path).lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), path
    assert os.getxattr(str(dest / "opq"), "trusted.overlay.opaque") == b"y"
    assert os.getxattr(str(dest), "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(dest / "x")) == []
    assert not any(n.startswith(".wh.") for n in tree(dest))


@pytest.mark.skipif(bool(OVERLAY_SKIP), reason=OVERLAY_SKIP or "")
def test_whiteouts_hide_lower_files_under_a_real_overlay(tmp_path: Path, dest: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    base = (Layer().file("etc/keep", b"k").file("etc/gone", b"g").file("opq/old", b"o")
            .dir("dirgone").file("dirgone/inner", b"i").tar())
    run(blob(base, "gzip"), lower, OCI_GZIP)
    top = (Layer().file("etc/.wh.gone").file("opq/.wh..wh..opq").file("opq/new", b"n")
           .file(".wh.dirgone").tar())
    run(blob(top, "zstd"), dest, OCI_ZSTD)
    merged = tmp_path / "merged"
    merged.mkdir()
    script = ('mount -t overlay overlay -o "lowerdir=$1:$2" "$3" && cd "$3" && '
              'find . | LC_ALL=C sort')
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(dest), str(lower), str(merged)],
        capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out == [".", "./etc", "./etc/keep", "./opq", "./opq/new"]
    assert list(merged.iterdir()) == []   # the mount lived and died in the child


def test_device_named_like_a_parent_cannot_be_written_through(
        dest: Path, sentinel: Callable[[], None]) -> None:
    tar = Layer().add("d", tarfile.CHRTYPE, major=1, minor=3).file("d/x", b"e").tar()
    with pytest.raises(InvalidArgument, match="'d' is not a directory"):
        run(tar, dest)
    sentinel()


def test_hardlink_to_a_host_file_by_absolute_name_is_refused(
        dest: Path, sentinel: Callable[[], None]) -> None:
    with pytest.raises(InvalidArgument, match="not in the layer"):
        run(Layer().hardlink("shadow", "/etc/shadow").tar(), dest)
    assert os.listdir(dest) == []
    sentinel()


# -- busybox round trip ------------------------------------------------------------------------

def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything tar carries about each path under ``root`` (hardlinks as groups)."""
    out: dict[str, tuple[object, ...]] = {}
    first: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, *([""] if Path(dirpath) == root else [])]:
            p = Path(dirpath) / name if name else root
            st = p.lstat()
            rel = str(p.relative_to(root))
            what: tuple[object, ...] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                        st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                what += (st.st_size, int(st.st_mtime),
                         hashlib.sha256(p.read_bytes()).hexdigest(),
                         first.setdefault((st.st_dev, st.st_ino), rel))
            elif stat.S_ISLNK(st.st_mode):
                what += (os.readlink(p),)
            elif stat.S_ISDIR(st.st_mode):
                what += (int(st.st_mtime),)
            else:
                what += (st.st_rdev, int(st.st_mtime))
            out[rel] = what
    return out


@pytest.mark.skipif(bool(probes.need_busybox_image()), reason=probes.need_busybox_image() or "")
def test_busybox_rootfs_round_trip(tmp_path: Path, dest: Path) -> None:
    rootfs = probes.BUSYBOX_IMAGE / "rootfs"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(rootfs, arcname=".")
    raw = buf.getvalue()
    result = unpack(io.BytesIO(gzip.compress(raw)), str(dest), OCI_GZIP)
    assert result.diff_id == diff_id(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert result.size == sum(m.size for m in tar if m.isreg())
    assert snapshot(dest) == snapshot(rootfs)


# -- layers written by GNU tar, compared with GNU tar's own extraction -------------------------

def xattrs_of(root: Path) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink() or not (p.is_file() or p.is_dir()):
                continue
            keys = sorted(k for k in os.listxattr(p) if k.startswith("user."))
            if keys:
                out[str(p.relative_to(root))] = {k: os.getxattr(p, k) for k in keys}
    return out


def make_source(src: Path) -> None:
    """A tree with every kind of entry a layer carries, plus a real one (zoneinfo)."""
    (src / "etc").mkdir(parents=True)
    (src / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.link(src / "etc/passwd", src / "etc/passwd-")
    (src / "bin").mkdir()
    (src / "bin/su").write_bytes(b"\x7fELF su")
    os.chmod(src / "bin/su", 0o4755)
    os.symlink("su", src / "bin/su2")
    os.symlink("/etc/passwd", src / "bin/abs")
    long_dir = src / ("l" * 120) / ("m" * 120)
    long_dir.mkdir(parents=True)
    (long_dir / ("n" * 200)).write_bytes(b"long")
    os.link(long_dir / ("n" * 200), src / "hardlink-to-long")
    (src / "tmp").mkdir(mode=0o1777)
    os.chmod(src / "tmp", 0o1777)
    (src / "home/user").mkdir(parents=True)
    os.chown(src / "home/user", 1000, 1000)
    (src / "home/user/.profile").write_text("export A=1\n")
    os.chown(src / "home/user/.profile", 1000, 100)
    os.setxattr(src / "home/user/.profile", "user.origin", b"layer\x00binary\xff")
    os.mkfifo(src / "tmp/fifo", 0o640)
    os.mknod(src / "etc/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (src / "empty").mkdir(mode=0o700)
    os.chmod(src / "empty", 0o700)
    subprocess.run(["cp", "-a", "/usr/share/zoneinfo", str(src / "zoneinfo")], check=True)
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (1_500_000_000, 1_500_000_000),
                     follow_symlinks=False)


GNU_TAR_SKIP = probes.need_all(probes.need_binary("tar"), probes.need_binary("zstd"),
                               None if Path("/usr/share/zoneinfo").is_dir()
                               else "/usr/share/zoneinfo is missing (tzdata)")


@pytest.mark.skipif(bool(GNU_TAR_SKIP), reason=GNU_TAR_SKIP or "")
@pytest.mark.parametrize("fmt,compress,media_type", [
    ("gnu", "--gzip", OCI_GZIP), ("posix", "--zstd", OCI_ZSTD), ("posix", "--gzip", OCI_GZIP),
])
def test_layer_written_by_gnu_tar_matches_gnu_tar_extraction(
        tmp_path: Path, dest: Path, fmt: str, compress: str, media_type: str) -> None:
    src = tmp_path / "src"
    make_source(src)
    layer = tmp_path / "layer"
    xattr_flags = ["--xattrs", "--xattrs-include=user.*"] if fmt == "posix" else []
    subprocess.run(["tar", "-c", compress, f"--format={fmt}", *xattr_flags, "-f", str(layer),
                    "-C", str(src), "."], check=True)
    with layer.open("rb") as f:
        result = unpack(f, str(dest), media_type)
    by_tar = tmp_path / "by-tar"
    by_tar.mkdir()
    subprocess.run(["tar", "-x", compress, "--same-owner", "--same-permissions", *xattr_flags,
                    "-f", str(layer), "-C", str(by_tar)], check=True)
    unzip = "gzip" if compress == "--gzip" else "zstd"
    raw = subprocess.run([unzip, "-dc", str(layer)], check=True, capture_output=True).stdout
    assert result.diff_id == diff_id(raw)
    assert snapshot(dest) == snapshot(by_tar)
    assert snapshot(dest)["bin/su"][1] == 0o4755
    if fmt == "posix":
        assert xattrs_of(dest) == xattrs_of(by_tar) == {
            "home/user/.profile": {"user.origin": b"layer\x00binary\xff"}}


def test_a_file_over_a_device_replaces_it_and_never_writes_into_it(dest: Path) -> None:
    tar = (Layer().add("x", tarfile.CHRTYPE, mode=0o666, major=1, minor=3)   # /dev/null's
           .file("x", b"data that /dev/null would swallow").tar())
    run(tar, dest)
    st = (dest / "x").lstat()
    assert stat.S_ISREG(st.st_mode)
    assert (dest / "x").read_bytes() == b"data that /dev/null would swallow"
