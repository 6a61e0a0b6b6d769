"""The CRI v1 calls kubelet makes, over containerd's gRPC socket.

The messages come from ``runtime.proto`` (beside this file), compiled with grpcio-tools into
a temporary directory the first time this module is imported; nothing generated is kept.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIMEOUT = 120.0


def missing() -> str | None:
    """Why the client cannot run here, or None."""
    for module in ("grpc", "grpc_tools.protoc", "google.protobuf"):
        try:
            importlib.import_module(module)
        except ImportError:
            return (f"{module} is not installed (grpcio, grpcio-tools, protobuf: "
                    "pip install -e '.[dev]')")
    return None


def _compile() -> tuple[Any, Any]:
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="silo-cri-proto-")
    try:
        status = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}",
                              f"--grpc_python_out={out}", str(HERE / "runtime.proto")])
        if status != 0:
            raise RuntimeError(f"protoc failed on runtime.proto (status {status})")
        sys.path.insert(0, out)
        try:
            pb = importlib.import_module("runtime_pb2")
            rpc = importlib.import_module("runtime_pb2_grpc")
        finally:
            sys.path.remove(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return pb, rpc


_MODULES: tuple[Any, Any] | None = None


def messages() -> tuple[Any, Any]:
    global _MODULES
    if _MODULES is None:
        _MODULES = _compile()
    return _MODULES


class CriClient:
    """RuntimeService of a CRI endpoint (``unix://`` socket path)."""

    def __init__(self, socket: Path | str) -> None:
        import grpc

        self.pb, rpc = messages()
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.rt = rpc.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    # -- building the documents ---------------------------------------------------------------

    def pod_config(self, name: str, *, cgroup_parent: str, log_directory: str,
                   hostname: str = "", namespace: str = "default",
                   dns: tuple[Sequence[str], Sequence[str], Sequence[str]] | None = None,
                   ports: Sequence[tuple[int, int]] = ()) -> Any:
        """A PodSandboxConfig; ``ports``: (container port, host port) over TCP."""
        pb = self.pb
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace=namespace,
                                           attempt=0),
            hostname=hostname or name, log_directory=log_directory,
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent,
                # kubelet's default for a v1 pod: a pid namespace per container
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER,
                                                         ipc=pb.POD))))
        if dns is not None:
            config.dns_config.CopyFrom(pb.DNSConfig(servers=list(dns[0]), searches=list(dns[1]),
                                                    options=list(dns[2])))
        for container_port, host_port in ports:
            config.port_mappings.append(pb.PortMapping(protocol=pb.TCP,
                                                       container_port=container_port,
                                                       host_port=host_port))
        return config

    def container_config(self, name: str, image: str, command: Sequence[str]) -> Any:
        pb = self.pb
        namespaces = pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0), image=pb.ImageSpec(image=image),
            command=list(command), log_path=f"{name}.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=namespaces)))

    # -- the calls ----------------------------------------------------------------------------

    def version(self) -> Any:
        return self.rt.Version(self.pb.VersionRequest(version="v1"), timeout=TIMEOUT)

    def run_pod(self, config: Any) -> str:
        resp = self.rt.RunPodSandbox(self.pb.RunPodSandboxRequest(config=config),
                                     timeout=TIMEOUT)
        return str(resp.pod_sandbox_id)

    def stop_pod(self, pod_id: str) -> None:
        self.rt.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id),
                               timeout=TIMEOUT)

    def remove_pod(self, pod_id: str) -> None:
        self.rt.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
                                 timeout=TIMEOUT)

    def pod_status(self, pod_id: str, verbose: bool = False) -> Any:
        return self.rt.PodSandboxStatus(
            self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose),
            timeout=TIMEOUT)

    def list_pods(self) -> list[Any]:
        return list(self.rt.ListPodSandbox(self.pb.ListPodSandboxRequest(),
                                           timeout=TIMEOUT).items)

    def create_container(self, pod_id: str, config: Any, sandbox_config: Any) -> str:
        resp = self.rt.CreateContainer(self.pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=sandbox_config),
            timeout=TIMEOUT)
        return str(resp.container_id)

    def start_container(self, cid: str) -> None:
        self.rt.StartContainer(self.pb.StartContainerRequest(container_id=cid), timeout=TIMEOUT)

    def stop_container(self, cid: str, timeout: int = 0) -> None:
        self.rt.StopContainer(self.pb.StopContainerRequest(container_id=cid, timeout=timeout),
                              timeout=TIMEOUT)

    def remove_container(self, cid: str) -> None:
        self.rt.RemoveContainer(self.pb.RemoveContainerRequest(container_id=cid),
                                timeout=TIMEOUT)

    def container_status(self, cid: str) -> Any:
        return self.rt.ContainerStatus(self.pb.ContainerStatusRequest(container_id=cid),
                                       timeout=TIMEOUT).status

    def exec_sync(self, cid: str, cmd: Sequence[str], timeout: int = 30) -> tuple[int, str, str]:
        resp = self.rt.ExecSync(self.pb.ExecSyncRequest(container_id=cid, cmd=list(cmd),
                                                        timeout=timeout),
                                timeout=timeout + TIMEOUT)
        return (int(resp.exit_code), resp.stdout.decode(errors="replace"),
                resp.stderr.decode(errors="replace"))
