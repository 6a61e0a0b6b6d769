"""The layer store: each image layer unpacked once, as ``layers/<chainid-hex>/diff``, and
shared by every image that has it.

Imports only :mod:`silo.errors` and the storage modules below it (the unpacker by default).

A layer is identified by its *chain id*, which names the layer together with everything below
it (``chain[0] = diff_id[0]``, ``chain[i] = sha256(chain[i-1] + " " + diff_id[i])``), so two
images share a directory exactly when they share the whole stack under it.

Concurrency: :meth:`LayerStore.lock` is an ``flock`` on ``locks/layer-<hex>``, which excludes
other threads and other processes alike. :meth:`unpack_into` holds it, unpacks into
``layers/.tmp-<hex>-<random>/`` and renames that into place only when the tree, its diff id
and whatever the caller checks in ``before_commit`` (the compressed blob) are good. A second
caller waits for the lock, then finds the layer and reuses it. :meth:`clean` removes the
``.tmp-`` dirs whose lock is free (their writer died).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from silo.errors import InvalidArgument, SiloError, invalid
from silo.storage.content import internal
from silo.storage.descriptor import hex_of, validate_digest


class UnpackOutcome(Protocol):
    @property
    def diff_id(self) -> str: ...

    @property
    def size(self) -> int: ...


Unpacker = Callable[[BinaryIO, str, str], UnpackOutcome]


@dataclass(frozen=True)
class LayerInfo:
    """An unpacked layer (also what :meth:`LayerStore.unpack_into` returns: it has the
    ``diff_id`` and ``size`` of an ``UnpackResult``)."""

    chain_id: str
    diff_id: str
    size: int          # bytes of the uncompressed tar
    short: str         # the name of its link under l/


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i, d in enumerate(diff_ids):
        validate_digest(d, f"rootfs.diff_ids[{i}]")
        out.append(d if not out else
                   "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def _default_unpacker(stream: BinaryIO, dest: str, media_type: str) -> UnpackOutcome:
    from silo.storage.unpack import unpack  # when first used: it loads the decompressors

    result: UnpackOutcome = unpack(stream, dest, media_type)
    return result


@contextlib.contextmanager
def flocked(path: str, *, shared: bool = False, block: bool = True) -> Iterator[bool]:
    """Hold an flock on ``path`` (created) for the block; yields False when ``block`` is
    False and someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, op if block else op | fcntl.LOCK_NB)
        except OSError as e:
            if block or e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


