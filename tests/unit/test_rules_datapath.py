"""DataPath refuses bad documents before it touches the kernel: its netlink and nft are
recording fakes here, and every refusal must leave them without a single call."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from silo.errors import InvalidArgument, NotSupported
from silo.network.datapath import DataPath
from silo.network.rules.policy import MAX_ACL_COMBINATIONS

pytestmark = pytest.mark.unit

NET: dict[str, Any] = {"ID": "0a0b0c0d-0000-4000-8000-000000000001", "Type": "NAT",
                       "Ipams": [{"Subnets": [{"IpAddressPrefix": "10.1.2.0/24"}]}]}
EP: dict[str, Any] = {"ID": "e0e1e2e3-e4e5-4000-8000-000000000002",
                      "HostComputeNetwork": NET["ID"],
                      "IpConfigurations": [{"IpAddress": "10.1.2.5", "PrefixLength": 24}]}


class Recorder:
    """Records every method called on it; returns nothing."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append(name)
        return record


@pytest.fixture
def dp(tmp_path: Any) -> tuple[DataPath, Recorder, Recorder]:
    nl, nft = Recorder(), Recorder()
    return DataPath(prefix="tu", run_dir=str(tmp_path), netlink=nl, nft=nft), nl, nft  # type: ignore[arg-type]


def ep_with(**change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EP)
    doc.update(change)
    return doc


@pytest.mark.parametrize(("net", "ep", "field"), [
    (NET, ep_with(HostComputeNetwork="ffffffff-0000-4000-8000-000000000009"),
     "HostComputeNetwork"),
    (NET, ep_with(MacAddress="ff:ff:ff:ff:ff:ff"), "MacAddress"),
    (NET, ep_with(IpConfigurations=[{"IpAddress": "10.1.2.5"}]),
     "IpConfigurations[0].PrefixLength"),
    (NET, ep_with(Policies=[{"Type": "PortMapping", "Settings": {
        "Protocol": 6, "InternalPort": 80, "Flags": 2}}]), "Policies[0]"),
    (NET, ep_with(Policies=[{"Type": "ACL", "Settings": {
        "Action": "Block", "Direction": "In",
        "LocalPorts": ",".join(str(p) for p in range(1, MAX_ACL_COMBINATIONS + 2))}}]),
     "Policies[0].Settings"),
    ({**NET, "Ipams": [{"Subnets": [{"IpAddressPrefix": "300.1.2.0/24"}]}]}, EP,
     "Ipams[0].Subnets[0].IpAddressPrefix"),
    (NET, ep_with(ID="no-hex-here"), "ID"),
])
def test_attach_refuses_bad_documents_before_any_kernel_call(
        dp: tuple[DataPath, Recorder, Recorder], net: dict[str, Any], ep: dict[str, Any],
        field: str) -> None:
    path, nl, nft = dp
    with pytest.raises(InvalidArgument) as err:
        path.attach(net, ep, "/nonexistent/netns")
    assert err.value.field == field
    assert nl.calls == [] and nft.calls == []


def test_attach_refuses_a_path_that_is_not_a_netns(
        dp: tuple[DataPath, Recorder, Recorder], tmp_path: Any) -> None:
    path, nl, nft = dp
    plain = tmp_path / "plain-file"
    plain.write_text("")
    for where in (str(plain), "/nonexistent/netns"):
        with pytest.raises(InvalidArgument) as err:
            path.attach(NET, EP, where)
        assert err.value.field == "NetnsPath"
    with pytest.raises(InvalidArgument) as err:
        path.attach(NET, EP, str(plain), ifname="a name too long for linux")
    assert err.value.field == "InterfaceName"
    assert nl.calls == [] and nft.calls == []


def test_unknown_types_and_policies_are_not_supported(
        dp: tuple[DataPath, Recorder, Recorder]) -> None:
    path, nl, nft = dp
    with pytest.raises(NotSupported):
        path.ensure_network({**NET, "Type": "L2Tunnel"})
    with pytest.raises(NotSupported):
        path.ensure_network({**NET, "Policies": [{"Type": "L4Proxy", "Settings": {}}]})
    assert nl.calls == [] and nft.calls == []


def test_delete_namespace_only_removes_its_own(
        dp: tuple[DataPath, Recorder, Recorder], tmp_path: Any) -> None:
    path, _nl, _nft = dp
    for bad in ("/etc/passwd", f"{tmp_path}/netns/other-x", f"{tmp_path}/netns/tu-",
                f"{tmp_path}/netns/tu-a/../../x"):
        with pytest.raises(InvalidArgument) as err:
            path.delete_namespace(bad)
        assert err.value.field == "NetnsPath"
    with pytest.raises(InvalidArgument):
        DataPath(prefix="Bad-Prefix")
