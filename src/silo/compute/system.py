"""The one interface of a compute system and its processes (hcsshim's cow.Container and
cow.Process): what silod and silo-runtime call, whatever isolates the container.

:class:`silo.compute.container.Container` implements it for process isolation (namespaces and
cgroups on the host kernel). A container inside a utility VM will implement the same methods by
asking ``silo-agent`` in the guest, so callers never branch on the isolation mode.

Errors every method may raise (from :mod:`silo.errors`): NotFound when the system is gone,
InvalidState when the verb is not allowed in the current state (the lifecycle is
created → running ⇄ paused → stopped, see :mod:`silo.compute.lifecycle`), InvalidArgument
naming the field of a bad document, Internal for kernel refusals (with the cause kept).

This module is for type checkers and the long-running service; per-call commands do not import
it (``typing`` is too slow to import for them).
"""

from __future__ import annotations

from typing import Any, Protocol


class ComputeSystem(Protocol):
    """A container (today) or a utility VM's container (later)."""

    id: str

    def status(self) -> str:
        """One of lifecycle.CREATED, RUNNING, PAUSED, STOPPED."""

    def state(self) -> dict[str, Any]:
        """The OCI state document (id, pid, status, bundle, ...)."""

    def start(self) -> None:
        """created → running. InvalidState otherwise."""

    def kill(self, sig: int, all_processes: bool = False) -> None:
        """Signal the init (or every process). InvalidState when stopped."""

    def pause(self) -> None:
        """running → paused."""

    def resume(self) -> None:
        """paused → running."""

    def pids(self) -> list[int]:
        """Host pids of every process of the system."""

    def stats(self) -> dict[str, Any]:
        """Memory, CPU and pids statistics (runc's ``events --stats`` shape)."""

    def update(self, resources: dict[str, Any]) -> None:
        """Change limits of a live system (OCI LinuxResources)."""

    def exec(self, process: dict[str, Any], *, console_socket: str = "",
             pid_file: str = "", detach: bool = True) -> int:
        """Start another process (an OCI process document) in the system; its pid when
        detached, else its exit code."""

    def delete(self, force: bool = False) -> None:
        """Remove a stopped (or created) system; ``force`` kills a running one first."""