class LayerStore:
    def __init__(self, root: str, *, unpacker: Unpacker | None = None) -> None:
        self.root = root
        self.dir = os.path.join(root, "layers")
        self.links = os.path.join(root, "l")
        self.locks = os.path.join(root, "locks")
        self.unpacker = unpacker or _default_unpacker
        try:
            for d, mode in ((self.dir, 0o711), (self.links, 0o711), (self.locks, 0o700)):
                os.makedirs(d, mode=mode, exist_ok=True)
        except OSError as e:
            raise internal("creating", root, e) from e

    # -- naming
    @staticmethod
    def chain_id(diff_ids: Sequence[str]) -> str:
        """The chain id of the top layer of ``diff_ids`` (base first)."""
        if not diff_ids:
            raise invalid("rootfs.diff_ids", "is empty")
        return chain_ids(diff_ids)[-1]

    def _dir(self, chain_id: str) -> str:
        return os.path.join(self.dir, hex_of(chain_id))

    def path(self, chain_id: str) -> str:
        """The unpacked tree (an overlay lower dir)."""
        return os.path.join(self._dir(chain_id), "diff")

    @staticmethod
    def short_name(chain_id: str) -> str:
        return hashlib.sha256(b"l/" + hex_of(chain_id).encode()).hexdigest()[:16]

    def short(self, chain_id: str) -> str:
        """The ``l/<short>`` link to the layer's tree (keeps overlay's mount data short)."""
        return os.path.join(self.links, self.short_name(chain_id))

    def has(self, chain_id: str) -> bool:
        return os.path.isfile(os.path.join(self._dir(chain_id), "layer.json"))

    def info(self, chain_id: str) -> LayerInfo:
        try:
            with open(os.path.join(self._dir(chain_id), "layer.json")) as f:
                doc = json.load(f)
        except FileNotFoundError:
            from silo.errors import NotFound

            raise NotFound(f"layer {chain_id} is not in the layer store", op="layers::info",
                           obj=chain_id) from None
        return LayerInfo(chain_id, doc["diff_id"], int(doc["size"]), self.short_name(chain_id))

    def chain_ids_on_disk(self) -> list[str]:
        return sorted("sha256:" + n for n in os.listdir(self.dir)
                      if len(n) == 64 and not n.startswith("."))

    @contextlib.contextmanager
    def lock(self, chain_id: str) -> Iterator[None]:
        with flocked(os.path.join(self.locks, f"layer-{hex_of(chain_id)}")):
            yield

    # -- writing
    def unpack_into(self, chain_id: str, stream: BinaryIO, media_type: str, *,
                    diff_id: str | None = None,
                    before_commit: Callable[[], object] | None = None) -> LayerInfo:
        """Unpack ``stream`` as layer ``chain_id`` unless it is there already (then the stream
        is not read). ``diff_id``: the uncompressed digest the tar must have.
        ``before_commit`` runs after a good unpack, before the layer becomes visible; an
        exception from it (or anything else) leaves nothing behind."""
        with self.lock(chain_id):
            if self.has(chain_id):
                return self.info(chain_id)
            return self._unpack_locked(chain_id, stream, media_type, diff_id, before_commit)

    def _unpack_locked(self, chain_id: str, stream: BinaryIO, media_type: str,
                       diff_id: str | None,
                       before_commit: Callable[[], object] | None) -> LayerInfo:
        hexid = hex_of(chain_id)
        try:
            tmp = tempfile.mkdtemp(prefix=f".tmp-{hexid}-", dir=self.dir)
        except OSError as e:
            raise internal("creating a directory in", self.dir, e) from e
        try:
            os.chmod(tmp, 0o711)
            diff = os.path.join(tmp, "diff")
            os.mkdir(diff, 0o755)
            try:
                result = self.unpacker(stream, diff, media_type)
            except SiloError:
                raise
            except OSError as e:
                raise internal("unpacking layer into", diff, e) from e
            except Exception as e:  # tarfile, zlib, EOFError...: the blob is corrupt
                raise InvalidArgument(f"layer {chain_id}: cannot unpack: {e}",
                                      op="layers::unpack", obj=chain_id) from e
            if diff_id is not None and result.diff_id != diff_id:
                raise InvalidArgument(
                    f"layer {chain_id}: its tar has digest {result.diff_id}, "
                    f"config.rootfs.diff_ids says {diff_id}", op="layers::unpack",
                    obj=chain_id, field="config.rootfs.diff_ids")
            short = self.short_name(chain_id)
            with open(os.path.join(tmp, "layer.json"), "w") as f:
                json.dump({"chain_id": chain_id, "diff_id": result.diff_id,
                           "size": result.size, "short": short}, f)
            if before_commit is not None:
                before_commit()
            os.rename(tmp, self._dir(chain_id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.ensure_link(chain_id)
        return LayerInfo(chain_id, result.diff_id, result.size, short)

    def ensure_link(self, chain_id: str) -> str:
        """Make ``l/<short>`` point at the layer's tree (after a crash it may be missing)."""
        link = self.short(chain_id)
        target = f"../layers/{hex_of(chain_id)}/diff"
        try:
            if os.readlink(link) == target:
                return link
            os.unlink(link)
        except FileNotFoundError:
            pass
        tmp = f"{link}.tmp-{os.getpid()}-{id(self)}"
        os.symlink(target, tmp)
        os.rename(tmp, link)
        return link

    def delete(self, chain_id: str) -> int:
        """Remove a layer (nothing may use it: the image store checks); its size, 0 if it
        was not there or someone holds its lock."""
        with flocked(os.path.join(self.locks, f"layer-{hex_of(chain_id)}"),
                     block=False) as got:
            if not got or not os.path.isdir(self._dir(chain_id)):
                return 0
            size = self.info(chain_id).size if self.has(chain_id) else 0
            gone = os.path.join(self.dir, f".tmp-{hex_of(chain_id)}-deleted")
            try:
                os.unlink(self.short(chain_id))
            except FileNotFoundError:
                pass
            shutil.rmtree(gone, ignore_errors=True)
            os.rename(self._dir(chain_id), gone)  # gone at once, removed at leisure
            shutil.rmtree(gone, ignore_errors=True)
            return size

    def clean(self) -> int:
        """Remove what dead writers left: ``.tmp-`` dirs whose lock is free."""
        removed = 0
        for name in os.listdir(self.dir):
            if not name.startswith(".tmp-"):
                continue
            hexid = name[5:69]
            with flocked(os.path.join(self.locks, f"layer-{hexid}"), block=False) as got:
                if got:
                    shutil.rmtree(os.path.join(self.dir, name), ignore_errors=True)
                    removed += 1
        return removed

    def remove_dangling_links(self) -> None:
        """Links whose layer is gone (call with no writer running: the gc lock held)."""
        for name in os.listdir(self.links):
            path = os.path.join(self.links, name)
            if not os.path.exists(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
