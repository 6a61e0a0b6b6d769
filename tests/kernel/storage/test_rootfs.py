"""Container root filesystems on the real kernel: overlay mounts of the image's layers, a
size cap through a loop-mounted ext4 scratch (ENOSPC past it), 150+ layers, and every failure
and removal leaving no mount, loop device or directory behind."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from silo.errors import AlreadyExists, InvalidArgument, InvalidState, NotFound
from silo.storage import mediatypes as mt
from silo.storage.images import ImageStore
from tests import probes
from tests.kernel.conftest import loops_backed_below, mounts_below
from tests.unit.storage.imagefactory import CountingSource, image

pytestmark = pytest.mark.kernel


SKIP = probes.need_all(probes.need_root(), probes.need_overlay())
SKIP_LOOP = probes.need_all(SKIP, probes.need_loop(), probes.need_binary("mkfs.ext4"))
requires = pytest.mark.skipif(bool(SKIP), reason=SKIP or "")
requires_loop = pytest.mark.skipif(bool(SKIP_LOOP), reason=SKIP_LOOP or "")


class Env:
    def __init__(self, root: str) -> None:
        self.root = root
        self.store = ImageStore(root)

    def leaks(self) -> list[str]:
        return [f"mount {m}" for m in mounts_below(self.root)] + \
            [f"loop {d} -> {f}" for d, f in loops_backed_below(self.root).items()]

    def containers(self) -> list[str]:
        return sorted(os.listdir(os.path.join(self.root, "containers")))


@pytest.fixture
def env() -> Iterator[Env]:
    root = tempfile.mkdtemp(prefix="silo-storage-test-")
    e = Env(os.path.realpath(root))
    yield e
    problems = e.leaks()
    for cid in e.store.rootfs_ids():
        e.store.remove_rootfs(cid)
    for m in sorted(mounts_below(e.root), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    for d in loops_backed_below(e.root):
        subprocess.run(["losetup", "-d", d], capture_output=True)
    shutil.rmtree(e.root, ignore_errors=True)
    assert problems == [], f"left behind: {problems}"


BASE = {"bin/": None, "bin/tool": b"base tool\n", "etc/": None, "etc/os": b"base\n",
        "etc/gone": b"to be whited out\n"}
TOP = {"bin/tool": b"top tool\n", "etc/.wh.gone": b"", "app": b"app\n"}


def add(env: Env, *layers: dict[str, bytes | str | None], name: str = "app:1") -> str:
    b = image(*layers)
    return env.store.add(CountingSource(b), b.manifest, mt.OCI_MANIFEST, names=[name]).id


@requires
def test_overlay_of_the_layers_with_a_scratch(env: Env) -> None:
    add(env, BASE, TOP)
    merged = env.store.create_rootfs("silo-st-c1", "app:1")
    assert merged == env.store.rootfs_path("silo-st-c1")
    m = Path(merged)
    assert (m / "bin/tool").read_bytes() == b"top tool\n"   # the top layer wins
    assert (m / "etc/os").read_bytes() == b"base\n"
    assert not (m / "etc/gone").exists()                     # whited out by the top layer
    (m / "etc/os").write_bytes(b"changed\n")
    (m / "new").write_bytes(b"new\n")
    img = env.store.get("app:1")
    assert Path(env.store.layers.path(img.layers[0].chain_id), "etc/os").read_bytes() == \
        b"base\n"  # the layer is never written
    assert Path(env.root, "containers/silo-st-c1/upper/new").read_bytes() == b"new\n"
    assert env.store.rootfs_ids() == ["silo-st-c1"]
    with open("/proc/self/mountinfo") as f:
        assert any(line.split()[4] == merged and " - overlay " in line for line in f)
    # the image cannot go while the container uses it
    with pytest.raises(InvalidState, match="silo-st-c1"):
        env.store.remove("app:1")
    env.store.remove_rootfs("silo-st-c1")
    assert env.leaks() == [] and env.containers() == [] and env.store.rootfs_ids() == []
    env.store.remove_rootfs("silo-st-c1")  # idempotent
    assert env.store.remove("app:1").deleted == [img.id]


@requires
def test_two_containers_share_the_layers(env: Env) -> None:
    add(env, BASE, TOP)
    a = Path(env.store.create_rootfs("silo-st-a", "app:1"))
    b = Path(env.store.create_rootfs("silo-st-b", "app:1"))
    (a / "only-a").write_bytes(b"a")
    assert not (b / "only-a").exists()
    for cid in ("silo-st-a", "silo-st-b"):
        env.store.remove_rootfs(cid)
    assert env.leaks() == [] and env.containers() == []


@requires_loop
def test_a_size_cap_gives_enospc(env: Env) -> None:
    add(env, BASE, TOP)
    merged = Path(env.store.create_rootfs("silo-st-cap", "app:1", size=16 << 20))
    assert len(loops_backed_below(env.root)) == 1
    (merged / "small").write_bytes(b"x" * (1 << 20))   # under the cap: fine
    with pytest.raises(OSError) as e, open(merged / "big", "wb") as f:
        for _ in range(32):
            f.write(b"y" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
    assert e.value.errno == errno.ENOSPC
    env.store.remove_rootfs("silo-st-cap")
    assert env.leaks() == [] and env.containers() == []


@requires_loop
def test_concurrent_capped_rootfs_each_get_a_loop_device(env: Env) -> None:
    add(env, BASE, TOP)
    errors: list[BaseException] = []

    def make(i: int) -> None:
        try:
            env.store.create_rootfs(f"silo-st-p{i}", "app:1", size=8 << 20)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(loops_backed_below(env.root)) == 4
    for i in range(4):
        env.store.remove_rootfs(f"silo-st-p{i}")
    assert env.leaks() == [] and env.containers() == []


@requires
def test_many_layers(env: Env) -> None:
    n = 160
    layers = [{f"f{i:03d}": f"{i}\n".encode(), "same": f"layer {i}\n".encode()}
              for i in range(n)]
    add(env, *layers)
    merged = Path(env.store.create_rootfs("silo-st-many", "app:1"))
    assert (merged / "same").read_bytes() == f"layer {n - 1}\n".encode()
    assert sorted(p.name for p in merged.iterdir() if p.name != "same") == \
        [f"f{i:03d}" for i in range(n)]
    env.store.remove_rootfs("silo-st-many")
    assert env.leaks() == [] and env.containers() == []


@requires
@pytest.mark.parametrize(("cid", "ref", "size", "exc", "words"), [
    ("silo-st-x", "nothere:1", None, NotFound, "'nothere:1'"),
    ("silo-st-x", "app:1", 1000, InvalidArgument, "size"),
    ("silo-st-x", "app:1", -1, InvalidArgument, "size"),
    ("silo-st-x", "app:1", "10G", InvalidArgument, "size"),
    ("silo-st-x", "app:1", 1 << 50, InvalidArgument, "more than a file"),   # EFBIG
    ("../escape", "app:1", None, InvalidArgument, "container_id"),
    ("a/b", "app:1", None, InvalidArgument, "container_id"),
    ("", "app:1", None, InvalidArgument, "container_id"),
    ("silo-st-x", "Bad Ref", None, InvalidArgument, "'Bad Ref'"),
])
def test_bad_input_leaves_nothing(env: Env, cid: str, ref: str, size: object,
                                  exc: type[Exception], words: str) -> None:
    add(env, BASE, TOP)
    with pytest.raises(exc) as e:
        env.store.create_rootfs(cid, ref, size=size)  # type: ignore[arg-type]
    assert words in str(e.value)
    assert env.leaks() == [] and env.containers() == [] and env.store.rootfs_ids() == []
    assert not os.path.exists(os.path.join(env.root, "escape"))


@requires
def test_a_taken_id_is_refused_and_the_first_is_untouched(env: Env) -> None:
    add(env, BASE, TOP)
    merged = Path(env.store.create_rootfs("silo-st-dup", "app:1"))
    (merged / "mine").write_bytes(b"1")
    with pytest.raises(AlreadyExists, match="silo-st-dup"):
        env.store.create_rootfs("silo-st-dup", "app:1")
    assert (merged / "mine").read_bytes() == b"1"
    env.store.remove_rootfs("silo-st-dup")


@requires
def test_a_missing_layer_fails_cleanly(env: Env) -> None:
    add(env, BASE, TOP)
    img = env.store.get("app:1")
    shutil.rmtree(Path(env.store.layers.path(img.layers[0].chain_id)).parent)
    with pytest.raises(NotFound, match=img.layers[0].chain_id):
        env.store.create_rootfs("silo-st-miss", "app:1")
    assert env.leaks() == [] and env.containers() == [] and env.store.rootfs_ids() == []


@requires_loop
def test_a_mount_failure_midway_frees_the_loop_device(env: Env) -> None:
    add(env, BASE, TOP)
    img = env.store.get("app:1")
    # a lower dir that is a file: the overlay mount fails after the scratch is mounted
    top = Path(env.store.layers.path(img.layers[1].chain_id))
    shutil.rmtree(top)
    top.write_bytes(b"not a dir")
    with pytest.raises(Exception) as e:
        env.store.create_rootfs("silo-st-fail", "app:1", size=8 << 20)
    assert "overlay" in str(e.value)
    assert env.leaks() == [] and env.containers() == [] and env.store.rootfs_ids() == []


@requires
def test_remove_while_busy_still_cleans_up(env: Env) -> None:
    add(env, BASE, TOP)
    merged = env.store.create_rootfs("silo-st-busy", "app:1")
    fd = os.open(os.path.join(merged, "bin"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        env.store.remove_rootfs("silo-st-busy")
        assert mounts_below(env.root) == [] and env.containers() == []
    finally:
        os.close(fd)


@requires
def test_busybox_from_the_store_runs(env: Env, tmp_path: Path) -> None:
    from silo.storage import busybox

    if not os.path.exists(busybox.BUSYBOX):
        pytest.skip(probes.need_binary("busybox") or f"{busybox.BUSYBOX} is missing")
    busybox.build(str(tmp_path / "bb"))
    busybox.import_into(env.root, str(tmp_path / "bb"))
    merged = env.store.create_rootfs("silo-st-bb", "busybox")
    r = subprocess.run(["chroot", merged, "/bin/sh", "-c", "echo hi > /tmp/x; cat /tmp/x"],
                       capture_output=True, text=True, check=False)
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    env.store.remove_rootfs("silo-st-bb")
    assert env.leaks() == [] and env.containers() == []


@requires
def test_the_fallback_before_lowerdir_plus(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels before 6.8: one mount(2) option string through the short l/ links, and a
    clear NotSupported when the layers do not fit a page."""
    from silo.errors import NotSupported
    from silo.kernel import fsmount

    def no_new_api(*args: object, **kw: object) -> None:
        raise fsmount.NoNewMountAPI("as before 6.8")

    monkeypatch.setattr(fsmount, "overlay", no_new_api)
    add(env, BASE, TOP)
    merged = Path(env.store.create_rootfs("silo-st-old", "app:1"))
    assert (merged / "bin/tool").read_bytes() == b"top tool\n"
    with open("/proc/self/mountinfo") as f:
        line = next(ln for ln in f if ln.split()[4] == str(merged))
    assert "/l/" in line  # the short links, not the layers' paths
    env.store.remove_rootfs("silo-st-old")
    add(env, *[{f"f{i}": b"x"} for i in range(300)], name="many:1")
    with pytest.raises(NotSupported, match="300 layers"):
        env.store.create_rootfs("silo-st-old2", "many:1")
    assert env.leaks() == [] and env.containers() == []


@requires_loop
def test_a_capped_scratch_is_nosuid_nodev_on_the_host_but_not_in_the_overlay(env: Env) -> None:
    """The ext4 scratch is mounted nosuid,nodev, so its host path cannot serve a setuid file
    or a device a container made; through the overlay a container's device node still works."""
    import stat

    add(env, BASE, TOP)
    merged = env.store.create_rootfs("silo-st-dev", "app:1", size=8 << 20)
    os.mknod(os.path.join(merged, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with open(os.path.join(merged, "null"), "wb") as f:
        f.write(b"gone")
    scratch = os.path.join(env.root, "containers/silo-st-dev/scratch")
    with open("/proc/self/mountinfo") as f:
        opts = next(ln.split()[5] for ln in f if ln.split()[4] == scratch).split(",")
    assert "nosuid" in opts and "nodev" in opts
    env.store.remove_rootfs("silo-st-dev")
