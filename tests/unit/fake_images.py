"""A fake image store and storage backend for unit tests of silod's image service and routes.

:class:`FakeStore` keeps images in memory with the image store's semantics that the service
relies on (docker rmi's untag-then-delete, refusal while a container's rootfs uses the image,
prune of dangling or unused images); :class:`FakeBackend` stands in for pull/push/load/save/
import, reports per-layer progress, and can be told to fail or to block until released.
Names are normalised as the storage library does (``busybox`` →
``docker.io/library/busybox:latest``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from silo import errors


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def normalize(ref: str) -> str:
    if not ref or ref != ref.strip() or " " in ref or (ref.upper() == ref and ref.isalpha()):
        raise errors.invalid("reference", f"{ref!r} is not a valid reference")
    if ref.startswith("sha256:"):
        return ref
    name, at, dig = ref.partition("@")
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    last = name.rsplit("/", 1)[-1]
    if not at and ":" not in last:
        name += ":latest"
    return name + (at + dig if at else "")


def familiar(name: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class Layer:
    diff_id: str
    chain_id: str
    blob: Descriptor


@dataclass(frozen=True)
class Image:
    id: str
    digest: str
    media_type: str
    names: tuple[str, ...]
    repo_digests: tuple[str, ...]
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    size: int
    created: str
    platform: Platform = field(default_factory=Platform)


@dataclass(frozen=True)
class RemoveResult:
    untagged: list[str]
    deleted: list[str]


@dataclass(frozen=True)
class PruneResult:
    deleted: list[str]
    reclaimed_bytes: int


def make_image(seed: str, names: Sequence[str] = (), layers: int = 2,
               config: dict[str, Any] | None = None, created: str = "") -> Image:
    lay = tuple(Layer(digest(f"{seed}-diff-{i}"), digest(f"{seed}-chain-{i}"),
                      Descriptor("application/vnd.oci.image.layer.v1.tar+gzip",
                                 digest(f"{seed}-blob-{i}"), 1000 * (i + 1)))
                for i in range(layers))
    cfg = config if config is not None else {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}}
    return Image(id=digest(seed + "-config"), digest=digest(seed + "-manifest"),
                 media_type="application/vnd.oci.image.manifest.v1+json",
                 names=tuple(sorted(normalize(n) for n in names)), repo_digests=(),
                 config=cfg, layers=lay, size=sum(1000 * (i + 1) for i in range(layers)),
                 created=created or "2024-01-01T00:00:00Z")


class FakeLayers:
    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, chain_id: str) -> str:
        return f"{self.root}/layers/{chain_id.split(':')[1]}/diff"


class FakeStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.images: dict[str, Image] = {}
        self.rootfs: dict[str, str] = {}     # container id -> image id
        self.layers = FakeLayers(root)
        self.calls: list[tuple[Any, ...]] = []

    def put(self, image: Image) -> Image:
        for other in list(self.images.values()):   # a name moves to the newest image
            kept = tuple(n for n in other.names if n not in image.names)
            if kept != other.names:
                self.images[other.id] = replace(other, names=kept)
        self.images[image.id] = image
        return image

    def get(self, ref: str) -> Image:
        if ref in self.images:
            return self.images[ref]
        hexpart = ref.removeprefix("sha256:")
        if len(hexpart) >= 4 and all(c in "0123456789abcdef" for c in hexpart):
            hits = [i for i in self.images.values() if i.id[7:].startswith(hexpart)]
            if len(hits) == 1:
                return hits[0]
        try:
            name = normalize(ref)
        except errors.InvalidArgument:
            raise errors.NotFound(f"no such image: {ref}", obj=ref) from None
        for image in self.images.values():
            if name in image.names:
                return image
        raise errors.NotFound(f"no such image: {ref}", obj=ref)

    def list(self) -> list[Image]:
        return list(self.images.values())

    def tag(self, ref: str, name: str) -> Image:
        image = self.get(ref)
        self.put(replace(image, names=tuple(sorted({*image.names, normalize(name)}))))
        return self.images[image.id]

    def untag(self, name: str) -> Image:
        image = self.get(name)
        self.images[image.id] = replace(image, names=tuple(n for n in image.names
                                                           if n != normalize(name)))
        return self.images[image.id]

    def _in_use(self, image: Image) -> None:
        users = sorted(c for c, i in self.rootfs.items() if i == image.id)
        if users:
            raise errors.InvalidState(f"image {image.id[:19]} is in use by container "
                                      f"{users[0]}", obj=image.id)

    def remove(self, ref: str, *, force: bool = False) -> RemoveResult:
        image = self.get(ref)
        by_name = ref not in (image.id, image.id[7:]) and not image.id[7:].startswith(ref)
        if by_name and len(image.names) > 1:
            self.untag(ref)
            return RemoveResult([normalize(ref)], [])
        if not by_name and len(image.names) > 1 and not force:
            raise errors.InvalidState(f"image {ref} has several names; remove by name or "
                                      "force", obj=ref)
        self._in_use(image)
        del self.images[image.id]
        return RemoveResult(list(image.names), [image.id])

    def prune(self, *, all: bool = False) -> PruneResult:
        used = set(self.rootfs.values())
        gone = [i for i in self.images.values()
                if i.id not in used and (all or not i.names)]
        for i in gone:
            del self.images[i.id]
        return PruneResult([i.id for i in gone], sum(i.size for i in gone))

    def create_rootfs(self, container_id: str, ref: str, *, size: int | None = None) -> str:
        image = self.get(ref)
        self.calls.append(("create_rootfs", container_id, image.id, size))
        self.rootfs[container_id] = image.id
        return f"{self.root}/containers/{container_id}/merged"

    def remove_rootfs(self, container_id: str) -> None:
        self.calls.append(("remove_rootfs", container_id))
        self.rootfs.pop(container_id, None)

    def rootfs_ids(self) -> list[str]:
        return sorted(self.rootfs)


class FakeBackend:
    """The storage library's operations on a FakeStore. ``fail``: an error the next operation
    raises; ``gate``: an Event a pull waits on (to hold a reference's lock)."""

    def __init__(self) -> None:
        self.store: FakeStore | None = None
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        self.started = threading.Event()        # set when a pull begins
        self.calls: list[tuple[Any, ...]] = []
        self.remote: dict[str, Image] = {}    # what the "registry" serves, by normalised name

    def open_store(self, root: str) -> FakeStore:
        self.store = FakeStore(root)
        return self.store

    def familiar(self, name: str) -> str:
        return familiar(name)

    def normalize(self, ref: str, field: str) -> str:
        try:
            return normalize(ref)
        except errors.InvalidArgument as err:
            raise errors.invalid(field, err.message) from err

    def platform(self, text: str, field: str) -> str:
        parts = text.split("/")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise errors.invalid(field, f"{text!r} is not os[/architecture[/variant]]")
        return text

    def _check(self) -> None:
        if self.fail is not None:
            err, self.fail = self.fail, None
            raise err

    def pull(self, store: FakeStore, ref: str, *, platform: str | None, insecure: bool,
             ca_file: str | None, credentials: tuple[str, str] | None,
             progress: Any) -> Image:
        self.calls.append(("pull", ref, platform, insecure, ca_file, credentials))
        self.started.set()
        if self.gate is not None:
            self.gate.wait()
        self._check()
        image = self.remote.get(ref)
        if image is None:
            raise errors.NotFound(f"{ref}: not found in the registry", obj=ref)
        have = {layer.chain_id for i in store.images.values() for layer in i.layers}
        for layer in image.layers:
            if layer.chain_id in have:
                progress.start(layer.blob, "exists")
                continue
            progress.start(layer.blob, "download")
            for _ in range(4):
                progress.advance(layer.blob, layer.blob.size // 4)
            progress.done(layer.blob)
        return store.put(replace(image, names=(ref,)))

    def push(self, store: FakeStore, name: str, ref: str, *, insecure: bool,
             ca_file: str | None, credentials: tuple[str, str] | None,
             progress: Any) -> Image:
        self.calls.append(("push", name, ref, insecure, ca_file, credentials))
        self._check()
        image = store.get(name)
        for layer in image.layers:
            progress.start(layer.blob, "upload")
            progress.advance(layer.blob, layer.blob.size)
            progress.done(layer.blob)
        self.remote[ref] = image
        return image

    def load(self, store: FakeStore, path: str) -> list[Image]:
        self.calls.append(("load", path))
        self._check()
        with open(path) as f:
            names = f.read().split()
        return [store.put(make_image(n, [n])) for n in names]

    def save(self, store: FakeStore, names: Sequence[str], path: str, format: str) -> None:
        self.calls.append(("save", list(names), path, format))
        with open(path, "w") as f:
            f.write(format + "\n" + "\n".join(store.get(n).id for n in names))
        self._check()

    def import_rootfs(self, store: FakeStore, path: str, name: str, *,
                      config: dict[str, Any] | None) -> Image:
        self.calls.append(("import", path, name, config))
        self._check()
        return store.put(make_image(path, [name], layers=1, config={"config": config or {}}))

    def import_builtin(self, store: FakeStore, image_dir: str, name: str) -> Image:
        self.calls.append(("builtin", image_dir, name))
        return store.put(make_image("busybox", [name], layers=1))
