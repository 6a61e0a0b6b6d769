"""Pull an image from a registry into the image store: ``pull(store, "busybox")``.

Resolves the reference to a manifest (a tag or a digest; an index is narrowed to one platform
with :func:`silo.storage.platform.select`), then hands the manifest and a blob source on the
registry to :meth:`ImageStore.add`, which fetches the config and the missing layers in parallel,
verifying and unpacking each in one pass. Imports ``errors`` and ``storage`` modules only.

A pull interrupted at any point leaves at most temporaries that the store removes; running it
again completes it, reusing the blobs and layers that were finished.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from silo import errors
from silo.storage import mediatypes, reference
from silo.storage import platform as platforms
from silo.storage.descriptor import parse_index
from silo.storage.registry import RegistryClient, RemoteManifest

if TYPE_CHECKING:
    from silo.storage.images import Image, ImageStore
    from silo.storage.platform import Platform
    from silo.storage.source import Progress

OP = "storage::pull"


def resolve(client: RegistryClient, ref: reference.Reference,
            platform: Platform | None = None) -> tuple[RemoteManifest, RemoteManifest]:
    """(what the reference names, the single-platform manifest to store).

    Both are the same manifest unless the reference names an index; then the second is the
    index's manifest for ``platform`` (the host's when None), fetched by its digest.
    """
    target = ref.digest or ref.tag or reference.DEFAULT_TAG
    top = client.get_manifest(ref.repository, target)
    if not top.is_index:
        return top, top
    index = parse_index(top.data, top.media_type)
    try:
        desc = platforms.select(index, platform)
    except errors.NotFound as e:
        raise errors.NotFound(f"{ref}: {e.message}", op=OP, obj=str(ref)) from e
    chosen = client.get_manifest(ref.repository, desc.digest)
    if chosen.is_index:
        raise errors.NotSupported(f"{ref}: the index's manifest for {desc.platform} is itself "
                                  f"an index ({desc.digest})", op=OP, obj=str(ref))
    if len(chosen.data) != desc.size:
        raise errors.invalid("manifest", f"{ref}: the manifest {desc.digest} is "
                             f"{len(chosen.data)} bytes, the index says {desc.size}", op=OP,
                             obj=str(ref))
    return top, chosen


def pull(store: ImageStore, ref: str, *, platform: str | Platform | None = None,
         insecure: bool = False, ca_file: str | None = None,
         credentials: tuple[str, str] | None = None, progress: Progress | None = None,
         retries: int = 3, timeout: float = 30, parallel: int = 4) -> Image:
    """Pull ``ref`` (``busybox``, ``host:port/repo:tag``, ``repo@sha256:...``) into ``store``.

    The image is named ``ref`` (normalised) when it has a tag and no digest; its repo digest
    is ``registry/repo@<manifest digest>``. For a multi-platform image that is the platform's
    manifest (docker records the index's; the store names only what it holds).
    ``platform`` ("linux/arm64") picks from an index; the host's platform by default.
    """
    parsed = reference.parse(ref)
    want = platforms.parse(platform) if isinstance(platform, str) else platform
    with RegistryClient(parsed.registry, insecure=insecure, ca_file=ca_file,
                        credentials=credentials, retries=retries, timeout=timeout) as client:
        _, manifest = resolve(client, parsed, want)
        if not mediatypes.is_manifest(manifest.media_type):
            raise errors.invalid("manifest", f"{parsed}: media type {manifest.media_type!r} "
                                 "is not an image manifest", op=OP, obj=str(parsed))
        names = [str(parsed)] if parsed.tag and not parsed.digest else []
        return store.add(client.blob_source(parsed.repository), manifest.data,
                         manifest.media_type, names=names,
                         repo_digest=f"{parsed.name}@{manifest.digest}",
                         progress=progress, parallel=parallel)


__all__ = ["pull", "resolve"]
