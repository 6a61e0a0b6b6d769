"""The image methods of :class:`silo.client.Client` (docs/api.md, Images).

A mixin over the client's plumbing (``_call``, ``address``, ``timeout``): ``Client`` inherits
it, so ``Client().images()`` and the compute methods share one connection setting. Pulls and
pushes answer with a :class:`silo.client.Stream` of progress lines (``{"Id", "Status",
"Current"?, "Total"?}``) whose last line is the image's summary (no ``Status``); a failure
after the stream started is raised from the stream as the error silod sent.

Paths (load, import, save, CaFile) are on silod's host and must be absolute; relative ones are
made absolute here, against this process's working directory (the client and silod share the
host). Imports only what :mod:`silo.client` does.
"""

from __future__ import annotations

import os

from silo.client._http import query
from silo.client._http import quote as _q
from silo.client._http import request as _request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from silo.client import Stream
    from silo.client._http import Address

_IMAGES = "/v1/images"


class ImagesMixin:
    address: Address
    timeout: float | None

    def _call(self, method: str, path: str, body: Any = None, *, long: bool = False) -> Any:
        raise NotImplementedError  # Client's

    def _post_stream(self, path: str, body: Any) -> Stream:
        from silo.client import Stream

        return Stream(_request(self.address, "POST", path, body, None))

    @staticmethod
    def _image(ref: str, verb: str = "") -> str:
        return f"{_IMAGES}/{_q(ref)}" + (f"/{verb}" if verb else "")

    def images(self) -> list[dict[str, Any]]:
        """``GET /v1/images``: an ``ImageSummary`` per image (``Id``, ``RepoTags``,
        ``RepoDigests``, ``Created``, ``Size``), newest first."""
        return self._call("GET", _IMAGES)  # type: ignore[no-any-return]

    def inspect_image(self, ref: str) -> dict[str, Any]:
        """The ``ImageInspect`` of the image ``ref`` names (name[:tag], id, id prefix);
        NotFound naming it."""
        return self._call("GET", self._image(ref))  # type: ignore[no-any-return]

    def pull(self, reference: str, *, platform: str | None = None, insecure: bool = False,
             ca_file: str | None = None, username: str | None = None,
             password: str | None = None) -> Stream:
        """Pull from a registry: progress lines, then the summary. InvalidArgument at the
        call for a malformed reference; registry failures from the stream."""
        body: dict[str, Any] = {"Reference": reference}
        body.update(_registry(platform=platform, insecure=insecure, ca_file=ca_file,
                              username=username, password=password))
        return self._post_stream(_IMAGES + "/pull", body)

    def push(self, ref: str, reference: str | None = None, *, insecure: bool = False,
             ca_file: str | None = None, username: str | None = None,
             password: str | None = None) -> Stream:
        """Push the image ``ref`` names to ``reference`` (default: its own name)."""
        body = _registry(insecure=insecure, ca_file=ca_file, username=username,
                         password=password)
        if reference is not None:
            body["Reference"] = reference
        return self._post_stream(self._image(ref, "push"), body)

    def tag_image(self, ref: str, name: str) -> dict[str, Any]:
        """Give the image another name; its summary."""
        return self._call("POST", self._image(ref, "tag"),  # type: ignore[no-any-return]
                          {"Name": name})

    def remove_image(self, ref: str, force: bool = False) -> list[dict[str, Any]]:
        """Untag or delete (docker rmi): ``[{"Untagged": name} | {"Deleted": id}]``.
        InvalidState while a container uses it."""
        return self._call("DELETE", self._image(ref)  # type: ignore[no-any-return]
                          + query([("Force", "true")] if force else []))

    def prune_images(self, all: bool = False) -> dict[str, Any]:
        """Remove dangling images (``all``: every unused one): ``{"ImagesDeleted",
        "SpaceReclaimed"}``."""
        return self._call("POST", _IMAGES + "/prune",  # type: ignore[no-any-return]
                          {"All": True} if all else {}, long=True)

    def load_images(self, path: str) -> dict[str, Any]:
        """Load an archive on silod's host: ``{"Images": [summary]}``."""
        return self._call("POST", _IMAGES + "/load",  # type: ignore[no-any-return]
                          {"Path": os.path.abspath(path)}, long=True)

    def import_image(self, path: str, name: str, *,
                     config: dict[str, Any] | None = None) -> dict[str, Any]:
        """An image named ``name`` from a rootfs tarball on silod's host; its summary.
        ``config``: its Cmd, Entrypoint, Env, WorkingDir, User, StopSignal, Labels."""
        body: dict[str, Any] = {"Path": os.path.abspath(path), "Name": name}
        if config:
            body["Config"] = config
        return self._call("POST", _IMAGES + "/import", body,  # type: ignore[no-any-return]
                          long=True)

    def save_images(self, names: Iterable[str], path: str,
                    format: str | None = None) -> dict[str, Any]:
        """Write the images to an archive at ``path`` on silod's host: ``{"Path", "Size"}``."""
        body: dict[str, Any] = {"Names": list(names), "Path": os.path.abspath(path)}
        if format:
            body["Format"] = format
        return self._call("POST", _IMAGES + "/save", body,  # type: ignore[no-any-return]
                          long=True)


def _registry(*, platform: str | None = None, insecure: bool = False,
              ca_file: str | None = None, username: str | None = None,
              password: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if platform:
        body["Platform"] = platform
    if insecure:
        body["Insecure"] = True
    if ca_file:
        body["CaFile"] = os.path.abspath(ca_file)
    if username is not None:
        body["Credentials"] = {"Username": username, "Password": password or ""}
    return body
