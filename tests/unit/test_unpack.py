"""Unit tests of silo.storage.unpack: streams, compression, names, replacement, escapes.

No root needed: these tests use only regular files, directories, symlinks and hardlinks in a
temp dir. Devices, ownership, xattrs and whiteouts are in tests/kernel/test_unpack.py. The tars
are built here with tarfile; ``Layer`` and ``blob`` are shared with the kernel tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from silo.errors import Internal, InvalidArgument, NotSupported, Unavailable
from silo.storage.unpack import UnpackResult, kept_xattr, unpack

pytestmark = pytest.mark.unit

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA = {"none": OCI_TAR, "gzip": OCI_GZIP, "zstd": OCI_ZSTD}
MTIME = 1_600_000_000


class Layer:
    """A tar built entry by entry, as a layer would carry it."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=fmt)  # noqa: SIM115
        self._done: bytes | None = None

    def add(self, name: str, type: bytes, data: bytes = b"", *, mode: int = 0o644,
            uid: int = 0, gid: int = 0, mtime: int = MTIME, linkname: str = "",
            xattrs: dict[str, bytes] | None = None, major: int = 0,
            minor: int = 0) -> Layer:
        ti = tarfile.TarInfo(name)
        ti.type = type
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.mtime = mtime
        ti.linkname = linkname
        ti.devmajor, ti.devminor = major, minor
        ti.size = len(data) if type == tarfile.REGTYPE else 0
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                              for k, v in xattrs.items()}
        self._tar.addfile(ti, io.BytesIO(data) if type == tarfile.REGTYPE else None)
        return self

    def file(self, name: str, data: bytes = b"", **kw: object) -> Layer:
        return self.add(name, tarfile.REGTYPE, data, **kw)  # type: ignore[arg-type]

    def dir(self, name: str, **kw: object) -> Layer:
        kw.setdefault("mode", 0o755)
        return self.add(name, tarfile.DIRTYPE, **kw)  # type: ignore[arg-type]

    def symlink(self, name: str, target: str, **kw: object) -> Layer:
        return self.add(name, tarfile.SYMTYPE, linkname=target, mode=0o777,
                        **kw)  # type: ignore[arg-type]

    def hardlink(self, name: str, target: str, **kw: object) -> Layer:
        return self.add(name, tarfile.LNKTYPE, linkname=target, **kw)  # type: ignore[arg-type]

    def tar(self) -> bytes:
        if self._done is None:
            self._tar.close()
            self._done = self._buf.getvalue()
        return self._done


def blob(tar: bytes, compression: str = "none") -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(tar)
    return tar


def diff_id(tar: bytes) -> str:
    return "sha256:" + hashlib.sha256(tar).hexdigest()


