"""Create a process-isolated container from an OCI bundle.

Everything that can be checked is checked before the first side effect (state directory,
cgroup, processes); after that, any failure undoes what was done, in reverse, so a refused
create leaves no state dir, cgroup, mount or process behind.
"""

from __future__ import annotations

import os

from silo.compute import init, lifecycle
from silo.compute.channel import Channel
from silo.compute.container import (
    FIFO,
    Container,
    already_exists,
    check_id,
    now_rfc3339,
    read_config,
    remove_tree,
)
from silo.errors import Internal, InvalidArgument, NotFound, SiloError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from silo.kernel.cgroups import Cgroup
    from silo.kernel.mounts import MountSpec


class CreateOptions:
    __slots__ = (
        "bundle",
        "console_fd",
        "console_socket",
        "id",
        "owner",
        "pid_file",
        "root",
        "subreaper",
    )

    def __init__(self, root: str, cid: str, bundle: str, pid_file: str = "",
                 console_socket: str = "", subreaper: bool = False, owner: str = "",
                 console_fd: int = -1) -> None:
        self.console_fd = console_fd  # a connected socket, instead of console_socket
        self.root = root
        self.id = cid
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.subreaper = subreaper
        self.owner = owner


def validate_host(spec: dict[str, Any], bundle: str) -> tuple[str, list[MountSpec]]:
    """The checks that need the host: rootfs, mounts, capabilities, cgroups, seccomp, rlimits."""
    from silo.kernel import capabilities, cgroups, proc, seccomp
    from silo.kernel.mounts import MountSpec

    root_path = spec["root"]["path"]
    rootfs = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"root.path: rootfs {rootfs!r} does not exist or is not a "
                              "directory", field="root.path")
    linux = spec.get("linux") or {}
    if not any(ns.get("type") == "mount" for ns in linux.get("namespaces") or []):
        raise InvalidArgument("linux.namespaces: a mount namespace is required",
                              field="linux.namespaces")
    for i, ns in enumerate(linux.get("namespaces") or []):
        if ns.get("path"):
            try:
                os.stat(ns["path"])
            except OSError as err:
                why = "does not exist" if err.errno == 2 else f"cannot be reached: {err.strerror}"
                raise InvalidArgument(f"linux.namespaces[{i}].path: {ns['path']!r} {why}",
                                      field=f"linux.namespaces[{i}].path") from err
    mounts = [MountSpec(m, f"mounts[{i}]") for i, m in enumerate(spec.get("mounts") or [])]
    for i, m in enumerate(mounts):
        if m.is_bind:
            src = m.source if m.source.startswith("/") else os.path.join(bundle, m.source)
            if not os.path.exists(src):
                raise InvalidArgument(f"mounts[{i}].source: {src!r} does not exist",
                                      field=f"mounts[{i}].source")
    process = spec["process"]
    capabilities.validate(process.get("capabilities"))
    proc.validate_rlimits(process.get("rlimits"))
    cgroups.validate_resources(linux.get("resources") or {})
    seccomp.validate(linux.get("seccomp"))
    return rootfs, mounts


def create(opts: CreateOptions) -> Container:
    check_id(opts.id)
    bundle = os.path.abspath(opts.bundle)
    spec = read_config(bundle)
    rootfs, mounts = validate_host(spec, bundle)
    process = spec["process"]
    if process.get("terminal") and not opts.console_socket and opts.console_fd < 0:
        raise InvalidArgument("process.terminal: a terminal needs --console-socket (or run "
                              "in the foreground)", field="process.terminal")
    linux = spec.get("linux") or {}
    hooks = spec.get("hooks") or {}

    os.makedirs(opts.root, 0o711, exist_ok=True)
    cdir = os.path.join(opts.root, opts.id)
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        raise already_exists(opts.id) from None

    from silo.kernel.cgroups import Cgroup

    cg: Cgroup | None = None
    stage1 = 0
    init_pid = 0
    fds: list[int] = []
    try:
        fifo = os.path.join(cdir, FIFO)
        os.mkfifo(fifo, 0o000)
        a = init.InitArgs()
        a.spec = spec
        a.bundle = bundle
        a.rootfs = rootfs
        a.mounts = mounts
        a.fifo_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        fds.append(a.fifo_fd)
        for ns in linux.get("namespaces") or []:
            if ns.get("path"):
                fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
                fds.append(fd)
                a.join_fds.append((ns["type"], fd))
            else:
                a.new_ns |= init.NS_FLAGS[ns["type"]]
        a.join_fds.sort(key=lambda kv: [k for k, _ in init.PROC_NS].index(kv[0]))
        if opts.console_fd >= 0 and process.get("terminal"):
            a.console_fd = os.dup(opts.console_fd)
            fds.append(a.console_fd)
        elif opts.console_socket and process.get("terminal"):
            from silo.kernel import console

            try:
                a.console_fd = console.connect(opts.console_socket)
            except OSError as err:
                raise InvalidArgument(f"--console-socket: cannot connect to "
                                      f"{opts.console_socket!r}: {err.strerror}",
                                      field="console-socket") from err
            fds.append(a.console_fd)
        a.has_runtime_hooks = bool(hooks.get("prestart") or hooks.get("createRuntime"))
        a.state = {"ociVersion": "1.2.0", "id": opts.id, "status": lifecycle.CREATING,
                   "pid": 0, "bundle": bundle}
        if spec.get("annotations"):
            a.state["annotations"] = spec["annotations"]
        cgroup_path = linux.get("cgroupsPath") or f"/silo-runtime/{opts.id}"
        cg = Cgroup(cgroup_path)
        cg.create()
        cg.apply(effective_resources(linux))
        a.cgroup = cg

        from silo.kernel import libc, proc

        if opts.subreaper:
            libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        a.direct = can_fork_directly(a, hooks)
        if a.direct:
            enter_pid_namespace(a)
        stage1, parent = Channel.spawn(init.create_child, a)
        fds.append(parent.fd)

        def record(pid: int) -> Container:
            # Written while the init still builds its root filesystem; the fifo's mode says
            # "creating" (0) until the init is ready (see Container.status).
            c = Container(opts.root, opts.id, {
                "id": opts.id, "pid": pid, "pid_start": proc.start_time(pid),
                "bundle": bundle, "rootfs": rootfs, "created": now_rfc3339(),
                "owner": opts.owner, "cgroup_path": cgroup_path, "config": spec,
                "freezer_file": freezer_file(cg),
            })
            c.save()
            if opts.pid_file:
                from silo.compute.container import write_atomic

                write_atomic(os.path.abspath(opts.pid_file), str(pid))
            return c

        c: Container | None = None
        if a.direct:
            init_pid = stage1
            c = record(init_pid)
        while True:
            tag, payload = parent.recv()
            if tag == "pid":
                init_pid = int(payload)
                c = record(init_pid)
            elif tag == "userns":
                write_id_maps(stage1, linux)
                parent.send("go")
            elif tag == "hooks":
                from silo.compute import hooks as hk

                state = dict(a.state, pid=init_pid)
                hk.run("prestart", hooks.get("prestart") or [], state)
                hk.run("createRuntime", hooks.get("createRuntime") or [], state)
                parent.send("hooks-done")
            elif tag == "ready":
                break
            elif tag == "error":
                raise container_error(opts.id, payload)
            else:
                raise Internal(f"container {opts.id!r}: the init exited during setup",
                               op="compute::create", obj=opts.id)
        os.chmod(fifo, 0o600)  # created: see Container.status
        if not a.direct:
            os.waitpid(stage1, 0)
        stage1 = 0
        assert c is not None
        return c
    except BaseException:
        undo(cdir, cg, stage1, init_pid)
        raise
    finally:
        close_all(fds)


