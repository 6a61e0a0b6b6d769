"""silo.kernel.seccomp.load against the running kernel.

Each test forks a child that loads a filter into itself, exercises it and reports through a
pipe; the test process never carries a filter. Runs as root: without no_new_privs, loading a
filter needs CAP_SYS_ADMIN, which is the path the container init takes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import importlib.util
import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from silo import errors
from silo.kernel import libc, seccomp
from tests.kernel import forking


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if not ctypes.util.find_library("seccomp"):
        return "libseccomp.so.2 is not installed"
    return ""


pytestmark = [pytest.mark.kernel, pytest.mark.skipif(bool(_missing()), reason=_missing())]

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"
PER_LINUX32, PER_LINUX32_3GB, QUERY = 0x8, 0x20008, 0xFFFFFFFF


def run_in_child(body: Callable[[], dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    """The child's wait status and its JSON report (None when it died before reporting)."""
    status, data = forking.run_in_child(body)
    return status, json.loads(data) if data else None


def _errno_of(call: Callable[[], object]) -> int:
    try:
        call()
    except OSError as err:
        return err.errno or -1
    return 0


def _personality(persona: int) -> int:
    fn = libc.libc().personality
    fn.argtypes = [ctypes.c_ulong]
    if fn(persona) == -1:
        return ctypes.get_errno()
    return 0


def test_errno_rule_denies_mkdir_and_nothing_else(tmp_path: Path) -> None:
    os.mkdir(tmp_path / "control")  # no filter here

    def body() -> dict[str, Any]:
        seccomp.load({"defaultAction": ALLOW, "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": ERRNO, "errnoRet": errno.EPERM}]})
        mkdir = _errno_of(lambda: os.mkdir(tmp_path / "denied"))
        (tmp_path / "allowed").write_text("written after the filter")
        return {"mkdir": mkdir, "pid": os.getpid(),
                "nnp": libc.prctl(libc.PR_GET_NO_NEW_PRIVS)}

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report is not None
    assert report["mkdir"] == errno.EPERM
    assert report["pid"] > 0
    assert report["nnp"] == 0  # the filter did not set no_new_privs behind our back
    assert not (tmp_path / "denied").exists()
    assert (tmp_path / "allowed").read_text() == "written after the filter"


@pytest.mark.parametrize("errno_ret, expected", [(None, errno.EPERM),
                                                  (errno.EROFS, errno.EROFS)])
def test_errno_ret_defaults_to_eperm(tmp_path: Path, errno_ret: int | None,
                                     expected: int) -> None:
    rule: dict[str, Any] = {"names": ["rmdir", "unlinkat"], "action": ERRNO}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    (tmp_path / "d").mkdir()

    def body() -> dict[str, Any]:
        seccomp.load({"defaultAction": ALLOW, "syscalls": [rule]})
        return {"rmdir": _errno_of(lambda: os.rmdir(tmp_path / "d"))}

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {"rmdir": expected}
    assert (tmp_path / "d").is_dir()


def test_argument_filter_blocks_only_the_matching_value() -> None:
    def body() -> dict[str, Any]:
        seccomp.load({"defaultAction": ALLOW, "syscalls": [
            {"names": ["personality"], "action": ERRNO, "errnoRet": errno.EACCES,
             "args": [{"index": 0, "value": PER_LINUX32, "op": "SCMP_CMP_EQ"}]}]})
        return {"query": _personality(QUERY), "linux32": _personality(PER_LINUX32),
                "linux32_3gb": _personality(PER_LINUX32_3GB)}

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {"query": 0, "linux32": errno.EACCES, "linux32_3gb": 0}


