"""silo.schema.oci: the default spec passes, and each rejection names its field (``err.field``
and the start of the message) with the right error category."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from silo.errors import InvalidArgument, NotSupported, SiloError
from silo.schema import oci
from silo.schema.oci_defaults import default_spec

pytestmark = pytest.mark.unit

Spec = dict[str, object]
Edit = Callable[[Spec], None]


def _walk(doc: object, path: str) -> tuple[dict[str, object], str]:
    *head, last = path.split(".")
    for key in head:
        assert isinstance(doc, dict)
        doc = doc.setdefault(key, {})
    assert isinstance(doc, dict)
    return doc, last


def put(path: str, value: object) -> Edit:
    def edit(spec: Spec) -> None:
        parent, key = _walk(spec, path)
        parent[key] = value
    return edit


def drop(path: str) -> Edit:
    def edit(spec: Spec) -> None:
        parent, key = _walk(spec, path)
        del parent[key]
    return edit


def append(path: str, value: object) -> Edit:
    def edit(spec: Spec) -> None:
        parent, key = _walk(spec, path)
        lst = parent[key]
        assert isinstance(lst, list)
        lst.append(value)
    return edit


def without_ns(kind: str) -> Edit:
    def edit(spec: Spec) -> None:
        linux = spec["linux"]
        assert isinstance(linux, dict)
        before = len(linux["namespaces"])
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != kind]
        assert len(linux["namespaces"]) == before - 1
    return edit


def both(*edits: Edit) -> Edit:
    def edit(spec: Spec) -> None:
        for e in edits:
            e(spec)
    return edit


def edited(*edits: Edit) -> Spec:
    spec = default_spec()
    for e in edits:
        e(spec)
    return spec


def test_default_spec_passes_and_is_returned_unchanged() -> None:
    spec = default_spec()
    before = copy.deepcopy(spec)
    assert oci.validate(spec) is spec
    assert spec == before


def test_default_spec_is_fresh_each_call() -> None:
    a = default_spec()
    b = default_spec()
    assert a == b
    assert a["process"] is not b["process"]


USER_NS = both(append("linux.namespaces", {"type": "user"}),
               put("linux.uidMappings", [{"containerID": 0, "hostID": 100000, "size": 65536}]),
               put("linux.gidMappings", [{"containerID": 0, "hostID": 100000, "size": 65536}]))

ACCEPTED: list[tuple[str, Edit]] = [
    ("uid at the top of the range", put("process.user.uid", 0xFFFFFFFE)),
    ("umask", put("process.user.umask", 0o022)),
    ("additional gids", put("process.user.additionalGids", [5, 6])),
    ("oomScoreAdj at the bottom", put("process.oomScoreAdj", -1000)),
    ("commandLine instead of args", both(put("process.args", []),
                                         put("process.commandLine", "cmd /c dir"))),
    ("env value holding =", put("process.env", ["A=b=c", "EMPTY="])),
    ("user namespace with mappings", USER_NS),
    ("joined user namespace needs no mappings",
     append("linux.namespaces", {"type": "user", "path": "/proc/1/ns/user"})),
    ("time namespace", append("linux.namespaces", {"type": "time"})),
    ("namespaced sysctls", put("linux.sysctl", {"net.ipv4.ip_forward": "1",
                                                "kernel.shmmax": "1024",
                                                "fs.mqueue.msg_max": "10",
                                                "kernel.hostname": "x"})),
    ("hooks of every kind", put("hooks", {k: [{"path": "/bin/true", "args": ["true"],
                                               "env": ["A=1"], "timeout": 1}]
                                          for k in oci.HOOKS})),
    ("fifo device needs no numbers", put("linux.devices", [{"path": "/dev/f", "type": "p"}])),
    ("char device", put("linux.devices", [{"path": "/dev/null", "type": "c", "major": 1,
                                           "minor": 3, "fileMode": 0o666, "uid": 0}])),
    ("string annotations", put("annotations", {"org.example/a": "1"})),
    ("empty intelRdt is not a request", put("linux.intelRdt", {})),
    ("rshared propagation", put("linux.rootfsPropagation", "rshared")),
    ("ociVersion 1.0.2-dev", put("ociVersion", "1.0.2-dev")),
    ("ociVersion 1.1.0+build", put("ociVersion", "1.1.0+build")),
]


@pytest.mark.parametrize("edit", [e for _, e in ACCEPTED], ids=[n for n, _ in ACCEPTED])
def test_accepted(edit: Edit) -> None:
    oci.validate(edited(edit))


def test_process_may_be_missing_when_not_needed() -> None:
    oci.validate(edited(drop("process")), need_process=False)


NOT_NETNS = without_ns("network")

REJECTED: list[tuple[str, Edit, type[SiloError], str, str]] = [
    ("uid as string", put("process.user.uid", "0"), InvalidArgument, "process.user.uid",
     "must be an integer, got str"),
    ("uid as float", put("process.user.uid", 1.5), InvalidArgument, "process.user.uid",
     "must be an integer, got float"),
    ("uid as bool", put("process.user.uid", True), InvalidArgument, "process.user.uid",
     "must be an integer, got bool"),
    ("uid as null", put("process.user.uid", None), InvalidArgument, "process.user.uid",
     "must be an integer"),
    ("uid negative", put("process.user.uid", -1), InvalidArgument, "process.user.uid",
     "must be >= 0"),
    ("uid (uid_t)-1", put("process.user.uid", 0xFFFFFFFF), InvalidArgument, "process.user.uid",
     "must be <= 4294967294"),
    ("gid as string", put("process.user.gid", "0"), InvalidArgument, "process.user.gid",
     "must be an integer"),
    ("umask too big", put("process.user.umask", 0o1000), InvalidArgument, "process.user.umask",
     "must be <= 511"),
    ("additional gid", put("process.user.additionalGids", [1, "2"]), InvalidArgument,
     "process.user.additionalGids[1]", "must be an integer"),
    ("user not an object", put("process.user", 0), InvalidArgument, "process.user",
     "must be an object"),
    ("args empty", put("process.args", []), InvalidArgument, "process.args",
     "is required and must not be empty"),
    ("args missing", drop("process.args"), InvalidArgument, "process.args",
     "is required and must not be empty"),
    ("args not an array", put("process.args", "sh"), InvalidArgument, "process.args",
     "must be an array, got str"),
    ("args item not a string", put("process.args", ["sh", 1]), InvalidArgument,
     "process.args[1]", "must be a string"),
    ("env without =", put("process.env", ["A=1", "NOPE"]), InvalidArgument, "process.env[1]",
     "'NOPE' is not KEY=VALUE"),
    ("relative cwd", put("process.cwd", "srv"), InvalidArgument, "process.cwd",
     "must be an absolute path, got 'srv'"),
    ("terminal not a bool", put("process.terminal", "yes"), InvalidArgument,
     "process.terminal", "must be true or false"),
    ("noNewPrivileges not a bool", put("process.noNewPrivileges", 1), InvalidArgument,
     "process.noNewPrivileges", "must be true or false"),
    ("oomScoreAdj too big", put("process.oomScoreAdj", 1001), InvalidArgument,
     "process.oomScoreAdj", "must be <= 1000"),
    ("consoleSize", put("process.consoleSize", {"height": -1}), InvalidArgument,
     "process.consoleSize.height", "must be >= 0"),
    ("rlimits not an array", put("process.rlimits", {}), InvalidArgument, "process.rlimits",
     "must be an array"),
    ("process missing", drop("process"), InvalidArgument, "process", "is required"),
    ("process not an object", put("process", []), InvalidArgument, "process",
     "must be an object"),
    ("root missing", drop("root"), InvalidArgument, "root", "is required"),
    ("root.path empty", put("root.path", ""), InvalidArgument, "root.path", "is required"),
    ("root.readonly", put("root.readonly", "true"), InvalidArgument, "root.readonly",
     "must be true or false"),
    ("hostname not a string", put("hostname", 1), InvalidArgument, "hostname",
     "must be a string"),
    ("mount destination relative", put("mounts", [{"destination": "proc", "type": "proc"}]),
     InvalidArgument, "mounts[0].destination", "must be an absolute path"),
    ("mount not an object", append("mounts", "tmpfs"), InvalidArgument, "mounts[7]",
     "must be an object"),
    ("unknown namespace type", append("linux.namespaces", {"type": "net"}), InvalidArgument,
     "linux.namespaces[6].type", "unknown namespace type 'net'"),
    ("namespace type missing", append("linux.namespaces", {}), InvalidArgument,
     "linux.namespaces[6].type", "unknown namespace type None"),
    ("duplicate namespace", append("linux.namespaces", {"type": "pid"}), InvalidArgument,
     "linux.namespaces[6].type", "namespace 'pid' is listed twice"),
    ("relative namespace path", put("linux.namespaces", [{"type": "mount", "path": "ns/mnt"}]),
     InvalidArgument, "linux.namespaces[0].path", "must be an absolute path"),
    ("uidMappings without user ns",
     put("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
     InvalidArgument, "linux.uidMappings", "needs a user namespace"),
    ("gidMappings without user ns",
     put("linux.gidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
     InvalidArgument, "linux.gidMappings", "needs a user namespace"),
    ("new user ns without mappings", append("linux.namespaces", {"type": "user"}),
     InvalidArgument, "linux.uidMappings", "needs uidMappings and gidMappings"),
    ("mapping of size 0",
     both(USER_NS, put("linux.uidMappings", [{"containerID": 0, "hostID": 1, "size": 0}])),
     InvalidArgument, "linux.uidMappings[0].size", "must be > 0"),
    ("mapping hostID missing",
     both(USER_NS, put("linux.gidMappings", [{"containerID": 0, "size": 1}])),
     InvalidArgument, "linux.gidMappings[0].hostID", "must be an integer"),
    ("hostname without uts ns", without_ns("uts"), InvalidArgument, "hostname",
     "needs a uts namespace"),
    ("domainname without uts ns", both(drop("hostname"), without_ns("uts"),
                                       put("domainname", "example.org")),
     InvalidArgument, "domainname", "needs a uts namespace"),
    ("sysctl not namespaced", put("linux.sysctl", {"kernel.panic": "1"}), InvalidArgument,
     "linux.sysctl.kernel.panic", "is not namespaced"),
    ("sysctl vm.*", put("linux.sysctl", {"vm.swappiness": "1"}), InvalidArgument,
     "linux.sysctl.vm.swappiness", "is not namespaced"),
    ("net sysctl without netns",
     both(NOT_NETNS, put("linux.sysctl", {"net.ipv4.ip_forward": "1"})),
     InvalidArgument, "linux.sysctl.net.ipv4.ip_forward", "needs a network namespace"),
    ("ipc sysctl without ipc ns",
     both(without_ns("ipc"), put("linux.sysctl", {"kernel.shmmax": "1"})),
     InvalidArgument, "linux.sysctl.kernel.shmmax", "needs an ipc namespace"),
    ("kernel.hostname without uts ns",
     both(drop("hostname"), without_ns("uts"), put("linux.sysctl", {"kernel.hostname": "x"})),
     InvalidArgument, "linux.sysctl.kernel.hostname", "needs a uts namespace"),
    ("sysctl value not a string", put("linux.sysctl", {"net.ipv4.ip_forward": 1}),
     InvalidArgument, "linux.sysctl.net.ipv4.ip_forward", "must be a string"),
    ("sysctl name with a slash", put("linux.sysctl", {"net/ipv4/ip_forward": "1"}),
     InvalidArgument, "linux.sysctl.net/ipv4/ip_forward", "is not a sysctl name"),
    ("sysctl name climbing", put("linux.sysctl", {"net...x": "1"}),
     InvalidArgument, "linux.sysctl.net...x", "is not a sysctl name"),
    ("masked path relative", append("linux.maskedPaths", "proc/kcore"), InvalidArgument,
     "linux.maskedPaths[10]", "must be an absolute path"),
    ("readonly path not a string", put("linux.readonlyPaths", [1]), InvalidArgument,
     "linux.readonlyPaths[0]", "must be a string"),
    ("device type bad", put("linux.devices", [{"path": "/dev/x", "type": "x", "major": 1,
                                                "minor": 1}]),
     InvalidArgument, "linux.devices[0].type", "must be one of c, b, u, p; got 'x'"),
    ("device type missing", put("linux.devices", [{"path": "/dev/x"}]),
     InvalidArgument, "linux.devices[0].type", "got None"),
    ("device path relative", put("linux.devices", [{"path": "dev/x", "type": "c"}]),
     InvalidArgument, "linux.devices[0].path", "must be an absolute path"),
    ("device major missing", put("linux.devices", [{"path": "/dev/x", "type": "b",
                                                     "minor": 0}]),
     InvalidArgument, "linux.devices[0].major", "must be an integer"),
    ("device fileMode negative", put("linux.devices", [{"path": "/dev/x", "type": "c",
                                                         "major": 1, "minor": 3,
                                                         "fileMode": -1}]),
     InvalidArgument, "linux.devices[0].fileMode", "must be >= 0"),
    ("cgroupsPath", put("linux.cgroupsPath", ["a"]), InvalidArgument, "linux.cgroupsPath",
     "must be a string"),
    ("rootfsPropagation", put("linux.rootfsPropagation", "recursive"), InvalidArgument,
     "linux.rootfsPropagation", "unknown propagation 'recursive'"),
    ("resources not an object", put("linux.resources", []), InvalidArgument,
     "linux.resources", "must be an object"),
    ("seccomp not an object", put("linux.seccomp", "default"), InvalidArgument,
     "linux.seccomp", "must be an object"),
    ("linux not an object", put("linux", []), InvalidArgument, "linux", "must be an object"),
    ("hooks unknown kind", put("hooks", {"preStart": []}), InvalidArgument, "hooks.preStart",
     "unknown hook kind"),
    ("hooks not an object", put("hooks", []), InvalidArgument, "hooks", "must be an object"),
    ("hook list not an array", put("hooks", {"poststop": {"path": "/bin/true"}}),
     InvalidArgument, "hooks.poststop", "must be an array"),
    ("hook not an object", put("hooks", {"poststart": ["/bin/true"]}), InvalidArgument,
     "hooks.poststart[0]", "must be an object"),
    ("hook path relative", put("hooks", {"prestart": [{"path": "bin/true"}]}),
     InvalidArgument, "hooks.prestart[0].path", "must be an absolute path, got 'bin/true'"),
    ("hook path missing", put("hooks", {"createRuntime": [{}, {}]}),
     InvalidArgument, "hooks.createRuntime[0].path", "must be an absolute path"),
    ("hook timeout 0", put("hooks", {"prestart": [{"path": "/bin/true"},
                                                  {"path": "/bin/true", "timeout": 0}]}),
     InvalidArgument, "hooks.prestart[1].timeout", "must be >= 1, got 0"),
    ("hook timeout a string", put("hooks", {"startContainer": [{"path": "/bin/true",
                                                                "timeout": "5"}]}),
     InvalidArgument, "hooks.startContainer[0].timeout", "must be an integer"),
    ("hook args", put("hooks", {"poststop": [{"path": "/bin/true", "args": [1]}]}),
     InvalidArgument, "hooks.poststop[0].args[0]", "must be a string"),
    ("annotations non-string", put("annotations", {"a": "1", "b": 2}), InvalidArgument,
     "annotations.b", "must be a string"),
    ("annotations not an object", put("annotations", ["a=1"]), InvalidArgument,
     "annotations", "must be an object"),
    ("ociVersion 2.0.0", put("ociVersion", "2.0.0"), NotSupported, "ociVersion",
     "'2.0.0' is not supported"),
    ("ociVersion abc", put("ociVersion", "abc"), InvalidArgument, "ociVersion",
     "'abc' is not a version"),
    ("ociVersion missing", drop("ociVersion"), InvalidArgument, "ociVersion", "is required"),
    ("intelRdt", put("linux.intelRdt", {"closID": "guaranteed_group"}), NotSupported,
     "linux.intelRdt", "not supported"),
    ("personality", put("linux.personality", {"domain": "LINUX32"}), NotSupported,
     "linux.personality", "not supported"),
]


@pytest.mark.parametrize(("edit", "kind", "field", "reason"),
                         [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_rejected(edit: Edit, kind: type[SiloError], field: str, reason: str) -> None:
    with pytest.raises(SiloError) as exc:
        oci.validate(edited(edit))
    assert type(exc.value) is kind
    assert exc.value.field == field
    assert str(exc.value).startswith(field + ": ")
    assert reason in str(exc.value)


@pytest.mark.parametrize("doc", [[], "config", None, 1])
def test_document_must_be_an_object(doc: object) -> None:
    with pytest.raises(InvalidArgument) as exc:
        oci.validate(doc)
    assert exc.value.field == "config.json"


@pytest.mark.parametrize("version", ["1.0.0", "1.0.2", "1.1.0", "1.2.0", "1.2.1", "1.0",
                                     "1.2.0-rc.1", "1.1.0+dev"])
def test_check_version_accepts(version: str) -> None:
    oci.check_version(version)


@pytest.mark.parametrize(("version", "kind"), [
    ("2.0.0", NotSupported),
    ("0.9.0", NotSupported),
    ("1.3.0", NotSupported),
    ("abc", InvalidArgument),
    ("1", InvalidArgument),
    ("1.x.0", InvalidArgument),
    ("", InvalidArgument),
    (None, InvalidArgument),
    (1.2, InvalidArgument),
])
def test_check_version_rejects(version: object, kind: type[SiloError]) -> None:
    with pytest.raises(SiloError) as exc:
        oci.check_version(version)
    assert type(exc.value) is kind
    assert exc.value.field == "ociVersion"


def test_validate_process_names_fields_under_the_given_prefix() -> None:
    with pytest.raises(InvalidArgument) as exc:
        oci.validate_process({"args": ["sh"], "cwd": "tmp"}, field="process.json")
    assert exc.value.field == "process.json.cwd"
    with pytest.raises(InvalidArgument) as exc:
        oci.validate_process([], field="process.json")  # type: ignore[arg-type]
    assert exc.value.field == "process.json"


def test_validate_process_accepts_an_exec_process() -> None:
    oci.validate_process({"args": ["sh", "-c", "true"], "env": ["A=1"], "cwd": "/tmp",
                          "user": {"uid": 1000, "gid": 1000}, "terminal": False})


def test_validate_process_cwd_defaults_to_root() -> None:
    oci.validate_process({"args": ["true"]})
