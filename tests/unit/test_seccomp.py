"""silo.kernel.seccomp without root: validation, the translation into libseccomp rules (read
back as libseccomp's pseudo filter code, nothing is loaded), the features report, and the
import-time budget of the module."""

from __future__ import annotations

import copy
import ctypes.util
import subprocess
import sys
from typing import Any

import pytest

from silo import errors
from silo.kernel import libc, seccomp

pytestmark = pytest.mark.unit

# The allow-everyone list of Docker's default profile (moby profiles/seccomp/default.json),
# names of every architecture together, as the profile has them.
DOCKER_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset
landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr llistxattr
_llseek lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier
memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall
munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl
pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64
recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr
shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid
waitpid write writev
""".split()  # noqa: SIM905 (a list literal of 350 names would not fit the page)

CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
AF_VSOCK = 40
ENOSYS = 38


def docker_default_profile() -> dict[str, Any]:
    """A subset of Docker's default profile as the engine puts it into config.json for a
    container with the default capabilities on x86_64 (the shape podman produces too)."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": list(DOCKER_ALLOWED), "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]},
            *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}
              for persona in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
            {"names": ["arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {"names": ["chroot"], "action": "SCMP_ACT_ALLOW"},  # CAP_SYS_CHROOT is default
        ],
    }


def _missing_libseccomp() -> str:
    return "" if ctypes.util.find_library("seccomp") else "libseccomp.so.2 is not installed"


needs_libseccomp = pytest.mark.skipif(bool(_missing_libseccomp()), reason=_missing_libseccomp())


def test_docker_fixture_is_a_few_hundred_syscalls() -> None:
    assert len(DOCKER_ALLOWED) == len(set(DOCKER_ALLOWED)) > 300


@pytest.mark.parametrize("profile", [
    None,
    {"defaultAction": "SCMP_ACT_ALLOW"},
    docker_default_profile(),
    {"defaultAction": "SCMP_ACT_KILL_PROCESS", "flags": list(seccomp.FLAGS),
     "architectures": list(seccomp.ARCHES),
     "syscalls": [{"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"}]},
    {"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 0, "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_TRACE", "errnoRet": 65535},
        {"names": ["read"], "action": "SCMP_ACT_LOG", "args": []},
        {"names": ["write"], "action": "SCMP_ACT_TRAP",
         "args": [{"index": 5, "value": 2**64 - 1, "op": "SCMP_CMP_GT"}]}]},
])
def test_validate_accepts(profile: Any) -> None:
    seccomp.validate(profile)


def _edit(path: str, value: Any) -> dict[str, Any]:
    """Docker's profile with one field replaced; ``path`` is dotted with [i] indexes."""
    profile = docker_default_profile()
    parts = path.replace("[", ".").replace("]", "").split(".")
    node: Any = profile
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return profile


_DELETE = object()
S = "linux.seccomp"


