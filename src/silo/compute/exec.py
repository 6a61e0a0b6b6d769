"""Run another process in a running container (``exec``).

The new process joins every namespace in which the container's init differs from the
runtime, the container's cgroup, and takes the process document's user, capabilities and
the container's seccomp filter, exactly as the container's own process did.
"""

from __future__ import annotations

import os

from silo.compute import init, lifecycle
from silo.compute.channel import Channel
from silo.compute.create import close_all, kill_started
from silo.errors import InvalidArgument, SiloError
from silo.schema import oci

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from silo.compute.container import Container


def process_from_args(c: Container, args: list[str], *, cwd: str = "", env: list[str] | None = None,
                      tty: bool = False, user: str = "", caps: list[str] | None = None,
                      no_new_privs: bool | None = None) -> dict[str, Any]:
    """A process document built like runc's: the container's process with overrides."""
    base = dict(c.config.get("process") or {})
    p: dict[str, Any] = {k: base[k] for k in ("env", "user", "capabilities", "rlimits",
                                               "noNewPrivileges", "cwd", "apparmorProfile",
                                               "oomScoreAdj") if k in base}
    p["args"] = list(args)
    p["terminal"] = tty
    if cwd:
        p["cwd"] = cwd
    if env:
        merged = {e.split("=", 1)[0]: e for e in p.get("env") or []}
        for e in env:
            merged[e.split("=", 1)[0]] = e
        p["env"] = list(merged.values())
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise InvalidArgument(f"--user: {user!r} is not UID[:GID]", field="user")
        p["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if caps:
        c2 = dict(p.get("capabilities") or {})
        for k in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            c2[k] = sorted(set(c2.get(k) or []) | set(caps))
        p["capabilities"] = c2
    if no_new_privs is not None:
        p["noNewPrivileges"] = no_new_privs
    return p


def exec_process(c: Container, process: dict[str, Any], *, console_socket: str = "",
                 pid_file: str = "", detach: bool = False) -> int:
    """Start ``process`` in the container; returns its pid (detach) or its exit code."""
    from silo.kernel import capabilities, proc

    oci.validate_process(process)
    capabilities.validate(process.get("capabilities"))
    proc.validate_rlimits(process.get("rlimits"))
    lifecycle.require("exec", c.status(), c.id)
    if process.get("terminal") and not console_socket and detach:
        raise InvalidArgument("process.terminal: a detached terminal needs --console-socket",
                              field="process.terminal")
    seccomp = (c.config.get("linux") or {}).get("seccomp")
    a = init.ExecArgs()
    a.process = process
    a.seccomp = seccomp
    a.cgroup = c.cgroup()
    fds: list[int] = []
    stage1 = 0
    pid = 0
    own_tty = -1
    try:
        for kind, nsfile in init.PROC_NS:
            target = f"/proc/{c.pid}/ns/{nsfile}"
            try:
                if os.stat(target).st_ino == os.stat(f"/proc/self/ns/{nsfile}").st_ino:
                    continue
            except FileNotFoundError:
                continue
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
            fds.append(fd)
            a.join_fds.append((kind, fd))
        if process.get("terminal"):
            from silo.kernel import console

            if console_socket:
                a.console_fd = console.connect(console_socket)
            else:
                # Foreground exec with a tty: the runtime holds the master and relays stdio.
                import _socket

                mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
                own_tty = mine.detach()
                a.console_fd = theirs.detach()
                if os.isatty(0):  # the process's terminal starts with the size of ours
                    height, width = console.get_size(0)
                    if height and width:
                        process = a.process = dict(process, consoleSize={
                            "height": height, "width": width})
            fds.append(a.console_fd)
        if not detach:
            from silo.kernel import libc

            libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        stage1, parent = Channel.spawn(init.exec_child, a)
        fds.append(parent.fd)
        if a.console_fd >= 0:
            os.close(a.console_fd)
            fds.remove(a.console_fd)
        while True:
            tag, payload = parent.recv()
            if tag == "pid":
                pid = int(payload)
            elif tag == "ready":
                continue
            elif tag == "error":
                raise exec_error(c.id, payload)
            else:  # eof: execve succeeded (the channel is close-on-exec)
                break
        os.waitpid(stage1, 0)
        stage1 = 0
        if pid_file:
            from silo.compute.container import write_atomic

            write_atomic(os.path.abspath(pid_file), str(pid))
        if detach:
            return pid
        master = -1
        if own_tty >= 0:
            from silo.kernel import console

            master, _name = console.recv_fd(own_tty)
        return wait_foreground(pid, master)
    except BaseException:
        kill_started(pid, stage1)
        raise
    finally:
        close_all(fds)
        if own_tty >= 0:
            os.close(own_tty)


def exec_error(cid: str, message: str) -> SiloError:
    from silo.compute.create import container_error

    err = container_error(cid, message)
    err.op = "compute::exec"
    return err


def wait_foreground(pid: int, master: int) -> int:
    """Wait for ``pid`` (our child through the subreaper), forwarding signals and a tty."""
    from silo.compute import relay

    return relay.wait(pid, master)


