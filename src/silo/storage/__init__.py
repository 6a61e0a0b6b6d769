"""silo.storage: the image store, the Linux mirror of wcifs layers and sandbox.vhdx.

Images are kept in a content-addressed store and unpacked once per layer; a container's root
filesystem is an overlay of its image's layers (read-only lower dirs, shared) under a scratch
(upper) layer of its own, optionally capped in size. docs/design/storage.md is the contract.

May import :mod:`silo.kernel`, :mod:`silo.schema` and :mod:`silo.errors` only; never the
service or a command. One module per noun:

- ``mediatypes``, ``descriptor``, ``reference``, ``platform``: the OCI/Docker vocabulary
- ``content`` (blobs), ``layers`` (unpacked layers by chain id), ``unpack`` (safe extraction)
- ``images``: :class:`~silo.storage.images.ImageStore`, the public entry point
- ``rootfs``: overlay and loop-device mounts for container root filesystems
- ``source``: where blobs come from (``BlobSource``) and ``Progress``
- ``registry``, ``pull``, ``push``, ``archive``: registries and archives on top of the store
- ``busybox``: the embedded default image (built and imported at setup)

Importing this package imports none of them: silo-runtime and the thin commands stay lean.
"""
