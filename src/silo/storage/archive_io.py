"""The files of an image archive: read them from a directory or a tar without extracting it, and
write them into a directory or a tar that appears only once complete.

A tar is indexed once (name → data offset and size, links resolved inside the archive) and each
blob is then read with ``pread`` at its offset, so a 2 GB archive costs one scan and no copy. A
gzip'd tar cannot be read at an offset; it is decompressed once into an unlinked temporary file
(nothing is left behind even after a crash) and indexed the same way.

Member names are checked before anything else reads them: an absolute name or one with ``..``
is refused, naming the member, even though nothing is ever extracted from the archive.

Imports only ``silo.errors``; translates ``OSError`` and ``tarfile`` errors at this boundary.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol

from silo.errors import Internal, NotFound, invalid

OP_LOAD = "storage::load"
OP_SAVE = "storage::save"
SMALL_MAX = 16 << 20  # index.json, manifests and configs are read whole; a bigger one is hostile
_LINK_DEPTH = 16
_CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"


def sniff(head: bytes) -> str:
    """The compression of a stream from its first bytes: gzip, zstd, bzip2, xz, or none."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return "none"


def is_tar_header(block: bytes) -> bool:
    """Whether a 512-byte block opens a tar: a valid header, or the zero block of an empty tar."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    block = block[:tarfile.BLOCKSIZE]
    if block == bytes(tarfile.BLOCKSIZE):
        return True
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def clean_member(name: str, where: str, obj: str) -> str:
    """A member name as a relative, normalised path; absolute names and ``..`` are refused."""
    if name.startswith("/") or "\x00" in name:
        raise invalid(where, f"member {name!r} has an absolute name", op=OP_LOAD, obj=obj)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise invalid(where, f"member {name!r} climbs out of the archive (..)",
                      op=OP_LOAD, obj=obj)
    return "/".join(parts)


class Files(Protocol):
    """The members of an archive, by normalised relative name."""

    where: str  # the archive's path, for errors

    def size(self, name: str) -> int | None: ...  # None: no such regular member
    def open(self, name: str) -> BinaryIO: ...
    def close(self) -> None: ...


def read_small(files: Files, name: str, field: str) -> bytes:
    """A whole small member (index, manifest, config); NotFound/InvalidArgument naming it."""
    size = files.size(name)
    if size is None:
        raise invalid(field, f"{name} is missing from the archive", op=OP_LOAD, obj=files.where)
    if size > SMALL_MAX:
        raise invalid(field, f"{name} is {size} bytes, more than {SMALL_MAX} allowed",
                      op=OP_LOAD, obj=files.where)
    with files.open(name) as f:
        return f.read()


class DirFiles:
    """An unpacked layout: members are files under ``root``; symlinks must stay inside it."""

    def __init__(self, root: str) -> None:
        self.where = root
        self._root = os.path.realpath(root)

    def _path(self, name: str) -> str | None:
        name = clean_member(name, "member", self.where)
        path = os.path.realpath(os.path.join(self._root, name))
        if not path.startswith(self._root + os.sep):
            return None
        return path

    def size(self, name: str) -> int | None:
        path = self._path(name)
        try:
            st = os.stat(path) if path else None
        except OSError:
            return None
        return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None

    def open(self, name: str) -> BinaryIO:
        path = self._path(name)
        if path is None or self.size(name) is None:
            raise NotFound(f"{name} is missing from the layout", op=OP_LOAD, obj=self.where)
        try:  # the path was resolved above: a symlink swapped in since is not followed
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            return os.fdopen(fd, "rb")
        except OSError as e:
            raise Internal(f"cannot read {name}: {e.strerror}", op=OP_LOAD,
                           obj=self.where) from e

    def close(self) -> None:
        pass


class _Slice(io.RawIOBase):
    """``size`` bytes at ``offset`` of a shared fd, read with pread (safe across threads)."""

    def __init__(self, fd: int, offset: int, size: int, name: str, where: str) -> None:
        self._fd, self._off, self._left = fd, offset, size
        self._name, self._where = name, where

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._left)
        if n == 0:
            return 0
        got = os.preadv(self._fd, [memoryview(b)[:n]], self._off)
        if got == 0:
            raise invalid("member", f"{self._name} is truncated", op=OP_LOAD, obj=self._where)
        self._off += got
        self._left -= got
        return got


class TarFiles:
    """A tar (optionally gzip'd) indexed once; members read at their offsets."""

    def __init__(self, path: str) -> None:
        self.where = path
        self._members: dict[str, tuple[int, int]] = {}
        try:  # O_NONBLOCK: a FIFO given as the path must not hang the caller
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            raise _os_error(e, path, OP_LOAD) from e
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise invalid("path", "is neither a regular file nor a directory",
                              op=OP_LOAD, obj=path)
            head = os.pread(self._fd, 8, 0)
            if sniff(head) == "gzip":
                self._gunzip()
            self._index()
        except BaseException:
            os.close(self._fd)
            raise

    def _gunzip(self) -> None:
        tmp = tempfile.TemporaryFile(prefix="silo-archive-")  # noqa: SIM115 - fd kept below
        try:
            with os.fdopen(os.dup(self._fd), "rb") as raw, gzip.GzipFile(fileobj=raw) as gz:
                shutil.copyfileobj(gz, tmp, _CHUNK)
            tmp.flush()
            fd = os.dup(tmp.fileno())
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise invalid("path", f"the gzip stream is corrupt or truncated ({e})",
                          op=OP_LOAD, obj=self.where) from e
        finally:
            tmp.close()
        os.close(self._fd)
        self._fd = fd

    def _index(self) -> None:
        total = os.fstat(self._fd).st_size
        if not is_tar_header(os.pread(self._fd, tarfile.BLOCKSIZE, 0)):
            raise invalid("path", "is not a tar archive (nor an OCI layout directory)",
                          op=OP_LOAD, obj=self.where)
        links: dict[str, str] = {}
        raw = os.fdopen(os.dup(self._fd), "rb")  # shares the offset: start from 0
        raw.seek(0)
        try:
            with tarfile.open(fileobj=raw, mode="r:") as tar:
                for info in tar:
                    name = clean_member(info.name, "member", self.where)
                    if not name or info.isdir():
                        continue
                    if name in self._members or name in links:
                        raise invalid("member", f"{name} appears twice in the archive",
                                      op=OP_LOAD, obj=self.where)
                    if info.issym():
                        links[name] = posixpath.join(posixpath.dirname(name), info.linkname)
                    elif info.islnk():
                        links[name] = info.linkname
                    elif info.isreg() and not info.issparse():
                        if info.offset_data + info.size > total:
                            raise invalid("member", f"{name} is truncated: the archive ends "
                                          f"before its {info.size} bytes",
                                          op=OP_LOAD, obj=self.where)
                        self._members[name] = (info.offset_data, info.size)
        except tarfile.TarError as e:
            raise invalid("path", f"is not a readable tar archive ({e})",
                          op=OP_LOAD, obj=self.where) from e
        finally:
            raw.close()
        for name in links:
            self._members[name] = self._resolve(name, links)

    def _resolve(self, name: str, links: dict[str, str]) -> tuple[int, int]:
        """Where a link leads, inside the archive (docker save links repeated layers)."""
        target = name
        for _ in range(_LINK_DEPTH):
            target = posixpath.normpath(links[target])
            if target == ".." or target.startswith(("../", "/")):
                raise invalid("member", f"link {name} leads out of the archive",
                              op=OP_LOAD, obj=self.where)
            if target in self._members:
                return self._members[target]
            if target not in links:
                break
        raise invalid("member", f"link {name} does not lead to a file in the archive",
                      op=OP_LOAD, obj=self.where)

    def size(self, name: str) -> int | None:
        found = self._members.get(name)
        return None if found is None else found[1]

    def open(self, name: str) -> BinaryIO:
        found = self._members.get(name)
        if found is None:
            raise NotFound(f"{name} is missing from the archive", op=OP_LOAD, obj=self.where)
        return open_range(self._fd, found[0], found[1], name, self.where)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_range(fd: int, offset: int, size: int, name: str, where: str) -> BinaryIO:
    """A buffered reader of ``size`` bytes at ``offset`` of ``fd`` (which it does not own)."""
    return io.BufferedReader(_Slice(fd, offset, size, name, where), _CHUNK)


def open_files(path: str) -> Files:
    return DirFiles(path) if os.path.isdir(path) else TarFiles(path)


def _os_error(e: OSError, path: str, op: str) -> Exception:
    if isinstance(e, FileNotFoundError):
        return NotFound(f"{path} does not exist", op=op, obj=path)
    return Internal(f"{path}: {e.strerror}", op=op, obj=path)


# -- writing --


class Writer(Protocol):
    def add_bytes(self, name: str, data: bytes) -> None: ...
    def add_stream(self, name: str, stream: BinaryIO, size: int, digest: str) -> None: ...


class _Verify(io.RawIOBase):
    """Pass a stream through while checking its size and sha256 (a corrupt store is caught)."""

    def __init__(self, stream: BinaryIO, size: int, digest: str, name: str) -> None:
        self._s, self._left, self._digest, self._name = stream, size, digest, name
        self._h = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._s.read(min(len(b), self._left))
        if not data and self._left:
            raise Internal(f"blob {self._digest} is shorter than its size", op=OP_SAVE,
                           obj=self._name)
        memoryview(b)[:len(data)] = data
        self._left -= len(data)
        self._h.update(data)
        if self._left == 0 and "sha256:" + self._h.hexdigest() != self._digest:
            raise Internal(f"blob {self._digest} does not match its digest", op=OP_SAVE,
                           obj=self._name)
        return len(data)


class _TarWriter:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self._tar = tar
        self._dirs: set[str] = set()

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        parent = posixpath.dirname(name)
        todo = []
        while parent and parent not in self._dirs:
            todo.append(parent)
            parent = posixpath.dirname(parent)
        for d in reversed(todo):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            self._tar.addfile(info)
            self._dirs.add(d)
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        return info

    def add_bytes(self, name: str, data: bytes) -> None:
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def add_stream(self, name: str, stream: BinaryIO, size: int, digest: str) -> None:
        reader = io.BufferedReader(_Verify(stream, size, digest, name), _CHUNK)
        self._tar.addfile(self._info(name, size), reader)


class _DirWriter:
    def __init__(self, root: str) -> None:
        self._root = root

    def _open(self, name: str) -> BinaryIO:
        path = os.path.join(self._root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "xb")

    def add_bytes(self, name: str, data: bytes) -> None:
        with self._open(name) as f:
            f.write(data)

    def add_stream(self, name: str, stream: BinaryIO, size: int, digest: str) -> None:
        with self._open(name) as f:
            shutil.copyfileobj(io.BufferedReader(_Verify(stream, size, digest, name), _CHUNK),
                               f, _CHUNK)


@contextmanager
def write_tar(path: str) -> Iterator[Writer]:
    """A tar written to a temporary name beside ``path`` and renamed over it on success."""
    if os.path.isdir(path):
        raise invalid("path", f"{path} is a directory", op=OP_SAVE, obj=path)
    tmp = _temp_name(path)
    try:
        with open(tmp, "xb") as f:
            with tarfile.open(fileobj=f, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                yield _TarWriter(tar)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise Internal(f"cannot write {path}: {e.strerror or e}", op=OP_SAVE, obj=path) from e
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def write_dir(path: str) -> Iterator[Writer]:
    """A layout written into a temporary directory beside ``path`` and renamed to it. An
    existing empty directory is replaced; anything else there is refused, not merged into."""
    if os.path.lexists(path) and not (os.path.isdir(path) and not os.listdir(path)):
        raise invalid("path", f"{path} exists and is not an empty directory", op=OP_SAVE,
                      obj=path)
    tmp = _temp_name(path)
    try:
        os.mkdir(tmp, 0o755)
        yield _DirWriter(tmp)
        if os.path.isdir(path):
            os.rmdir(path)
        os.rename(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Internal(f"cannot write {path}: {e.strerror or e}", op=OP_SAVE, obj=path) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _temp_name(path: str) -> str:
    head, tail = os.path.split(os.path.abspath(path))
    if not tail:
        raise invalid("path", "names no file", op=OP_SAVE, obj=path)
    if not os.path.isdir(head):
        raise NotFound(f"directory {head} does not exist", op=OP_SAVE, obj=path)
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:12]}")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