def test_args_on_different_indexes_are_anded() -> None:
    nobody = 4242

    def body() -> dict[str, Any]:
        seccomp.load({"defaultAction": ALLOW, "syscalls": [
            {"names": ["getpriority"], "action": ERRNO, "errnoRet": errno.ECANCELED,
             "args": [{"index": 0, "value": os.PRIO_PROCESS, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": nobody, "op": "SCMP_CMP_EQ"}]}]})
        return {"both": _errno_of(lambda: os.getpriority(os.PRIO_PROCESS, nobody)),
                "first": _errno_of(lambda: os.getpriority(os.PRIO_PROCESS, 0)),
                "second": _errno_of(lambda: os.getpriority(os.PRIO_PGRP, nobody))}

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report is not None
    assert report["both"] == errno.ECANCELED
    assert report["first"] == 0
    assert report["second"] != errno.ECANCELED  # ESRCH, or 0 if such a group exists


def test_a_repeated_index_makes_one_rule_per_condition() -> None:
    # ANDed, "arg0 == 8 and arg0 == 0x20008" would never match; runc ORs them instead.
    def body() -> dict[str, Any]:
        seccomp.load({"defaultAction": ALLOW, "syscalls": [
            {"names": ["personality"], "action": ERRNO,
             "args": [{"index": 0, "value": PER_LINUX32, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": PER_LINUX32_3GB, "op": "SCMP_CMP_EQ"}]}]})
        return {"linux32": _personality(PER_LINUX32),
                "linux32_3gb": _personality(PER_LINUX32_3GB), "query": _personality(QUERY)}

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {"linux32": errno.EPERM, "linux32_3gb": errno.EPERM, "query": 0}


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_KILL_PROCESS"])
def test_kill_action_kills_with_sigsys(action: str) -> None:
    def body() -> dict[str, Any]:
        seccomp.load({"defaultAction": ALLOW,
                      "syscalls": [{"names": ["getppid"], "action": action}]})
        os.getppid()
        return {"survived": True}

    status, report = run_in_child(body)
    assert report is None
    assert os.WIFSIGNALED(status), os.waitstatus_to_exitcode(status)
    assert os.WTERMSIG(status) == signal.SIGSYS


def _docker_profile() -> dict[str, Any]:
    # The fixture lives with the validation tests; load that file by path (tests/ is no package).
    path = Path(__file__).parent.parent / "unit" / "test_seccomp.py"
    spec = importlib.util.spec_from_file_location("silo_unit_seccomp_fixture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    profile: dict[str, Any] = module.docker_default_profile()
    return profile


def test_docker_default_profile_loads_and_enforces(tmp_path: Path) -> None:
    profile = _docker_profile()
    profile["defaultErrnoRet"] = errno.ENOTSUP  # tell the default apart from a rule's EPERM

    def body() -> dict[str, Any]:
        seccomp.load(profile)
        os.mkdir(tmp_path / "allowed")
        return {
            # unshare is not on the list: the default action, with defaultErrnoRet
            "unshare": _errno_of(lambda: libc.unshare(libc.CLONE_NEWUTS)),
            # clone3 has its own rule: ENOSYS, so that glibc falls back to clone
            "clone3": _errno_of(lambda: _raw_syscall("clone3")),
            "personality_allowed": _personality(PER_LINUX32),
            "personality_other": _personality(0x0400000),  # ADDR_NO_RANDOMIZE: not listed
            "vsock": _errno_of(lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)),
        }

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {"unshare": errno.ENOTSUP, "clone3": errno.ENOSYS,
                      "personality_allowed": 0, "personality_other": errno.ENOTSUP,
                      "vsock": errno.ENOTSUP}
    assert (tmp_path / "allowed").is_dir()


def _raw_syscall(name: str) -> None:
    nr = {"x86_64": {"clone3": 435}, "aarch64": {"clone3": 435}}[os.uname().machine][name]
    # clone3(NULL, 0): EINVAL without a filter, never a new process
    if libc.libc().syscall(nr, None, 0) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def test_flags_are_accepted_by_the_kernel() -> None:
    supported = seccomp.features()["supportedFlags"]

    def body() -> dict[str, Any]:
        seccomp.load({"defaultAction": ALLOW, "flags": supported, "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_LOG"}]})
        return {"loaded": True}

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {"loaded": True}


def test_load_without_cap_sys_admin_or_nnp_is_refused() -> None:
    cap_sys_admin = 21

    def body() -> dict[str, Any]:
        eff, prm, inh = libc.capget()
        libc.capset(eff & ~(1 << cap_sys_admin), prm, inh)
        try:
            seccomp.load({"defaultAction": ALLOW})
        except errors.Internal as err:
            refused = err.__cause__.errno if isinstance(err.__cause__, OSError) else -1
        else:
            refused = 0
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load({"defaultAction": ALLOW})  # with no_new_privs, no privilege is needed
        return {"refused": refused}

    status, report = run_in_child(body)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {"refused": errno.EACCES}
