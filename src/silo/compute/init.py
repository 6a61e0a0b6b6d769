"""The container side of ``create`` and ``exec``: code that runs in the forked children.

``create`` forks stage 1, which joins the namespaces given by path, unshares
the new ones and, when there is a pid namespace, forks stage 2 (pid 1 of the container) and
exits, so stage 2 is re-parented to the caller's subreaper (containerd's shim, conmon) as
runc's init is. Stage 2 builds the root filesystem, reports "ready", and blocks on the exec
fifo until ``start``; then it takes on the process's user, capabilities and seccomp filter and
calls execve.

Design notes:
- After pivot_root (or setns into the container's mount namespace) every path this process
  opens is the *container's*: an import or a dlopen at that point would run code from the
  image with host privileges. So everything needed later is imported and loaded before
  (:func:`preload`), and nothing here imports lazily after that point.
- Processes that enter an existing container (exec) are made non-dumpable before they join,
  so the container cannot open their /proc/PID/exe (the host's interpreter) and write through
  it later (the CVE-2019-5736 class).
- Stage 1 closes every descriptor it did not bring itself, everything left is marked
  close-on-exec before execve, and the working directory must resolve inside the container:
  no host fd or cwd leaks in (CVE-2024-21626 class).
"""

from __future__ import annotations

import os

from silo.compute.channel import Channel
from silo.errors import InvalidArgument, SiloError
from silo.kernel import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from silo.kernel.cgroups import Cgroup

NS_FLAGS = {
    "user": libc.CLONE_NEWUSER, "ipc": libc.CLONE_NEWIPC, "uts": libc.CLONE_NEWUTS,
    "network": libc.CLONE_NEWNET, "pid": libc.CLONE_NEWPID, "cgroup": libc.CLONE_NEWCGROUP,
    "mount": libc.CLONE_NEWNS, "time": libc.CLONE_NEWTIME,
}
# /proc/PID/ns file of each namespace type, in the order they are joined: user first (it
# grants the rights to join the others), mount last but one (paths change after it).
PROC_NS = [("user", "user"), ("ipc", "ipc"), ("uts", "uts"), ("network", "net"),
           ("pid", "pid"), ("cgroup", "cgroup"), ("time", "time"), ("mount", "mnt")]


def preload(seccomp: bool) -> None:
    """Import and dlopen, from the host, everything used after entering the container."""
    libc.load()
    import fcntl  # noqa: F401  (console ioctls)
    import resource  # noqa: F401  (rlimits)

    from silo.kernel import capabilities, console, proc  # noqa: F401

    if seccomp:
        from silo.kernel import seccomp as _seccomp  # noqa: F401

        libc.libseccomp()


def close_inherited(keep: list[int]) -> None:
    """Close every descriptor above 2 but ``keep``. Whatever the caller of silo-runtime left
    open (a host directory, say) would otherwise be reachable from the container as
    /proc/self/fd/N until execve, for instance as ``process.cwd`` (the CVE-2024-21626 class);
    close-on-exec comes too late for that."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            libc.close_range(low, fd - 1)
        low = fd + 1
    libc.close_range(low)


def join_namespace(spec: dict[str, Any], kind: str, fd: int) -> None:
    """setns into a namespace given by path, telling the kernel which type it must be: with
    nstype 0 any namespace file is accepted, and a pid namespace's file given as "network"
    would leave the container in the host's network namespace."""
    try:
        libc.setns(fd, NS_FLAGS[kind])
    except OSError as err:
        namespaces = (spec.get("linux") or {}).get("namespaces") or []
        i, path = next((i, ns.get("path")) for i, ns in enumerate(namespaces)
                       if ns.get("type") == kind)
        why = f"it is not a {kind} namespace" if err.errno == 22 else err.strerror
        raise InvalidArgument(f"linux.namespaces[{i}].path: cannot join {path!r}: {why}",
                              field=f"linux.namespaces[{i}].path") from err