@pytest.mark.parametrize("path, value, field, reason", [
    ("defaultAction", "SCMP_ACT_FOO", f"{S}.defaultAction", 'unknown action "SCMP_ACT_FOO"'),
    ("defaultAction", _DELETE, f"{S}.defaultAction", "is required"),
    ("defaultAction", 5, f"{S}.defaultAction", "unknown action a number"),
    ("defaultErrnoRet", -1, f"{S}.defaultErrnoRet", "must be an errno number"),
    ("defaultErrnoRet", 65536, f"{S}.defaultErrnoRet", "must be an errno number"),
    ("defaultErrnoRet", True, f"{S}.defaultErrnoRet", "must be an errno number"),
    ("defaultErrnoRet", "1", f"{S}.defaultErrnoRet", "must be an errno number"),
    ("architectures[1]", "SCMP_ARCH_Z80", f"{S}.architectures[1]",
     'unknown architecture "SCMP_ARCH_Z80"'),
    ("architectures", "SCMP_ARCH_X86", f"{S}.architectures", "must be a list, not a string"),
    ("architectures[0]", None, f"{S}.architectures[0]", "must be a string, not null"),
    ("flags", ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_FOO"], f"{S}.flags[1]",
     'unknown flag "SECCOMP_FILTER_FLAG_FOO"'),
    ("listenerMetadata", 3, f"{S}.listenerMetadata", "must be a string"),
    ("archMap", [], f"{S}.archMap", "unknown field"),
    ("syscalls", {}, f"{S}.syscalls", "must be a list, not an object"),
    ("syscalls[3]", "chroot", f"{S}.syscalls[3]", "must be an object, not a string"),
    ("syscalls[3].action", "SCMP_ACT_FOO", f"{S}.syscalls[3].action",
     'unknown action "SCMP_ACT_FOO"'),
    ("syscalls[3].action", _DELETE, f"{S}.syscalls[3].action", "is required"),
    ("syscalls[0].errnoRet", 1, f"{S}.syscalls[0].errnoRet",
     "SCMP_ACT_ALLOW takes no errno"),
    ("syscalls[0].names", [], f"{S}.syscalls[0].names", "must be a non-empty list"),
    ("syscalls[0].names", "read", f"{S}.syscalls[0].names", "must be a non-empty list"),
    ("syscalls[0].names[7]", "", f"{S}.syscalls[0].names[7]", "must be a non-empty string"),
    ("syscalls[0].names[7]", 3, f"{S}.syscalls[0].names[7]", "must be a non-empty string"),
    ("syscalls[0].name", ["read"], f"{S}.syscalls[0].name", "unknown field"),
    ("syscalls[1].args", {}, f"{S}.syscalls[1].args", "must be a list, not an object"),
    ("syscalls[1].args[0]", 40, f"{S}.syscalls[1].args[0]", "must be an object, not a number"),
    ("syscalls[1].args[0].op", "SCMP_CMP_FOO", f"{S}.syscalls[1].args[0].op",
     'unknown operator "SCMP_CMP_FOO"'),
    ("syscalls[1].args[0].op", _DELETE, f"{S}.syscalls[1].args[0].op", "unknown operator null"),
    ("syscalls[1].args[0].index", 6, f"{S}.syscalls[1].args[0].index",
     "must be an argument index from 0 to 5, not 6"),
    ("syscalls[1].args[0].index", -1, f"{S}.syscalls[1].args[0].index", "must be an argument"),
    ("syscalls[1].args[0].index", _DELETE, f"{S}.syscalls[1].args[0].index", "must be an arg"),
    ("syscalls[1].args[0].index", "0", f"{S}.syscalls[1].args[0].index", "must be an argument"),
    ("syscalls[1].args[0].value", 2**64, f"{S}.syscalls[1].args[0].value",
     "must be an unsigned 64-bit integer"),
    ("syscalls[1].args[0].value", -1, f"{S}.syscalls[1].args[0].value", "must be an unsigned"),
    ("syscalls[1].args[0].value", _DELETE, f"{S}.syscalls[1].args[0].value", "must be an uns"),
    ("syscalls[1].args[0].value", 4.0, f"{S}.syscalls[1].args[0].value", "must be an unsigned"),
    ("syscalls[1].args[0].valueTwo", "0", f"{S}.syscalls[1].args[0].valueTwo", "must be an un"),
    ("syscalls[1].args[0].mask", 1, f"{S}.syscalls[1].args[0].mask", "unknown field"),
])
def test_validate_names_the_field(path: str, value: Any, field: str, reason: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        seccomp.validate(_edit(path, value))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: {reason}")


def test_validate_rejects_a_profile_that_is_not_an_object() -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        seccomp.validate([], where="Linux.Seccomp")
    assert str(info.value) == "Linux.Seccomp: must be an object, not a list"


@pytest.mark.parametrize("profile, field", [
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, f"{S}.defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, f"{S}.syscalls[0].action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"},
     f"{S}.listenerPath"),
])
def test_notify_is_not_supported(profile: Any, field: str) -> None:
    with pytest.raises(errors.NotSupported) as info:
        seccomp.validate(profile)
    assert info.value.field == field


def test_compile_follows_runc() -> None:
    default, arches, attrs, rules = seccomp._compile({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            # the same action as the default: skipped, libseccomp would refuse it
            {"names": ["reboot"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_GT"},
                {"index": 1, "value": 0xF0, "valueTwo": 0x10, "op": "SCMP_CMP_MASKED_EQ"}]},
            # index 0 twice: one rule per condition
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRACE"},
        ],
    }, S)
    allow, eq, gt, masked = 0x7FFF0000, 4, 6, 7
    assert default == 0x00050001  # ERRNO(EPERM)
    assert arches == [(f"{S}.architectures[0]", 0x40000003)]
    assert attrs == [(f"{S}.flags[0]", seccomp._ATTR_CTL_LOG)]
    assert rules == [
        (f"{S}.syscalls[1].names[0]", "mkdir", 0x00050026, []),
        (f"{S}.syscalls[1].names[1]", "rmdir", 0x00050026, []),
        (f"{S}.syscalls[2].names[0]", "kill", allow, [(0, gt, 1, 0), (1, masked, 0xF0, 0x10)]),
        (f"{S}.syscalls[3].names[0]", "personality", allow, [(0, eq, 8, 0)]),
        (f"{S}.syscalls[3].names[0]", "personality", allow, [(0, eq, 0, 0)]),
        (f"{S}.syscalls[4].names[0]", "ptrace", 0x7FF00001, []),  # TRACE(EPERM), as runc
    ]


def test_compile_validates_first() -> None:
    with pytest.raises(errors.InvalidArgument):
        seccomp._compile({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["X"]}, S)


