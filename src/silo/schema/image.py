"""The documents of silod's image API (docs/api.md, Images): requests and answers.

Docker's shapes in PascalCase, as the rest of the API: ``ImageSummary`` is a row of ``silo
images``, ``ImageInspect`` is ``docker image inspect``'s document, ``ImageProgress`` is one line
of a pull or push stream. :mod:`silo.schema.hcs` adds :data:`SCHEMAS` to its registry, so that
requests are validated with the very schemas the OpenAPI document shows.

Imports only :mod:`silo.schema._build`, the schema builders it shares with
:mod:`silo.schema.hcs` and :mod:`silo.schema.hns`.
"""

from __future__ import annotations

from silo.schema._build import boolean as _bool
from silo.schema._build import integer
from silo.schema._build import obj as _obj
from silo.schema._build import ref as _ref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Schema = dict[str, Any]

EVENT_TYPES = ["ImagePulled", "ImagePushed", "ImageTagged", "ImageUntagged", "ImageDeleted",
               "ImageLoaded", "ImageImported"]
SAVE_FORMATS = ["docker-archive", "oci-archive"]
PROGRESS_STATUSES = ["Waiting", "Exists", "Downloading", "Uploading", "Unpacking", "Done"]


# Unlike the shared builders, a string here always carries a description, empty or not, before
# its other keywords: that is how docs/openapi.json has shown these documents from the start.
def _str(doc: str, **more: Any) -> Schema:
    return {"type": "string", "description": doc, **more}


def _strings(doc: str) -> Schema:
    return {"type": "array", "items": {"type": "string"}, "description": doc}


def _int(doc: str) -> Schema:
    return integer(0, doc=doc)


_REFERENCE = _str("An image reference: name[:tag] or name@sha256:..., docker's short forms "
                  "allowed (busybox = docker.io/library/busybox:latest)", minLength=1,
                  maxLength=4096)
_HOST_PATH = _str("An absolute path on silod's host", minLength=2, maxLength=4096,
                  pattern="^/[^\\u0000]*$", **{"x-reason": "must be an absolute path"})
_REGISTRY_ACCESS: dict[str, Schema] = {
    "Insecure": _bool("Plain HTTP, or HTTPS without checking the certificate"),
    "CaFile": _HOST_PATH | {"description": "A PEM file of CAs to trust for the registry"},
    "Credentials": _ref("RegistryCredentials"),
}

SCHEMAS: dict[str, Schema] = {
    "RegistryCredentials": _obj({
        "Username": _str("", minLength=1),
        "Password": _str("Password or token"),
    }, ["Username", "Password"], doc="Basic or token credentials for the registry"),
    "PullRequest": _obj({
        "Reference": _REFERENCE,
        "Platform": _str("os/architecture[/variant]; default: silod's host", minLength=1),
        **_REGISTRY_ACCESS,
    }, ["Reference"]),
    "PushRequest": _obj({
        "Reference": _REFERENCE | {"description": "Where to push; default: the image's "
                                                  "reference in the path"},
        **_REGISTRY_ACCESS,
    }),
    "TagRequest": _obj({"Name": _REFERENCE | {"description": "The new name[:tag]"}},
                       ["Name"]),
    "LoadRequest": _obj({
        "Path": _HOST_PATH | {"description": "An oci-archive, docker-archive (docker save) or "
                                             "OCI layout directory on silod's host"},
    }, ["Path"]),
    "ImportRequest": _obj({
        "Path": _HOST_PATH | {"description": "A tarball of a root filesystem (gzip, zstd or "
                                             "plain) on silod's host"},
        "Name": _REFERENCE | {"description": "The name[:tag] of the new image"},
        "Config": _obj({
            "Cmd": _strings(""),
            "Entrypoint": _strings(""),
            "Env": _strings("K=V"),
            "WorkingDir": _str(""),
            "User": _str(""),
            "StopSignal": _str(""),
            "Labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }, doc="The image config's defaults (for the host's platform)"),
    }, ["Path", "Name"]),
    "SaveRequest": _obj({
        "Names": {"type": "array", "items": _REFERENCE, "minItems": 1,
                  "description": "The images to save (references or ids)"},
        "Path": _HOST_PATH | {"description": "The archive to write on silod's host (replaced "
                                             "whole, never half-written)"},
        "Format": {"type": "string", "enum": SAVE_FORMATS,
                   "description": "default docker-archive (what docker save writes)"},
    }, ["Names", "Path"]),
    "PruneRequest": _obj({
        "All": _bool("Every image no container uses, not only the dangling (nameless) ones"),
    }),
    "ImageConfig": _obj({
        "Env": _strings("K=V"),
        "Cmd": _strings(""),
        "Entrypoint": _strings(""),
        "WorkingDir": _str(""),
        "User": _str(""),
        "ExposedPorts": {"type": "object", "description": "{\"80/tcp\": {}}"},
        "Volumes": {"type": "object", "description": "{\"/data\": {}}"},
        "StopSignal": _str(""),
        "Labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }, closed=False, doc="What a container of the image runs by default (OCI image config)"),
    "ImageSummary": _obj({
        "Id": _str("The image id: its config's digest (sha256:...)"),
        "RepoTags": _strings("Its names, registry/repository:tag, in the short form"),
        "RepoDigests": _strings("repository@sha256:... it was pulled or pushed as"),
        "Created": _str("RFC 3339, from the image config; empty when unknown"),
        "Size": _int("Unpacked bytes of all its layers"),
    }, ["Id", "RepoTags", "RepoDigests", "Created", "Size"], closed=False),
    "ImageInspect": _obj({
        "Id": _str("The image id"),
        "Digest": _str("The manifest's digest"),
        "RepoTags": _strings(""),
        "RepoDigests": _strings(""),
        "Created": _str("RFC 3339"),
        "Size": _int("Unpacked bytes"),
        "Config": _ref("ImageConfig"),
        "Os": _str(""),
        "Architecture": _str(""),
        "Variant": _str(""),
        "RootFS": _obj({
            "Type": {"type": "string", "enum": ["layers"]},
            "Layers": _strings("The layers' diff ids (uncompressed digests), base first"),
        }, ["Type", "Layers"], closed=False),
    }, ["Id", "RepoTags", "RepoDigests", "Created", "Size", "Config", "Os", "Architecture",
        "RootFS"], closed=False),
    "ImageProgress": _obj({
        "Id": _str("The layer's short digest (12 hex digits), or the reference"),
        "Status": {"type": "string", "enum": PROGRESS_STATUSES},
        "Current": _int("Bytes done"),
        "Total": _int("Bytes in all"),
    }, ["Status"], closed=False, doc="One line of a pull or push stream; the stream ends "
                                     "with the ImageSummary (no Status) or an Error"),
    "ImageDeleted": _obj({
        "Untagged": _str("A name removed"),
        "Deleted": _str("An image id removed"),
    }, closed=False, doc="One item of what a removal did"),
    "ImagePruneReport": _obj({
        "ImagesDeleted": {"type": "array", "items": _ref("ImageDeleted")},
        "SpaceReclaimed": _int("Bytes freed on disk"),
    }, ["ImagesDeleted", "SpaceReclaimed"], closed=False),
    "ImageLoadReport": _obj({
        "Images": {"type": "array", "items": _ref("ImageSummary")},
    }, ["Images"], closed=False),
    "ImageSaveReport": _obj({
        "Path": _str(""),
        "Size": _int("Bytes written"),
    }, ["Path", "Size"], closed=False),
}