# Devices every container gets on top of its device rules (runc's defaults): mknod of any
# node, the standard character devices, the ptys and tun.
DEFAULT_ALLOWED_DEVICES = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2),
                           (10, 200))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def effective_resources(linux: dict[str, Any]) -> dict[str, Any]:
    """The spec's resources plus the default devices and those listed in linux.devices."""
    resources = dict(linux.get("resources") or {})
    rules = list(resources.get("devices") or [])
    rules += [dict(r) for r in DEFAULT_ALLOWED_DEVICES]
    for d in linux.get("devices") or []:
        if d.get("type") in ("c", "b", "u"):
            rules.append({"allow": True, "type": "c" if d["type"] == "u" else d["type"],
                          "major": d["major"], "minor": d["minor"], "access": "rwm"})
    resources["devices"] = rules
    return resources


def can_fork_directly(a: init.InitArgs, hooks: dict[str, Any]) -> bool:
    """Whether the runtime may enter the container's pid namespace itself and fork the init
    directly (one fork instead of two). Not with a new user namespace (it must own the pid
    namespace, and only a child can create it), and not with hooks the runtime spawns: after
    entering, its children are born in the container's pid namespace."""
    from silo.kernel import libc

    return (not a.new_ns & libc.CLONE_NEWUSER
            and not any(k == "user" for k, _ in a.join_fds)
            and not any(hooks.get(k) for k in ("prestart", "createRuntime", "poststart",
                                               "poststop")))


def enter_pid_namespace(a: init.InitArgs) -> None:
    """unshare or setns the pid namespace in this process: only its children are affected,
    and the next one is the container's init (pid 1 of a new namespace)."""
    from silo.kernel import libc

    if a.new_ns & libc.CLONE_NEWPID:
        libc.unshare(libc.CLONE_NEWPID)
        a.new_ns &= ~libc.CLONE_NEWPID
        return
    for kind, fd in a.join_fds:
        if kind == "pid":
            init.join_namespace(a.spec, kind, fd)
            a.join_fds.remove((kind, fd))
            return


def freezer_file(cg: Cgroup) -> str:
    try:
        return cg.freezer_file()
    except SiloError:
        return ""  # no freezer on this host: pause will say so


def kill_started(process: int, child: int) -> None:
    """SIGKILL what a failed create or exec started: the container's process and our own
    child (the same pid when there was one fork), and reap the child."""
    for pid in (process, child):
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    if child:
        try:
            os.waitpid(child, 0)
        except ChildProcessError:
            pass


def close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def undo(cdir: str, cg: Any, stage1: int, init_pid: int) -> None:
    kill_started(init_pid, stage1)
    if cg is not None:
        try:
            cg.kill_all(9)
        except SiloError:
            pass
        try:
            cg.destroy()
        except SiloError:
            pass
    remove_tree(cdir)


def container_error(cid: str, message: str) -> SiloError:
    if message.startswith("exec:") and "not found" in message:
        return NotFound(message, op="compute::create", obj=cid, field="process.args")
    if message.startswith(("process.", "linux.", "mounts", "root.", "hooks.")):
        field = message.split(":", 1)[0]
        return InvalidArgument(message, op="compute::create", obj=cid, field=field)
    return Internal(message, op="compute::create", obj=cid)


def write_id_maps(pid: int, linux: dict[str, Any]) -> None:
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                        for m in linux.get(key) or [])
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)
        except OSError as err:
            raise InvalidArgument(f"linux.{key}: the kernel refused the mapping: "
                                  f"{err.strerror}", field=f"linux.{key}") from err
