"""silo-cni in-process against silod's real network API (HTTP server, HostNetworkService) over
a recording fake data path: results per spec version, what ADD makes and DEL removes, the
spec's error codes for each bad input with nothing half-created, GC, STATUS, CHECK's record
checks, a delegated IPAM plugin, and the lean import path of the command."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from silo.cni.main import main
from silo.errors import Internal
from silo.network.hns import HostNetworkService
from silo.network.store import MemoryStore
from silo.schema import cni
from tests.unit.fake_datapath import FakeDataPath
from tests.unit.served import serving
from tests.unit.test_lean_imports import forbidden_imports

pytestmark = pytest.mark.unit

CID = "a" * 64  # containerd's sandbox ids are 64 hex digits


@pytest.fixture
def svc() -> HostNetworkService:
    return HostNetworkService(MemoryStore(), FakeDataPath(), check_netns=lambda path: None)


@pytest.fixture
def host(tmp_path: Path, svc: HostNetworkService) -> Iterator[str]:
    with serving(tmp_path, network=svc) as sock:
        yield "unix://" + sock


@pytest.fixture
def netns(tmp_path: Path) -> str:
    """Stands for a netns file (the fake data path and service do not open it)."""
    path = tmp_path / "netns-1"
    path.write_text("")
    return str(path)


class Plugin:
    def __init__(self, host: str, netns: str, tmp: Path) -> None:
        self.host = host
        self.netns = netns
        self.tmp = tmp

    def conf(self, **more: Any) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "podnet", "type": "silo-cni",
                "host": self.host, "ipam": {"subnet": "10.77.0.0/24"}, **more}

    def env(self, command: str, **more: str) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": CID, "CNI_NETNS": self.netns,
                "CNI_IFNAME": "eth0", "CNI_PATH": str(self.tmp / "cni-bin"), **more}

    def __call__(self, command: str, conf: Any = None, raw: bytes | None = None,
                 **env: str) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(
            self.conf() if conf is None else conf).encode()
        out, err = io.StringIO(), io.StringIO()
        full = self.env(command)
        for k, v in env.items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        code = main(full, io.BytesIO(data), out, err)
        text = out.getvalue().strip()
        doc = json.loads(text) if text else None
        if code:
            assert doc is not None and doc["code"] and doc["msg"], (code, text)
            assert err.getvalue().startswith("silo-cni: ")
        else:
            assert not err.getvalue()
        return code, doc


@pytest.fixture
def plugin(host: str, netns: str, tmp_path: Path) -> Plugin:
    return Plugin(host, netns, tmp_path)


def picture(svc: HostNetworkService) -> Any:
    assert isinstance(svc.datapath, FakeDataPath) and isinstance(svc.store, MemoryStore)
    return svc.store.load(), svc.datapath.host()


# -- VERSION ---------------------------------------------------------------------------------


def test_version_lists_the_spoken_versions(plugin: Plugin) -> None:
    code, doc = plugin("VERSION", raw=b'{"cniVersion": "0.4.0"}')
    assert code == 0
    assert doc == {"cniVersion": "0.4.0", "supportedVersions": list(cni.SUPPORTED_VERSIONS)}
    code, doc = plugin("VERSION", raw=b"")
    assert code == 0 and doc["cniVersion"] == cni.LATEST


# -- ADD and DEL -----------------------------------------------------------------------------


def test_add_makes_the_network_an_endpoint_and_attaches_it(plugin: Plugin,
                                                            svc: HostNetworkService) -> None:
    conf = plugin.conf(
        dns={"nameservers": ["10.96.0.10"], "search": ["svc.local"], "options": ["ndots:5"]},
        capabilities={"portMappings": True, "dns": True},
        runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                         "protocol": "tcp"}],
                       "dns": {"servers": ["10.96.0.11"], "searches": ["ns.svc.local"]}},
        policies=[{"name": "EndpointPolicy",
                   "value": {"Type": "ACL", "Settings": {"Action": "Block", "Direction": "In",
                                                        "Protocols": "17"}}}],
        ipMasqNetwork="10.0.0.0/8")
    code, result = plugin("ADD", conf)
    assert code == 0, result
    net = svc.get("network", "podnet")
    assert net["Type"] == "NAT"
    assert net["Ipams"][0]["Subnets"][0]["IpAddressPrefix"] == "10.77.0.0/24"
    ep = svc.get("endpoint", f"{CID}_podnet")
    ns = svc.get("namespace", ep["HostComputeNamespace"])
    assert ns["Linux"] == {"NetnsPath": plugin.netns, "Managed": False}
    assert ep["Linux"]["InterfaceName"] == "eth0"
    types = [p["Type"] for p in ep["Policies"]]
    assert types == ["ACL", "PortMapping", "OutBoundNAT"]
    assert ep["Policies"][1]["Settings"] == {"Protocol": 6, "InternalPort": 80,
                                             "ExternalPort": 8080, "Flags": 1}
    assert ep["Policies"][2]["Settings"]["Exceptions"] == ["10.0.0.0/8"]
    # runtimeConfig.dns (the dns capability) wins over the config's own dns
    assert ep["Dns"] == {"ServerList": ["10.96.0.11"], "Search": ["ns.svc.local"],
                         "Options": ["ndots:5"]}
    addr = ep["IpConfigurations"][0]["IpAddress"]
    assert result == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": ep["Linux"]["HostInterface"]},
                       {"name": "eth0", "mac": ep["MacAddress"].replace("-", ":").lower(),
                        "sandbox": plugin.netns}],
        "ips": [{"interface": 1, "address": f"{addr}/24", "gateway": "10.77.0.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}],
        "dns": {"nameservers": ["10.96.0.11"], "search": ["ns.svc.local"],
                "options": ["ndots:5"]},
    }
    assert svc.datapath.ports[ep["ID"]] == (plugin.netns, "eth0")  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_old_versions_get_the_old_result_shape(plugin: Plugin, version: str) -> None:
    code, result = plugin("ADD", plugin.conf(cniVersion=version))
    assert code == 0, result
    assert result["cniVersion"] == version
    assert result["ips"][0]["version"] == "4"


def test_1_1_0_and_an_interface_name_of_the_runtime(plugin: Plugin,
                                                    svc: HostNetworkService) -> None:
    code, result = plugin("ADD", plugin.conf(cniVersion="1.1.0"), CNI_IFNAME="net1")
    assert code == 0, result
    assert result["cniVersion"] == "1.1.0" and "version" not in result["ips"][0]
    assert result["interfaces"][1]["name"] == "net1"
    assert svc.get("endpoint", f"{CID}_podnet")["Linux"]["InterfaceName"] == "net1"


def test_del_removes_what_add_made_and_is_idempotent(plugin: Plugin,
                                                     svc: HostNetworkService) -> None:
    code, _ = plugin("ADD")
    assert code == 0
    net = svc.get("network", "podnet")
    before = picture(svc)
    assert plugin("DEL") == (0, None)
    assert svc.query("endpoint") == [] and svc.query("namespace") == []
    assert svc.ipam.in_use(net["ID"]) == 0
    # the network stays, as sdnbridge leaves it, for the next pod
    assert svc.get("network", "podnet")["ID"] == net["ID"]
    assert picture(svc) != before
    after = picture(svc)
    assert plugin("DEL") == (0, None)                          # a second DEL
    assert plugin("DEL", CNI_NETNS="") == (0, None)            # no netns any more
    assert plugin("DEL", CNI_CONTAINERID="unknown1") == (0, None)
    assert plugin("DEL", CNI_PATH=None) == (0, None)  # type: ignore[arg-type]
    assert picture(svc) == after


def test_two_networks_in_one_netns_share_its_namespace_document(
        plugin: Plugin, svc: HostNetworkService) -> None:
    assert plugin("ADD")[0] == 0
    other = plugin.conf(name="second", ipam={"subnet": "10.78.0.0/24"})
    code, result = plugin("ADD", other, CNI_IFNAME="eth1")
    assert code == 0, result
    [ns] = svc.query("namespace")
    assert len(ns["Resources"]) == 2
    assert plugin("DEL", other, CNI_IFNAME="eth1") == (0, None)
    assert len(svc.query("namespace")[0]["Resources"]) == 1
    assert plugin("DEL") == (0, None)
    assert svc.query("namespace") == []


# -- bad input: the spec's code, nothing made --------------------------------------------------


def _bad_cases(plugin: Plugin) -> list[tuple[str, dict[str, Any], bytes | None, int, str]]:
    c = plugin.conf
    return [
        ("no command", {"CNI_COMMAND": ""}, None, cni.INVALID_ENVIRONMENT, "CNI_COMMAND"),
        ("unknown command", {"CNI_COMMAND": "FROB"}, None, cni.INVALID_ENVIRONMENT, "FROB"),
        ("no container id", {"CNI_CONTAINERID": None}, None, cni.INVALID_ENVIRONMENT,
         "CNI_CONTAINERID"),
        ("bad container id", {"CNI_CONTAINERID": "a/b"}, None, cni.INVALID_ENVIRONMENT,
         "CNI_CONTAINERID"),
        ("no netns", {"CNI_NETNS": None}, None, cni.INVALID_ENVIRONMENT, "CNI_NETNS"),
        ("no ifname", {"CNI_IFNAME": None}, None, cni.INVALID_ENVIRONMENT, "CNI_IFNAME"),
        ("bad ifname", {"CNI_IFNAME": "x" * 16}, None, cni.INVALID_ENVIRONMENT, "CNI_IFNAME"),
        ("no path", {"CNI_PATH": None}, None, cni.INVALID_ENVIRONMENT, "CNI_PATH"),
        ("relative netns", {"CNI_NETNS": "netns/x"}, None, cni.INVALID_ENVIRONMENT,
         "absolute"),
        ("netns gone", {"CNI_NETNS": "/run/nothing-here/netns"}, None, cni.UNKNOWN_CONTAINER,
         "does not exist"),
        ("not json", {}, b"{nope", cni.DECODE_FAILURE, "not JSON"),
        ("not an object", {}, b"[1]", cni.DECODE_FAILURE, "JSON object"),
        ("no version", {}, json.dumps({**c(), "cniVersion": ""}).encode(), cni.INVALID_CONFIG,
         "cniVersion"),
        ("future version", {}, json.dumps(c(cniVersion="9.9.9")).encode(),
         cni.INCOMPATIBLE_VERSION, "9.9.9"),
        ("no name", {}, json.dumps({**c(), "name": ""}).encode(), cni.INVALID_CONFIG, "name"),
        ("bad name", {}, json.dumps(c(name="a b")).encode(), cni.INVALID_CONFIG, "name"),
        ("no type", {}, json.dumps({**c(), "type": None}).encode(), cni.INVALID_CONFIG,
         "type"),
        ("bad network type", {}, json.dumps(c(networkType="Overlay")).encode(),
         cni.INVALID_CONFIG, "networkType"),
        ("no subnet", {}, json.dumps(c(ipam={})).encode(), cni.INVALID_CONFIG,
         "ipam.subnet"),
        ("bad subnet", {}, json.dumps(c(ipam={"subnet": "10.77.0.1/24"})).encode(),
         cni.INVALID_CONFIG, "host bits"),
        ("bad port", {}, json.dumps(c(runtimeConfig={"portMappings": [
            {"hostPort": 0, "containerPort": 80}]})).encode(), cni.INVALID_CONFIG,
         "runtimeConfig.portMappings[0].hostPort"),
        ("bad protocol", {}, json.dumps(c(runtimeConfig={"portMappings": [
            {"hostPort": 80, "containerPort": 80, "protocol": "sctp"}]})).encode(),
         cni.INVALID_CONFIG, "protocol"),
        ("bad dns", {}, json.dumps(c(dns={"nameservers": "1.1.1.1"})).encode(),
         cni.INVALID_CONFIG, "dns.nameservers"),
        ("bad dns server", {}, json.dumps(c(dns={"nameservers": ["one"]})).encode(),
         cni.INVALID_CONFIG, "Dns.ServerList[0]"),
        ("bad policy", {}, json.dumps(c(policies=[{"name": "Other", "value": {}}])).encode(),
         cni.INVALID_CONFIG, "policies[0].name"),
        ("unsupported policy", {}, json.dumps(c(policies=[
            {"name": "EndpointPolicy", "value": {"Type": "L4Proxy", "Settings": {}}}])).encode(),
         cni.UNSUPPORTED_FIELD, "L4Proxy"),
        ("bad policy settings", {}, json.dumps(c(policies=[
            {"name": "EndpointPolicy", "value": {"Type": "PortMapping",
                                                 "Settings": {"ExternalPort": 0}}}])).encode(),
         cni.INVALID_CONFIG, "ExternalPort"),
        ("unknown ipam plugin", {}, json.dumps(c(ipam={"type": "nope"})).encode(),
         cni.INVALID_CONFIG, "ipam.type"),
    ]


def test_bad_input_gets_the_spec_code_and_changes_nothing(plugin: Plugin,
                                                          svc: HostNetworkService) -> None:
    before = picture(svc)
    for what, env, raw, code, words in _bad_cases(plugin):
        got, doc = plugin("ADD", raw=raw, **env)
        assert got == 1, what
        assert doc["code"] == code, (what, doc)
        assert words in doc["msg"], (what, doc)
        assert picture(svc) == before, what


def test_bad_input_on_an_existing_network_changes_nothing(plugin: Plugin,
                                                          svc: HostNetworkService) -> None:
    assert plugin("ADD", CNI_CONTAINERID="first")[0] == 0
    before = picture(svc)
    bad = plugin.conf(runtimeConfig={"portMappings": [{"hostPort": 8080,
                                                       "containerPort": 80}]})
    assert plugin("ADD", bad, CNI_CONTAINERID="second")[0] == 0
    # the same host port for a third container: silod refuses, nothing is left of the try
    mid = picture(svc)
    code, doc = plugin("ADD", bad, CNI_CONTAINERID="third")
    assert code == 1 and doc["code"] == cni.SILOD_REFUSED, doc
    assert "port already exists" in doc["msg"] and "already_exists" in doc["details"]
    assert picture(svc) == mid
    assert plugin("DEL", bad, CNI_CONTAINERID="second") == (0, None)
    assert picture(svc) == before


def test_add_twice_is_refused_and_keeps_the_first(plugin: Plugin,
                                                  svc: HostNetworkService) -> None:
    code, _ = plugin("ADD")
    assert code == 0
    before = picture(svc)
    code, doc = plugin("ADD")
    assert code == 1 and doc["code"] == cni.SILOD_REFUSED
    assert "already added" in doc["msg"]
    assert picture(svc) == before


def test_a_stale_endpoint_of_the_same_name_is_replaced(plugin: Plugin, tmp_path: Path,
                                                       svc: HostNetworkService) -> None:
    assert plugin("ADD")[0] == 0
    old = svc.get("endpoint", f"{CID}_podnet")
    other = tmp_path / "netns-2"
    other.write_text("")
    code, result = plugin("ADD", CNI_NETNS=str(other))
    assert code == 0, result
    new = svc.get("endpoint", f"{CID}_podnet")
    assert new["ID"] != old["ID"]
    [ns] = svc.query("namespace")
    assert ns["Linux"]["NetnsPath"] == str(other)


def test_a_failed_attach_leaves_nothing(plugin: Plugin, svc: HostNetworkService) -> None:
    before = picture(svc)
    dp = svc.datapath
    assert isinstance(dp, FakeDataPath)
    dp.fail["attach"] = Internal("veth refused")
    code, doc = plugin("ADD")
    assert code == 1 and doc["code"] == cni.SILOD_REFUSED and "veth refused" in doc["msg"]
    assert svc.query("network") == []  # made by this ADD, so removed again
    assert picture(svc) == before


def test_silod_down(plugin: Plugin, tmp_path: Path) -> None:
    gone = plugin.conf(host=f"unix://{tmp_path}/nothing.sock")
    for command in ("ADD", "DEL"):
        # (DEL: the netns file here is no netns, so whether the interface is in it cannot
        # be told)
        code, doc = plugin(command, gone)
        assert code == 1 and doc["code"] == cni.TRY_AGAIN_LATER, doc
        assert "silod is not running" in doc["msg"]
    # DEL with nothing of the container left in the kernel succeeds
    assert plugin("DEL", gone, CNI_NETNS="") == (0, None)
    assert plugin("DEL", gone, CNI_NETNS=str(tmp_path / "gone-netns")) == (0, None)
    code, doc = plugin("STATUS", {**gone, "cniVersion": "1.1.0"})
    assert code == 1 and doc["code"] == cni.NOT_AVAILABLE
    code, doc = plugin("ADD", gone, SILO_HOST="unix:///elsewhere")  # the config wins
    assert "nothing.sock" in doc["msg"]


def test_status(plugin: Plugin) -> None:
    assert plugin("STATUS", plugin.conf(cniVersion="1.1.0")) == (0, None)
    code, doc = plugin("STATUS")  # 1.0.0 has no STATUS
    assert code == 1 and doc["code"] == cni.INCOMPATIBLE_VERSION


def test_gc_removes_containers_that_are_not_valid(plugin: Plugin, tmp_path: Path,
                                                  svc: HostNetworkService) -> None:
    for cid in ("keep1", "drop1", "drop2"):
        path = tmp_path / f"ns-{cid}"
        path.write_text("")
        assert plugin("ADD", CNI_CONTAINERID=cid, CNI_NETNS=str(path))[0] == 0
    # silod's own containers' endpoints are never the plugin's to collect
    svc.attach_container("podnet", "silod-own")
    conf = plugin.conf(cniVersion="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "keep1", "ifname": "eth0"}]})
    assert plugin("GC", conf) == (0, None)
    names = sorted(e.get("Name", "") for e in svc.query("endpoint"))
    assert names == ["", "keep1_podnet"]
    assert len(svc.query("namespace")) == 2
    assert plugin("GC", {**conf, "name": "nonet"}) == (0, None)
    svc.detach_container("silod-own")


def test_check_compares_silods_record(plugin: Plugin) -> None:
    code, result = plugin("ADD")
    assert code == 0
    code, doc = plugin("CHECK")
    assert code == 1 and doc["code"] == cni.INVALID_CONFIG and "prevResult" in doc["msg"]
    wrong = {**result, "ips": [{"address": "10.77.0.200/24"}]}
    code, doc = plugin("CHECK", plugin.conf(prevResult=wrong))
    assert code == 1 and doc["code"] == cni.SILOD_REFUSED and "10.77.0.200/24" in doc["msg"]
    code, doc = plugin("CHECK", plugin.conf(prevResult=result), CNI_IFNAME="eth9")
    assert code == 1 and "eth9" in doc["msg"]
    code, doc = plugin("CHECK", plugin.conf(prevResult=result), CNI_CONTAINERID="other")
    assert code == 1 and "no endpoint" in doc["msg"]
    code, doc = plugin("CHECK", plugin.conf(cniVersion="0.3.1", prevResult=result))
    assert code == 1 and doc["code"] == cni.INCOMPATIBLE_VERSION


FAKE_IPAM = """#!/bin/sh
echo "$CNI_COMMAND $CNI_CONTAINERID" >> {log}
cat > /dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.79.0.42/24","gateway":"10.79.0.1"}}]}}'
fi
"""


def test_delegated_ipam(plugin: Plugin, tmp_path: Path, svc: HostNetworkService) -> None:
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    log = tmp_path / "ipam.log"
    script = bindir / "fake-ipam"
    script.write_text(FAKE_IPAM.format(log=log))
    script.chmod(0o755)
    conf = plugin.conf(ipam={"type": "fake-ipam"})
    code, result = plugin("ADD", conf)
    assert code == 0, result
    assert result["ips"][0]["address"] == "10.79.0.42/24"
    net = svc.get("network", "podnet")
    assert net["Ipams"][0]["Subnets"][0]["IpAddressPrefix"] == "10.79.0.0/24"
    assert plugin("DEL", conf) == (0, None)
    assert log.read_text().split("\n")[:2] == [f"ADD {CID}", f"DEL {CID}"]
    # an ADD that silod then refuses gives the address back
    bad = {**conf, "policies": [{"name": "EndpointPolicy",
                                 "value": {"Type": "L4Proxy", "Settings": {}}}]}
    code, doc = plugin("ADD", bad)
    assert code == 1 and doc["code"] == cni.UNSUPPORTED_FIELD
    assert log.read_text().split("\n")[2:4] == [f"ADD {CID}", f"DEL {CID}"]
    assert svc.query("endpoint") == []


def test_the_command_imports_stay_lean() -> None:
    for module in ("silo.cni.main", "silo.cni.add", "silo.cni.delete", "silo.cni.status",
                   "silo.cni.gc", "silo.cni.check", "silo.schema.cni", "silo.client"):
        bad, report = forbidden_imports(module)
        assert not bad, report


def test_endpoint_names_fit_a_container_id_and_a_network(svc: HostNetworkService) -> None:
    from silo.errors import InvalidArgument

    svc.create_network({"Name": "n", "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.9.0.0/24"}]}]})
    svc.create_endpoint({"Name": "b" * 200, "HostComputeNetwork": "n"})
    with pytest.raises(InvalidArgument) as e:
        svc.create_endpoint({"Name": "c" * 201, "HostComputeNetwork": "n"})
    assert e.value.field == "Name"
    with pytest.raises(InvalidArgument) as e:  # other kinds keep HNS's 64
        svc.create_namespace({"Name": "d" * 65})
    assert e.value.field == "Name"


def test_capability_arguments_as_go_runtimes_spell_them(plugin: Plugin,
                                                        svc: HostNetworkService) -> None:
    """containerd's go-cni sends its structs without JSON tags: HostPort, Servers, ..."""
    conf = plugin.conf(runtimeConfig={
        "portMappings": [{"HostPort": 8081, "ContainerPort": 81, "Protocol": "udp",
                          "HostIP": ""}],
        "dns": {"Servers": ["10.96.0.12"], "Searches": ["a.local"], "Options": ["ndots:2"]}})
    code, result = plugin("ADD", conf)
    assert code == 0, result
    ep = svc.get("endpoint", f"{CID}_podnet")
    assert ep["Policies"][0]["Settings"] == {"Protocol": 17, "InternalPort": 81,
                                             "ExternalPort": 8081, "Flags": 1}
    assert ep["Dns"] == {"ServerList": ["10.96.0.12"], "Search": ["a.local"],
                         "Options": ["ndots:2"]}


