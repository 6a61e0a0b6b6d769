"""An image store on a filesystem that fills up during an unpack: a clear error naming the
cause, no image or name visible, no temporary left, and the same add succeeds once there is
room (the issue's "a full disk during unpack")."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from silo import errors
from silo.storage import mediatypes as mt
from silo.storage.images import ImageStore
from tests import probes
from tests.unit.storage.imagefactory import CountingSource, image

pytestmark = pytest.mark.kernel


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 4 MiB tmpfs of its own (remounted bigger by the test when it wants room)."""
    reason = probes.need_root()
    if reason:
        pytest.skip(reason)
    top = Path(tempfile.mkdtemp(prefix="silo-fullfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "silo-fullfs", str(top)],
                   check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(top)], check=False)
        os.rmdir(top)


def leftovers(root: Path) -> list[str]:
    """Temporaries: partial blobs in ingest/ and half-unpacked layers/.tmp-*."""
    out = [f"ingest/{n}" for n in os.listdir(root / "ingest") if n != ".lock"]  # a fixture
    out += [f"layers/{n}" for n in os.listdir(root / "layers") if n.startswith(".tmp-")]
    return out


def test_a_full_disk_during_unpack_leaves_nothing_and_a_retry_succeeds(small_fs: Path) -> None:
    # random bytes: the gzip'd blob is as big as the file, so both the blob and the
    # unpacked copy need room (5 MiB > the 4 MiB filesystem)
    big = image({"base/keep": "a small base layer\n"}, {"data/big": os.urandom(5 << 20)})
    root = small_fs / "store"
    store = ImageStore(str(root))
    with pytest.raises(errors.SiloError) as e:
        store.add(CountingSource(big), big.manifest, mt.OCI_MANIFEST, names=["big:1"])
    assert isinstance(e.value, errors.Internal | errors.InvalidArgument), e.value
    assert "space" in e.value.message.lower(), e.value.message
    assert store.list() == []
    with pytest.raises(errors.NotFound):
        store.get("big:1")
    assert leftovers(root) == []
    store.gc()
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
    img = ImageStore(str(root)).add(CountingSource(big), big.manifest, mt.OCI_MANIFEST,
                                    names=["big:1"])
    assert img.names == ("docker.io/library/big:1",)
    assert leftovers(root) == []
