"""A process-isolated compute system: an OCI container on the host kernel.

This is the Linux "server silo": namespaces + cgroups + capabilities + seccomp. It keeps its
state in ``<root>/<id>/`` (``state.json`` and the ``exec.fifo`` that holds a created
container until start), so every verb can be a separate short-lived process, as runc's are.

The operations follow the OCI runtime spec's lifecycle; :mod:`silo.compute.lifecycle` guards
every transition. Errors: NotFound (no such container), AlreadyExists (create of an existing
id), InvalidArgument (bad config/process/resources, naming the field), InvalidState (verb not
allowed in the current state), Internal (kernel refused; cause kept).
"""

from __future__ import annotations

import os
import time

from silo.compute import lifecycle
from silo.errors import AlreadyExists, Internal, InvalidArgument, NotFound, SiloError
from silo.schema import jsonio, oci

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from silo.kernel.cgroups import Cgroup

STATE_FILE = "state.json"
FIFO = "exec.fifo"


def now_rfc3339() -> str:
    t = time.time_ns()
    s, ns = divmod(t, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ns:09d}Z"


def check_id(cid: str) -> None:
    ok = cid and len(cid) <= 1024 and cid not in (".", "..") and all(
        c.isalnum() or c in "_+-." for c in cid)
    if not ok:
        raise InvalidArgument(f"container id {cid!r}: use letters, digits, _ + - . only",
                              field="id")


