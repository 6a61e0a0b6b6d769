"""The embedded busybox imported into the image store: deterministic (the same busybox gives
the same image id and manifest in any store), idempotent, and the layer is the rootfs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from silo.storage import busybox
from silo.storage.images import ImageStore
from tests import probes
from tests.unit.storage.imagefactory import digest_of_tree

pytestmark = pytest.mark.unit
SKIP = probes.need_binary("busybox") if not os.path.exists(busybox.BUSYBOX) else None


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    if SKIP:
        pytest.skip(SKIP)
    d = str(tmp_path_factory.mktemp("busybox"))
    busybox.build(d)
    return d


def test_import_is_deterministic_and_idempotent(image_dir: str, tmp_path: Path) -> None:
    first = busybox.import_into(str(tmp_path / "a"), image_dir)
    again = busybox.import_into(str(tmp_path / "a"), image_dir)
    other = busybox.import_into(str(tmp_path / "b"), image_dir)
    assert first == again == other
    a, b = ImageStore(str(tmp_path / "a")), ImageStore(str(tmp_path / "b"))
    assert a.get("busybox").digest == b.get("busybox:latest").digest
    assert len(a.list()) == 1
    img = a.get("docker.io/library/busybox:latest")
    assert img.names == ("docker.io/library/busybox:latest",)
    assert img.config["config"]["Cmd"] == ["sh"] and img.created == ""
    assert len(img.layers) == 1
    layer = a.layers.path(img.layers[0].chain_id)
    assert digest_of_tree(layer) == digest_of_tree(os.path.join(image_dir, "rootfs"))
    assert os.readlink(os.path.join(layer, "bin/sh")) == "/bin/busybox"
    assert os.stat(os.path.join(layer, "tmp")).st_mode & 0o7777 == 0o1777


def test_the_config_json_beside_the_rootfs_is_unchanged(image_dir: str) -> None:
    with open(os.path.join(image_dir, "config.json")) as f:
        assert json.load(f) == busybox.CONFIG


def test_layer_tar_is_stable(image_dir: str) -> None:
    rootfs = os.path.join(image_dir, "rootfs")
    os.utime(os.path.join(rootfs, "etc/passwd"), (12345, 12345))
    assert busybox.layer_tar(rootfs) == busybox.layer_tar(rootfs)
    one = busybox.layer_tar(rootfs)
    os.utime(os.path.join(rootfs, "etc/passwd"), (99999, 99999))
    assert busybox.layer_tar(rootfs) == one  # mtimes do not matter


def test_main_builds_and_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if SKIP:
        pytest.skip(SKIP)
    busybox.main([str(tmp_path / "img"), "--store", str(tmp_path / "store")])
    out = capsys.readouterr().out.split()
    assert out[0] == str(tmp_path / "img" / "rootfs")
    assert ImageStore(str(tmp_path / "store")).get("busybox").id == out[1]
    with pytest.raises(SystemExit, match="--store"):
        busybox.main([str(tmp_path / "img"), "--store"])
