"""Fuzzing silod's network routes from the OpenAPI document (schemathesis), over loopback TCP,
against a real HostNetworkService (recording fake data path, in-memory records) seeded with a
network, an endpoint attached to a namespace, and a free endpoint. For each generated request:
no 500; the status is one the document declares and the body fits its schema; an invalid
request is a 4xx; a 400 names its field and its Message starts with it; a refused request
changes nothing (records, data path, addresses)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from silo.network.hns import HostNetworkService
from silo.network.store import MemoryStore
from silo.service.app import openapi_document
from tests.unit import fuzzing
from tests.unit.fake_datapath import FakeDataPath

pytestmark = pytest.mark.unit

SEEDS = ["seed", "seedep", "freeep", "seedns"]
CODE_OF_5XX = {501: "not_supported", 503: "unavailable"}


def seeded() -> HostNetworkService:
    svc = HostNetworkService(MemoryStore(), FakeDataPath(), check_netns=lambda path: None)
    svc.create_network({"Name": "seed", "Ipams": [{"Subnets": [
        {"IpAddressPrefix": "10.90.0.0/24"}]}]})
    svc.create_endpoint({"Name": "seedep", "HostComputeNetwork": "seed", "Policies": [
        {"Type": "PortMapping", "Settings": {"ExternalPort": 8080}}]})
    svc.create_endpoint({"Name": "freeep", "HostComputeNetwork": "seed"})
    svc.create_namespace({"Name": "seedns"})
    svc.attach("seedns", "seedep")
    return svc


def snapshot(svc: HostNetworkService) -> Any:
    assert isinstance(svc.datapath, FakeDataPath)
    return (svc.store.load(), svc.datapath.host(),
            {n: svc.ipam.in_use(n) for n in svc.store.load()["network"]})


class Current:
    def __init__(self) -> None:
        self.network: HostNetworkService | None = None
        self.lock = threading.Lock()


@pytest.fixture(scope="module")
def current() -> Current:
    return Current()


@pytest.fixture(scope="module")
def base_url(current: Current) -> Iterator[str]:
    with fuzzing.served(current) as url:
        yield url


session = fuzzing.session  # one HTTP session for the module's requests


CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": 25, "deterministic": True},
})
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG).include(
    path_regex="^/v1/(networks|endpoints|namespaces)")


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    if not path_parameters:
        return st.just(path_parameters)
    ref = path_parameters.get("id")
    if isinstance(ref, str) and ref:
        return st.fixed_dictionaries({"id": st.sampled_from([*SEEDS, ref])})
    return st.just(path_parameters)


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_network_api_holds_up_under_generated_requests(
        case: Any, current: Current, base_url: str, session: requests.Session) -> None:
    with current.lock:
        current.network = seeded()
        before = snapshot(current.network)
        response = case.call_and_validate(
            base_url=base_url, session=session, timeout=10,
            excluded_checks=[not_a_server_error, positive_data_acceptance])
        status = response.status_code
        body = fuzzing.checked_answer(response, CODE_OF_5XX)
        if 400 <= status < 600:
            assert snapshot(current.network) == before, f"{status} {body} changed the service"