def tree(root: Path) -> dict[str, tuple[str, ...]]:
    """What is under ``root``: path -> (kind, content or target)."""
    out: dict[str, tuple[str, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_bytes().decode("latin-1"))
            else:
                out[rel] = ("other", oct(st.st_mode))
    return out


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "diff"
    d.mkdir()
    return d


@pytest.fixture
def sentinel(tmp_path: Path) -> Callable[[], None]:
    """A dir next to ``dest`` (and the rest of tmp_path) that no layer may change.

    Returns a check that fails if anything outside ``dest`` appeared, vanished or changed.
    """
    s = tmp_path / "sentinel"
    s.mkdir()
    (s / "passwd").write_text("root:x:0:0\n")
    (s / "etc").mkdir()

    def snapshot() -> dict[str, tuple[str, ...]]:
        return {k: v for k, v in tree(tmp_path).items() if not k.startswith("diff/")
                and k != "diff"}

    before = snapshot()

    def check() -> None:
        assert snapshot() == before
    return check


def run(data: bytes, dest: Path, media_type: str = OCI_TAR) -> UnpackResult:
    return unpack(io.BytesIO(data), str(dest), media_type)


# -- streams and compression -------------------------------------------------------------------

SAMPLE = (Layer().dir("etc").file("etc/hostname", b"silo\n").file("bin/sh", b"\x7fELF" * 300,
          mode=0o755).symlink("bin/ash", "sh").hardlink("bin/busybox", "bin/sh"))


@pytest.mark.parametrize("compression,media_type", [
    ("none", OCI_TAR), ("gzip", OCI_GZIP), ("zstd", OCI_ZSTD), ("gzip", DOCKER_GZIP),
    ("none", OCI_GZIP),  # tolerant as containerd: the magic bytes decide
    ("gzip", OCI_TAR), ("zstd", "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
])
def test_unpacks_each_compression(dest: Path, compression: str, media_type: str) -> None:
    tar = SAMPLE.tar()
    seen: list[int] = []
    data = blob(tar, compression)
    result = unpack(io.BytesIO(data), str(dest), media_type, progress=seen.append)
    assert result == UnpackResult(diff_id=diff_id(tar), size=5 + 1200)
    assert sum(seen) == len(data)
    assert tree(dest) == {
        "etc": ("dir",), "bin": ("dir",), "etc/hostname": ("file", "silo\n"),
        "bin/sh": ("file", "\x7fELF" * 300), "bin/ash": ("link", "sh"),
        "bin/busybox": ("file", "\x7fELF" * 300)}
    assert (dest / "bin/sh").stat().st_ino == (dest / "bin/busybox").stat().st_ino
    assert stat.S_IMODE((dest / "bin/sh").stat().st_mode) == 0o755
    assert (dest / "etc/hostname").stat().st_mtime == MTIME


def test_multi_member_gzip_and_multi_frame_zstd(dest: Path, tmp_path: Path) -> None:
    tar = SAMPLE.tar()
    gz = gzip.compress(tar[:700]) + gzip.compress(tar[700:])
    assert run(gz, dest, OCI_GZIP).diff_id == diff_id(tar)
    other = tmp_path / "other"
    other.mkdir()
    c = zstandard.ZstdCompressor()
    zs = c.compress(tar[:3000]) + c.compress(tar[3000:])
    assert run(zs, other, OCI_ZSTD).diff_id == diff_id(tar)
    assert tree(dest) == tree(other)


def test_diff_id_covers_the_padding_after_the_end_marker(dest: Path) -> None:
    tar = SAMPLE.tar() + b"\0" * 8192
    assert run(blob(tar, "gzip"), dest, OCI_GZIP).diff_id == diff_id(tar)


def test_unknown_media_type_is_refused_before_reading(dest: Path) -> None:
    stream = io.BytesIO(SAMPLE.tar())
    with pytest.raises(InvalidArgument, match=r"application/vnd\.oci\.image\.config\.v1"):
        unpack(stream, str(dest), "application/vnd.oci.image.config.v1+json")
    assert stream.tell() == 0 and list(dest.iterdir()) == []


@pytest.mark.parametrize("mangle,problem", [
    (lambda b: blob(b, "gzip")[:-20], "corrupt gzip stream: truncated"),
    (lambda b: blob(b, "gzip")[:10] + b"\xff" * 50 + blob(b, "gzip")[60:], "corrupt gzip"),
    (lambda b: blob(b, "zstd")[:-20], "corrupt zstd stream: truncated"),
    (lambda b: blob(b, "zstd")[:4] + b"\xff" * 60, "corrupt zstd"),
    (lambda b: b[:1536 + 100], "truncated|unexpected end"),     # inside a file's data
    (lambda b: b[:512], "truncated|unexpected end"),            # a header, no data
    (lambda b: b[:1024 + 512 + 1200 + 100], "truncated|unexpected end|bad tar header"),
    (lambda b: b"\x01" * 700, "corrupt tar|bad tar header|invalid header"),
    (lambda b: b"", "truncated"),
])
def test_truncated_or_corrupt_streams_are_invalid(
        dest: Path, mangle: Callable[[bytes], bytes], problem: str) -> None:
    tar = Layer().file("a", b"x" * 1200).file("b", b"y" * 1200).tar()
    with pytest.raises(InvalidArgument, match=problem):
        run(mangle(tar), dest, OCI_GZIP)


def test_stream_cut_at_an_entry_boundary_is_truncated(dest: Path) -> None:
    tar = Layer().file("a", b"x" * 512).file("b", b"y").tar()
    with pytest.raises(InvalidArgument, match="truncated"):
        run(tar[:1024], dest)   # "a" complete, then nothing: no end-of-archive marker


def test_xz_is_not_supported(dest: Path) -> None:
    with pytest.raises(NotSupported, match="xz"):
        run(b"\xfd7zXZ\x00" + b"\0" * 100, dest)


def test_dest_must_be_an_empty_directory(tmp_path: Path, dest: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        run(SAMPLE.tar(), tmp_path / "missing")
    (dest / "x").write_text("")
    with pytest.raises(InvalidArgument, match="not empty"):
        run(SAMPLE.tar(), dest)


# -- names, replacement, metadata --------------------------------------------------------------

def test_gnu_and_pax_long_names(dest: Path, tmp_path: Path) -> None:
    deep = "/".join(["d" * 60] * 5) + "/" + "f" * 200
    for i, fmt in enumerate((tarfile.PAX_FORMAT, tarfile.GNU_FORMAT)):
        d = tmp_path / f"d{i}"
        d.mkdir()
        tar = Layer(fmt).file(deep, b"deep").symlink("l", "t" * 300).hardlink("h", deep).tar()
        run(tar, d)
        assert (d / deep).read_bytes() == b"deep"
        assert os.readlink(d / "l") == "t" * 300
        assert (d / "h").stat().st_ino == (d / deep).stat().st_ino


def test_leading_slash_and_dots_are_cleaned_into_dest(dest: Path,
                                                      sentinel: Callable[[], None]) -> None:
    run(Layer().file("/etc/x", b"1").file("./a/./b/../c", b"2").file("//d", b"3").tar(), dest)
    assert tree(dest) == {"etc": ("dir",), "etc/x": ("file", "1"), "a": ("dir",),
                          "a/c": ("file", "2"), "d": ("file", "3")}
    sentinel()


def test_later_entries_replace_earlier_ones(dest: Path) -> None:
    tar = (Layer().file("f", b"old").file("f", b"new")
           .file("d", b"file").dir("d").file("d/x", b"in d")
           .dir("e").file("e/old", b"1").dir("e").file("e/new", b"2")     # dir over dir merges
           .dir("g").file("g/x", b"1").file("g", b"now a file")           # file over dir
           .symlink("s", "nowhere").file("s", b"over symlink")
           .file("h", b"1").hardlink("h2", "h").file("h", b"replaced").tar())
    run(tar, dest)
    assert tree(dest) == {
        "f": ("file", "new"), "d": ("dir",), "d/x": ("file", "in d"), "e": ("dir",),
        "e/old": ("file", "1"), "e/new": ("file", "2"), "g": ("file", "now a file"),
        "s": ("file", "over symlink"), "h": ("file", "replaced"), "h2": ("file", "1")}


def test_modes_and_directory_mtimes_after_contents(dest: Path) -> None:
    tar = (Layer().dir("ro", mode=0o555, mtime=1000).file("ro/f", b"x", mode=0o4755)
           .dir("sticky", mode=0o1777, mtime=2000).file("sticky/g", b"y", mode=0o2640)
           .dir(".", mode=0o711, mtime=3000).tar())
    run(tar, dest)
    assert stat.S_IMODE((dest / "ro").stat().st_mode) == 0o555
    assert (dest / "ro").stat().st_mtime == 1000
    assert stat.S_IMODE((dest / "ro/f").stat().st_mode) == 0o4755
    assert stat.S_IMODE((dest / "sticky").stat().st_mode) == 0o1777
    assert (dest / "sticky").stat().st_mtime == 2000
    assert stat.S_IMODE((dest / "sticky/g").stat().st_mode) == 0o2640
    assert stat.S_IMODE(dest.stat().st_mode) == 0o711 and dest.stat().st_mtime == 3000


def test_missing_parents_are_created_0755(dest: Path) -> None:
    old = os.umask(0o077)
    try:
        run(Layer().file("a/b/c", b"x").tar(), dest)
    finally:
        os.umask(old)
    assert stat.S_IMODE((dest / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "a/b").stat().st_mode) == 0o755


def test_symlink_targets_are_data_never_followed(dest: Path,
                                                 sentinel: Callable[[], None]) -> None:
    run(Layer().symlink("abs", "/etc/passwd").symlink("up", "../../..").tar(), dest)
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert os.readlink(dest / "up") == "../../.."
    sentinel()


def test_xattr_policy() -> None:
    assert kept_xattr("user.foo") and kept_xattr("security.capability")
    assert kept_xattr("system.posix_acl_access")
    for key in ("trusted.overlay.opaque", "trusted.overlay.redirect", "security.selinux",
                "security.ima", "system.nfs4_acl"):
        assert not kept_xattr(key)


# -- escapes: each leaves everything outside dest unchanged ------------------------------------

# Each case is built against the sentinel's absolute path ``s``, so that a broken unpacker
# would write into the sentinel (and fail the test), never into the host's /etc.
ESCAPES: dict[str, tuple[Callable[[str], Layer], str]] = {
    "dotdot": (lambda s: Layer().file("../x", b"evil"), "climbs above"),
    "dotdot-inside": (lambda s: Layer().file("a/../../x", b"evil"), "climbs above"),
    "dotdot-sentinel": (lambda s: Layer().file("../sentinel/passwd", b"evil"), "climbs above"),
    "symlink-abs-then-file": (lambda s: Layer().symlink("evil", s).file("evil/passwd", b"e"),
                              "'evil' is a symlink"),
    "symlink-then-dir": (lambda s: Layer().symlink("evil", "../sentinel").dir("evil/etc/new"),
                         "'evil' is a symlink"),
    "symlink-up-then-file": (lambda s: Layer().symlink("a", "../../..")
                             .file("a/sentinel/x", b"e"), "'a' is a symlink"),
    "symlink-then-hardlink": (lambda s: Layer().symlink("evil", "../sentinel")
                              .hardlink("evil/passwd2", "evil/passwd"), "is a symlink"),
    "hardlink-through-symlink": (lambda s: Layer().symlink("evil", s)
                                 .hardlink("stolen", "evil/passwd"), "'evil' is a symlink"),
    "hardlink-absolute": (lambda s: Layer().hardlink("stolen", s + "/passwd"),
                          "not in the layer"),
    "hardlink-etc-passwd": (lambda s: Layer().hardlink("stolen", "/etc/passwd"),
                            "not in the layer"),
    "hardlink-dotdot": (lambda s: Layer().hardlink("stolen", "../sentinel/passwd"),
                        "climbs above"),
    "symlink-chain": (lambda s: Layer().symlink("a", "b").symlink("b", "c")
                      .symlink("c", "../sentinel").file("a/x", b"evil"), "'a' is a symlink"),
    "symlink-deep-parent": (lambda s: Layer().dir("d").symlink("d/l", s)
                            .file("d/l/etc/x", b"e"), "'d/l' is a symlink"),
    "dir-replaced-by-symlink": (lambda s: Layer().dir("d").file("d/ok", b"1")
                                .symlink("d", s).file("d/passwd", b"evil"),
                                "'d' is a symlink"),
    "whiteout-through-symlink": (lambda s: Layer().symlink("evil", "../sentinel")
                                 .file("evil/.wh.passwd"), "'evil' is a symlink"),
    "opaque-through-symlink": (lambda s: Layer().symlink("evil", s)
                               .file("evil/.wh..wh..opq"), "'evil' is a symlink"),
    "pax-long-name-dotdot": (lambda s: Layer().file("../" * 40 + "sentinel/" + "p" * 150, b"e"),
                             "climbs above"),
    "gnu-long-name-dotdot": (lambda s: Layer(tarfile.GNU_FORMAT)
                             .file("a/" * 60 + "../" * 62 + "x", b"e"), "climbs above"),
    "whiteout-dotdot": (lambda s: Layer().file(".wh.."), "names no file"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_escape_is_refused_and_writes_nothing_outside(
        case: str, dest: Path, sentinel: Callable[[], None]) -> None:
    build, reason = ESCAPES[case]
    with pytest.raises(InvalidArgument, match=reason) as exc:
        run(build(str(dest.parent / "sentinel")).tar(), dest)
    assert "layer entry" in str(exc.value)
    sentinel()


def test_symlink_replaced_by_dir_is_a_real_dir(dest: Path, sentinel: Callable[[], None]) -> None:
    run(Layer().symlink("d", "../sentinel").dir("d").file("d/passwd", b"mine").tar(), dest)
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink()
    assert (dest / "d/passwd").read_bytes() == b"mine"
    sentinel()


def test_absolute_name_lands_inside(dest: Path, sentinel: Callable[[], None]) -> None:
    run(Layer().file("/etc/passwd", b"inside").tar(), dest)
    assert (dest / "etc/passwd").read_bytes() == b"inside"
    sentinel()


def test_absolute_name_with_dotdot_is_refused(dest: Path, sentinel: Callable[[], None]) -> None:
    # as docker: joined under dest, "/../x" would still leave it, so it is refused
    with pytest.raises(InvalidArgument, match="climbs above"):
        run(Layer().file("/../../etc/shadow", b"evil").tar(), dest)
    sentinel()


def test_hardlink_to_file_inside_by_absolute_name(dest: Path) -> None:
    run(Layer().file("etc/passwd", b"p").hardlink("copy", "/etc/passwd").tar(), dest)
    assert (dest / "copy").stat().st_ino == (dest / "etc/passwd").stat().st_ino


def test_hardlink_to_a_directory_or_the_root_is_refused(dest: Path) -> None:
    with pytest.raises(InvalidArgument, match="is a directory"):
        run(Layer().dir("d").hardlink("x", "d").tar(), dest)


def test_hardlink_to_a_symlink_links_the_symlink(dest: Path, sentinel: Callable[[], None]) -> None:
    run(Layer().symlink("s", "../sentinel/passwd").hardlink("h", "s").tar(), dest)
    assert os.readlink(dest / "h") == "../sentinel/passwd"
    sentinel()


def test_file_under_a_file_is_refused(dest: Path) -> None:
    with pytest.raises(InvalidArgument, match="'f' is not a directory"):
        run(Layer().file("f", b"1").file("f/g", b"2").tar(), dest)


# -- odd streams and odd entries ----------------------------------------------------------------

class Trickle(io.RawIOBase):
    """A blob that hands out at most ``n`` bytes per read, as a socket may."""

    def __init__(self, data: bytes, n: int) -> None:
        self._data, self._pos, self._n = data, 0, n

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        piece = self._data[self._pos:self._pos + min(self._n, size if size >= 0 else self._n)]
        self._pos += len(piece)
        return piece


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_short_reads_still_sniff_and_unpack(dest: Path, compression: str) -> None:
    tar = SAMPLE.tar()
    stream = Trickle(blob(tar, compression), 1)
    result = unpack(stream, str(dest), OCI_GZIP)  # type: ignore[arg-type]
    assert result.diff_id == diff_id(tar)
    assert (dest / "bin/sh").read_bytes() == b"\x7fELF" * 300


def test_pax_path_with_a_nul_byte_is_invalid(dest: Path) -> None:
    layer = Layer()
    ti = tarfile.TarInfo("plain")
    ti.pax_headers = {"path": "a\x00b"}
    layer._tar.addfile(ti, io.BytesIO(b""))
    with pytest.raises(InvalidArgument, match="null"):
        run(layer.tar(), dest)


def test_unknown_entry_type_and_empty_symlink_are_invalid(dest: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unsupported tar entry type 'V'"):
        run(Layer().add("volume", b"V").tar(), dest)
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(InvalidArgument, match="empty target"):
        run(Layer().add("s", tarfile.SYMTYPE).tar(), other)


def test_errors_name_the_operation_and_entry(dest: Path) -> None:
    with pytest.raises(InvalidArgument) as exc:
        run(Layer().file("../x", b"e").tar(), dest)
    assert (exc.value.op, exc.value.obj, exc.value.field) == ("storage::unpack", "../x", "layer")
    assert str(exc.value) == ("layer entry '../x': path '../x' climbs above the layer root")


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_bomb_streams_through_in_bounded_memory(dest: Path, compression: str) -> None:
    big = b"\0" * (32 * 1024 * 1024)
    data = blob(Layer().file("zeros", big).tar(), compression)
    assert len(data) < 100_000
    del big
    tracemalloc.start()
    try:
        size = run(data, dest, MEDIA[compression]).size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == 32 * 1024 * 1024 == (dest / "zeros").stat().st_size
    assert peak < 8 * 1024 * 1024   # never the whole layer, nor a whole file, in memory


def zstd_frames() -> bytes:
    """Two frames with checksums and no content size, a skippable frame, an empty frame."""
    c = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=False)
    skippable = b"\x5a\x2a\x4d\x18" + (3).to_bytes(4, "little") + b"abc"
    tar = SAMPLE.tar()
    return (skippable + c.compress(tar[:5000]) + zstandard.ZstdCompressor().compress(b"")
            + c.compress(tar[5000:]))


def test_zstd_frames_of_every_kind(dest: Path) -> None:
    assert run(zstd_frames(), dest, OCI_ZSTD).diff_id == diff_id(SAMPLE.tar())
    assert (dest / "etc/hostname").read_bytes() == b"silo\n"


@pytest.mark.parametrize("cut", [1, 4, 9, 12, 30, 200])
def test_zstd_cut_anywhere_inside_a_frame_is_truncated(dest: Path, cut: int) -> None:
    with pytest.raises(InvalidArgument, match="truncated zstd stream"):
        run(zstd_frames()[:-cut], dest, OCI_ZSTD)


def test_zstd_followed_by_garbage_is_corrupt(dest: Path) -> None:
    with pytest.raises(InvalidArgument, match="corrupt zstd stream: not a zstd frame"):
        run(blob(SAMPLE.tar(), "zstd") + b"garbage!", dest, OCI_ZSTD)


def test_gzip_followed_by_garbage_is_corrupt(dest: Path) -> None:
    with pytest.raises(InvalidArgument, match="corrupt gzip stream"):
        run(blob(SAMPLE.tar(), "gzip") + b"garbage!", dest, OCI_GZIP)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_deep_paths_use_a_bounded_number_of_descriptors(dest: Path) -> None:
    deep = "d/" * 300
    layer = Layer()
    for i in range(3):
        layer.file(f"{deep}f{i}", b"x").dir(f"{deep}s{i}", mode=0o500)
    layer.file("top", b"t").file(deep + "f0", b"again")
    before = open_fds()
    most = 0

    class Watched(Trickle):
        def read(self, size: int = -1) -> bytes:
            nonlocal most
            most = max(most, len(open_fds() - before))
            return super().read(size)

    unpack(Watched(layer.tar(), 512), str(dest), OCI_TAR)  # type: ignore[arg-type]
    assert open_fds() == before
    assert 30 < most < 40   # the kept chain, not one per level
    assert (dest / deep / "f0").read_bytes() == b"again"
    assert (dest / deep / "f2").read_bytes() == b"x"
    assert stat.S_IMODE((dest / deep / "s1").stat().st_mode) == 0o500


@pytest.mark.parametrize("case", ["symlink-abs-then-file", "dotdot", "hardlink-absolute"])
def test_failures_leak_no_descriptors(dest: Path, case: str) -> None:
    before = open_fds()
    with pytest.raises(InvalidArgument):
        run(ESCAPES[case][0](str(dest.parent / "sentinel")).tar(), dest)
    assert open_fds() == before


def test_corrupt_stream_leaks_no_descriptors(dest: Path) -> None:
    before = open_fds()
    with pytest.raises(InvalidArgument):
        run(blob(SAMPLE.tar(), "gzip")[:-30], dest, OCI_GZIP)
    assert open_fds() == before


class Failing(io.RawIOBase):
    """A blob whose second read fails with ``error``."""

    def __init__(self, data: bytes, error: Exception) -> None:
        self._data, self._error, self._reads = data, error, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads > 1:
            raise self._error
        return self._data[:1000]


def test_a_failing_blob_read_is_internal_and_silo_errors_pass_through(dest: Path,
                                                                      tmp_path: Path) -> None:
    data = blob(SAMPLE.tar(), "gzip")
    with pytest.raises(Internal, match="reading the blob failed") as exc:
        unpack(Failing(data, ConnectionResetError(104, "reset")), str(dest),  # type: ignore[arg-type]
               OCI_GZIP)
    assert isinstance(exc.value.__cause__, ConnectionResetError)
    other = tmp_path / "other"
    other.mkdir()
    gone = Unavailable("registry went away")
    with pytest.raises(Unavailable) as exc2:
        unpack(Failing(data, gone), str(other), OCI_GZIP)  # type: ignore[arg-type]
    assert exc2.value is gone


def test_progress_can_cancel(dest: Path) -> None:
    class Cancelled(Exception):
        pass

    def progress(n: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        unpack(io.BytesIO(SAMPLE.tar()), str(dest), OCI_TAR, progress=progress)


def test_mangled_tars_fail_only_with_silo_errors(tmp_path: Path,
                                                 sentinel: Callable[[], None]) -> None:
    """Deterministic fuzzing: random bytes of the headers changed, 400 times."""
    import random

    from silo.errors import SiloError

    bases = [
        Layer().dir("etc").file("etc/hostname", b"silo\n").symlink("l", "../x")
        .hardlink("h", "etc/hostname").file("x" * 150 + "/y", b"long", xattrs={"user.a": b"b"})
        .tar(),
        Layer(tarfile.GNU_FORMAT).file("g" * 120, b"gnu").symlink("s", "t" * 120).tar(),
    ]
    rnd = random.Random(20261128)
    outcomes: dict[str, int] = {}
    for i in range(400):
        data = bytearray(rnd.choice(bases))
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(min(len(data), 4096))] = rnd.randrange(256)
        d = tmp_path / "diff" / str(i)   # "diff/" is where the sentinel check does not look
        d.mkdir(parents=True)
        try:
            unpack(io.BytesIO(bytes(data)), str(d), OCI_TAR)
            outcome = "ok"
        except SiloError as e:
            outcome = type(e).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert set(outcomes) <= {"ok", "InvalidArgument"}, outcomes
    assert outcomes.get("InvalidArgument", 0) > 50
    sentinel()


@pytest.mark.parametrize("layer", [
    Layer().symlink(".", "/"), Layer().symlink("./", "../sentinel"),
    Layer().file("etc/x").hardlink(".", "etc/x"), Layer().file("/", b"root"),
], ids=["symlink", "symlink-dot-slash", "hardlink", "file"])
def test_only_a_directory_may_stand_for_the_root(dest: Path, layer: Layer,
                                                 sentinel: Callable[[], None]) -> None:
    with pytest.raises(InvalidArgument, match="only a directory may replace the layer root"):
        run(layer.tar(), dest)
    assert dest.is_dir() and not dest.is_symlink()
    sentinel()
