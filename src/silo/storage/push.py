"""Push an image from the image store to a registry: ``push(store, "app:1", "host/app:1")``.

For each blob (the config, then the layers, several at a time): skip it when the registry has
it (HEAD), else mount it from another repository of the same registry that the image was
pulled from or pushed to, else upload it (POST + one PUT). Then PUT the manifest under the
tag and check the digest the registry answers. Imports ``errors`` and ``storage`` modules
only.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO

from silo import errors
from silo.storage import reference
from silo.storage.descriptor import Descriptor, parse_manifest, sha256
from silo.storage.registry import RegistryClient

if TYPE_CHECKING:
    from silo.storage.images import Image, ImageStore
    from silo.storage.source import Progress

OP = "storage::push"


def push(store: ImageStore, ref_local: str, ref_remote: str | None = None, *,
         insecure: bool = False, ca_file: str | None = None,
         credentials: tuple[str, str] | None = None, progress: Progress | None = None,
         retries: int = 3, timeout: float = 30, parallel: int = 4) -> Image:
    """Push the image ``ref_local`` names to ``ref_remote`` (its own name when None); returns
    the image, whose ``digest`` is the manifest digest the registry answered it stored.

    ``ref_remote`` is ``registry/repo:tag``, or ``registry/repo@sha256:...`` when that is the
    image's manifest digest (pushed untagged).
    """
    image = store.get(ref_local)
    remote = reference.parse(ref_remote if ref_remote is not None else ref_local)
    data, media_type = store.manifest(image.id)
    digest = sha256(data)
    if remote.digest and remote.digest != digest:
        raise errors.invalid("reference", f"{remote}: the image's manifest is {digest}, not "
                             f"{remote.digest}", op=OP, obj=str(remote))
    manifest = parse_manifest(data, media_type)
    blobs = [manifest.config, *manifest.layers]
    for desc in blobs:
        if not store.content.has(desc.digest):
            raise errors.NotFound(f"{ref_local}: blob {desc.digest} is not in the store (the "
                                  "image was imported without it)", op=OP, obj=desc.digest)
    mount_from = [r.repository for r in map(reference.parse, image.repo_digests)
                  if r.registry == remote.registry and r.repository != remote.repository]
    with RegistryClient(remote.registry, insecure=insecure, ca_file=ca_file,
                        credentials=credentials, retries=retries, timeout=timeout) as client:

        def one(desc: Descriptor) -> None:
            _push_blob(store, client, remote.repository, desc, mount_from, progress)

        # The config first, alone: its answer settles the auth challenge for the layers.
        one(manifest.config)
        if manifest.layers:
            with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(manifest.layers))),
                                    thread_name_prefix="silo-push") as pool:
                for f in [pool.submit(one, d) for d in manifest.layers]:
                    f.result()
        client.put_manifest(remote.repository, remote.digest or remote.tag or
                            reference.DEFAULT_TAG, data, media_type)  # checks the digest
    return image


def _push_blob(store: ImageStore, client: RegistryClient, repository: str, desc: Descriptor,
               mount_from: list[str], progress: Progress | None) -> None:
    if client.has_blob(repository, desc.digest):
        if progress is not None:
            progress.start(desc, "exists")
            progress.done(desc)
        return
    for source in mount_from:
        if client.mount_blob(repository, desc.digest, source):
            if progress is not None:
                progress.start(desc, "exists")
                progress.done(desc)
            return
    if progress is not None:
        progress.start(desc, "upload")

    def opener() -> BinaryIO:
        return store.open_blob(desc.digest)

    client.upload_blob(repository, desc, opener)
    if progress is not None:
        progress.advance(desc, desc.size)
        progress.done(desc)


__all__ = ["push"]
