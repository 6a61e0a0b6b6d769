"""silo.kernel.mounts without root: OCI mount options parsed into flags, propagation and data,
and secure_join resolving paths inside a root made of plain files and symlinks in a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from silo.errors import InvalidArgument
from silo.kernel.mounts import MountSpec, secure_join
from silo.schema.oci_defaults import default_spec

pytestmark = pytest.mark.unit

# <linux/mount.h>, written out so that the module's table is checked, not reused.
RDONLY, NOSUID, NODEV, NOEXEC = 0x1, 0x2, 0x4, 0x8
REMOUNT, NOATIME, BIND, REC = 0x20, 0x400, 0x1000, 0x4000
UNBINDABLE, PRIVATE, SLAVE, SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
RELATIME, STRICTATIME = 1 << 21, 1 << 24


def spec(options: list[str] | None = None, typ: str = "tmpfs", **extra: object) -> MountSpec:
    m: dict[str, object] = {"destination": "/mnt", "type": typ, "source": "src"}
    if options is not None:
        m["options"] = options
    m.update(extra)
    return MountSpec(m, "mounts[0]")


@pytest.mark.parametrize(("options", "flags"), [
    ([], 0),
    (["defaults"], 0),
    (["ro"], RDONLY),
    (["nosuid", "nodev", "noexec", "ro"], NOSUID | NODEV | NOEXEC | RDONLY),
    (["ro", "rw"], 0),
    (["rw", "ro"], RDONLY),
    (["nosuid", "suid"], 0),
    (["nodev", "dev"], 0),
    (["noexec", "exec"], 0),
    (["noatime", "atime"], 0),
    (["relatime"], RELATIME),
    (["strictatime", "nostrictatime"], 0),
    (["remount", "ro"], REMOUNT | RDONLY),
    (["rro"], RDONLY),
])
def test_flags(options: list[str], flags: int) -> None:
    m = spec(options)
    assert m.flags == flags
    assert m.propagation == 0
    assert m.data == ""


@pytest.mark.parametrize(("option", "propagation"), [
    ("private", PRIVATE), ("rprivate", PRIVATE | REC),
    ("shared", SHARED), ("rshared", SHARED | REC),
    ("slave", SLAVE), ("rslave", SLAVE | REC),
    ("unbindable", UNBINDABLE), ("runbindable", UNBINDABLE | REC),
])
def test_propagation_is_kept_apart_from_the_flags(option: str, propagation: int) -> None:
    m = spec(["nosuid", option])
    assert m.propagation == propagation
    assert m.flags == NOSUID


def test_filesystem_options_pass_through_as_data_in_order() -> None:
    m = spec(["nosuid", "mode=755", "ro", "size=65536k", "uid=0", "newinstance"])
    assert m.flags == NOSUID | RDONLY
    assert m.data == "mode=755,size=65536k,uid=0,newinstance"


def test_recognised_extras_are_neither_flags_nor_data() -> None:
    m = spec(["tmpcopyup", "idmap", "mode=1777"])
    assert m.extra == ["tmpcopyup", "idmap"]
    assert m.data == "mode=1777"
    assert m.flags == 0


@pytest.mark.parametrize(("typ", "options", "flags"), [
    ("bind", [], BIND),
    ("bind", ["rbind"], BIND | REC),
    ("bind", ["ro"], BIND | RDONLY),
    ("none", ["bind"], BIND),
    ("", ["rbind", "nosuid"], BIND | REC | NOSUID),
])
def test_bind(typ: str, options: list[str], flags: int) -> None:
    m = spec(options, typ=typ)
    assert m.flags == flags
    assert m.is_bind


def test_not_a_bind() -> None:
    assert not spec(["ro"], typ="tmpfs").is_bind


def test_fields_are_kept() -> None:
    m = MountSpec({"destination": "/a/../b/./c/", "type": "proc", "source": "proc"},
                  "mounts[2]")
    assert (m.destination, m.type, m.source) == ("/b/c", "proc", "proc")
    m = MountSpec({"destination": "/x"}, "mounts[0]")
    assert (m.type, m.source, m.flags, m.data) == ("", "", 0, "")


def test_the_default_spec_mounts_parse() -> None:
    mounts = default_spec()["mounts"]
    assert isinstance(mounts, list)
    parsed = {m["destination"]: MountSpec(m, f"mounts[{i}]") for i, m in enumerate(mounts)}
    assert parsed["/dev"].flags == NOSUID | STRICTATIME
    assert parsed["/dev"].data == "mode=755,size=65536k"
    assert parsed["/dev/pts"].data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert parsed["/sys"].flags == NOSUID | NOEXEC | NODEV | RDONLY
    assert parsed["/proc"].flags == 0


@pytest.mark.parametrize(("mount", "field"), [
    ({"destination": "proc", "type": "proc"}, "mounts[3].destination"),
    ({"destination": "", "type": "proc"}, "mounts[3].destination"),
    ({"type": "proc"}, "mounts[3].destination"),
    ({"destination": ["/proc"]}, "mounts[3].destination"),
    ({"destination": "/x", "options": ["ro", 1]}, "mounts[3].options"),
    ({"destination": "/x", "options": "ro"}, "mounts[3].options"),
    ({"destination": "/x", "source": 1}, "mounts[3].source"),
    ({"destination": "/x", "type": None}, "mounts[3].type"),
])
def test_errors_name_the_field(mount: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        MountSpec(mount, "mounts[3]")
    assert exc.value.field == field
    assert str(exc.value).startswith(field + ": ")


@pytest.mark.parametrize(("options", "set_", "clear"), [
    (["rnosuid"], NOSUID, 0),
    (["rnodev"], NODEV, 0),
    (["rnoexec"], NOEXEC, 0),
    (["rnoatime"], NOATIME, 0),
    (["ro", "rrw"], 0, RDONLY),
    (["nosuid", "rsuid"], 0, NOSUID),
])
def test_recursive_attributes_are_applied(options: list[str], set_: int, clear: int) -> None:
    m = spec(options, typ="bind")
    assert m.flags & set_ == set_
    assert m.flags & clear == 0


# secure_join ---------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A small tree: /etc/passwd, /a/b/, and symlinks of every kind."""
    r = str(tmp_path)
    os.makedirs(f"{r}/etc")
    os.makedirs(f"{r}/a/b")
    with open(f"{r}/etc/passwd", "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\n")
    os.symlink("/etc", f"{r}/abs")                       # absolute: re-rooted
    os.symlink("../../../../../../etc", f"{r}/a/climb")  # relative, climbs past the root
    os.symlink("../../../../../../..", f"{r}/a/b/up")
    os.symlink("b/../../etc", f"{r}/a/via")
    os.symlink("/a/chain2", f"{r}/chain1")
    os.symlink("b", f"{r}/a/chain2")
    os.symlink("/no/such/dir", f"{r}/dangling")
    os.symlink("loop2", f"{r}/loop1")
    os.symlink("loop1", f"{r}/loop2")
    os.symlink("self", f"{r}/self")
    os.symlink("/host/proc", f"{r}/proc")
    return r