@needs_libseccomp
def test_arch_tokens_match_libseccomp() -> None:
    lib = libc.libseccomp()
    known = 0
    for name, token in seccomp.ARCHES.items():
        resolved = lib.seccomp_arch_resolve_name(name[len("SCMP_ARCH_"):].lower().encode())
        if resolved:  # 0: an architecture newer than this libseccomp
            assert resolved == token, name
            known += 1
    assert known >= 19


@needs_libseccomp
def test_render_of_the_docker_profile() -> None:
    pfc = seccomp.render(docker_default_profile())
    assert "# filter for arch x86_64" in pfc
    assert "# filter for arch x86 " in pfc
    assert "# filter for arch x32" in pfc
    assert 'filter for syscall "clone3"' in pfc and "action ERRNO(38);" in pfc
    assert pfc.count("action ERRNO(1);") == 3  # the default, once per architecture
    assert 'filter for syscall "mkdirat"' in pfc
    # x86_64 has no _llseek (libseccomp resolves it to a pseudo number there), x86 has
    assert 'filter for syscall "_llseek" (140)' in pfc
    # an argument comparison of the clone rule: arg0 & mask == 0
    assert f"& 0x{CLONE_NAMESPACE_FLAGS:08x}" in pfc


@needs_libseccomp
def test_render_skips_names_no_architecture_knows() -> None:
    pfc = seccomp.render({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_KILL_PROCESS"}]})
    assert "no_such_syscall" not in pfc
    assert 'filter for syscall "mkdir"' in pfc
    assert "action KILL_PROCESS;" in pfc


@needs_libseccomp
def test_render_ands_args_of_one_rule_and_splits_a_repeated_index() -> None:
    anded = seccomp.render({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 125, "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 4242, "op": "SCMP_CMP_EQ"}]}]})
    assert "if ($a0.lo32 == 0)" in anded and "if ($a1.lo32 == 4242)" in anded
    split = seccomp.render({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 0x20008, "op": "SCMP_CMP_EQ"}]}]})
    assert "if ($a0.lo32 == 8)" in split and "if ($a0.lo32 == 131080)" in split


@needs_libseccomp
def test_render_names_the_architecture_libseccomp_lacks() -> None:
    lib = libc.libseccomp()
    if lib.seccomp_arch_resolve_name(b"loongarch64"):
        pytest.skip("this libseccomp knows loongarch64")
    with pytest.raises(errors.NotSupported) as info:
        seccomp.render({"defaultAction": "SCMP_ACT_ALLOW",
                        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"]})
    assert info.value.field == f"{S}.architectures[1]"
    assert isinstance(info.value.__cause__, OSError)


@needs_libseccomp
def test_features_in_runc_shape() -> None:
    features = seccomp.features()
    assert features["enabled"] is True
    assert set(features) == {"enabled", "actions", "operators", "archs", "knownFlags",
                             "supportedFlags"}
    assert "SCMP_ACT_ERRNO" in features["actions"]
    assert "SCMP_ACT_NOTIFY" not in features["actions"]
    assert set(features["actions"]) <= set(seccomp.ACTIONS)
    assert features["operators"] == seccomp.OPERATORS
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"} <= set(features["archs"])
    assert features["knownFlags"] == ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    assert "SECCOMP_FILTER_FLAG_TSYNC" in features["supportedFlags"]
    assert set(features["supportedFlags"]) <= set(features["knownFlags"])


def test_features_without_libseccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise OSError(2, "libseccomp.so.2: not found")

    monkeypatch.setattr(libc, "libseccomp", missing)
    assert seccomp.features() == {"enabled": False}


def test_load_of_none_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden() -> None:
        raise AssertionError("libseccomp loaded for a missing profile")

    monkeypatch.setattr(libc, "libseccomp", forbidden)
    seccomp.load(None)
    assert seccomp.render(None) == ""


# Run in a fresh interpreter: what importing (and validating) pulls in is the point.
LEAN_CHECK = """
import sys
before = set(sys.modules)
import silo.kernel.capabilities, silo.kernel.seccomp
profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
           "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}
silo.kernel.seccomp.validate(profile)
silo.kernel.capabilities.validate({"bounding": ["CAP_KILL"]})
print(" ".join(sorted(set(sys.modules) - before)))
"""
HEAVY = {"typing", "json", "re", "dataclasses", "enum", "pathlib", "subprocess", "logging",
         "ctypes", "argparse", "socket", "signal"}


def test_import_and_validate_stay_lean() -> None:
    out = subprocess.run([sys.executable, "-I", "-c", LEAN_CHECK], check=True,
                         capture_output=True, text=True).stdout.split()
    assert "silo.kernel.seccomp" in out
    assert not HEAVY & set(out), HEAVY & set(out)


def test_profile_fixture_is_not_mutated_by_validation() -> None:
    profile = docker_default_profile()
    before = copy.deepcopy(profile)
    seccomp.validate(profile)
    seccomp._compile(profile, S)
    assert profile == before
