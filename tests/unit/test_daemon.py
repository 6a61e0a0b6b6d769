"""silod's entry point with a fake compute service: flags, start order, signals, detaching."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from silo.service import daemon
from silo.service.config import DaemonConfig
from silo.service.http import APIServer
from tests.unit.fake_compute import FakeCompute
from tests.unit.test_http import UnixConnection

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def get(path: str, url: str = "/v1/compute-systems") -> tuple[int, Any]:
    conn = UnixConnection(path)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def flags(tmp_path: Path, *more: str) -> list[str]:
    return ["--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"), *more]


def test_flags_make_the_config(tmp_path: Path) -> None:
    args = daemon.parse_args(flags(tmp_path, "--socket", "s.sock", "--listen",
                                   "tcp:127.0.0.1:7000", "--runtime", "/bin/rt",
                                   "--cgroup-parent", "/x"))
    config = daemon.build_config(args)
    assert config.data_dir == str(tmp_path / "data")
    assert config.run_dir == str(tmp_path / "run")
    assert config.socket == os.path.abspath("s.sock")
    assert config.listen_tcp == "127.0.0.1:7000"
    assert config.runtime == "/bin/rt"
    assert config.cgroup_parent == "/x"
    assert config.runtime_root == str(tmp_path / "run" / "runtime")

    default = daemon.build_config(daemon.parse_args(flags(tmp_path)))
    assert default.socket == str(tmp_path / "run" / "silod.sock")
    assert default.listen_tcp == ""


@pytest.mark.parametrize("listen", ["127.0.0.1:7000", "tcp:0.0.0.0:7000", "tcp:127.0.0.1"])
def test_a_bad_listen_flag_exits_2(tmp_path: Path, listen: str,
                                   caplog: pytest.LogCaptureFixture) -> None:
    assert daemon.run(flags(tmp_path, "--foreground", "--listen", listen),
                      service_factory=lambda c: FakeCompute()) == 2
    assert "--listen" in caplog.text


class SlowReconcile(FakeCompute):
    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def reconcile(self) -> dict[str, list[str]]:
        self.go.wait(10)
        return {"adopted": ["a"]}


def test_answers_503_while_reconciling_then_serves(tmp_path: Path) -> None:
    config = DaemonConfig(data_dir=str(tmp_path / "d"), run_dir=str(tmp_path / "r"),
                          runtime="rt")
    service = SlowReconcile()
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=daemon.serve, args=(config, stop),
                              kwargs={"service_factory": lambda c: service,
                                      "ready": lambda s: ready.set()})
    thread.start()
    try:
        wait_for(lambda: os.path.exists(config.socket))
        status, doc = get(config.socket)
        assert status == 503 and doc["Code"] == "unavailable"
        service.go.set()
        assert ready.wait(10)
        assert get(config.socket) == (200, [])
    finally:
        service.go.set()
        stop.set()
        thread.join(10)
    assert not os.path.exists(config.socket)
    assert service._closed


def test_sigterm_stops_it_gracefully(tmp_path: Path) -> None:
    services: list[FakeCompute] = []

    def factory(config: DaemonConfig) -> FakeCompute:
        services.append(FakeCompute())
        return services[-1]

    sock = tmp_path / "run" / "silod.sock"

    def killer() -> None:
        wait_for(lambda: services and sock.exists() and get(str(sock))[0] == 200)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=killer)
    t.start()
    assert daemon.run(flags(tmp_path, "--foreground", "--listen", "tcp:127.0.0.1:0"),
                      service_factory=factory) == 0
    t.join()
    assert not sock.exists()
    assert services[0]._closed
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_silod_on_the_same_socket_exits_1(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config = DaemonConfig(data_dir=str(tmp_path / "d"), run_dir=str(tmp_path / "run"),
                          runtime="rt")
    opened: list[str] = []

    def factory(config: DaemonConfig) -> FakeCompute:
        opened.append("second")
        return FakeCompute()

    with APIServer(daemon.make_router(FakeCompute()), socket_path=config.socket):
        assert daemon.run(flags(tmp_path, "--foreground"), service_factory=factory) == 1
    assert "another silod" in caplog.text
    assert opened == []  # the database was never opened


def test_detached_returns_once_serving(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "silod.sock"
    code = ("import sys; from silo.service.daemon import run; "
            "from tests.unit.fake_compute import FakeCompute; "
            "sys.exit(run(sys.argv[1:], service_factory=lambda c: FakeCompute()))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The detached silod keeps stderr as its log: a file, not a pipe this test would wait on.
    log = tmp_path / "silod.log"
    with log.open("wb") as err:
        started = subprocess.run([sys.executable, "-c", code, *flags(tmp_path)], cwd=REPO,
                                 env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err, timeout=30)
    assert started.returncode == 0, log.read_text()
    assert sock.exists()
    # The detached silod is whoever answers on the socket.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock))
    pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                 struct.calcsize("3i")))
    s.close()
    try:
        assert os.getsid(pid) == pid  # a session of its own
        assert get(str(sock)) == (200, [])
        # A second one fails, and says so with its exit status.
        with log.open("ab") as err:
            again = subprocess.run([sys.executable, "-c", code, *flags(tmp_path)], cwd=REPO,
                                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err, timeout=30)
        assert again.returncode == 1
        assert "another silod" in log.read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not sock.exists())


def test_module_and_console_script_entry_points() -> None:
    out = subprocess.run([sys.executable, "-m", "silo.service.daemon", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--foreground" in out.stdout
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'silod = "silo.service.daemon:main"' in pyproject