def test_del_does_not_check_what_only_add_reads(plugin: Plugin, svc: HostNetworkService) -> None:
    """containerd keeps a sandbox's netns when the network teardown fails: a DEL must not
    fail on a field it never reads, or the netns of a refused ADD would stay forever."""
    bad = plugin.conf(runtimeConfig={"portMappings": [{"hostPort": None}]},
                      dns={"nameservers": "x"}, policies="nope", networkType="Overlay")
    code, doc = plugin("ADD", bad)
    assert code == 1 and doc["code"] == cni.INVALID_CONFIG
    assert plugin("DEL", bad) == (0, None)
    assert plugin("ADD")[0] == 0
    assert plugin("DEL", bad) == (0, None)  # and it removes what a good ADD made
    assert svc.query("endpoint") == []
    code, doc = plugin("DEL", raw=b"{nope")  # what is not a configuration is still refused
    assert code == 1 and doc["code"] == cni.DECODE_FAILURE


def test_an_ipam_plugin_that_cannot_run_and_a_bug_of_ours(plugin: Plugin, tmp_path: Path,
                                                          svc: HostNetworkService,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    broken = bindir / "broken-ipam"
    broken.write_bytes(b"\x7fELF not really")
    broken.chmod(0o755)
    code, doc = plugin("ADD", plugin.conf(ipam={"type": "broken-ipam"}))
    assert code == 1 and doc["code"] == cni.IO_FAILURE and "cannot run" in doc["msg"]
    assert svc.query("network") == [] and svc.query("namespace") == []

    def boom(call: object) -> None:
        raise KeyError("surprise")

    import silo.cni.status

    monkeypatch.setattr(silo.cni.status, "run", boom)
    code, doc = plugin("STATUS", plugin.conf(cniVersion="1.1.0"))
    assert code == 1 and doc == {"cniVersion": "1.1.0", "code": cni.INTERNAL,
                                 "msg": "silo-cni failed: 'surprise'", "details": "KeyError"}


def test_silods_socket_queues_a_node_full_of_plugins(tmp_path: Path) -> None:
    """Connections wait in silod's listen queue until it accepts them: 64 at once (the
    plugins of a node starting its pods) are all queued, none refused with EAGAIN."""
    import socket

    from silo.service.http import _Handler, _UnixListener

    path = str(tmp_path / "queue.sock")
    listener = _UnixListener(path, _Handler)  # bound and listening, never accepting
    clients = []
    try:
        for _ in range(64):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(5)  # as silo.client's: a non-blocking connect underneath
            clients.append(c)
            c.connect(path)
    finally:
        for c in clients:
            c.close()
        listener.server_close()