def fail(chan: Channel, err: BaseException) -> NoReturn:
    msg: str
    if isinstance(err, SiloError):
        msg = err.describe()
    elif isinstance(err, OSError):
        msg = str(err.strerror) if not err.filename else f"{err.filename}: {err.strerror}"
        if err.args and isinstance(err.args[-1], str) and ":" in err.args[-1]:
            msg = err.args[-1]
    else:
        msg = f"{type(err).__name__}: {err}"
    try:
        if chan.fd >= 0:
            chan.send("error", msg)
        else:  # after "ready" (a startContainer hook): the container's stderr is all we have
            os.write(2, f"silo-runtime: {msg}\n".encode())
    except OSError:
        pass
    os._exit(1)


class InitArgs:
    """What stage 1 and 2 need; built by the runtime before fork."""

    __slots__ = (
        "bundle",
        "cgroup",
        "console_fd",
        "direct",
        "fifo_fd",
        "has_runtime_hooks",
        "join_fds",
        "mounts",
        "new_ns",
        "rootfs",
        "spec",
        "state",
    )

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {}
        self.bundle = ""
        self.rootfs = ""
        self.mounts: list[Any] = []
        self.new_ns = 0
        self.join_fds: list[tuple[str, int]] = []
        self.fifo_fd = -1
        self.console_fd = -1
        self.has_runtime_hooks = False
        self.state: dict[str, Any] = {}
        self.cgroup: Cgroup | None = None
        self.direct = False  # forked by the runtime inside the pid namespace (no stage 2)


def create_child(a: InitArgs, chan: Channel) -> NoReturn:
    """Stage 1 (runs in the child of ``silo-runtime create``)."""
    seen: set[str] = set()
    try:
        # Until execve this process is the host's interpreter: keep the container from
        # opening its /proc/PID/exe, as for exec (see the design notes).
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        close_inherited([chan.fd, a.fifo_fd, a.console_fd, *(fd for _, fd in a.join_fds)])
        os.setsid()
        if a.cgroup is not None:
            a.cgroup.join_self()  # single-threaded here: see Cgroup.join_self
        preload(bool((a.spec.get("linux") or {}).get("seccomp")))
        for kind, fd in a.join_fds:
            join_namespace(a.spec, kind, fd)
            os.close(fd)
        if a.new_ns & libc.CLONE_NEWUSER:
            libc.unshare(libc.CLONE_NEWUSER)
            chan.send("userns")
            expect(chan, "go", seen)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        # In its cgroup already: the cgroup namespace's root is the cgroup we are in.
        rest = a.new_ns & ~libc.CLONE_NEWUSER
        if rest:
            libc.unshare(rest)
        if a.direct:
            pass  # the runtime entered the pid namespace and forked us: we are the init
        elif a.new_ns & libc.CLONE_NEWPID or any(k == "pid" for k, _ in a.join_fds):
            pid = os.fork()
            if pid:
                chan.send("pid", str(pid))
                os._exit(0)
        else:
            chan.send("pid", str(os.getpid()))
        container_init(a, chan, seen)
    except BaseException as err:
        fail(chan, err)


