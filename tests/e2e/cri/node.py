"""One Kubernetes node without kubelet: containerd with its CRI plugin, the runc v2 shim
pointed at a runtime (``BinaryName``), and a CNI network: silo-cni in front of a silod of its
own (its own network prefix), or the reference plugins (bridge + portmap, host-local IPAM).
The tests make the CRI calls kubelet would make through :class:`~cri.client.CriClient`.

The sandbox (pause) image and the workload image are built from the embedded busybox root
filesystem and imported into containerd's ``k8s.io`` namespace. :meth:`Node.close` removes
every pod through the CRI (so CNI DEL runs), stops containerd and silod, and raises if
anything was left behind: processes, mounts, cgroups, network namespaces, interfaces,
endpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import peers
from silod_host import REPO, Silod
from tests import probes

from cri.client import CriClient

PAUSE_REF = "docker.io/silo-test/pause:latest"
IMAGE_REF = peers.IMAGE_REF
PLUGIN = REPO / ".venv" / "bin" / "silo-cni"
RUNTIME = REPO / ".venv" / "bin" / "silo-runtime"
REFERENCE_CNI = Path("/usr/lib/cni")


def missing(reference: bool = False) -> str | None:
    from cri.client import missing as client_missing

    reasons = [probes.need_root(), probes.need_busybox_image(), client_missing(),
               peers.missing_commands("containerd", "ctr", "containerd-shim-runc-v2", "ip",
                                      "nsenter")]
    if reference:
        reasons.append(peers.missing_commands("runc"))
        if not (REFERENCE_CNI / "bridge").exists():
            reasons.append(f"{REFERENCE_CNI}/bridge is missing (containernetworking-plugins)")
    else:
        reasons.append(None if PLUGIN.exists() and RUNTIME.exists() else
                       ".venv/bin/silo-cni or silo-runtime is missing: run scripts/setup")
    return probes.need_all(*reasons)


def build_images(top: Path) -> tuple[Path, Path]:
    """(pause archive, workload archive), both from the embedded busybox root filesystem."""
    rootfs = probes.BUSYBOX_IMAGE / "rootfs"
    pause = peers.write_oci_archive(rootfs, top / "pause.oci.tar", PAUSE_REF,
                                    cmd=("sleep", "2147483647"))
    work = peers.write_oci_archive(rootfs, top / "busybox.oci.tar", IMAGE_REF)
    return pause, work


def subnet() -> str:
    return f"10.{random.randint(150, 250)}.{random.randint(0, 255)}.0/24"


class Node:
    """``reference=False``: silo-runtime + silo-cni + silod; ``True``: runc + bridge +
    portmap."""

    def __init__(self, workdir: Path, images: tuple[Path, Path], *,
                 reference: bool = False) -> None:
        self.workdir = workdir
        self.reference = reference
        self.subnet = subnet()
        self.network = f"cri{uuid.uuid4().hex[:6]}"
        self.cgroup_parent = f"/silo-cri-{uuid.uuid4().hex[:10]}"
        self.logs = workdir / "pods"
        self.cni_bin = workdir / "cni-bin"
        self.cni_conf = workdir / "cni-conf"
        self.silod: Silod | None = None if reference else Silod(workdir / "silod")
        self.bridge = f"crb{uuid.uuid4().hex[:8]}"
        self.netns_seen: set[str] = set()
        for d in (self.logs, self.cni_bin, self.cni_conf):
            d.mkdir(parents=True)
        if self.silod is not None:
            self.silod.start()
        self._cni_files()
        runtime = shutil.which("runc") if reference else str(RUNTIME)
        assert runtime is not None
        self.containerd = peers.Containerd(
            workdir / "ctrd", runtime,
            cri=peers.CriOptions(runtime, self.cni_bin, self.cni_conf, PAUSE_REF,
                                 self.cgroup_parent))
        try:
            self.containerd.start()
            for archive in images:
                self.containerd.import_image(archive)
            self.cri = CriClient(self.containerd.address)
        except BaseException:
            self.containerd.stop()
            if self.silod is not None:
                self.silod.finish()
            raise

    def _cni_files(self) -> None:
        os.symlink(REFERENCE_CNI / "loopback", self.cni_bin / "loopback")
        if self.reference:
            for name in ("bridge", "portmap", "host-local"):
                os.symlink(REFERENCE_CNI / name, self.cni_bin / name)
            conf: dict[str, Any] = {
                "cniVersion": "1.0.0", "name": self.network,
                "plugins": [
                    {"type": "bridge", "bridge": self.bridge, "isGateway": True,
                     "ipMasq": True,
                     "ipam": {"type": "host-local", "subnet": self.subnet,
                              "dataDir": str(self.workdir / "host-local"),
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}]}
            (self.cni_conf / "10-ref.conflist").write_text(json.dumps(conf))
            return
        assert self.silod is not None
        os.symlink(PLUGIN, self.cni_bin / "silo-cni")
        conf = {"cniVersion": "1.0.0", "name": self.network, "type": "silo-cni",
                "host": self.silod.host, "ipam": {"subnet": self.subnet},
                "capabilities": {"portMappings": True, "dns": True}}
        (self.cni_conf / "10-silo.conf").write_text(json.dumps(conf))

    # -- pods -------------------------------------------------------------------------------

    def pod(self, name: str, **more: Any) -> tuple[str, Any]:
        """RunPodSandbox; (id, its config)."""
        config = self.cri.pod_config(name, cgroup_parent=self.cgroup_parent,
                                     log_directory=str(self.logs / name), **more)
        pod_id = self.cri.run_pod(config)
        self.netns_seen.add(self.netns_of(pod_id))
        return pod_id, config

    def container(self, pod_id: str, pod_config: Any, name: str, *command: str) -> str:
        """CreateContainer + StartContainer of the busybox image running ``command``."""
        cid = self.cri.create_container(
            pod_id, self.cri.container_config(name, IMAGE_REF, command), pod_config)
        self.cri.start_container(cid)
        return cid

    def netns_of(self, pod_id: str) -> str:
        info = self.cri.pod_status(pod_id, verbose=True).info
        spec = json.loads(info["info"])["runtimeSpec"]
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                return str(ns["path"])
        raise AssertionError(f"pod {pod_id} has no network namespace path")

    def ip_of(self, pod_id: str) -> str:
        return str(self.cri.pod_status(pod_id).status.network.ip)

    def remove(self, pod_id: str) -> None:
        self.cri.stop_pod(pod_id)
        self.cri.remove_pod(pod_id)

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every pod, stop containerd and silod; raise if anything was left."""
        problems: list[str] = []
        try:
            for pod in self.cri.list_pods():
                try:
                    self.remove(pod.id)
                except Exception as err:
                    problems.append(f"removing pod {pod.id}: {err}")
            self.cri.close()
        finally:
            try:
                self.containerd.stop()
            except peers.PeerError as err:
                problems.append(str(err))
            leaks = peers.LeakCheck("pods")
            leaks.netns(self.netns_seen)
            problems += leaks.leaks
            if self.silod is not None:
                with contextlib.suppress(Exception):
                    client = self.silod.client()
                    eps = client.list_endpoints()
                    if eps:
                        problems.append(f"endpoints left in silod: {[e['Name'] for e in eps]}")
                left = self.silod.finish()
                if left:
                    problems.append(f"silod left: {left}")
            else:
                subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True,
                               check=False)
            peers.remove_tree(self.workdir)
        if problems:
            raise AssertionError("the node left this behind:\n  " + "\n  ".join(problems))
