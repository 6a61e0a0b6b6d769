"""The CRI row of bench/cni.py: RunPodSandbox → StopPodSandbox → RemovePodSandbox through
containerd's CRI plugin, silo-runtime + silo-cni (+ silod) against runc + the reference
plugins (bridge + portmap, host-local IPAM), each on a node of its own, taking turns."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from cri.node import Node, build_images, missing


def pod_cycle_samples(runs: int) -> dict[str, list[float]]:
    """Seconds of each pod's run + stop + remove, by node ("silo", "ref"); one warm-up pod
    each, not counted."""
    for reference in (False, True):
        reason = missing(reference=reference)
        if reason:
            raise RuntimeError(reason)
    top = Path(tempfile.mkdtemp(prefix="silo-bench-cri-"))
    samples: dict[str, list[float]] = {"silo": [], "ref": []}
    nodes: dict[str, Node] = {}
    try:
        images = build_images(top)
        nodes["silo"] = Node(top / "silo", images)
        nodes["ref"] = Node(top / "ref", images, reference=True)
        for i in range(runs + 1):
            order = ["silo", "ref"] if i % 2 == 0 else ["ref", "silo"]
            for name in order:
                node = nodes[name]
                config = node.cri.pod_config(f"bench-{i}", cgroup_parent=node.cgroup_parent,
                                             log_directory=str(node.logs / f"bench-{i}"))
                started = time.perf_counter()
                pod = node.cri.run_pod(config)
                node.cri.stop_pod(pod)
                node.cri.remove_pod(pod)
                if i:
                    samples[name].append(time.perf_counter() - started)
    finally:
        for node in nodes.values():
            node.close()
        shutil.rmtree(top, ignore_errors=True)
    return samples
