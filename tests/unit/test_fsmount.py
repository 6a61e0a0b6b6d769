"""silo.kernel.fsmount without root: overlay's mount(2) option string for kernels before 6.8
(and what it cannot carry), and mountinfo's escapes."""

from __future__ import annotations

import pytest

from silo.errors import NotSupported
from silo.kernel import fsmount

pytestmark = pytest.mark.unit


def test_overlay_options() -> None:
    assert fsmount.overlay_options(["/l/b", "/l/a"], "/c/upper", "/c/work") == \
        "lowerdir=/l/b:/l/a,upperdir=/c/upper,workdir=/c/work"


@pytest.mark.parametrize("bad", ["/l/a,b", "/l/a:b"])
def test_a_comma_or_colon_cannot_be_carried(bad: str) -> None:
    for args in (([bad], "/u", "/w"), (["/l/a"], bad, "/w"), (["/l/a"], "/u", bad)):
        with pytest.raises(NotSupported, match="',' or ':'"):
            fsmount.overlay_options(*args)


def test_options_must_fit_a_page() -> None:
    def lowers(n: int) -> list[str]:
        return [f"/var/lib/silo/storage/l/{i:016x}" for i in range(n)]

    fits = max(n for n in range(1, 200)
               if len(f"lowerdir={':'.join(lowers(n))},upperdir=/u,workdir=/w") < 4096)
    assert fsmount.overlay_options(lowers(fits), "/u", "/w").count(":") == fits - 1
    with pytest.raises(NotSupported, match=f"{fits + 1} layers do not fit"):
        fsmount.overlay_options(lowers(fits + 1), "/u", "/w")


def test_mountinfo_escapes() -> None:
    assert fsmount.unescape("/a\\040b\\011c\\012d\\134e") == "/a b\tc\nd\\e"
    assert fsmount.unescape("/plain") == "/plain"
