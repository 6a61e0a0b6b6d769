"""Platforms (os/architecture/variant): parsing, normalising, the host's, and choosing a
manifest for a platform out of an index. Imports only :mod:`silo.errors` (and, for the
checker, :mod:`silo.storage.descriptor`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from silo.errors import NotFound, invalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from silo.storage.descriptor import Descriptor, Index

_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
         "armel": "arm", "i386": "386", "i686": "386"}


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s

    def to_dict(self) -> dict[str, str]:
        d = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            d["variant"] = self.variant
        return d

    @classmethod
    def from_dict(cls, d: object, field: str = "platform") -> Platform:
        if not isinstance(d, dict):
            raise invalid(field, f"must be an object, got {type(d).__name__}")
        os_, arch, variant = d.get("os"), d.get("architecture"), d.get("variant", "")
        if not isinstance(os_, str) or not os_:
            raise invalid(f"{field}.os", "must be a non-empty string")
        if not isinstance(arch, str) or not arch:
            raise invalid(f"{field}.architecture", "must be a non-empty string")
        if not isinstance(variant, str):
            raise invalid(f"{field}.variant", "must be a string")
        return normalize(cls(os_, arch, variant))


def normalize(p: Platform) -> Platform:
    """containerd's normalisation: x86_64 is amd64, aarch64 is arm64, arm64/v8 is arm64,
    arm without a variant is arm/v7."""
    os_ = p.os.lower()
    arch = _ARCH.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant.lower()
    if arch == "arm64" and variant == "v8":
        variant = ""
    elif arch == "arm" and not variant:
        variant = "v7"
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_, arch, variant)


def parse(s: str) -> Platform:
    """``"linux/amd64"``, ``"linux/arm/v7"``, or just ``"linux"`` (the host's architecture)."""
    parts = s.split("/") if isinstance(s, str) else []
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise invalid("platform", f"{s!r} is not os[/architecture[/variant]]")
    if len(parts) == 1:
        return Platform(parts[0].lower(), host().architecture, host().variant)
    return normalize(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


def host() -> Platform:
    return normalize(Platform("linux", os.uname().machine))


def _arm_level(variant: str) -> int:
    return int(variant[1:]) if variant[1:].isdigit() else 0


def matches(have: Platform, want: Platform) -> bool:
    """``have`` runs where ``want`` is asked for (an arm/v7 host also runs arm/v6)."""
    have, want = normalize(have), normalize(want)
    if (have.os, have.architecture) != (want.os, want.architecture):
        return False
    if have.variant == want.variant or not want.variant:
        return True
    if want.architecture == "arm" and have.variant.startswith("v"):
        return 0 < _arm_level(have.variant) <= _arm_level(want.variant)
    return False


def select(index: Index, want: Platform | None = None) -> Descriptor:
    """The manifest of ``index`` for ``want`` (the host when None): an exact match first,
    then the best compatible one; NotFound naming the platforms the index has."""
    want = normalize(want or host())
    best: tuple[int, Descriptor] | None = None
    for desc in index.manifests:
        if desc.platform is None:
            continue
        if not matches(desc.platform, want):
            continue
        score = 1000 if desc.platform.variant == want.variant else \
            _arm_level(desc.platform.variant)
        if best is None or score > best[0]:
            best = (score, desc)
    if best is None:
        have = sorted({str(d.platform) for d in index.manifests if d.platform is not None})
        raise NotFound(f"no manifest for platform {want} in the index (it has: "
                       f"{', '.join(have) or 'no platforms'})", op="platform::select",
                       obj=str(want))
    return best[1]