@pytest.mark.parametrize(("unsafe", "inside"), [
    ("/", "/"),
    ("", "/"),
    ("/etc/passwd", "/etc/passwd"),
    ("etc/passwd", "/etc/passwd"),
    ("//etc/./passwd", "/etc/passwd"),
    ("/a/b/", "/a/b"),
    ("/..", "/"),
    ("/../../../etc", "/etc"),
    ("/a/../../../../a/b/../..", "/"),
    ("/abs/passwd", "/etc/passwd"),
    ("/abs", "/etc"),
    ("/a/climb/passwd", "/etc/passwd"),
    ("/a/b/up", "/"),
    ("/a/b/up/etc", "/etc"),
    ("/a/via/passwd", "/etc/passwd"),
    ("/chain1", "/a/b"),
    ("/chain1/new", "/a/b/new"),
    ("/abs/..", "/"),  # the symlink is followed before ".." applies
    ("/a/climb/../a", "/a"),
    ("/dangling", "/no/such/dir"),
    ("/dangling/more", "/no/such/dir/more"),
    ("/proc", "/host/proc"),
    ("/proc/1/root", "/host/proc/1/root"),
    ("/a/nope", "/a/nope"),
    ("/a/nope/deeper/still", "/a/nope/deeper/still"),
    ("/nope/../etc", "/etc"),
])
def test_secure_join(root: str, unsafe: str, inside: str) -> None:
    assert secure_join(root, unsafe) == root + inside


def test_secure_join_with_a_trailing_slash_on_the_root(root: str) -> None:
    assert secure_join(root + "/", "/abs/passwd") == root + "/etc/passwd"


@pytest.mark.parametrize("unsafe", ["/loop1", "/loop2/x", "/self", "/a/../self/etc"])
def test_symlink_loops_are_invalid(root: str, unsafe: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        secure_join(root, unsafe)
    assert repr(unsafe) in str(exc.value)


def test_secure_join_below_a_file_appends_the_tail(root: str) -> None:
    assert secure_join(root, "/etc/passwd/x") == root + "/etc/passwd/x"
