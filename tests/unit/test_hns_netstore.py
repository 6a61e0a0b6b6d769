"""silod's SQLite record of the network service, and silod serving the network service it
made: records survive a reopen (the service's load takes their addresses), and a network
service that cannot start leaves silod serving the rest with 503 on the network routes."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from silo.client import Client
from silo.errors import Internal, Unavailable
from silo.network.hns import HostNetworkService
from silo.network.store import MemoryStore
from silo.service import daemon
from silo.service.config import DaemonConfig
from silo.service.netstore import SQLiteNetworkStore
from tests.unit.fake_compute import FakeCompute
from tests.unit.fake_datapath import FakeDataPath

pytestmark = pytest.mark.unit


def test_documents_round_trip_and_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db" / "silod.db")
    store = SQLiteNetworkStore(path)
    assert store.load() == {"network": {}, "endpoint": {}, "namespace": {}}
    store.put("network", "n1", {"ID": "n1", "Name": "web", "Ipams": []})
    store.put("network", "n1", {"ID": "n1", "Name": "web2"})
    store.put("endpoint", "e1", {"ID": "e1"})
    store.delete("endpoint", "e1")
    store.delete("endpoint", "nothing")
    store.close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    again = SQLiteNetworkStore(path)
    assert again.load() == {"network": {"n1": {"ID": "n1", "Name": "web2"}}, "endpoint": {},
                            "namespace": {}}
    again.close()


def test_a_bad_kind_is_refused_by_the_database(tmp_path: Path) -> None:
    store = SQLiteNetworkStore(str(tmp_path / "silod.db"))
    with pytest.raises(Internal) as e:
        store.put("loadbalancer", "x", {})
    assert isinstance(e.value.__cause__, sqlite3.Error)
    store.close()


def test_the_service_restores_from_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "silod.db")
    first = HostNetworkService(SQLiteNetworkStore(path), FakeDataPath())
    first.load()
    first.create_network({"Name": "web", "Ipams": [{"Subnets": [
        {"IpAddressPrefix": "10.61.0.0/24"}]}]})
    ep = first.create_endpoint({"HostComputeNetwork": "web"})
    first.close()
    second = HostNetworkService(SQLiteNetworkStore(path), FakeDataPath())
    assert second.load()["endpoint"] == [ep["ID"]]
    assert second.get("endpoint", ep["ID"]) == ep
    nxt = second.create_endpoint({"HostComputeNetwork": "web"})
    assert nxt["IpConfigurations"] != ep["IpConfigurations"]
    second.close()


def serve_with(tmp_path: Path, network_factory: daemon.NetworkFactory) -> Client:
    config = DaemonConfig(data_dir=str(tmp_path / "d"), run_dir=str(tmp_path / "r"),
                          runtime="rt")
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=daemon.serve, args=(config, stop), kwargs={
        "service_factory": lambda c: FakeCompute(), "ready": lambda s: ready.set(),
        "network_factory": network_factory})
    thread.start()
    assert ready.wait(20)
    client = Client("unix://" + config.socket, timeout=10)
    client.stop = stop  # type: ignore[attr-defined]
    client.thread = thread  # type: ignore[attr-defined]
    return client


def finish(client: Client) -> None:
    client.stop.set()  # type: ignore[attr-defined]
    client.thread.join(10)  # type: ignore[attr-defined]


def test_silod_serves_the_network_service_it_loaded(tmp_path: Path) -> None:
    store = MemoryStore()
    store.put("network", "a5f4d1c6-0000-4000-8000-000000000001", {
        "ID": "a5f4d1c6-0000-4000-8000-000000000001", "Name": "old", "Type": "NAT",
        "Ipams": [{"Type": "Static", "Subnets": [{"IpAddressPrefix": "10.62.0.0/24"}]}]})
    made: list[HostNetworkService] = []

    def factory(config: DaemonConfig) -> HostNetworkService:
        made.append(HostNetworkService(store, FakeDataPath()))
        return made[-1]

    client = serve_with(tmp_path, factory)
    try:
        assert [n["Name"] for n in client.list_networks()] == ["old"]
        rebuilt = made[0].datapath.rebuilt  # type: ignore[attr-defined]
        assert [n["Name"] for n in rebuilt[0]] == ["old"]
        assert client.list_systems() == []
    finally:
        finish(client)


def test_a_network_service_that_cannot_start_leaves_the_rest_served(tmp_path: Path) -> None:
    def factory(config: DaemonConfig) -> HostNetworkService:
        dp = FakeDataPath()
        dp.fail["rebuild"] = Internal("nft refused")
        return HostNetworkService(MemoryStore(), dp)

    client = serve_with(tmp_path, factory)
    try:
        assert client.list_systems() == []
        with pytest.raises(Unavailable) as e:
            client.list_networks()
        assert "network" in e.value.message
    finally:
        finish(client)


def test_the_network_prefix_flag_is_checked() -> None:
    from silo.errors import InvalidArgument

    args = daemon.parse_args(["--network-prefix", "Bad-Prefix"])
    with pytest.raises(InvalidArgument) as e:
        daemon.build_config(args)
    assert e.value.field == "--network-prefix"
    assert daemon.build_config(daemon.parse_args(["--network-prefix", "t1"])).network_prefix \
        == "t1"


def test_the_fast_path_is_on_unless_turned_off(tmp_path: Path) -> None:
    assert daemon.build_config(daemon.parse_args([])).network_fast_path is True
    config = daemon.build_config(daemon.parse_args(["--no-network-fast-path", "--data-dir",
                                                    str(tmp_path)]))
    assert config.network_fast_path is False
    service = daemon._network_service(config)
    try:
        assert service.datapath.fast_path is False
    finally:
        service.close()
