"""Image references (``registry/repository[:tag][@digest]``) with Docker's normalisation:
``busybox`` is ``docker.io/library/busybox:latest``. Imports only :mod:`silo.errors` and
:mod:`silo.storage.descriptor`.

The grammar is the distribution project's: lowercase path components separated by ``.``,
``_``, ``__`` or runs of ``-``; a domain is the first component when it has a ``.`` or a
``:`` or is ``localhost``; a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; a name is at most
255 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from silo.errors import InvalidArgument, SiloError
from silo.storage.descriptor import validate_digest

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = ("index.docker.io", "registry-1.docker.io")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])"
    r"(?::[0-9]{1,5})?")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_HEX64 = re.compile(r"[a-f0-9]{64}")
MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def familiar_name(self) -> str:
        """The repository as ``docker`` prints it: ``busybox``, ``user/app``, ``quay.io/x/y``."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        repo = self.repository
        return repo[len("library/"):] if repo.startswith("library/") and \
            repo.count("/") == 1 else repo

    def familiar(self) -> str:
        """The short display form: ``busybox:latest``, ``quay.io/x/y@sha256:...``."""
        s = self.familiar_name()
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)


def _bad(s: object, reason: str) -> InvalidArgument:
    return InvalidArgument(f"reference: {s!r} is not a valid image reference: {reason}",
                           op="reference::parse",
                           obj=str(s), field="reference")


def parse(s: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise; ``default_tag`` adds ``:latest`` when there is neither a tag nor a
    digest. InvalidArgument names the reference and the reason."""
    if not isinstance(s, str):
        raise _bad(s, f"must be a string, got {type(s).__name__}")
    if not s:
        raise _bad(s, "is empty")
    if len(s) > 4096 or any(c.isspace() or not c.isprintable() for c in s):
        raise _bad(s, "has whitespace or control characters" if len(s) <= 4096 else
                   "is longer than 4096 characters")
    rest, at, digest = s.partition("@")
    if at:
        if "@" in digest:
            raise _bad(s, "has more than one '@'")
        try:
            validate_digest(digest, "reference digest")
        except SiloError as e:
            raise _bad(s, e.message) from e
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise _bad(s, f"tag {tag!r} must be 1-128 of [A-Za-z0-9_.-], not starting "
                          f"with '.' or '-'")
    if not rest:
        raise _bad(s, "has no repository name")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"
                or first != first.lower()):
        registry, repo = first, remainder
        if not _DOMAIN.fullmatch(registry):
            raise _bad(s, f"registry {registry!r} is not a valid host[:port]")
        if registry in _LEGACY_REGISTRIES:
            registry = DEFAULT_REGISTRY
    else:
        registry, repo = DEFAULT_REGISTRY, rest
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        if _HEX64.fullmatch(repo) and rest == repo:
            raise _bad(s, "a 64-character hex string is an image id, not a repository name")
        repo = f"library/{repo}"
    if repo != repo.lower():
        raise _bad(s, "repository name must be lowercase")
    for comp in repo.split("/"):
        if not _COMPONENT.fullmatch(comp):
            raise _bad(s, f"repository path component {comp!r} must be lowercase letters "
                          f"and digits separated by '.', '_', '__' or '-'")
    if len(registry) + 1 + len(repo) > MAX_NAME:
        raise _bad(s, f"repository name is longer than {MAX_NAME} characters")
    if tag is None and not at and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, repo, tag, digest if at else None)


def normalize(s: str) -> str:
    """The full string form of a reference: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    return str(parse(s))


def parse_name(s: str) -> Reference:
    """A name to give an image: a tagged reference without a digest."""
    ref = parse(s)
    if ref.digest:
        raise _bad(s, "a name to tag an image with cannot carry a digest")
    return ref