def write_atomic(path: str, data: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


class Container:
    """One container's saved state and the verbs that act on it."""

    def __init__(self, root: str, cid: str, doc: dict[str, Any]) -> None:
        self.root = root
        self.id = cid
        self.dir = os.path.join(root, cid)
        self.doc = doc

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def load(cls, root: str, cid: str) -> Container:
        check_id(cid)
        path = os.path.join(root, cid, STATE_FILE)
        try:
            with open(path, "rb") as f:
                doc = jsonio.loads(f.read(), STATE_FILE)
        except FileNotFoundError:
            raise NotFound(f"container {cid!r} does not exist", op="compute::open",
                           obj=cid) from None
        return cls(root, cid, doc)

    @classmethod
    def list_all(cls, root: str) -> list[Container]:
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                out.append(cls.load(root, name))
            except (NotFound, InvalidArgument):
                continue
        return out

    # -- derived state -------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return int(self.doc["pid"])

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = self.doc["config"]
        return cfg

    def cgroup(self) -> Cgroup:
        from silo.kernel.cgroups import Cgroup

        return Cgroup(self.doc["cgroup_path"])

    def status(self) -> str:
        from silo.kernel import proc

        if not proc.is_alive(self.pid, self.doc.get("pid_start")):
            return lifecycle.STOPPED
        try:
            fifo = os.stat(os.path.join(self.dir, FIFO))
        except FileNotFoundError:
            pass
        else:
            # create makes the fifo with mode 0 and opens it up once the init is ready.
            return lifecycle.CREATED if fifo.st_mode & 0o777 else lifecycle.CREATING
        if is_frozen(self.doc.get("freezer_file", "")):
            return lifecycle.PAUSED
        return lifecycle.RUNNING

    def state(self) -> dict[str, Any]:
        status = self.status()
        return oci.state(
            id=self.id, status=status, pid=self.pid if status != lifecycle.STOPPED else 0,
            bundle=self.doc["bundle"], rootfs=self.doc["rootfs"], created=self.doc["created"],
            owner=self.doc.get("owner", ""), annotations=self.config.get("annotations"),
        )

    def hook_state(self, status: str) -> dict[str, Any]:
        return oci.hook_state(id=self.id, status=status, pid=self.pid, bundle=self.doc["bundle"],
                              annotations=self.config.get("annotations"))

    def save(self) -> None:
        write_atomic(os.path.join(self.dir, STATE_FILE), jsonio.dumps(self.doc))

    # -- verbs ---------------------------------------------------------------------------
    def start(self) -> None:
        lifecycle.require("start", self.status(), self.id)
        fifo = os.path.join(self.dir, FIFO)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:  # ENXIO: no reader, the init is gone
            raise Internal(f"cannot start container {self.id!r}: its init is not waiting "
                           f"({err.strerror})", op="compute::start", obj=self.id) from err
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(fifo)
        hooks = (self.config.get("hooks") or {}).get("poststart")
        if hooks:
            from silo.compute import hooks as hk

            try:
                hk.run("poststart", hooks, self.hook_state(lifecycle.RUNNING))
            except SiloError:
                # As runc: a start that reports failure leaves no container running.
                try:
                    self.cgroup().kill_all(9)
                except SiloError:
                    pass
                try:
                    os.kill(self.pid, 9)
                except ProcessLookupError:
                    pass
                self._wait_gone()
                raise

    def kill(self, sig: int, all_processes: bool = False) -> None:
        status = self.status()
        if all_processes:
            # As runc: --all signals what is left in the cgroup even once the init has
            # exited (the runc v2 shim kills an init's children that way after it exits).
            if status != lifecycle.STOPPED:
                lifecycle.require("kill", status, self.id)
            self.cgroup().kill_all(sig)
            return
        lifecycle.require("kill", status, self.id)
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def pause(self) -> None:
        lifecycle.require("pause", self.status(), self.id)
        self.cgroup().freeze()

    def resume(self) -> None:
        lifecycle.require("resume", self.status(), self.id)
        self.cgroup().thaw()

    def pids(self) -> list[int]:
        lifecycle.require("ps", self.status(), self.id)
        return self.cgroup().pids()

    def stats(self) -> dict[str, Any]:
        lifecycle.require("stats", self.status(), self.id)
        return self.cgroup().stats()

    def update(self, resources: dict[str, Any]) -> None:
        from silo.kernel import cgroups

        lifecycle.require("update", self.status(), self.id)
        cgroups.validate_resources(resources, "resources")
        self.cgroup().apply(resources, "resources")
        linux = self.config.setdefault("linux", {})
        merged = linux.setdefault("resources", {})
        for k, v in resources.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k].update(v)
            else:
                merged[k] = v
        self.save()

    def exec(self, process: dict[str, Any], *, console_socket: str = "", pid_file: str = "",
             detach: bool = True) -> int:
        from silo.compute.exec import exec_process

        return exec_process(self, process, console_socket=console_socket, pid_file=pid_file,
                            detach=detach)

    def delete(self, force: bool = False) -> None:
        status = self.status()
        if force and status != lifecycle.STOPPED:
            cg = self.cgroup()
            try:
                if status == lifecycle.PAUSED:
                    cg.kill_all(9)
                    cg.thaw()
                else:
                    cg.kill_all(9)
            except SiloError:
                pass
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
        elif status == lifecycle.CREATED:
            # Deleting a created container: its init never ran the user's process.
            os.kill(self.pid, 9)
        else:
            lifecycle.require("delete", status, self.id)
        self._wait_gone()
        self.destroy()
        hooks = (self.config.get("hooks") or {}).get("poststop")
        if hooks:
            from silo.compute import hooks as hk

            data = jsonio.dumps(self.hook_state(lifecycle.STOPPED)).encode()
            for i, hook in enumerate(hooks):
                try:
                    hk.run_one(f"hooks.poststop[{i}]", hook, data)
                except SiloError:
                    pass  # the spec: a failing poststop hook is logged, the others still run

    def _wait_gone(self, timeout: float = 10.0) -> None:
        from silo.kernel import proc

        deadline = time.monotonic() + timeout
        delay = 0.0002
        while proc.is_alive(self.pid, self.doc.get("pid_start")):
            if time.monotonic() > deadline:
                raise Internal(f"container {self.id!r}: init {self.pid} did not exit",
                               op="compute::delete", obj=self.id)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def destroy(self) -> None:
        """Remove the cgroup and the state directory (the container's processes are gone)."""
        try:
            self.cgroup().destroy()
        finally:
            remove_tree(self.dir)


def is_frozen(freezer_file: str) -> bool:
    """Read a v1 ``freezer.state`` or a v2 ``cgroup.events`` without the cgroups module
    (``state`` and ``start`` run for every container and must stay cheap)."""
    if not freezer_file:
        return False
    try:
        with open(freezer_file, "rb") as f:
            text = f.read()
    except OSError:
        return False
    if freezer_file.endswith("freezer.state"):
        return text.strip() == b"FROZEN"
    return b"frozen 1" in text


def remove_tree(path: str) -> None:
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for n in names:
        p = os.path.join(path, n)
        if os.path.isdir(p) and not os.path.islink(p):
            remove_tree(p)
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def read_config(bundle: str) -> dict[str, Any]:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"config.json: not found in bundle {bundle!r}",
                       field="config.json") from None
    except OSError as err:
        raise InvalidArgument(f"config.json: cannot read: {err.strerror}",
                              field="config.json") from err
    return oci.validate(jsonio.loads(raw, "config.json"))


def already_exists(cid: str) -> AlreadyExists:
    return AlreadyExists(f"container with id {cid!r} already exists", op="compute::create",
                         obj=cid)


if TYPE_CHECKING:
    from silo.compute.system import ComputeSystem

    _check: type[ComputeSystem] = Container
