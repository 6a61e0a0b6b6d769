"""The compute service and the network service together (the service layer's joins): a
container's Networking.Network gives it an endpoint in a namespace of its own, the delete takes
them away, a refused join leaves nothing, and ``adopt_network`` removes what the network
service still keeps for containers that no longer exist. The network's data path is the
recording fake here; the real one is driven end to end in tests/e2e/test_silod_run_network.py.
"""

from __future__ import annotations

import pytest

from silo import errors
from silo.network.hns import HostNetworkService
from silo.network.store import MemoryStore
from silo.service.compute import ComputeService
from tests.kernel import test_compute_service as compute_tests
from tests.kernel.test_compute_service import Env
from tests.unit.fake_datapath import FakeDataPath

pytestmark = pytest.mark.kernel
env = compute_tests.env      # the compute service's fixtures: a service on dirs of its own
svc = compute_tests.svc

SUBNET = {"Type": "Static", "Subnets": [{"IpAddressPrefix": "10.231.7.0/24"}]}


def network_service() -> HostNetworkService:
    hns = HostNetworkService(MemoryStore(), FakeDataPath())
    hns.load()
    hns.create_network({"Name": "lan", "Type": "Internal", "Ipams": [SUBNET]})
    return hns


def test_adopt_network_removes_the_network_of_containers_that_are_gone(
        svc: ComputeService) -> None:
    hns = network_service()
    hns.attach_container("lan", "ghost-container")       # a create silod never recorded
    assert hns.container_namespace("ghost-container") is not None
    assert svc.adopt_network(hns) == ["ghost-container"]
    assert hns.container_namespace("ghost-container") is None
    assert hns.query("endpoint") == [] and hns.query("namespace") == []
    assert svc.network is hns


def test_a_join_the_network_refuses_leaves_no_container(svc: ComputeService, env: Env) -> None:
    hns = network_service()
    svc.adopt_network(hns)
    doc = env.doc("true")
    doc["Configuration"]["Container"]["Networking"] = {"Network": "no-such-network"}
    with pytest.raises(errors.NotFound) as e:
        svc.create(doc)
    assert "Networking.Network" in e.value.message
    assert svc.list() == [] and hns.query("namespace") == []


def test_a_network_without_the_network_service_is_unavailable(svc: ComputeService,
                                                              env: Env) -> None:
    doc = env.doc("true")
    doc["Configuration"]["Container"]["Networking"] = {"Network": "nat"}
    with pytest.raises(errors.Unavailable) as e:
        svc.create(doc)
    assert "Networking.Network" in e.value.message
    assert svc.list() == []
