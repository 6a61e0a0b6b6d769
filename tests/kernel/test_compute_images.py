"""The compute service and the image store together, against the real kernel: a container's
root filesystem comes from the store and keeps its image in use until the container is deleted;
a scratch size cap is a real ext4 on a loop device, gone with the container; a root filesystem
that no compute system records (a create that crashed between the two) is removed by reconcile.
Uses the per-test service of tests/kernel/test_compute_service.py (its teardown fails a test
that leaves a mount, a process or a cgroup)."""

from __future__ import annotations

import os

import pytest

from silo import errors
from silo.service.compute import ComputeService
from tests import probes
from tests.kernel import test_compute_service as compute_tests
from tests.kernel.conftest import mounts_below
from tests.kernel.test_compute_service import Env, run

pytestmark = pytest.mark.kernel
env = compute_tests.env      # the compute service's fixtures: a service on dirs of its own
svc = compute_tests.svc


def fstypes_below(path: str) -> set[str]:
    """The filesystem types mounted at or below ``path``."""
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point, fstype = fields[4], fields[fields.index("-") + 1]
            if point == path or point.startswith(path + "/"):
                found.add(fstype)
    return found


def storage_mounts(env: Env) -> list[str]:
    return mounts_below(env.tmp / "data" / "storage")


def test_the_image_stays_while_its_container_exists(svc: ComputeService, env: Env) -> None:
    image_id = svc.images.inspect("busybox")["Id"]
    sid = svc.create(env.doc("true"))["Id"]
    layers = svc.get(sid)["Configuration"]["Container"]["Storage"]["Layers"]
    assert [la["Id"] for la in layers] == svc.images.inspect("busybox")["RootFS"]["Layers"]
    assert svc.images.rootfs_ids() == [sid]
    with pytest.raises(errors.InvalidState, match="in use"):
        svc.images.remove(image_id)
    svc.delete(sid)
    assert svc.images.rootfs_ids() == [] and storage_mounts(env) == []


def test_a_scratch_cap_is_a_loop_mounted_filesystem(svc: ComputeService, env: Env) -> None:
    reason = probes.need_binary("mkfs.ext4")
    if reason:
        pytest.skip(reason)
    sid = run(svc, env, "sh", "-c", "df -k / | tail -1; dd if=/dev/zero of=/f bs=1M count=40",
              container={"Storage": {"Image": "busybox", "ScratchSizeInMB": 16}})
    assert svc.wait(sid, timeout=60)["ExitCode"] != 0
    text = "".join(line["Line"] for line in svc.logs(sid))
    assert "No space left on device" in text
    below = str(env.tmp / "data" / "storage" / "containers" / sid)
    assert "ext4" in fstypes_below(below) and "overlay" in fstypes_below(below)
    svc.delete(sid)
    assert storage_mounts(env) == []


def test_an_unrecorded_rootfs_is_removed_at_reconcile(env: Env) -> None:
    first = env.service()
    # what a create leaves when silod dies after the store made the rootfs and before the
    # journal could say so (as if by a second writer): a rootfs no compute system owns
    merged = first.images.create_rootfs("silo-orphan-1", "busybox:latest")
    assert os.path.ismount(merged)
    first.close()
    second = ComputeService(env.config)
    env.services.append(second)
    report = second.reconcile()
    assert "rootfs silo-orphan-1" in report["removed"]
    assert second.images.rootfs_ids() == [] and not os.path.exists(merged)
    assert storage_mounts(env) == []


def test_a_bad_image_or_size_changes_nothing(svc: ComputeService, env: Env) -> None:
    body = env.doc("true")
    body["Configuration"]["Container"]["Storage"]["Image"] = "silo-e2e/none:1"
    with pytest.raises(errors.NotFound, match=r"Storage\.Image: no image 'silo-e2e/none:1'"):
        svc.create(body)
    body = env.doc("true", container={"Storage": {"Image": "busybox", "ScratchSizeInMB": 2}})
    with pytest.raises(errors.InvalidArgument) as e:
        svc.create(body)
    assert e.value.field.endswith("Storage.ScratchSizeInMB")
    assert svc.list() == [] and svc.images.rootfs_ids() == [] and storage_mounts(env) == []
