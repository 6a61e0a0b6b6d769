"""The routes of silod's image API (docs/api.md, Images), joined into :mod:`silo.service.app`'s
route table.

Each operation takes the served service and a checked :class:`~silo.service.app.Call` (query
parameters typed, body validated against :mod:`silo.schema.image`'s schemas by app's boundary
checks) and calls its :class:`~silo.service.images.ImageService`, reached as the service's
``images`` (503 when silod serves none). ``{ref}`` is an image reference, percent-encoded in
the path (``docker.io%2Flibrary%2Fbusybox%3Alatest``), an id or a unique id prefix.

Imports the HTTP layer's answer types and the OpenAPI declarations; the image service only
through the served object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from silo.errors import Unavailable
from silo.service.http import Response, Stream
from silo.service.openapi import Operation, Param

if TYPE_CHECKING:
    from silo.service.app import Call
    from silo.service.images import ImageService

BASE = "/v1/images"
_IMAGE = BASE + "/{ref}"


def _images(api: Any) -> ImageService:
    images: ImageService | None = getattr(api, "images", None)
    if images is None:
        raise Unavailable("this silod serves no image store", op="image::serve")
    return images


def _registry(body: dict[str, Any]) -> dict[str, Any]:
    return {"insecure": bool(body.get("Insecure", False)), "ca_file": body.get("CaFile"),
            "credentials": body.get("Credentials")}


def _list(api: Any, c: Call) -> Response:
    return Response(200, _images(api).list())


def _inspect(api: Any, c: Call) -> Response:
    return Response(200, _images(api).inspect(c.ref))


def _pull(api: Any, c: Call) -> Stream:
    b = c.body
    return Stream(_images(api).pull(b["Reference"], platform=b.get("Platform"), **_registry(b)))


def _push(api: Any, c: Call) -> Stream:
    b = c.body
    return Stream(_images(api).push(c.ref, b.get("Reference"), **_registry(b)))


def _tag(api: Any, c: Call) -> Response:
    return Response(201, _images(api).tag(c.ref, c.body["Name"]))


def _delete(api: Any, c: Call) -> Response:
    return Response(200, _images(api).remove(c.ref, force=c.query.get("Force", False)))


def _prune(api: Any, c: Call) -> Response:
    return Response(200, _images(api).prune(all=bool(c.body.get("All", False))))


def _load(api: Any, c: Call) -> Response:
    return Response(200, _images(api).load(c.body["Path"]))


def _import(api: Any, c: Call) -> Response:
    b = c.body
    return Response(201, _images(api).import_(b["Path"], b["Name"], config=b.get("Config")))


def _save(api: Any, c: Call) -> Response:
    b = c.body
    return Response(200, _images(api).save(b["Names"], b["Path"],
                                           b.get("Format", "docker-archive")))


_ERRORS = (400, 404, 409, 500, 501, 503, 504)
_TAGS = ("images",)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", BASE, "listImages", "The images in silod's store, newest first", _list,
              response="ImageSummary", many=True, errors=(500, 503), tags=_TAGS),
    Operation("POST", BASE + "/pull", "pullImage",
              "Pull an image from a registry; progress lines, then its ImageSummary (or an "
              "Error)", _pull, request="PullRequest", body_required=True,
              response="ImageProgress", stream=True, errors=_ERRORS, tags=_TAGS),
    Operation("POST", BASE + "/load", "loadImages",
              "Load the images of an archive on silod's host (docker-archive, oci-archive, "
              "OCI layout)", _load, request="LoadRequest", body_required=True,
              response="ImageLoadReport", errors=_ERRORS, tags=_TAGS),
    Operation("POST", BASE + "/import", "importImage",
              "An image of one layer from a root filesystem tarball on silod's host", _import,
              status=201, request="ImportRequest", body_required=True, response="ImageSummary",
              errors=_ERRORS, tags=_TAGS),
    Operation("POST", BASE + "/save", "saveImages",
              "Write images to an archive on silod's host", _save, request="SaveRequest",
              body_required=True, response="ImageSaveReport", errors=_ERRORS, tags=_TAGS),
    Operation("POST", BASE + "/prune", "pruneImages",
              "Remove dangling images (All: every image no container uses)", _prune,
              request="PruneRequest", response="ImagePruneReport", errors=_ERRORS, tags=_TAGS),
    Operation("GET", _IMAGE, "inspectImage", "An image's document", _inspect,
              response="ImageInspect", errors=_ERRORS, tags=_TAGS),
    Operation("DELETE", _IMAGE, "removeImage",
              "Untag (by name) or delete (by id) an image; refused while a container uses it",
              _delete, response="ImageDeleted", many=True, errors=_ERRORS, tags=_TAGS,
              query=(Param("Force", "boolean", "Delete an id that has several names"),)),
    Operation("POST", _IMAGE + "/tag", "tagImage", "Give an image another name", _tag,
              status=201, request="TagRequest", body_required=True, response="ImageSummary",
              errors=_ERRORS, tags=_TAGS),
    Operation("POST", _IMAGE + "/push", "pushImage",
              "Push an image to a registry; progress lines, then its ImageSummary (or an "
              "Error)", _push, request="PushRequest", response="ImageProgress", stream=True,
              errors=_ERRORS, tags=_TAGS),
)
