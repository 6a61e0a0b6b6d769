"""The image service of silod: the image store (:mod:`silo.storage`) behind the image API.

``ImageService`` wraps one :class:`silo.storage.images.ImageStore` (``<data_dir>/storage``) and
the registry and archive operations on it (pull, push, load, save, import), and turns what they
return into the API's documents (:mod:`silo.schema.image`): ``ImageSummary``, ``ImageInspect``,
progress lines. It publishes ``ImagePulled``, ``ImagePushed``, ``ImageTagged``, ``ImageUntagged``,
``ImageDeleted``, ``ImageLoaded`` and ``ImageImported`` on silod's event bus, with the image id as
``Id``. The compute service asks it for the image of a new container and for the container's
root filesystem (``create_rootfs``/``remove_rootfs``), which is what keeps an image in use.

Pulls and pushes run on a thread of their own and report through a :class:`ProgressStream`
(per-layer lines, then the image's summary or the error), so that the HTTP layer streams them.
One lock per reference: a second pull of the same reference waits for the first (reporting
``Waiting``) and then finds its layers there. A client that leaves does not stop the pull: what
it fetched stays in the store.

Paths in requests are on silod's host (the API's clients are on the same host, as root):
``Load``/``Import`` read a regular file (or an OCI layout directory), never a device or a fifo;
``Save`` writes beside its destination and renames, so nothing half-written is ever there.

Part of silod: may import :mod:`silo.storage`, :mod:`silo.schema`, :mod:`silo.errors` and the
event bus; never the HTTP layer.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from silo import errors
from silo.service.events import EventBus

log = logging.getLogger("silod.images")

BUILTIN_NAME = "busybox:latest"     # the embedded demo image, imported from <images_dir>/busybox
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
               "StopSignal", "Labels")
Docs = list[dict[str, Any]]     # list() would shadow the builtin in the class
Ids = list[str]
_STATUS = {"download": "Downloading", "unpack": "Unpacking", "exists": "Exists",
           "upload": "Uploading", "push": "Uploading"}


def _op(verb: str) -> str:
    return f"image::{verb}"


class Backend(Protocol):
    """The library calls the service makes (the real ones are :class:`StorageBackend`; unit
    tests give a fake). Each raises :mod:`silo.errors` naming what is wrong."""

    def open_store(self, root: str) -> Any: ...
    def familiar(self, name: str) -> str: ...
    def normalize(self, reference: str, field: str) -> str: ...
    def platform(self, text: str, field: str) -> str: ...
    def pull(self, store: Any, reference: str, *, platform: str | None, insecure: bool,
             ca_file: str | None, credentials: tuple[str, str] | None,
             progress: Any) -> Any: ...
    def push(self, store: Any, name: str, reference: str, *, insecure: bool,
             ca_file: str | None, credentials: tuple[str, str] | None,
             progress: Any) -> Any: ...
    def load(self, store: Any, path: str) -> list[Any]: ...
    def save(self, store: Any, names: Sequence[str], path: str, format: str) -> None: ...
    def import_rootfs(self, store: Any, path: str, name: str, *,
                      config: dict[str, Any] | None) -> Any: ...
    def import_builtin(self, store: Any, image_dir: str, name: str) -> Any: ...


class StorageBackend:
    """:class:`Backend` on :mod:`silo.storage` (imported on first use: silod starts without
    paying for the registry client until it is needed)."""

    def open_store(self, root: str) -> Any:
        from silo.storage.images import ImageStore

        return ImageStore(root)

    def familiar(self, name: str) -> str:
        from silo.storage import reference

        try:
            return str(reference.parse(name).familiar())
        except errors.SiloError:
            return name

    def normalize(self, ref: str, field: str) -> str:
        from silo.storage import reference

        try:
            return str(reference.parse(ref))
        except errors.InvalidArgument as err:
            raise errors.invalid(field, err.message) from err

    def platform(self, text: str, field: str) -> str:
        from silo.storage import platform

        try:
            return str(platform.parse(text))
        except errors.InvalidArgument as err:
            raise errors.invalid(field, err.message.split(": ", 1)[-1]) from err

    def pull(self, store: Any, ref: str, *, platform: str | None, insecure: bool,
             ca_file: str | None, credentials: tuple[str, str] | None,
             progress: Any) -> Any:
        pull = importlib.import_module("silo.storage.pull")
        return pull.pull(store, ref, platform=platform, insecure=insecure, ca_file=ca_file,
                         credentials=credentials, progress=progress)

    def push(self, store: Any, name: str, ref: str, *, insecure: bool,
             ca_file: str | None, credentials: tuple[str, str] | None,
             progress: Any) -> Any:
        push = importlib.import_module("silo.storage.push")
        return push.push(store, name, ref, insecure=insecure, ca_file=ca_file,
                         credentials=credentials, progress=progress)

    def load(self, store: Any, path: str) -> list[Any]:
        from silo.storage import archive

        return list(archive.load(store, path))

    def save(self, store: Any, names: Sequence[str], path: str, format: str) -> None:
        from silo.storage import archive

        archive.save(store, list(names), path, format=format)

    def import_rootfs(self, store: Any, path: str, name: str, *,
                      config: dict[str, Any] | None) -> Any:
        from silo.storage import archive

        try:
            return archive.import_rootfs(store, path, name, config_changes=config)
        except errors.InvalidArgument as err:
            if not err.field.startswith("config_changes"):
                raise
            field = "Config" + err.field[len("config_changes"):]
            raise errors.invalid(field, err.message.split(": ", 1)[-1]) from err

    def import_builtin(self, store: Any, image_dir: str, name: str) -> Any:
        """The embedded busybox image (``image_dir``: rootfs/ and config.json, built at
        setup), as setup imports it: the same image id every time."""
        from silo.storage import busybox

        if name != busybox.IMAGE_NAME:
            raise errors.invalid("name", f"the embedded image is {busybox.IMAGE_NAME}")
        return store.get(busybox.import_into(store.root, image_dir))


# ---------------------------------------------------------------------------------------------
# Progress streams


class ProgressStream(Iterator[dict[str, Any]]):
    """The lines of a pull or push as they happen: ``ImageProgress`` documents, then the last
    one (the image's summary, or an error document). It is also the ``Progress`` the storage
    library reports to (``start``/``advance``/``done``, from any thread).

    Like silod's other streams it has ``get(timeout)`` (None when nothing came in time,
    StopIteration after the last line), so the HTTP layer notices a client that left."""

    # a layer's Downloading line is sent again after this share of it, not for every read
    STEP = 1 / 50

    def __init__(self) -> None:
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._layers: dict[str, list[int]] = {}   # short id -> [current, total, last sent]
        self._guard = threading.Lock()
        self._ended = False
        self.closed = False

    # -- the storage library's Progress ---------------------------------------------------

    def start(self, desc: Any, what: str) -> None:
        short, total = _short(desc.digest), int(desc.size)
        with self._guard:
            self._layers[short] = [0, total, 0]
        status = _STATUS.get(what, "Downloading")
        line: dict[str, Any] = {"Id": short, "Status": status}
        if status != "Exists":
            line.update(Current=0, Total=total)
        self.put(line)

    def advance(self, desc: Any, nbytes: int) -> None:
        short = _short(desc.digest)
        with self._guard:
            layer = self._layers.setdefault(short, [0, int(desc.size), 0])
            layer[0] += nbytes
            current, total, sent = layer
            if current - sent < max(1, int(total * self.STEP)) and current < total:
                return
            layer[2] = current
        self.put({"Id": short, "Status": "Downloading", "Current": current, "Total": total})

    def done(self, desc: Any) -> None:
        short = _short(desc.digest)
        with self._guard:
            current, total, _ = self._layers.get(short, [int(desc.size)] * 3)
        self.put({"Id": short, "Status": "Done", "Current": max(current, total),
                  "Total": total})

    # -- the worker's side ----------------------------------------------------------------

    def put(self, line: dict[str, Any]) -> None:
        if not self.closed:
            self._queue.put(line)

    def finish(self, last: dict[str, Any]) -> None:
        """The last line (a summary or an error document); then the stream ends."""
        self.put(last)
        self._queue.put(None)

    # -- the reader's side ----------------------------------------------------------------

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        if self._ended or self.closed:
            raise StopIteration
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self._ended = True
            raise StopIteration
        return line

    def __next__(self) -> dict[str, Any]:
        line = self.get(None)
        assert line is not None
        return line

    def close(self) -> None:
        """The reader leaves; the work goes on and what it fetched stays."""
        self.closed = True


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


# ---------------------------------------------------------------------------------------------
# The service


class ImageService:
    """See the module docstring. ``root``: the store's directory; ``images_dir``: where the
    embedded busybox image is built (imported as ``busybox:latest`` when the store lacks it)."""

    def __init__(self, root: str, bus: EventBus | None = None, *, images_dir: str = "",
                 backend: Backend | None = None) -> None:
        self.root = root
        self.bus = bus or EventBus()
        self.images_dir = images_dir
        self.backend: Backend = backend or StorageBackend()
        self.store = self.backend.open_store(root)
        self._ref_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------

    def _publish(self, kind: str, image_id: str, **more: Any) -> None:
        self.bus.publish({"Type": kind, "Id": image_id, **more})

    def _lock_for(self, ref: str) -> threading.Lock:
        with self._guard:
            lock = self._ref_locks.get(ref)
            if lock is None:
                lock = self._ref_locks[ref] = threading.Lock()
            return lock

    def _names(self, image: Any) -> list[str]:
        return [self.backend.familiar(n) for n in image.names]

    def summary(self, image: Any) -> dict[str, Any]:
        return {"Id": image.id, "RepoTags": self._names(image),
                "RepoDigests": [self.backend.familiar(d) for d in image.repo_digests],
                "Created": image.created or "", "Size": int(image.size)}

    def inspect_document(self, image: Any) -> dict[str, Any]:
        inner = image.config.get("config") if isinstance(image.config, dict) else None
        cfg = inner if isinstance(inner, dict) else {}
        platform = image.platform
        doc = self.summary(image)
        doc["Digest"] = image.digest
        doc["Config"] = {k: cfg[k] for k in CONFIG_KEYS if cfg.get(k) is not None}
        doc["Os"] = getattr(platform, "os", "") or ""
        doc["Architecture"] = getattr(platform, "architecture", "") or ""
        variant = getattr(platform, "variant", "") or ""
        if variant:
            doc["Variant"] = variant
        doc["RootFS"] = {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]}
        return doc

    # -- what silod's start does ----------------------------------------------------------

    def ensure_builtin(self) -> bool:
        """Import the embedded busybox image (built at setup under ``images_dir``) as
        ``busybox:latest`` when the store has no such image. True when it imported it."""
        image_dir = os.path.join(self.images_dir, "busybox") if self.images_dir else ""
        if not image_dir or not os.path.isdir(os.path.join(image_dir, "rootfs")):
            return False
        try:
            self.store.get(BUILTIN_NAME)
            return False
        except errors.NotFound:
            pass
        image = self.backend.import_builtin(self.store, image_dir, BUILTIN_NAME)
        log.info("imported the embedded image %s as %s", image_dir, BUILTIN_NAME)
        self._publish("ImageImported", image.id, Name=BUILTIN_NAME)
        return True

    # -- reading --------------------------------------------------------------------------

    def list(self) -> Docs:
        images = sorted(self.store.list(), key=lambda i: (i.created or "", i.id), reverse=True)
        return [self.summary(i) for i in images]

    def inspect(self, ref: str) -> dict[str, Any]:
        return self.inspect_document(self.get(ref))

    def get(self, ref: str) -> Any:
        """The image ``ref`` names (name[:tag], id, unique id prefix, name@digest); NotFound
        naming it."""
        try:
            return self.store.get(ref)
        except errors.NotFound as err:
            raise errors.NotFound(f"no such image: {ref}", op=_op("get"), obj=ref) from err

    # -- registry -------------------------------------------------------------------------

    def pull(self, reference: str, *, platform: str | None = None, insecure: bool = False,
             ca_file: str | None = None,
             credentials: dict[str, str] | None = None) -> ProgressStream:
        """Start pulling ``reference``; the stream reports it, and ends with the image's
        summary and the ``Reference`` it was pulled as (short form). A malformed reference, an
        unreadable CaFile, a bad Platform are refused here, before anything starts."""
        name = self.backend.normalize(reference, "Reference")
        if platform is not None:
            platform = self.backend.platform(platform, "Platform")
        if ca_file is not None:
            _regular_file(ca_file, "CaFile", op=_op("pull"))
        creds = _credentials(credentials)
        stream = ProgressStream()

        def work() -> dict[str, Any]:
            image = self.backend.pull(self.store, name, platform=platform, insecure=insecure,
                                      ca_file=ca_file, credentials=creds, progress=stream)
            shown = self.backend.familiar(name)
            self._publish("ImagePulled", image.id, Name=shown)
            return {**self.summary(image), "Reference": shown}

        self._run(f"pull {name}", name, stream, work)
        return stream

    def push(self, ref: str, reference: str | None = None, *, insecure: bool = False,
             ca_file: str | None = None,
             credentials: dict[str, str] | None = None) -> ProgressStream:
        """Start pushing the image ``ref`` names to ``reference`` (default: ``ref`` itself,
        which must then be a name). The stream's last line is the image's summary with the
        ``Digest`` the registry stored its manifest under."""
        image = self.get(ref)
        target = self.backend.normalize(reference or ref, "Reference")
        if ca_file is not None:
            _regular_file(ca_file, "CaFile", op=_op("push"))
        creds = _credentials(credentials)
        stream = ProgressStream()

        def work() -> dict[str, Any]:
            pushed = self.backend.push(self.store, image.id, target, insecure=insecure,
                                       ca_file=ca_file, credentials=creds, progress=stream)
            self._publish("ImagePushed", image.id, Name=self.backend.familiar(target))
            # the digest the registry stored the manifest under
            return {**self.summary(self.store.get(image.id)), "Digest": pushed.digest}

        self._run(f"push {target}", target, stream, work)
        return stream

    def _run(self, what: str, key: str, stream: ProgressStream,
             work: Callable[[], dict[str, Any]]) -> None:
        lock = self._lock_for(key)

        def main() -> None:
            last: dict[str, Any]
            if not lock.acquire(blocking=False):
                stream.put({"Id": self.backend.familiar(key), "Status": "Waiting"})
                lock.acquire()
            try:
                last = work()
            except errors.SiloError as err:
                log.info("%s: %s", what, err)
                last = err.to_wire()
            except Exception as err:
                log.exception("%s failed", what)
                last = errors.Internal(f"{what}: {err}", op=_op(what.split()[0])).to_wire()
            finally:
                lock.release()
            stream.finish(last)

        threading.Thread(target=main, name=f"silod {what}", daemon=True).start()

    # -- names ----------------------------------------------------------------------------

    def tag(self, ref: str, name: str) -> dict[str, Any]:
        target = self.backend.normalize(name, "Name")
        self.get(ref)
        image = self.store.tag(ref, target)
        self._publish("ImageTagged", image.id, Name=self.backend.familiar(target))
        return self.summary(image)

    def remove(self, ref: str, *, force: bool = False) -> Docs:
        """docker rmi: by name, untag (and delete once no name is left); by id, delete.
        InvalidState while a container uses it, or for an id with several names (unless
        ``force``). Returns what it did, as ``{"Untagged"}`` and ``{"Deleted"}`` items."""
        before = self.get(ref)
        result = self.store.remove(ref, force=force)
        done: Docs = []
        for name in result.untagged:
            shown = self.backend.familiar(name)
            self._publish("ImageUntagged", before.id, Name=shown)
            done.append({"Untagged": shown})
        for image_id in result.deleted:
            self._publish("ImageDeleted", image_id)
            done.append({"Deleted": image_id})
        return done

    def prune(self, *, all: bool = False) -> dict[str, Any]:
        result = self.store.prune(all=all)
        for image_id in result.deleted:
            self._publish("ImageDeleted", image_id)
        return {"ImagesDeleted": [{"Deleted": i} for i in result.deleted],
                "SpaceReclaimed": int(result.reclaimed_bytes)}

    # -- archives -------------------------------------------------------------------------

    def load(self, path: str) -> dict[str, Any]:
        """Load every image of an archive (oci-archive, docker-archive, OCI layout)."""
        _readable(path, "Path", op=_op("load"), directory_ok=True)
        try:
            images = self.backend.load(self.store, path)
        except errors.InvalidArgument as err:
            if path in err.message:
                raise
            reason = err.message.split(": ", 1)[1] if err.field else err.message
            raise errors.invalid("Path", f"{path}: {reason}", op=_op("load")) from err
        for image in images:
            self._publish("ImageLoaded", image.id)
        return {"Images": [self.summary(i) for i in images]}

    def import_(self, path: str, name: str, *,
                config: dict[str, Any] | None = None) -> dict[str, Any]:
        """An image of one layer, named ``name``, from a root filesystem tarball; ``config``:
        its Cmd, Entrypoint, Env, WorkingDir, User, StopSignal, Labels."""
        target = self.backend.normalize(name, "Name")
        _readable(path, "Path", op=_op("import"))
        image = self.backend.import_rootfs(self.store, path, target, config=config)
        self._publish("ImageImported", image.id, Name=self.backend.familiar(target))
        return self.summary(image)

    def save(self, names: Sequence[str], path: str,
             format: str = "docker-archive") -> dict[str, Any]:
        """Write the images to an archive at ``path`` (a regular file or nothing yet)."""
        if not names:
            raise errors.invalid("Names", "name at least one image", op=_op("save"))
        for i, ref in enumerate(names):
            try:
                self.store.get(ref)
            except errors.NotFound as err:
                raise errors.NotFound(f"Names[{i}]: no such image: {ref}", op=_op("save"),
                                      obj=ref, field=f"Names[{i}]") from err
        parent, base = os.path.split(path)
        if not base:
            raise errors.invalid("Path", f"{path!r} names a directory, not a file",
                                 op=_op("save"))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise errors.invalid("Path", f"{path}: {err.strerror}", op=_op("save")) from err
        else:
            if not stat.S_ISREG(st.st_mode):
                raise errors.invalid("Path", f"{path} exists and is not a regular file",
                                     op=_op("save"))
        if not os.path.isdir(parent or "/"):
            raise errors.invalid("Path", f"{parent} is not a directory", op=_op("save"))
        # the library writes beside the path and renames over it: never half-written
        self.backend.save(self.store, list(names), path, format)
        try:
            size = os.stat(path).st_size
        except OSError as err:
            raise errors.Internal(f"save to {path}: {err}", op=_op("save"), obj=path) from err
        return {"Path": path, "Size": size}

    # -- containers' root filesystems (for the compute service) ---------------------------

    def for_container(self, ref: str, field: str, op: str) -> Any:
        """The image a new container runs; NotFound naming ``field`` (Storage.Image)."""
        try:
            return self.store.get(ref)
        except errors.NotFound as err:
            raise errors.NotFound(f"Storage.Image: no image {ref!r}", op=op,
                                  field=field) from err
        except errors.InvalidArgument as err:
            raise errors.invalid(field, err.message, op=op) from err

    def layer_paths(self, image: Any) -> Docs:
        """``Storage.Layers`` of a container: each layer's diff id and directory, top first
        (as HCS lists a container's layers, and as the overlay stacks them)."""
        return [{"Id": layer.diff_id, "Path": self.store.layers.path(layer.chain_id)}
                for layer in reversed(image.layers)]

    def create_rootfs(self, container_id: str, image_id: str, *,
                      size: int | None = None) -> str:
        return str(self.store.create_rootfs(container_id, image_id, size=size))

    def remove_rootfs(self, container_id: str) -> None:
        self.store.remove_rootfs(container_id)

    def rootfs_ids(self) -> Ids:
        return [str(i) for i in self.store.rootfs_ids()]

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


def _credentials(doc: dict[str, str] | None) -> tuple[str, str] | None:
    if not doc:
        return None
    return doc["Username"], doc["Password"]


def _readable(path: str, field: str, *, op: str, directory_ok: bool = False) -> None:
    """``path`` is a regular file (or, with ``directory_ok``, a directory) silod can read:
    never a device, a fifo or a socket, which could block or read forever."""
    if not os.path.isabs(path):
        raise errors.invalid(field, f"must be an absolute path on silod's host, got {path!r}",
                             op=op)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise errors.NotFound(f"{field}: no such file: {path}", op=op, obj=path,
                              field=field) from None
    except OSError as err:
        raise errors.invalid(field, f"{path}: {err.strerror}", op=op) from err
    if stat.S_ISREG(st.st_mode) or (directory_ok and stat.S_ISDIR(st.st_mode)):
        if not os.access(path, os.R_OK):
            raise errors.invalid(field, f"{path}: not readable", op=op)
        return
    what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    raise errors.invalid(field, f"{path} is {what}", op=op)


def _regular_file(path: str, field: str, *, op: str) -> None:
    _readable(path, field, op=op)

