"""OCI and Docker media types: which are manifests, indexes, configs and layers, and how a
layer is compressed. Imports only :mod:`silo.errors`."""

from __future__ import annotations

from silo.errors import invalid

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_ND_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_ND_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})
# layer media type -> compression ("gzip", "zstd" or "none")
LAYERS: dict[str, str] = {
    OCI_LAYER: "none", OCI_LAYER_GZIP: "gzip", OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_ND: "none", OCI_LAYER_ND_GZIP: "gzip", OCI_LAYER_ND_ZSTD: "zstd",
    DOCKER_LAYER: "none", DOCKER_LAYER_GZIP: "gzip", DOCKER_LAYER_FOREIGN_GZIP: "gzip",
}
# What a registry client sends in Accept when it asks for a manifest (best first).
ACCEPT_MANIFESTS = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFESTS


def is_index(media_type: str) -> bool:
    return media_type in INDEXES


def is_config(media_type: str) -> bool:
    return media_type in CONFIGS


def is_layer(media_type: str) -> bool:
    return media_type in LAYERS


def compression(media_type: str) -> str:
    """How a layer of this media type is compressed: "gzip", "zstd" or "none"."""
    try:
        return LAYERS[media_type]
    except KeyError:
        raise invalid("mediaType", f"{media_type!r} is not a layer media type silo knows "
                                   f"(known: {', '.join(sorted(LAYERS))})") from None


def layer_type(compression_: str, *, docker: bool = False) -> str:
    """The layer media type for a compression ("gzip", "zstd", "none"), OCI or Docker."""
    table = ({"gzip": DOCKER_LAYER_GZIP, "none": DOCKER_LAYER} if docker else
             {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER})
    try:
        return table[compression_]
    except KeyError:
        raise invalid("compression", f"{compression_!r} is not one of "
                                     f"{', '.join(sorted(table))}") from None
