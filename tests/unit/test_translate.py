"""silo.compute.translate: each ComputeSystem field lands where it should in the OCI spec, the
image's defaults fill what the document leaves out, user names resolve in a temp rootfs, and
every spec produced passes silo.schema.oci.validate."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from silo.compute import translate
from silo.errors import InvalidArgument, NotSupported
from silo.schema import hcs, oci

pytestmark = pytest.mark.unit

Doc = dict[str, Any]

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

app:x:1000:1001:App:/home/app:/bin/sh
odd:x:1002:1002
broken:x:notanumber:0::/:/bin/sh
"""
GROUP = """\
root:x:0:
wheel:x:10:app,daemon
appgrp:x:1001:
staff:x:50:app
audio:x:63:daemon
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    return str(tmp_path / "rootfs")


def doc(**container: Any) -> Doc:
    linux = container.pop("Linux", {})
    process = linux.pop("Process", {"CommandArgs": ["sh"]})
    d: Doc = {"SchemaVersion": {"Major": 2, "Minor": 1},
              "Container": {"Linux": {"Process": process, **linux}, **container}}
    return hcs.validate("ComputeSystem", d)


def spec_of(d: Doc, *, rootfs: str = "/nonexistent-rootfs", image: Doc | None = None,
            netns: str | None = None, host_cpus: int = 4) -> Doc:
    spec = translate.to_oci_spec("sys-1", d, rootfs=rootfs, image_config=image or {},
                                 cgroups_path="/silo/sys-1", netns=netns, host_cpus=host_cpus)
    oci.validate(copy.deepcopy(spec))
    return spec


def test_a_minimal_document() -> None:
    spec = spec_of(doc())
    assert spec["root"] == {"path": "/nonexistent-rootfs", "readonly": False}
    assert spec["hostname"] == "sys-1"
    assert spec["process"]["args"] == ["sh"]
    assert spec["process"]["terminal"] is False
    assert spec["process"]["cwd"] == "/"
    assert spec["process"]["user"] == {"uid": 0, "gid": 0}
    assert spec["process"]["noNewPrivileges"] is False
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert spec["linux"]["cgroupsPath"] == "/silo/sys-1"
    assert spec["annotations"] == {"io.silo.system-id": "sys-1"}
    assert {"type": "network"} in spec["linux"]["namespaces"]
    assert set(spec["linux"]["resources"]) == {"devices"}
    assert "consoleSize" not in spec["process"]


def test_hostname() -> None:
    assert spec_of(doc(GuestOs={"HostName": "web"}))["hostname"] == "web"


def test_memory() -> None:
    spec = spec_of(doc(Memory={"SizeInMB": 256}))
    assert spec["linux"]["resources"]["memory"] == {"limit": 256 * 1024 * 1024}


@pytest.mark.parametrize(("processor", "cpus", "cpu"), [
    ({"Count": 2}, 4, {"quota": 200000, "period": 100000}),
    ({"Count": 4}, 4, {"quota": 400000, "period": 100000}),
    ({"Maximum": 5000}, 4, {"quota": 200000, "period": 100000}),   # half of 4 CPUs
    ({"Maximum": 10000}, 2, {"quota": 200000, "period": 100000}),  # the whole host
    ({"Maximum": 1}, 1, {"quota": 1000, "period": 100000}),        # the kernel's smallest
    ({"Weight": 1}, 4, {"shares": 2}),
    ({"Weight": 10000}, 4, {"shares": 262144}),
    ({"Weight": 5000}, 4, {"shares": 2 + -(-4999 * 262142 // 9999)}),
])
def test_processor(processor: Doc, cpus: int, cpu: Doc) -> None:
    d = {"SchemaVersion": {"Major": 2, "Minor": 1},
         "Container": {"Processor": processor, "Linux": {"Process": {"CommandArgs": ["sh"]}}}}
    assert spec_of(d, host_cpus=cpus)["linux"]["resources"]["cpu"] == cpu


def test_a_count_above_the_hosts_cpus_is_refused() -> None:
    d = doc(Processor={"Count": 1})
    d["Container"]["Processor"]["Count"] = 3
    with pytest.raises(InvalidArgument) as err:
        spec_of(d, host_cpus=2)
    assert err.value.field == "Container.Processor.Count"


@pytest.mark.parametrize("weight", [1, 2, 3, 100, 1024, 5000, 9998, 9999, 10000])
def test_weight_survives_the_cgroup_v2_conversion(weight: int) -> None:
    shares = translate.weight_to_shares(weight)
    assert 2 <= shares <= 262144
    assert 1 + ((shares - 2) * 9999) // 262142 == weight  # runc's shares → cpu.weight


def test_pids_limit() -> None:
    assert spec_of(doc(Linux={"PidsLimit": 50}))["linux"]["resources"]["pids"] == {"limit": 50}
    assert "pids" not in spec_of(doc(Linux={"PidsLimit": 0}))["linux"]["resources"]


def test_mapped_directories_are_bind_mounts() -> None:
    spec = spec_of(doc(MappedDirectories=[
        {"HostPath": "/srv/a", "ContainerPath": "/a"},
        {"HostPath": "/srv/b", "ContainerPath": "/b", "ReadOnly": True}]))
    assert spec["mounts"][-2:] == [
        {"destination": "/a", "type": "bind", "source": "/srv/a",
         "options": ["rbind", "rprivate"]},
        {"destination": "/b", "type": "bind", "source": "/srv/b",
         "options": ["rbind", "rprivate", "ro"]},
    ]


def test_network_namespace() -> None:
    ns = spec_of(doc(Networking={"Namespace": "/run/netns/x"}))["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/x"} in ns
    ns = spec_of(doc(Networking={"Namespace": "/run/netns/x"}), netns="/proc/7/ns/net")
    assert {"type": "network", "path": "/proc/7/ns/net"} in ns["linux"]["namespaces"]


def test_readonly_rootfs() -> None:
    assert spec_of(doc(Linux={"ReadonlyRootfs": True}))["root"]["readonly"] is True


def test_annotations_keep_the_system_id() -> None:
    spec = spec_of(doc(Linux={"Annotations": {"a": "1"}}))
    assert spec["annotations"] == {"a": "1", "io.silo.system-id": "sys-1"}


def test_console() -> None:
    spec = spec_of(doc(Linux={"Process": {"CommandArgs": ["sh"], "EmulateConsole": True,
                                          "ConsoleSize": [30, 100]}}))
    assert spec["process"]["terminal"] is True
    assert spec["process"]["consoleSize"] == {"height": 30, "width": 100}
    assert "TERM=xterm" in spec["process"]["env"]


def test_default_capabilities() -> None:
    caps = spec_of(doc())["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}
    for names in caps.values():
        assert names == translate.DEFAULT_CAPS
    assert len(translate.DEFAULT_CAPS) == 14


@pytest.mark.parametrize(("add", "drop", "has", "lacks"), [
    (["NET_ADMIN"], [], ["CAP_NET_ADMIN", "CAP_CHOWN"], ["CAP_SYS_ADMIN"]),
    (["CAP_SYS_PTRACE"], ["MKNOD", "CAP_NET_RAW"], ["CAP_SYS_PTRACE"],
     ["CAP_MKNOD", "CAP_NET_RAW"]),
    (["ALL"], ["SYS_ADMIN"], ["CAP_BPF", "CAP_NET_ADMIN"], ["CAP_SYS_ADMIN"]),
    (["CHOWN"], ["ALL"], ["CAP_CHOWN"], ["CAP_KILL", "CAP_SETUID"]),
])
def test_cap_add_and_drop(add: list[str], drop: list[str], has: list[str],
                          lacks: list[str]) -> None:
    caps = spec_of(doc(Linux={"CapAdd": add, "CapDrop": drop}))["process"]["capabilities"]
    for names in caps.values():
        assert all(c in names for c in has)
        assert not any(c in names for c in lacks)
        assert len(names) == len(set(names))


def test_an_unknown_capability_is_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        spec_of(doc(Linux={"CapAdd": ["NET_ADMIN", "MAGIC"]}))
    assert err.value.field == "Container.Linux.CapAdd[1]"


IMAGE = {"config": {"Entrypoint": ["/entry"], "Cmd": ["--serve"], "WorkingDir": "/srv",
                    "Env": ["PATH=/opt/bin:/bin", "A=image", "B=image"], "User": "app"}}


def test_the_image_fills_what_the_document_leaves_out(rootfs: str) -> None:
    spec = spec_of(doc(Linux={"Process": {"CommandArgs": []}}), rootfs=rootfs, image=IMAGE)
    p = spec["process"]
    assert p["args"] == ["/entry", "--serve"]
    assert p["cwd"] == "/srv"
    assert p["env"] == ["PATH=/opt/bin:/bin", "A=image", "B=image", "HOME=/home/app"]
    assert p["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [10, 50]}


def test_the_document_wins_over_the_image(rootfs: str) -> None:
    params = {"CommandArgs": ["ls", "-l"], "WorkingDirectory": "/tmp", "User": "1:1",
              "Environment": {"B": "doc", "C": "doc", "HOME": "/h"}}
    p = spec_of(doc(Linux={"Process": params}), rootfs=rootfs, image=IMAGE)["process"]
    assert p["args"] == ["ls", "-l"]  # the whole argv, as in HCS: no Entrypoint in front
    assert p["cwd"] == "/tmp"
    assert p["env"] == ["PATH=/opt/bin:/bin", "A=image", "B=doc", "C=doc", "HOME=/h"]
    assert p["user"] == {"uid": 1, "gid": 1, "additionalGids": [10, 63]}


def test_a_bare_image_config_and_a_relative_workdir() -> None:
    image = {"Cmd": ["run"], "WorkingDir": "app", "Env": ["X=1", "junk"]}
    p = spec_of(doc(Linux={"Process": {"CommandArgs": []}}), image=image)["process"]
    assert p["args"] == ["run"]
    assert p["cwd"] == "/app"
    assert p["env"] == [translate.DEFAULT_PATH, "X=1", "HOME=/"]


def test_no_command_anywhere_is_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        spec_of(doc(Linux={"Process": {"CommandArgs": []}}), image={"config": {"Cmd": None}})
    assert err.value.field == "Container.Linux.Process.CommandArgs"


@pytest.mark.parametrize(("user", "expected"), [
    ("0", (0, 0, [])),
    ("root", (0, 0, [])),
    ("app", (1000, 1001, [10, 50])),
    ("1000", (1000, 1001, [10, 50])),
    ("app:staff", (1000, 50, [10])),
    ("app:0", (1000, 0, [10, 50])),
    ("daemon:wheel", (1, 10, [63])),
    ("4242", (4242, 0, [])),
    ("4242:7", (4242, 7, [])),
    ("odd", (1002, 1002, [])),
])
def test_resolve_user(rootfs: str, user: str, expected: tuple[int, int, list[int]]) -> None:
    assert translate.resolve_user(rootfs, user) == expected


@pytest.mark.parametrize(("user", "reason"), [
    ("nobody", "no user 'nobody' in the image"),
    ("app:nogroup", "no group 'nogroup' in the image"),
    ("broken", "the image's /etc/passwd of user 'broken' has a bad id 'notanumber'"),
    ("a:b:c", "must be 'user' or 'user:group'"),
])
def test_resolve_user_refusals(rootfs: str, user: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        translate.resolve_user(rootfs, user)
    assert err.value.field == "Container.Linux.Process.User"
    assert err.value.message.startswith(f"Container.Linux.Process.User: {reason}")


def test_a_user_name_in_an_image_without_passwd(tmp_path: Path) -> None:
    assert translate.resolve_user(str(tmp_path), "7:8") == (7, 8, [])
    with pytest.raises(InvalidArgument, match="no user 'app' in the image"):
        translate.resolve_user(str(tmp_path), "app")


@pytest.mark.parametrize("link", ["absolute", "climbing"])
def test_an_images_passwd_symlink_stays_inside_the_rootfs(tmp_path: Path, link: str) -> None:
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:4321:4321::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    # The image's own file at the path the link names, read from inside the root.
    inside = root / str(host).lstrip("/") if link == "absolute" else root / "host-passwd"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_text("app:x:5:6::/:/bin/sh\n")
    target = str(host) if link == "absolute" else "../../../host-passwd"
    os.symlink(target, root / "etc" / "passwd")
    assert translate.resolve_user(str(root), "app") == (5, 6, [])
    with pytest.raises(InvalidArgument, match="no user 'evil'"):
        translate.resolve_user(str(root), "evil")


def test_the_images_unknown_user_is_named_as_such(rootfs: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        spec_of(doc(), rootfs=rootfs, image={"config": {"User": "ghost"}})
    assert err.value.field == "Container.Linux.Process.User"
    assert "the image's User" in err.value.message


def test_to_oci_process_for_an_exec(rootfs: str) -> None:
    params = hcs.validate("ProcessParameters", {"CommandArgs": ["id"], "User": "app"})
    p = translate.to_oci_process(params, {}, ["PATH=/bin", "FROM=container"], rootfs=rootfs,
                                 where="")
    oci.validate_process(p)
    assert p["env"] == ["PATH=/bin", "FROM=container", "HOME=/home/app"]
    assert p["user"]["uid"] == 1000


def test_to_oci_process_names_fields_under_where() -> None:
    with pytest.raises(InvalidArgument) as err:
        translate.to_oci_process({"CommandArgs": []}, {}, [], where="")
    assert err.value.field == "CommandArgs"
    with pytest.raises(InvalidArgument) as err:
        translate.to_oci_process({"CommandArgs": ["x"], "User": "ghost"}, {}, [], where="")
    assert err.value.field == "User"


CONTAINER_PROCESS: Doc = {
    "terminal": True, "user": {"uid": 1000, "gid": 1001, "additionalGids": [10]},
    "args": ["/entry"], "env": ["PATH=/opt/bin", "A=doc", "HOME=/home/app"], "cwd": "/srv",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 64, "soft": 64}], "noNewPrivileges": True,
}


def test_an_exec_takes_the_containers_process_as_defaults(rootfs: str) -> None:
    params = hcs.validate("ProcessParameters", {"CommandArgs": ["id"],
                                                "Environment": {"B": "exec"}})
    before = copy.deepcopy(CONTAINER_PROCESS)
    p = translate.to_oci_exec_process(params, CONTAINER_PROCESS, rootfs=rootfs)
    oci.validate_process(p)
    assert before == CONTAINER_PROCESS
    assert p["args"] == ["id"]
    assert p["terminal"] is False
    assert p["cwd"] == "/srv"
    assert p["env"] == ["PATH=/opt/bin", "A=doc", "HOME=/home/app", "B=exec"]
    assert p["user"] == CONTAINER_PROCESS["user"]
    assert p["capabilities"] == CONTAINER_PROCESS["capabilities"]
    assert p["rlimits"] == CONTAINER_PROCESS["rlimits"]
    assert p["noNewPrivileges"] is True


def test_an_exec_with_its_own_user_cwd_and_console(rootfs: str) -> None:
    params = hcs.validate("ProcessParameters", {
        "CommandArgs": ["sh"], "User": "daemon", "WorkingDirectory": "/tmp",
        "Environment": {"A": "exec"}, "EmulateConsole": True, "ConsoleSize": [10, 20]})
    p = translate.to_oci_exec_process(params, CONTAINER_PROCESS, rootfs=rootfs)
    assert p["user"] == {"uid": 1, "gid": 1, "additionalGids": [10, 63]}
    assert p["cwd"] == "/tmp"
    assert p["env"] == ["PATH=/opt/bin", "A=exec", "HOME=/home/app"]
    assert p["terminal"] is True
    assert p["consoleSize"] == {"height": 10, "width": 20}
    with pytest.raises(InvalidArgument) as err:
        translate.to_oci_exec_process({"CommandArgs": ["sh"], "User": "ghost"},
                                      CONTAINER_PROCESS, rootfs=rootfs)
    assert err.value.field == "User"


@pytest.mark.parametrize(("linux", "image", "expected"), [
    ({}, {}, 15),
    ({"StopSignal": "SIGINT"}, {"config": {"StopSignal": "SIGQUIT"}}, 2),
    ({"StopSignal": 9}, {}, 9),
    ({}, {"config": {"StopSignal": "SIGQUIT"}}, 3),
    ({}, {"config": {"StopSignal": "NOPE"}}, 15),
])
def test_stop_signal(linux: Doc, image: Doc, expected: int) -> None:
    assert translate.stop_signal(doc(Linux=linux), image) == expected


@pytest.mark.parametrize(("request_doc", "resources"), [
    ({"ResourcePath": "Container/Memory/SizeInMB", "Settings": 512},
     {"memory": {"limit": 512 << 20}}),
    ({"ResourcePath": "Container/Processor", "RequestType": "Update", "Settings": {"Count": 2}},
     {"cpu": {"quota": 200000, "period": 100000}}),
    ({"ResourcePath": "Container/Processor", "Settings": {"Maximum": 1000}},
     {"cpu": {"quota": 80000, "period": 100000}}),
    ({"ResourcePath": "Container/Processor", "Settings": {"Weight": 10000}},
     {"cpu": {"shares": 262144, "quota": -1}}),
])
def test_modify_to_resources(request_doc: Doc, resources: Doc) -> None:
    assert translate.modify_to_resources(request_doc, 8) == resources


@pytest.mark.parametrize(("request_doc", "field", "cls"), [
    ({"ResourcePath": "Container/Memory/SizeInMB", "Settings": 1}, "Settings", InvalidArgument),
    ({"ResourcePath": "Container/Memory/SizeInMB", "Settings": {"SizeInMB": 5}}, "Settings",
     InvalidArgument),
    ({"ResourcePath": "Container/Processor", "Settings": {"Count": 9}}, "Settings.Count",
     InvalidArgument),
    ({"ResourcePath": "Container/Processor", "Settings": {"Count": 1, "Weight": 1}}, "Settings",
     InvalidArgument),
    ({"ResourcePath": "Container/Processor", "Settings": 2}, "Settings", InvalidArgument),
    ({"Settings": 2}, "ResourcePath", InvalidArgument),
    ({"ResourcePath": "Container/Networking", "Settings": {}}, "ResourcePath", NotSupported),
    ({"ResourcePath": "Container/Processor", "RequestType": "Remove",
      "Settings": {"Count": 1}}, "RequestType", NotSupported),
])
def test_bad_modify_requests(request_doc: Doc, field: str, cls: type[Exception]) -> None:
    with pytest.raises(cls) as err:
        translate.modify_to_resources(request_doc, 8)
    assert type(err.value) is cls
    assert getattr(err.value, "field", None) == field


def test_the_api_example_translates_and_passes_oci_validation(rootfs: str) -> None:
    d = hcs.validate("ComputeSystem", {
        "Owner": "silo", "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {
            "GuestOs": {"HostName": "web"}, "Storage": {"Image": "busybox"},
            "MappedDirectories": [{"HostPath": "/data", "ContainerPath": "/data",
                                   "ReadOnly": True}],
            "Memory": {"SizeInMB": 256}, "Processor": {"Count": 1},
            "Networking": {"Namespace": "/run/netns/x"},
            "Linux": {"Process": {"CommandArgs": ["sh"], "User": "app:staff",
                                  "EmulateConsole": True, "ConsoleSize": [24, 80]},
                      "ReadonlyRootfs": False, "PidsLimit": 0, "StopSignal": "SIGTERM",
                      "Annotations": {}}}})
    before = copy.deepcopy(d)
    spec = spec_of(d, rootfs=rootfs)
    assert d == before  # the document is not changed
    assert spec["process"]["user"] == {"uid": 1000, "gid": 50, "additionalGids": [10]}
    assert oci.validate(spec) is spec
