"""The content store: blobs (layers, manifests, configs) addressed by their sha256 digest.

Imports only :mod:`silo.errors` and the descriptor module.

``blobs/sha256/<hex>`` are read-only files that appear whole: a writer fills a file under
``ingest/``, and :meth:`Writer.commit` checks its size and digest, then renames it into place.
Two writers of the same digest (threads or processes) each write their own ingest file; the
second rename replaces the first with the same bytes, so a reader only ever sees a good blob.
A writer holds an exclusive ``flock`` on its ingest file for as long as it lives, so that
:meth:`ContentStore.clean` (run when a store is opened) removes only what a dead writer left.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from silo.errors import Internal, InvalidArgument, NotFound, invalid
from silo.storage.descriptor import hex_of, sha256, validate_digest

CHUNK = 1 << 20


def internal(what: str, path: str, err: OSError) -> Internal:
    return Internal(f"{what} {path}: {err.strerror or err}", op="storage", obj=path)


class Writer:
    """One ingest: ``write()`` as the bytes come, then ``commit()``; a context manager that
    aborts (removes its file) when left without a commit."""

    def __init__(self, store: ContentStore, digest: str, size: int | None) -> None:
        self.store = store
        self.digest = validate_digest(digest, "digest")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise invalid("size", f"must be a non-negative integer, got {size!r}")
        self.expected_size = size
        self.written = 0
        self._hash = hashlib.sha256()
        self.committed = False
        # Between creating the file and locking it, clean() must not look: it holds the
        # directory's lock exclusively while it scans, a writer shares it for that moment.
        dirlock = os.open(store.ingest_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(dirlock, fcntl.LOCK_SH)
            fd, self.path = tempfile.mkstemp(dir=store.ingest_dir,
                                             prefix=hex_of(digest)[:12] + "-")
            fcntl.flock(fd, fcntl.LOCK_EX)  # alive: clean() leaves this file alone
        finally:
            os.close(dirlock)
        self._f: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._f is None:
            raise Internal(f"ingest of {self.digest} is closed", op="content::write",
                           obj=self.digest)
        n = len(data)
        if self.expected_size is not None and self.written + n > self.expected_size:
            self.abort()
            raise InvalidArgument(
                f"blob {self.digest}: more than the {self.expected_size} bytes its descriptor "
                f"says", op="content::ingest", obj=self.digest, field="size")
        try:
            self._f.write(data)
        except OSError as e:
            self.abort()
            raise internal("writing", self.path, e) from e
        self._hash.update(data)
        self.written += n
        return n

    def commit(self) -> str:
        """Check size and digest, then make the blob visible; returns its path."""
        if self.committed:
            return self.store.path(self.digest)
        if self._f is None:
            raise Internal(f"ingest of {self.digest} was aborted", op="content::commit",
                           obj=self.digest)
        if self.expected_size is not None and self.written != self.expected_size:
            got = self.written
            self.abort()
            raise InvalidArgument(f"blob {self.digest}: got {got} bytes, its descriptor says "
                                  f"{self.expected_size}", op="content::commit",
                                  obj=self.digest, field="size")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            self.abort()
            raise InvalidArgument(f"blob {self.digest}: its content has digest {actual}",
                                  op="content::commit", obj=self.digest, field="digest")
        dest = self.store.path(self.digest)
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            os.fchmod(self._f.fileno(), 0o444)
            os.rename(self.path, dest)
        except OSError as e:
            self.abort()
            raise internal("committing", dest, e) from e
        self._close()
        self.committed = True
        return dest

    def abort(self) -> None:
        if self.committed:
            return
        self._close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            f.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.committed:
            self.abort()


class ContentStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.blobs_dir = os.path.join(root, "blobs", "sha256")
        self.ingest_dir = os.path.join(root, "ingest")
        self.ingest_lock = os.path.join(self.ingest_dir, ".lock")
        try:
            os.makedirs(self.blobs_dir, exist_ok=True)
            os.makedirs(self.ingest_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise internal("creating", root, e) from e

    def clean(self) -> int:
        """Remove ingest files no live writer holds (what a crash left); how many."""
        dirlock = os.open(self.ingest_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(dirlock, fcntl.LOCK_EX)
            return self._clean()
        finally:
            os.close(dirlock)

    def _clean(self) -> int:
        removed = 0
        for name in os.listdir(self.ingest_dir):
            if name == ".lock":
                continue
            path = os.path.join(self.ingest_dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    continue
                raise
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
        return removed

    def path(self, digest: str) -> str:
        return os.path.join(self.blobs_dir, hex_of(digest))

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise self._missing(digest) from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise self._missing(digest) from None
        except OSError as e:
            raise internal("opening", self.path(digest), e) from e

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def ingest(self, digest: str, size: int | None = None) -> Writer:
        return Writer(self, digest, size)

    def write_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data`` (checked against ``expected`` when given); returns its digest."""
        digest = expected or sha256(data)
        if self.has(digest) and expected is None:
            return digest
        with self.ingest(digest, len(data)) as w:
            w.write(data)
            w.commit()
        return digest

    def delete(self, digest: str) -> int:
        """Remove a blob; its size, 0 when it was not there."""
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
            return size
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise internal("removing", path, e) from e

    def digests(self) -> Iterator[str]:
        for name in sorted(os.listdir(self.blobs_dir)):
            if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
                yield "sha256:" + name

    @staticmethod
    def _missing(digest: str) -> NotFound:
        return NotFound(f"blob {digest} is not in the content store", op="content::open",
                        obj=digest)
