"""silo.kernel.loop without root: the ``struct loop_config`` that LOOP_CONFIGURE takes."""

from __future__ import annotations

import pytest

from silo.kernel import loop

pytestmark = pytest.mark.unit

# <linux/loop.h>, written out so that the module's numbers are checked, not reused.
LOOP_CONFIGURE, LOOP_CTL_GET_FREE, LOOP_CLR_FD, LO_FLAGS_AUTOCLEAR = 0x4C0A, 0x4C82, 0x4C01, 4


def test_the_ioctl_numbers() -> None:
    assert (loop.LOOP_CONFIGURE, loop.LOOP_CTL_GET_FREE, loop.LOOP_CLR_FD,
            loop.LO_FLAGS_AUTOCLEAR) == (LOOP_CONFIGURE, LOOP_CTL_GET_FREE, LOOP_CLR_FD,
                                         LO_FLAGS_AUTOCLEAR)


def test_loop_config_has_the_kernels_layout() -> None:
    cfg = loop.config(7, "/x/scratch.img")
    assert len(cfg) == 304  # sizeof(struct loop_config) on every Linux ABI
    assert cfg[:4] == (7).to_bytes(4, "little")
    assert cfg[4:8] == bytes(4)  # block_size 0: the backing file's
    # lo_flags sits after 5 u64 and 3 u32 of loop_info64, which starts at 8
    flags_at = 8 + 5 * 8 + 3 * 4
    assert int.from_bytes(cfg[flags_at:flags_at + 4], "little") == LO_FLAGS_AUTOCLEAR
    assert cfg[flags_at + 4:flags_at + 4 + 15] == b"/x/scratch.img\0"
    assert cfg[-64:] == bytes(64)  # reserved


def test_a_long_name_is_cut_and_stays_terminated() -> None:
    cfg = loop.config(3, "/" + "a" * 200, flags=0)
    flags_at = 8 + 5 * 8 + 3 * 4
    assert int.from_bytes(cfg[flags_at:flags_at + 4], "little") == 0
    name = cfg[flags_at + 4:flags_at + 4 + 64]
    assert name[:63] == b"/" + b"a" * 62 and name[63] == 0
