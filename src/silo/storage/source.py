"""Where :meth:`ImageStore.add` reads blobs from (a registry, an OCI layout, an archive), and
how it reports per-layer progress. Protocols plus two small sources (in-memory blobs, a
content store); imports only :mod:`silo.errors` and the descriptor module."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO, Protocol

from silo.errors import NotFound

if TYPE_CHECKING:
    from silo.storage.content import ContentStore
    from silo.storage.descriptor import Descriptor


class BlobSource(Protocol):
    """A stream of a blob's bytes. The store checks the digest and size of what it reads; a
    source may check too, and may retry. Called from several threads at once."""

    def open_blob(self, desc: Descriptor) -> BinaryIO: ...


class Progress(Protocol):
    """Per-blob progress; called from several threads at once."""

    def start(self, desc: Descriptor, what: str) -> None:
        """``what``: "download" (fetching and unpacking), "unpack" (from a local blob),
        "exists" (nothing to do)."""

    def advance(self, desc: Descriptor, nbytes: int) -> None: ...

    def done(self, desc: Descriptor) -> None: ...


class MemorySource:
    """Blobs held in memory, by digest (tests, the embedded busybox image)."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.opened: list[str] = []  # digests in the order they were opened (tests count)

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        try:
            data = self.blobs[desc.digest]
        except KeyError:
            raise NotFound(f"blob {desc.digest} is not in this source", op="source::open",
                           obj=desc.digest) from None
        self.opened.append(desc.digest)
        return io.BytesIO(data)


class ContentSource:
    """The blobs of a content store (re-adding, copying between stores)."""

    def __init__(self, content: ContentStore) -> None:
        self.content = content

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        return self.content.open(desc.digest)