def container_init(a: InitArgs, chan: Channel, seen: set[str]) -> NoReturn:
    """Stage 2: pid 1 of the container until execve."""
    from silo.kernel import proc, rootfs
    from silo.kernel.mounts import secure_join

    spec = a.spec
    linux = spec.get("linux") or {}
    process = spec["process"]
    if a.has_runtime_hooks:
        chan.send("hooks")  # the runtime runs prestart and createRuntime hooks now
        expect(chan, "hooks-done", seen)

    rootfs.prepare(a.rootfs, a.mounts, a.bundle,
                   propagation=propagation_flags(linux.get("rootfsPropagation", "")),
                   devices=linux.get("devices") or [],
                   in_userns=bool(a.new_ns & libc.CLONE_NEWUSER))
    hooks = spec.get("hooks") or {}
    if hooks.get("createContainer") or hooks.get("startContainer"):
        # Now, from the host: after pivot_root an import would run the image's code with the
        # runtime's privileges (see the design notes).
        from silo.compute import hooks as hk
    if hooks.get("createContainer"):
        hk.run("createContainer", hooks["createContainer"], a.state)
    cwd = process.get("cwd", "/")
    cwd_host = secure_join(a.rootfs, cwd)
    if not os.path.isdir(cwd_host):
        try:
            os.makedirs(cwd_host, 0o755)
        except OSError as err:
            raise InvalidArgument(f"process.cwd: cannot create {cwd!r}: {err.strerror}",
                                  field="process.cwd") from err
    rootfs.pivot(a.rootfs)
    if linux.get("sysctl"):
        rootfs.write_sysctls(linux["sysctl"])
    if spec.get("hostname"):
        libc.sethostname(spec["hostname"])
    if spec.get("domainname"):
        libc.setdomainname(spec["domainname"])
    rootfs.readonly_paths(linux.get("readonlyPaths") or [])
    rootfs.mask_paths(linux.get("maskedPaths") or [])
    if (spec.get("root") or {}).get("readonly"):
        rootfs.readonly_root()
    prepare_process(process, a.console_fd, chan)
    # "ready": the runtime records the container as created and exits; we wait for start.
    chan.send("ready")
    chan.close()
    while True:
        try:
            if os.read(a.fifo_fd, 1):
                break
        except InterruptedError:
            continue
        os._exit(1)  # EOF: the fifo was removed without start (delete of a created container)
    os.close(a.fifo_fd)
    if hooks.get("startContainer"):
        state = dict(a.state, status="running", pid=os.getpid())
        hk.run("startContainer", hooks["startContainer"], state)
    exec_process(process, linux.get("seccomp"), resolved=proc.lookup_executable(
        process["args"][0], env_path(process), process.get("cwd", "/")))


def expect(chan: Channel, tag: str, seen: set[str]) -> None:
    """Wait for ``tag`` from the runtime, remembering other tags that arrive first."""
    while tag not in seen:
        got, _ = chan.recv()
        if got == "eof":
            os._exit(1)
        seen.add(got)


def propagation_flags(name: str) -> int:
    from silo.kernel.mounts import PROPAGATION

    return PROPAGATION.get(name, 0)


def env_path(process: dict[str, Any]) -> str | None:
    for e in process.get("env") or []:
        if e.startswith("PATH="):
            return str(e[5:])
    return None


def prepare_process(process: dict[str, Any], console_fd: int, chan: Channel) -> None:
    """Steps that may fail with a clear error before "ready": cwd, rlimits, executable, tty."""
    from silo.errors import InvalidArgument, NotFound
    from silo.kernel import console, proc

    cwd = process.get("cwd", "/")
    try:
        os.chdir(cwd)
    except OSError as err:
        raise InvalidArgument(f"process.cwd: cannot enter {cwd!r}: {err.strerror}",
                              field="process.cwd") from err
    try:
        os.getcwd()  # ENOENT when the directory is not below our root ("(unreachable)/...")
    except OSError:
        raise InvalidArgument(f"process.cwd: {cwd!r} is outside the container",
                              field="process.cwd") from None
    proc.apply_rlimits(process.get("rlimits"))
    if "oomScoreAdj" in process:
        try:
            proc.set_oom_score_adj(process["oomScoreAdj"])
        except OSError as err:
            raise InvalidArgument(
                f"process.oomScoreAdj: cannot set {process['oomScoreAdj']}: {err.strerror}",
                field="process.oomScoreAdj") from err
    name = process["args"][0]
    resolved = proc.lookup_executable(name, env_path(process), cwd)
    if resolved is None:
        where = "" if "/" in name else " in $PATH"
        raise NotFound(f'exec: "{name}": executable file not found{where}',
                       field="process.args")
    refuse_runtime_binary(resolved, name)
    if process.get("terminal"):
        master, slave = console.open_pty()
        size = process.get("consoleSize") or {}
        if size.get("height") or size.get("width"):
            console.set_size(master, size.get("height", 0), size.get("width", 0))
        console.send_fd(console_fd, master, os.ttyname(slave))
        os.close(master)
        os.close(console_fd)
        console.make_controlling(slave)
    # No host file descriptor may reach the container process.
    libc.close_range(3, 0xFFFFFFFF, libc.CLOSE_RANGE_CLOEXEC)


