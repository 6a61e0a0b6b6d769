"""The content store: verified, atomic ingests; aborts leave nothing; concurrent writers of
one digest (threads and processes) end with one good blob; a dead writer's file is removed
when a store is opened, a live one's is not."""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import random
import threading
from pathlib import Path

import pytest

from silo.errors import InvalidArgument, NotFound
from silo.storage.content import ContentStore
from silo.storage.descriptor import sha256

pytestmark = pytest.mark.unit
DATA = random.Random(7).randbytes(3 << 20)  # the same in spawned processes
DIGEST = sha256(DATA)


def test_ingest_commit_read(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    assert not cs.has(DIGEST)
    with cs.ingest(DIGEST, len(DATA)) as w:
        assert not cs.has(DIGEST)  # nothing visible before the commit
        w.write(DATA[:10])
        w.write(DATA[10:])
        path = w.commit()
    assert cs.has(DIGEST) and cs.read(DIGEST) == DATA and cs.size(DIGEST) == len(DATA)
    assert os.stat(path).st_mode & 0o777 == 0o444
    assert os.listdir(cs.ingest_dir) in ([], [".lock"])
    assert list(cs.digests()) == [DIGEST]
    assert cs.delete(DIGEST) == len(DATA) and not cs.has(DIGEST) and cs.delete(DIGEST) == 0


@pytest.mark.parametrize(("data", "size", "words"), [
    (DATA[:-1], len(DATA), "got 3145727 bytes"),
    (DATA + b"x", len(DATA), "more than the 3145728 bytes"),
    (DATA[:-1] + b"!", len(DATA), "its content has digest"),
])
def test_a_bad_blob_is_refused_and_leaves_nothing(tmp_path: Path, data: bytes, size: int,
                                                  words: str) -> None:
    cs = ContentStore(str(tmp_path))
    with pytest.raises(InvalidArgument) as e, cs.ingest(DIGEST, size) as w:
        w.write(data)
        w.commit()
    assert words in str(e.value) and DIGEST in str(e.value)
    assert not cs.has(DIGEST)
    assert os.listdir(cs.ingest_dir) in ([], [".lock"])


def test_abort_and_exception_leave_nothing(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    w = cs.ingest(DIGEST, len(DATA))
    w.write(DATA[:100])
    w.abort()
    with pytest.raises(RuntimeError), cs.ingest(DIGEST) as w2:
        w2.write(DATA)
        raise RuntimeError("the download broke")
    assert os.listdir(cs.ingest_dir) in ([], [".lock"]) and not cs.has(DIGEST)


def test_write_bytes_and_missing(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    assert cs.write_bytes(b"hello") == sha256(b"hello")
    with pytest.raises(InvalidArgument, match="digest"):
        cs.write_bytes(b"hello", expected=sha256(b"other"))
    with pytest.raises(NotFound, match=DIGEST):
        cs.open(DIGEST)
    with pytest.raises(InvalidArgument, match="digest"):
        cs.path("sha256:../../etc/passwd")


def _write(root: str, chunk: int) -> None:
    cs = ContentStore(root)
    with cs.ingest(DIGEST, len(DATA)) as w:
        for i in range(0, len(DATA), chunk):
            w.write(DATA[i:i + chunk])
        w.commit()


def test_concurrent_ingests_of_one_digest_threads(tmp_path: Path) -> None:
    threads = [threading.Thread(target=_write, args=(str(tmp_path), 4096 * (i + 1)))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cs = ContentStore(str(tmp_path))
    assert hashlib.sha256(cs.read(DIGEST)).hexdigest() == DIGEST.split(":")[1]
    assert list(cs.digests()) == [DIGEST] and os.listdir(cs.ingest_dir) in ([], [".lock"])


def test_concurrent_ingests_of_one_digest_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(str(tmp_path), 8192 * (i + 1))) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cs = ContentStore(str(tmp_path))
    assert cs.read(DIGEST) == DATA
    assert os.listdir(cs.ingest_dir) in ([], [".lock"])


def test_clean_removes_a_dead_writers_file_not_a_live_ones(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    dead = Path(cs.ingest_dir) / "dead-writer"
    dead.write_bytes(b"half a blob")
    live = cs.ingest(DIGEST, len(DATA))
    live.write(DATA[:5])
    assert cs.clean() == 1
    assert not dead.exists() and os.path.exists(live.path)
    live.write(DATA[5:])
    live.commit()
    assert cs.read(DIGEST) == DATA


def test_a_lock_held_elsewhere_keeps_the_file(tmp_path: Path) -> None:
    cs = ContentStore(str(tmp_path))
    held = Path(cs.ingest_dir) / "other-process"
    held.write_bytes(b"x")
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert cs.clean() == 0 and held.exists()
    finally:
        os.close(fd)
    assert cs.clean() == 1
