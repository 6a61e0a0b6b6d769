"""Fixtures of the end-to-end tier: the runtime under test, the busybox image, and one fresh,
isolated containerd or podman per test (each starts in well under a second), whose teardown
fails the test if anything was left on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peers
import pytest
from conftest_registry import (  # noqa: F401
    registry_auth,
    registry_plain,
    registry_tls,
    registry_token,
)
from silod_host import Silod, missing


def _skip_if(*reasons: str | None) -> None:
    for reason in reasons:
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def runtime() -> str:
    """Path of the runc-compatible runtime under test."""
    _skip_if(peers.missing_root())
    path, reason = peers.runtime_under_test()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An oci-archive of the busybox root filesystem, named ``peers.IMAGE_REF``."""
    _skip_if(peers.missing_busybox())
    top = tmp_path_factory.mktemp("image")
    rootfs = peers.build_busybox_rootfs(top / "rootfs")
    return peers.write_oci_archive(rootfs, top / "busybox.oci.tar")


@pytest.fixture
def containerd(runtime: str, busybox_archive: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Containerd]:
    """A running containerd with the busybox image imported; ``ctr run`` uses the runtime."""
    _skip_if(peers.missing_commands("containerd", "ctr", "containerd-shim-runc-v2"))
    with peers.Containerd(tmp_path_factory.mktemp("containerd"), runtime) as ctrd:
        ctrd.import_image(busybox_archive)
        yield ctrd


@pytest.fixture
def podman(runtime: str, busybox_archive: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Podman]:
    """podman (with conmon) on its own storage, the busybox image loaded, using the runtime."""
    _skip_if(peers.missing_commands("podman", "conmon"))
    with peers.Podman(tmp_path_factory.mktemp("podman"), runtime) as pm:
        pm.load_image(busybox_archive)
        yield pm


@pytest.fixture
def silod(tmp_path: Path) -> Iterator[Silod]:
    """A real silod of its own (dirs, socket, cgroup parent); the test fails if it leaves
    anything behind."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    d = Silod(tmp_path)
    d.start()
    try:
        yield d
    finally:
        leaks = d.finish()
        if leaks:
            pytest.fail(f"silod left this behind: {leaks}\n--- silod's log ---\n{d.log()}")