def exec_process(process: dict[str, Any], seccomp: dict[str, Any] | None,
                 resolved: str | None) -> NoReturn:
    """Become the container's process: user, capabilities, no_new_privs, seccomp, execve."""
    from silo.kernel import capabilities

    try:
        caps = process.get("capabilities")
        user = process.get("user") or {}
        nnp = bool(process.get("noNewPrivileges"))
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the
        # capabilities go.
        if seccomp and not nnp:
            load_seccomp(seccomp)
        capabilities.drop_bounding(caps)
        uid, gid = user.get("uid", 0), user.get("gid", 0)
        if uid != 0:
            capabilities.prepare_for_user_change()
        os.setgroups(list(user.get("additionalGids") or []))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if "umask" in user:
            os.umask(user["umask"])
        capabilities.apply(caps)
        if nnp:
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp and nnp:
            load_seccomp(seccomp)
        env = dict(e.split("=", 1) for e in process.get("env") or [])
        args = process["args"]
        target = resolved or args[0]
        refuse_runtime_binary(target, args[0])  # again: the image may have changed since
        os.execve(target, args, env)
    except OSError as err:
        os.write(2, f"silo-runtime: exec {process['args'][0]!r}: {err.strerror}\n".encode())
        os._exit(127 if err.errno == 2 else 126)
    except BaseException as err:
        os.write(2, f"silo-runtime: starting the container process: {err}\n".encode())
        os._exit(126)


def refuse_runtime_binary(path: str, name: str) -> None:
    """Refuse to execute the host's interpreter, that this process is running. Reached as
    /proc/self/exe (or any path to the same file), it would become a container process whose
    /proc/PID/exe the container can open: a handle on the binary the next silo-runtime call
    runs as root on the host (the CVE-2019-5736 class)."""
    try:
        target, own = os.stat(path), os.stat("/proc/self/exe")
    except OSError:
        return  # execve reports what is wrong with it
    if (target.st_dev, target.st_ino) == (own.st_dev, own.st_ino):
        raise InvalidArgument(f"process.args[0]: {name!r} is the runtime's own interpreter, a "
                              "host binary that must not run in the container",
                              field="process.args")


def load_seccomp(profile: dict[str, Any]) -> None:
    from silo.kernel import seccomp

    seccomp.load(profile)


class ExecArgs:
    __slots__ = ("cgroup", "console_fd", "join_fds", "process", "seccomp")

    def __init__(self) -> None:
        self.cgroup: Cgroup | None = None
        self.process: dict[str, Any] = {}
        self.seccomp: dict[str, Any] | None = None
        self.join_fds: list[tuple[str, int]] = []
        self.console_fd = -1


def exec_child(a: ExecArgs, chan: Channel) -> NoReturn:
    """Stage 1 of ``exec``: join the cgroup and namespaces, fork into the pid namespace."""
    from silo.kernel import proc

    try:
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        close_inherited([chan.fd, a.console_fd, *(fd for _, fd in a.join_fds)])
        if a.cgroup is not None:
            a.cgroup.join_self()  # single-threaded here: see Cgroup.join_self
        preload(bool(a.seccomp))
        for _kind, fd in a.join_fds:
            libc.setns(fd, 0)
            os.close(fd)
        if any(k == "pid" for k, _ in a.join_fds):
            pid = os.fork()
            if pid:
                chan.send("pid", str(pid))
                os._exit(0)
        else:
            chan.send("pid", str(os.getpid()))
        prepare_process(a.process, a.console_fd, chan)
        process = a.process
        resolved = proc.lookup_executable(process["args"][0], env_path(process),
                                          process.get("cwd", "/"))
        chan.send("ready")
        # The channel is close-on-exec: the runtime sees EOF once execve succeeded.
        exec_process(process, a.seccomp, resolved)
    except BaseException as err:
        fail(chan, err)
