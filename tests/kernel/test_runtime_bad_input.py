"""Refusals: every bad config, flag or verb-in-the-wrong-state fails with a non-zero exit, one
stderr line naming the field or the state, an "error" line in the JSON log, and nothing left
behind (state dir, cgroup, process, mount) — or, for a verb on an existing container, the
container exactly as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.kernel.conftest import (
    Bundle,
    cgroup_dir,
    cgroup_dirs_named,
    one_error_line,
    requires_runtime,
)

pytestmark = [pytest.mark.kernel, requires_runtime]

Spec = dict[str, Any]


def refused(bundle: Bundle, r: Any, *words: str) -> None:
    """One stderr line with ``words``, and an "error" entry in the JSON log with them too."""
    one_error_line(r, *words)
    errors = bundle.log_errors()
    assert errors, "no error line in the --log file"
    assert all(w in errors[-1]["msg"] for w in words), errors[-1]


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        *parents, last = path.split(".")
        node = spec
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return mutate


def _del_args(spec: Spec) -> None:
    del spec["process"]["args"]


def _add_namespace(spec: Spec) -> None:
    spec["linux"]["namespaces"].append({"type": "foo"})


def _add_mount(m: dict[str, Any]) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        spec["mounts"].append(m)
    return mutate


def _netns_path(path: str) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        assert spec["linux"]["namespaces"][1]["type"] == "network"
        spec["linux"]["namespaces"][1]["path"] = path
    return mutate


def _add_cap(spec: Spec) -> None:
    spec["process"]["capabilities"]["bounding"].append("CAP_FOO")


BAD_CONFIGS: list[tuple[str, Callable[[Spec], None], tuple[str, ...]]] = [
    ("missing process.args", _del_args, ("process.args",)),
    ("uid is a string", _set("process.user.uid", "0"), ("process.user.uid",)),
    ("rootfs missing", _set("root.path", "no-such-rootfs"), ("root.path",)),
    ("unknown namespace", _add_namespace, ("linux.namespaces[6].type", "foo")),
    ("unknown capability", _add_cap, ("process.capabilities.bounding[3]", "CAP_FOO")),
    ("negative memory limit", _set("linux.resources.memory", {"limit": -5}),
     ("linux.resources.memory.limit",)),
    ("cpu shares 1", _set("linux.resources.cpu", {"shares": 1}),
     ("linux.resources.cpu.shares",)),
    ("cpuset beyond the machine", _set("linux.resources.cpu", {"cpus": "0-999"}),
     ("linux.resources.cpu.cpus",)),
    ("rlimit above the host's hard limit",
     _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1048576}]),
     ("process.rlimits[0].hard",)),
    ("soft above hard", _set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2048,
                                                  "hard": 1024}]),
     ("process.rlimits[0]", "soft")),
    ("command not in the image", _set("process.args", ["no-such-command"]),
     ("executable file not found", "no-such-command")),
    ("cwd is a file", _set("process.cwd", "/etc/passwd"), ("process.cwd",)),
    ("filesystem the kernel does not know", _add_mount({"destination": "/x", "type": "nofs",
                                                        "source": "none"}),
     ("mounts[7]",)),
    ("mount option the filesystem refuses", _add_mount({"destination": "/x", "type": "tmpfs",
                                                        "source": "tmpfs",
                                                        "options": ["size=lots"]}),
     ("mounts[7]",)),
    ("bind source missing", _add_mount({"destination": "/x", "type": "bind",
                                        "source": "/no/such/dir", "options": ["rbind"]}),
     ("mounts[7].source",)),
    ("sysctl the kernel does not have", _set("linux.sysctl", {"net.ipv4.no_such_knob": "1"}),
     ("linux.sysctl.net.ipv4.no_such_knob",)),
    ("sysctl that is not namespaced", _set("linux.sysctl", {"kernel.panic": "1"}),
     ("linux.sysctl.kernel.panic",)),
    ("unsupported ociVersion", _set("ociVersion", "2.0.0"), ("ociVersion",)),
    ("seccomp action unknown", _set("linux.seccomp", {"defaultAction": "SCMP_ACT_FOO"}),
     ("linux.seccomp.defaultAction",)),
    ("namespace path that does not exist", _netns_path("/no/such/ns"),
     ("linux.namespaces[1].path",)),
    ("namespace path that is not a namespace", _netns_path("/etc/hostname"),
     ("linux.namespaces[1]",)),
    ("namespace path of the wrong type", _netns_path("/proc/self/ns/pid"),
     ("linux.namespaces[1]", "network")),
]


@pytest.mark.parametrize(("mutate", "words"), [(m, w) for _, m, w in BAD_CONFIGS],
                         ids=[name for name, _, _ in BAD_CONFIGS])
@pytest.mark.parametrize("verb", ["create", "run"])
def test_bad_config_is_refused_and_leaves_nothing(bundle: Bundle, verb: str,
                                                  mutate: Callable[[Spec], None],
                                                  words: tuple[str, ...]) -> None:
    mutate(bundle.spec)
    cid = bundle.new_id()
    bundle.write_config(cid)
    r = bundle.runtime(verb, "--bundle", str(bundle.path), cid, log=True)
    refused(bundle, r, *words)
    bundle.assert_clean()


@pytest.mark.parametrize("raw", ['{"ociVersion": "1.2.0", "process": ', '{"ociVersion',
                                 '{"ociVersion": "1.2.0",}', "[1, 2", "\xff"])
def test_config_that_is_not_json(bundle: Bundle, raw: str) -> None:
    cid = bundle.new_id()
    bundle.write_config(cid, raw=raw)
    r = bundle.runtime("create", "--bundle", str(bundle.path), cid, log=True)
    refused(bundle, r, "config.json")
    bundle.assert_clean()


def test_missing_config(bundle: Bundle) -> None:
    r = bundle.runtime("create", "--bundle", str(bundle.path), bundle.new_id(), log=True)
    refused(bundle, r, "config.json")
    bundle.assert_clean()


@pytest.mark.parametrize("attempt", range(5))
def test_early_failure_is_reported_every_time(bundle: Bundle, attempt: int) -> None:
    """A failure in the init's very first steps races the runtime's first message to it;
    the error must win every time (not "Broken pipe", not "the init exited")."""
    bundle.linux["namespaces"][1]["path"] = "/etc/hostname"
    cid = bundle.new_id()
    bundle.write_config(cid)
    r = bundle.runtime("create", "--bundle", str(bundle.path), cid, log=True)
    refused(bundle, r, "linux.namespaces[1]")
    bundle.assert_clean()


def test_pid_file_in_a_missing_directory(bundle: Bundle) -> None:
    cid = bundle.new_id()
    bundle.write_config(cid)
    r = bundle.runtime("create", "--bundle", str(bundle.path), "--pid-file",
                       str(bundle.tmp / "no-such-dir" / "pid"), cid, log=True)
    refused(bundle, r, "pid")
    bundle.assert_clean()


def test_duplicate_id_keeps_the_first_container(bundle: Bundle) -> None:
    cid = bundle.create()
    before = bundle.state(cid)
    cgroups = cgroup_dirs_named(cid)
    r = bundle.runtime("create", "--bundle", str(bundle.path), cid, log=True)
    refused(bundle, r, cid, "already exists")
    assert bundle.state(cid) == before
    assert cgroup_dirs_named(cid) == cgroups
    bundle.ok("start", cid)
    assert bundle.state(cid)["status"] == "running"


def test_unknown_signal(bundle: Bundle) -> None:
    cid = bundle.start()
    r = bundle.runtime("kill", cid, "SIGFOO", log=True)
    refused(bundle, r, "signal", "SIGFOO")
    assert bundle.state(cid)["status"] == "running"


def _stopped(bundle: Bundle) -> str:
    cid = bundle.start()
    bundle.ok("kill", cid, "KILL")
    assert bundle.wait_status(cid, "stopped")["status"] == "stopped"
    return cid


WRONG_STATE: list[tuple[str, Callable[[Bundle], str], list[str], str]] = [
    ("start twice", Bundle.start, ["start"], "running"),
    ("pause a created container", Bundle.create, ["pause"], "created"),
    ("resume a running container", Bundle.start, ["resume"], "running"),
    ("exec into a stopped container", _stopped, ["exec"], "stopped"),
    ("delete a running container", Bundle.start, ["delete"], "running"),
    ("start a stopped container", _stopped, ["start"], "stopped"),
]


@pytest.mark.parametrize(("make", "verb", "status"), [(m, v, s) for _, m, v, s in WRONG_STATE],
                         ids=[name for name, _, _, _ in WRONG_STATE])
def test_verb_in_the_wrong_state(bundle: Bundle, make: Callable[[Bundle], str], verb: list[str],
                                 status: str) -> None:
    cid = make(bundle)
    before = bundle.state(cid)
    args = [*verb, cid] + (["true"] if verb == ["exec"] else [])
    r = bundle.runtime(*args, log=True)
    refused(bundle, r, cid, status)
    assert bundle.state(cid) == before


def test_state_of_a_container_that_does_not_exist(bundle: Bundle) -> None:
    r = bundle.runtime("state", "no-such-container", log=True)
    refused(bundle, r, "no-such-container", "does not exist")


@pytest.mark.parametrize(("args", "words"), [
    (["frobnicate", "x"], ("frobnicate",)),
    (["create", "--no-such-flag", "x"], ("--no-such-flag",)),
    (["--no-such-global", "list"], ("--no-such-global",)),
    (["list", "--format", "yaml"], ("--format", "yaml")),
])
def test_unknown_verb_and_flag(bundle: Bundle, args: list[str], words: tuple[str, ...]) -> None:
    r = bundle.runtime(*args, log=True)
    line = one_error_line(r, *words)
    head = "silo-runtime" if args[0].startswith("-") else args[0]
    assert line.count(f"{head}: ") == 1, f"the prefix is repeated: {line!r}"
    if args[0] != "--no-such-global":  # before --log is parsed, there is no log to write
        refused(bundle, r, *words)
    bundle.assert_clean()


def test_bad_resources_for_update_change_nothing(bundle: Bundle) -> None:
    bundle.linux["resources"]["memory"] = {"limit": 64 << 20}
    cid = bundle.start()
    res = bundle.tmp / "resources.json"
    res.write_text(json.dumps({"memory": {"limit": -5}}))
    r = bundle.runtime("update", "--resources", str(res), cid, log=True)
    refused(bundle, r, "memory.limit")
    assert int((cgroup_dir("memory", cid) / "memory.limit_in_bytes").read_text()) == 64 << 20


def test_rootfs_out_of_reach_of_the_user_namespace(bundle: Bundle) -> None:
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cid = bundle.new_id()
    bundle.write_config(cid)
    bundle.tmp.chmod(0o700)  # host uid 100000 cannot walk to the rootfs
    try:
        r = bundle.runtime("create", "--bundle", str(bundle.path), cid, log=True)
    finally:
        bundle.tmp.chmod(0o711)
    refused(bundle, r, "root.path")
    bundle.assert_clean()


BAD_EXECS: list[tuple[str, list[str], Any, tuple[str, ...]]] = [
    ("command not in the image", ["no-such-command"], None,
     ("executable file not found", "no-such-command")),
    ("user is not UID[:GID]", ["--user", "nobody", "true"], None, ("--user",)),
    ("cwd is relative", ["--cwd", "tmp", "true"], None, ("process.cwd",)),
    ("cwd does not exist", ["--cwd", "/no/such/dir", "true"], None, ("process.cwd",)),
    ("unknown capability", ["--cap", "CAP_FOO", "true"], None, ("CAP_FOO",)),
    ("process file that is not JSON", [], "{", ("process.json",)),
    ("process file without args", [], {"cwd": "/"}, ("process.args",)),
    ("process file with a string uid", [], {"args": ["true"], "cwd": "/",
                                            "user": {"uid": "0", "gid": 0}},
     ("process.user.uid",)),
]


@pytest.mark.parametrize(("argv", "process", "words"), [(a, p, w) for _, a, p, w in BAD_EXECS],
                         ids=[name for name, _, _, _ in BAD_EXECS])
def test_bad_exec_is_refused_and_the_container_is_untouched(
        bundle: Bundle, argv: list[str], process: Any, words: tuple[str, ...]) -> None:
    cid = bundle.start()
    procs_before = (cgroup_dir("pids", cid) / "cgroup.procs").read_text()
    if process is not None:
        pfile = bundle.tmp / "process.json"
        pfile.write_text(process if isinstance(process, str) else json.dumps(process))
        argv = ["--process", str(pfile)]
        r = bundle.runtime("exec", *argv, cid, log=True)
    else:
        flags, cmd = (argv[:2], argv[2:]) if argv[0].startswith("-") else ([], argv)
        r = bundle.runtime("exec", *flags, cid, *cmd, log=True)
    refused(bundle, r, *words)
    assert bundle.state(cid)["status"] == "running"
    assert (cgroup_dir("pids", cid) / "cgroup.procs").read_text() == procs_before
