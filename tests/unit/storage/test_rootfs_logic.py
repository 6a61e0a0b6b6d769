"""The parts of rootfs.py that need no root: size checks and the loop_config layout."""

from __future__ import annotations

import pytest

from silo.errors import InvalidArgument
from silo.storage import rootfs

pytestmark = pytest.mark.unit


def test_loop_config_has_the_kernels_layout() -> None:
    cfg = rootfs._loop_config(7, "/x/scratch.img")
    assert len(cfg) == 304  # sizeof(struct loop_config) on every Linux ABI
    assert cfg[:4] == (7).to_bytes(4, "little")
    # lo_flags (AUTOCLEAR) sits after 5 u64 and 3 u32 of loop_info64, which starts at 8
    flags_at = 8 + 5 * 8 + 3 * 4
    assert int.from_bytes(cfg[flags_at:flags_at + 4], "little") == rootfs.LO_FLAGS_AUTOCLEAR
    assert cfg[flags_at + 4:flags_at + 4 + 14] == b"/x/scratch.img"


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


def test_mountinfo_escapes() -> None:
    assert rootfs._unescape("/a\\040b\\011c\\012d\\134e") == "/a b\tc\nd\\e"
