"""silo.schema.hcs: the documents of docs/api.md pass, and each bad one is refused with the field
it is about (``err.field`` and the start of the message) and the right error category."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from silo.errors import InvalidArgument, NotSupported, SiloError
from silo.kernel import signals
from silo.schema import hcs, jsonschema

pytestmark = pytest.mark.unit

Doc = dict[str, Any]
Edit = Callable[[Doc], None]


def good() -> Doc:
    return {
        "Owner": "silo",
        "SchemaVersion": {"Major": 2, "Minor": 1},
        "Container": {
            "GuestOs": {"HostName": "web"},
            "Storage": {"Image": "busybox"},
            "MappedDirectories": [{"HostPath": "/data", "ContainerPath": "/data",
                                   "ReadOnly": True}],
            "Memory": {"SizeInMB": 256},
            "Processor": {"Count": 1},
            "Networking": {"Namespace": "/run/netns/x"},
            "Linux": {
                "Process": {
                    "CommandArgs": ["sh", "-c", "echo hi"],
                    "Environment": {"A": "1"},
                    "WorkingDirectory": "/tmp",
                    "User": "1000:1000",
                    "EmulateConsole": True,
                    "CreateStdInPipe": True,
                    "CreateStdOutPipe": True,
                    "CreateStdErrPipe": True,
                    "ConsoleSize": [24, 80],
                },
                "ReadonlyRootfs": False,
                "PidsLimit": 0,
                "StopSignal": "SIGTERM",
                "Annotations": {"org.example": "x"},
                "CapAdd": ["NET_ADMIN"],
                "CapDrop": ["CAP_MKNOD"],
            },
        },
    }


def _parent(doc: Any, path: str) -> tuple[Any, str | int]:
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        doc = doc[key]
    return doc, keys[-1]


def put(path: str, value: object) -> Edit:
    def edit(doc: Doc) -> None:
        parent, key = _parent(doc, path)
        parent[key] = value
    return edit


def append(path: str, value: object) -> Edit:
    def edit(doc: Doc) -> None:
        parent, key = _parent(doc, path)
        parent[key].append(value)
    return edit


def drop(path: str) -> Edit:
    def edit(doc: Doc) -> None:
        parent, key = _parent(doc, path)
        del parent[key]
    return edit


PROC = "Container.Linux.Process"

BAD: list[tuple[str, Edit, str]] = [
    ("SchemaVersion", drop("SchemaVersion"), "SchemaVersion: is required"),
    ("SchemaVersion.Minor", put("SchemaVersion.Minor", "1"),
     "SchemaVersion.Minor: must be an integer"),
    ("Owner", put("Owner", 7), "Owner: must be a string"),
    ("Container", drop("Container"), "Container: is required"),
    ("VirtualMachine", put("VirtualMachine", {}), "VirtualMachine: unknown field (allowed: "
     "Owner, SchemaVersion, Container)"),
    ("Container.Linux", drop("Container.Linux"), "Container.Linux: is required"),
    (f"{PROC}", drop(PROC), f"{PROC}: is required"),
    (f"{PROC}.CommandArgs", drop(f"{PROC}.CommandArgs"), f"{PROC}.CommandArgs: is required"),
    (f"{PROC}.CommandArgs", put(f"{PROC}.CommandArgs", "sh"),
     f"{PROC}.CommandArgs: must be an array"),
    (f"{PROC}.CommandArgs[1]", put(f"{PROC}.CommandArgs.1", 5),
     f"{PROC}.CommandArgs[1]: must be a string"),
    (f"{PROC}.CommandArgs[0]", put(f"{PROC}.CommandArgs.0", "s\0h"),
     f"{PROC}.CommandArgs[0]: must not contain NUL"),
    (f"{PROC}.Bogus", put(f"{PROC}.Bogus", 1), f"{PROC}.Bogus: unknown field (allowed: "),
    ("Container.Memory.SizeInMB", put("Container.Memory.SizeInMB", 3),
     "Container.Memory.SizeInMB: must be >= 4"),
    ("Container.Memory.SizeInMB", put("Container.Memory.SizeInMB", "256"),
     "Container.Memory.SizeInMB: must be an integer"),
    ("Container.Memory.SizeInMB", put("Container.Memory.SizeInMB", True),
     "Container.Memory.SizeInMB: must be an integer"),
    ("Container.Memory.SizeInMB", put("Container.Memory", {}),
     "Container.Memory.SizeInMB: is required"),
    ("Container.Processor", put("Container.Processor", {"Count": 1, "Weight": 5}),
     "Container.Processor: Count, Maximum and Weight are mutually exclusive"),
    ("Container.Processor", put("Container.Processor", {"Maximum": 1, "Weight": 5}),
     "Container.Processor: Count, Maximum and Weight are mutually exclusive"),
    ("Container.Processor.Count", put("Container.Processor.Count", 0),
     "Container.Processor.Count: must be >= 1"),
    ("Container.Processor.Count", put("Container.Processor.Count", 100_000),
     "Container.Processor.Count: must be <= "),
    ("Container.Processor.Maximum", put("Container.Processor", {"Maximum": 10001}),
     "Container.Processor.Maximum: must be <= 10000"),
    ("Container.Processor.Weight", put("Container.Processor", {"Weight": 0}),
     "Container.Processor.Weight: must be >= 1"),
    ("Container.Storage.Layers", put("Container.Storage.Layers", [{"Id": "a", "Path": "/l"}]),
     "Container.Storage.Layers: is filled in by silod"),
    ("Container.Storage.Image", put("Container.Storage", {}),
     "Container.Storage.Image: is required"),
    ("Container.GuestOs.HostName", put("Container.GuestOs.HostName", "-web"),
     "Container.GuestOs.HostName: must be a host name"),
    ("Container.GuestOs.HostName", put("Container.GuestOs.HostName", "a" * 65),
     "Container.GuestOs.HostName: must be at most 64 characters long"),
    ("Container.Networking.Namespace", put("Container.Networking.Namespace", "x"),
     "Container.Networking.Namespace: must be an absolute path"),
    ("Container.MappedDirectories[0].HostPath",
     put("Container.MappedDirectories.0.HostPath", "data"),
     "Container.MappedDirectories[0].HostPath: must be an absolute path"),
    ("Container.MappedDirectories[0].ContainerPath",
     put("Container.MappedDirectories.0.ContainerPath", "data"),
     "Container.MappedDirectories[0].ContainerPath: must be an absolute path"),
    ("Container.MappedDirectories[0].ContainerPath",
     put("Container.MappedDirectories.0.ContainerPath", "/"),
     "Container.MappedDirectories[0].ContainerPath: must not be the container's root"),
    ("Container.MappedDirectories[0].ContainerPath",
     put("Container.MappedDirectories.0.ContainerPath", "/a/../.."),
     "Container.MappedDirectories[0].ContainerPath: must not contain '..'"),
    ("Container.MappedDirectories[1].ContainerPath",
     append("Container.MappedDirectories", {"HostPath": "/x", "ContainerPath": "/data/"}),
     "Container.MappedDirectories[1].ContainerPath: /data is already mapped by "
     "MappedDirectories[0]"),
    ("Container.MappedDirectories[0].ReadOnly",
     put("Container.MappedDirectories.0.ReadOnly", "yes"),
     "Container.MappedDirectories[0].ReadOnly: must be true or false"),
    ("Container.MappedDirectories[0].ContainerPath",
     drop("Container.MappedDirectories.0.ContainerPath"),
     "Container.MappedDirectories[0].ContainerPath: is required"),
    (f"{PROC}.WorkingDirectory", put(f"{PROC}.WorkingDirectory", "tmp"),
     f"{PROC}.WorkingDirectory: must be an absolute path"),
    (f"{PROC}.Environment.A", put(f"{PROC}.Environment.A", 1),
     f"{PROC}.Environment.A: must be a string"),
    (f"{PROC}.Environment.A=B", put(f"{PROC}.Environment.A=B", "1"),
     f"{PROC}.Environment.A=B: names must not contain '=' or NUL"),
    (f"{PROC}.Environment", put(f"{PROC}.Environment", {"": "1"}),
     f"{PROC}.Environment: names must not be empty"),
    (f"{PROC}.Environment.A", put(f"{PROC}.Environment.A", "x\0y"),
     f"{PROC}.Environment.A: must not contain NUL"),
    (f"{PROC}.User", put(f"{PROC}.User", "a:b:c"), f"{PROC}.User: must be 'user' or "),
    (f"{PROC}.User", put(f"{PROC}.User", ":0"), f"{PROC}.User: must be 'user' or "),
    (f"{PROC}.User", put(f"{PROC}.User", "4294967295"), f"{PROC}.User: 4294967295 is out of "),
    (f"{PROC}.User", put(f"{PROC}.User", ""), f"{PROC}.User: must not be empty"),
    (f"{PROC}.ConsoleSize", put(f"{PROC}.ConsoleSize", [24]),
     f"{PROC}.ConsoleSize: must have exactly 2 items"),
    (f"{PROC}.ConsoleSize[1]", put(f"{PROC}.ConsoleSize", [24, 0]),
     f"{PROC}.ConsoleSize[1]: must be >= 1"),
    (f"{PROC}.ConsoleSize[0]", put(f"{PROC}.ConsoleSize", ["24", 80]),
     f"{PROC}.ConsoleSize[0]: must be an integer"),
    (f"{PROC}.EmulateConsole", put(f"{PROC}.EmulateConsole", 1),
     f"{PROC}.EmulateConsole: must be true or false"),
    ("Container.Linux.PidsLimit", put("Container.Linux.PidsLimit", -1),
     "Container.Linux.PidsLimit: must be >= 0"),
    ("Container.Linux.StopSignal", put("Container.Linux.StopSignal", "SIGNOPE"),
     "Container.Linux.StopSignal: unknown signal 'SIGNOPE'"),
    ("Container.Linux.StopSignal", put("Container.Linux.StopSignal", 65),
     "Container.Linux.StopSignal: 65 is not a signal number"),
    ("Container.Linux.ReadonlyRootfs", put("Container.Linux.ReadonlyRootfs", "no"),
     "Container.Linux.ReadonlyRootfs: must be true or false"),
    ("Container.Linux.Annotations.a", put("Container.Linux.Annotations.a", 1),
     "Container.Linux.Annotations.a: must be a string"),
    ("Container.Linux.Annotations.io.silo.system-id",
     put("Container.Linux.Annotations", {"io.silo.system-id": "x"}),
     "Container.Linux.Annotations.io.silo.system-id: io.silo. keys are set by silod"),
    ("Container.Linux.CapAdd[0]", put("Container.Linux.CapAdd", ["net admin"]),
     "Container.Linux.CapAdd[0]: must be a capability name or ALL"),
]


@pytest.mark.parametrize(("field", "edit", "message"), BAD, ids=[b[2][:60] for b in BAD])
def test_a_bad_compute_system_names_its_field(field: str, edit: Edit, message: str) -> None:
    doc = good()
    edit(doc)
    with pytest.raises(InvalidArgument) as err:
        hcs.validate("ComputeSystem", doc)
    assert err.value.field == field
    assert err.value.message.startswith(message), err.value.message


def test_the_api_example_passes() -> None:
    doc = good()
    assert hcs.validate("ComputeSystem", doc) is doc
    assert doc == good()


def test_a_minimal_document_passes() -> None:
    hcs.validate("ComputeSystem", {"SchemaVersion": {"Major": 2, "Minor": 0},
                                   "Container": {"Linux": {"Process": {"CommandArgs": []}}}})


@pytest.mark.parametrize("name", ["ComputeSystem", "CreateRequest", "ProcessParameters"])
def test_a_document_that_is_not_an_object_is_refused(name: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        hcs.validate(name, [])
    assert err.value.field == name


def test_schema_version_3_is_not_supported() -> None:
    doc = good()
    doc["SchemaVersion"] = {"Major": 3, "Minor": 0}
    doc["Container"]["SomethingOfVersion3"] = {}
    with pytest.raises(NotSupported) as err:
        hcs.validate("ComputeSystem", doc)
    assert err.value.field == "SchemaVersion.Major"
    assert "3" in err.value.message


def test_create_request() -> None:
    hcs.validate("CreateRequest", {"Id": "web-1", "Name": "web.1_a", "Configuration": good()})
    hcs.validate("CreateRequest", {"Configuration": good()})


@pytest.mark.parametrize(("doc", "field", "cls"), [
    ({}, "Configuration", InvalidArgument),
    ({"Configuration": good(), "Id": "-x"}, "Id", InvalidArgument),
    ({"Configuration": good(), "Id": "a" * 129}, "Id", InvalidArgument),
    ({"Configuration": good(), "Id": "a/b"}, "Id", InvalidArgument),
    ({"Configuration": good(), "Id": "web\n"}, "Id", InvalidArgument),
    ({"Configuration": good(), "Name": ""}, "Name", InvalidArgument),
    ({"Configuration": good(), "Extra": 1}, "Extra", InvalidArgument),
    ({"Configuration": {**good(), "Container": {}}}, "Configuration.Container.Linux",
     InvalidArgument),
    ({"Configuration": {**good(), "SchemaVersion": {"Major": 1, "Minor": 0}}},
     "Configuration.SchemaVersion.Major", NotSupported),
])
def test_a_bad_create_request(doc: Doc, field: str, cls: type[SiloError]) -> None:
    with pytest.raises(cls) as err:
        hcs.validate("CreateRequest", doc)
    assert err.value.field == field
    assert err.value.message.startswith(field + ": ")


def test_a_processes_command_args_must_not_be_empty() -> None:
    hcs.validate("ProcessParameters", {"CommandArgs": ["ls"], "Environment": {"A": ""}})
    with pytest.raises(InvalidArgument, match=r"^CommandArgs: must not be empty$"):
        hcs.validate("ProcessParameters", {"CommandArgs": []})


@pytest.mark.parametrize(("name", "doc"), [
    ("ShutdownRequest", {}), ("ShutdownRequest", {"TimeoutSeconds": 0}),
    ("WaitRequest", {"TimeoutSeconds": 30}),
    ("PropertyQuery", {"PropertyTypes": ["Statistics", "ProcessList", "Memory"]}),
    ("SignalRequest", {"Signal": "SIGTERM"}), ("SignalRequest", {"Signal": 9}),
    ("SignalRequest", {"Signal": "RTMIN+3"}), ("SignalRequest", {"Signal": "15"}),
    ("ResizeRequest", {"Height": 24, "Width": 80}),
    ("ModifySettingRequest", {"ResourcePath": "Container/Memory/SizeInMB", "Settings": 256}),
    ("ModifySettingRequest", {"ResourcePath": "Container/Processor", "RequestType": "Update",
                              "Settings": {"Weight": 100}}),
])
def test_good_requests(name: str, doc: Doc) -> None:
    assert hcs.validate(name, doc) is doc


@pytest.mark.parametrize(("name", "doc", "field", "cls"), [
    ("ShutdownRequest", {"TimeoutSeconds": -1}, "TimeoutSeconds", InvalidArgument),
    ("ShutdownRequest", {"TimeoutSeconds": "10"}, "TimeoutSeconds", InvalidArgument),
    ("WaitRequest", {"Timeout": 1}, "Timeout", InvalidArgument),
    ("PropertyQuery", {"PropertyTypes": ["Stats"]}, "PropertyTypes[0]", InvalidArgument),
    ("SignalRequest", {}, "Signal", InvalidArgument),
    ("SignalRequest", {"Signal": "SIGFOO"}, "Signal", InvalidArgument),
    ("SignalRequest", {"Signal": 0}, "Signal", InvalidArgument),
    ("SignalRequest", {"Signal": True}, "Signal", InvalidArgument),
    ("ResizeRequest", {"Height": 24}, "Width", InvalidArgument),
    ("ResizeRequest", {"Height": 0, "Width": 80}, "Height", InvalidArgument),
    ("ModifySettingRequest", {"Settings": 1}, "ResourcePath", InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/Memory/SizeInMB"}, "Settings",
     InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/Memory/SizeInMB", "Settings": 2},
     "Settings", InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/Memory/SizeInMB", "Settings": "2"},
     "Settings", InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/Processor", "Settings": {}},
     "Settings", InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/Processor",
                              "Settings": {"Count": 1, "Maximum": 5}}, "Settings",
     InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/Processor",
                              "Settings": {"Shares": 5}}, "Settings.Shares", InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/Processor", "RequestType": "Patch",
                              "Settings": {"Count": 1}}, "RequestType", InvalidArgument),
    ("ModifySettingRequest", {"ResourcePath": "Container/MappedDirectories",
                              "Settings": {}}, "ResourcePath", NotSupported),
    ("ModifySettingRequest", {"ResourcePath": "Container/Processor", "RequestType": "Add",
                              "Settings": {"Count": 1}}, "RequestType", NotSupported),
])
def test_bad_requests(name: str, doc: Doc, field: str, cls: type[SiloError]) -> None:
    with pytest.raises(cls) as err:
        hcs.validate(name, doc)
    assert type(err.value) is cls
    assert err.value.field == field
    assert err.value.message.startswith(field + ": ")


@pytest.mark.parametrize("name", [*signals.NAMES, "RTMIN", "RTMIN+1", "SIGRTMAX-2", "rtmax",
                                  "term", "9"])
def test_the_local_signal_table_agrees_with_the_kernels(name: str) -> None:
    assert hcs.signal_number(name, "S") == signals.parse(name)


def test_the_signal_range_agrees_with_the_kernels() -> None:
    assert (hcs.SIGRTMIN, hcs.SIGRTMAX) == (signals.SIGRTMIN, signals.SIGRTMAX)


def test_an_unknown_schema_name_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        hcs.validate("Nope", {})


def test_every_name_of_the_api_is_in_the_registry() -> None:
    for name in ("ComputeSystem", "ContainerSettings", "GuestOs", "Storage", "Layer",
                 "MappedDirectory", "Memory", "Processor", "Networking", "LinuxContainer",
                 "ProcessParameters", "CreateRequest", "ShutdownRequest", "WaitRequest",
                 "PropertyQuery", "ModifySettingRequest", "SignalRequest", "ResizeRequest",
                 "Summary", "Properties", "ProcessStatus", "Statistics", "Event", "Error"):
        assert name in hcs.SCHEMAS


def _walk(schema: Any, at: str) -> list[tuple[str, str]]:
    """(path, keyword) of every keyword of every (sub)schema."""
    found = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.append((at, key))
            if key == "properties":
                for prop, sub in value.items():
                    found += _walk(sub, f"{at}.{prop}")
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                found += _walk(value, f"{at}.{key}")
            elif key in ("oneOf", "anyOf"):
                for i, sub in enumerate(value):
                    found += _walk(sub, f"{at}.{key}[{i}]")
    return found


def test_every_keyword_the_schemas_use_is_one_the_validator_enforces_or_ignores() -> None:
    for name, schema in hcs.SCHEMAS.items():
        for at, keyword in _walk(schema, name):
            assert keyword in jsonschema.KEYWORDS, f"{at}: {keyword}"
            if keyword == "$ref":
                jsonschema.resolve({"$ref": _ref_at(schema, at)}, hcs.SCHEMAS)


def _ref_at(schema: Any, at: str) -> str:
    for part in at.split(".")[1:]:
        schema = schema["properties"][part] if part not in ("items",) else schema[part]
    ref = schema["$ref"]
    assert isinstance(ref, str)
    return ref


def test_openapi_components_is_a_copy() -> None:
    components = hcs.openapi_components()
    assert components["schemas"] == hcs.SCHEMAS
    components["schemas"]["Memory"]["properties"]["SizeInMB"]["minimum"] = 0
    assert hcs.SCHEMAS["Memory"]["properties"]["SizeInMB"]["minimum"] == 4


def test_answers_validate_against_their_schemas() -> None:
    summary = {"Id": "a", "Name": "a", "Owner": "silo", "SystemType": "Container",
               "State": "Stopped", "Pid": 0, "Created": "2024-01-01T00:00:00Z",
               "ExitCode": 0, "ExitType": "GracefulExit", "Image": "busybox"}
    stored = good()
    stored["Container"]["Storage"]["Layers"] = [{"Id": "sha256:0", "Path": "/var/lib/x"}]
    props = {**summary, "Configuration": stored,
             "Statistics": {"Memory": {"UsageBytes": 1, "LimitBytes": None, "MaxUsageBytes": 2},
                            "Processor": {"TotalRuntimeNs": 3},
                            "Pids": {"Current": 1, "Limit": None}},
             "ProcessList": [{"ProcessId": 1, "CommandLine": "sh"}]}
    for name, doc in (("Summary", summary), ("Properties", props),
                      ("ProcessStatus", {"ProcessId": 5, "Exited": True, "ExitCode": 1}),
                      ("Event", {"Time": "t", "Type": "ProcessExited", "Id": "a",
                                 "ProcessId": 5, "ExitCode": 0}),
                      ("Error", {"Code": "not_found", "Message": "x: gone", "Id": "x"})):
        jsonschema.validate(hcs.SCHEMAS[name], copy.deepcopy(doc), "", hcs.SCHEMAS)
    with pytest.raises(InvalidArgument, match=r"^State: must be one of"):
        jsonschema.validate(hcs.SCHEMAS["Summary"], {**summary, "State": "Running2"}, "",
                            hcs.SCHEMAS)


def test_importing_it_stays_lean() -> None:
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "src")
    code = (f"import sys; sys.path.insert(0, {src!r}); import silo.schema.hcs; "
            "heavy = {'re', 'typing', 'json', 'copy', 'enum'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True)
