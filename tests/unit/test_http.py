"""silod's HTTP layer with a fake compute service: routing, errors, framing, sockets."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from silo import errors
from silo.service.app import make_router
from silo.service.http import APIServer, Response, Router, Stream, UnixSocket
from tests.unit.fake_compute import FakeCompute

pytestmark = pytest.mark.unit

PROCESS = {"CommandArgs": ["/bin/sh", "-c", "sleep 1000"]}


def document(**container: Any) -> dict[str, Any]:
    return {"Owner": "test", "SchemaVersion": {"Major": 2, "Minor": 1},
            "Container": {"Storage": {"Image": "busybox"},
                          "Linux": {"Process": dict(PROCESS)}, **container}}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Client:
    """One kept-alive connection; answers as (status, headers, JSON or None)."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        payload = resp.read()
        doc = json.loads(payload) if payload else None
        return resp.status, resp.headers, doc

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    service = FakeCompute()
    yield service
    service.close()


@pytest.fixture
def server(tmp_path: Path, fake: FakeCompute) -> Iterator[APIServer]:
    srv = APIServer(make_router(fake), socket_path=str(tmp_path / "silod.sock"),
                    tcp="127.0.0.1:0", max_body=64 * 1024)
    srv.start()
    yield srv
    fake.close()
    srv.stop()


@pytest.fixture(params=["unix", "tcp"])
def client(request: pytest.FixtureRequest, server: APIServer) -> Iterator[Client]:
    if request.param == "unix":
        conn: http.client.HTTPConnection = UnixConnection(server.socket_path)
    else:
        host, port = server.tcp_address
        conn = http.client.HTTPConnection(host, port, timeout=10)
    c = Client(conn)
    yield c
    c.close()


def raw_exchange(server: APIServer, data: bytes) -> bytes:
    """Send bytes as they are; read until the server closes."""
    with socket.create_connection(server.tcp_address, timeout=5) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Routing


def test_lifecycle_through_every_route(client: Client, fake: FakeCompute) -> None:
    status, _, summary = client.call("POST", "/v1/compute-systems",
                                     {"Id": "web", "Configuration": document()})
    assert status == 201
    assert summary["Id"] == "web" and summary["State"] == "Created"

    status, _, listed = client.call("GET", "/v1/compute-systems?State=Created&Owner=test")
    assert status == 200 and [s["Id"] for s in listed] == ["web"]
    assert client.call("GET", "/v1/compute-systems?State=Running")[2] == []

    status, _, props = client.call("GET", "/v1/compute-systems/web")
    assert status == 200 and props["Configuration"]["Owner"] == "test"

    assert client.call("POST", "/v1/compute-systems/web/start")[2]["State"] == "Running"
    assert client.call("POST", "/v1/compute-systems/web/pause")[2]["State"] == "Paused"
    assert client.call("POST", "/v1/compute-systems/web/resume")[2]["State"] == "Running"

    status, _, props = client.call("POST", "/v1/compute-systems/web/properties",
                                   {"PropertyTypes": ["Statistics", "ProcessList"]})
    assert status == 200 and "Statistics" in props and props["ProcessList"] == []

    status, _, _ = client.call("POST", "/v1/compute-systems/web/modify",
                               {"ResourcePath": "Container/Memory/SizeInMB",
                                "RequestType": "Update", "Settings": 256})
    assert status == 200
    assert fake.state()["systems"]["web"]["config"]["Container"]["Memory"] == {"SizeInMB": 256}

    status, _, proc = client.call("POST", "/v1/compute-systems/web/processes",
                                  {"CommandArgs": ["ps"], "EmulateConsole": True})
    assert status == 201
    pid = proc["ProcessId"]
    base = f"/v1/compute-systems/web/processes/{pid}"
    assert client.call("GET", base)[2] == {"ProcessId": pid, "Exited": False}
    assert client.call("POST", base + "/resize", {"Height": 24, "Width": 80})[0] == 204
    assert client.call("POST", base + "/close-stdin")[0] == 204
    status, headers, doc = client.call("POST", base + "/signal", {"Signal": "SIGTERM"})
    assert (status, doc) == (204, None)
    assert headers.get("Content-Length") is None
    assert client.call("POST", base + "/wait", {"TimeoutSeconds": 1})[2] == {
        "ProcessId": pid, "Exited": True, "ExitCode": 143}

    conn = client.conn
    conn.request("GET", "/v1/compute-systems/web/logs?Tail=1")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.headers["Transfer-Encoding"] == "chunked"
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in resp.read().splitlines()]
    assert [line["Line"] for line in lines] == ["hello"]

    status, _, summary = client.call("POST", "/v1/compute-systems/web/shutdown", {})
    assert summary["State"] == "Stopped"
    assert client.call("POST", "/v1/compute-systems/web/wait")[2] == {
        "ExitCode": 0, "ExitType": "GracefulExit"}
    assert client.call("DELETE", "/v1/compute-systems/web?Force=false")[0] == 204
    assert fake.state()["systems"] == {}

    status, _, info = client.call("GET", "/v1/system/info")
    assert status == 200 and info["Runtime"] == "silo-runtime"
    status, _, doc = client.call("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")


def test_percent_encoded_id_reaches_the_service_decoded(client: Client,
                                                         fake: FakeCompute) -> None:
    fake.raise_on_get["a b/c"] = errors.NotFound("gone", obj="a b/c")
    status, _, doc = client.call("GET", "/v1/compute-systems/a%20b%2Fc")
    assert status == 404 and doc["Id"] == "a b/c"


def test_signal_by_number_and_by_short_name(client: Client, fake: FakeCompute) -> None:
    client.call("POST", "/v1/compute-systems", {"Id": "s", "Configuration": document()})
    client.call("POST", "/v1/compute-systems/s/start")
    pids = [client.call("POST", "/v1/compute-systems/s/processes", PROCESS)[2]["ProcessId"]
            for _ in range(2)]
    assert client.call("POST", f"/v1/compute-systems/s/processes/{pids[0]}/signal",
                       {"Signal": 9})[0] == 204
    assert client.call("POST", f"/v1/compute-systems/s/processes/{pids[1]}/signal",
                       {"Signal": "term"})[0] == 204
    procs = fake.state()["systems"]["s"]["processes"]
    assert [procs[p]["status"]["ExitCode"] for p in pids] == [137, 143]


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(("error", "status"), [
    (errors.InvalidArgument("x: bad", field="x"), 400),
    (errors.NotFound("no such thing", op="compute::get", obj="e"), 404),
    (errors.AlreadyExists("exists"), 409),
    (errors.InvalidState("wrong state"), 409),
    (errors.NotSupported("not here"), 501),
    (errors.Unavailable("later"), 503),
    (errors.Timeout("too slow"), 504),
    (errors.Internal("broke"), 500),
])
def test_every_error_category_maps_to_its_status_and_wire_body(
        client: Client, fake: FakeCompute, error: errors.SiloError, status: int) -> None:
    fake.raise_on_get["e"] = error
    got, headers, doc = client.call("GET", "/v1/compute-systems/e")
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert doc == error.to_wire()
    assert errors.from_wire(doc).__class__ is error.__class__


def test_an_unexpected_exception_is_a_generic_500_logged_with_its_traceback(
        client: Client, fake: FakeCompute, caplog: pytest.LogCaptureFixture) -> None:
    fake.raise_on_get["boom"] = RuntimeError("secret detail")
    with caplog.at_level(logging.ERROR, logger="silod.http"):
        status, _, doc = client.call("GET", "/v1/compute-systems/boom")
    assert status == 500
    assert doc["Code"] == "internal" and "secret" not in doc["Message"]
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)
    # The connection and the server survive it.
    assert client.call("GET", "/v1/compute-systems")[0] == 200


def test_an_answer_that_is_not_json_is_a_500_not_a_dropped_connection(tmp_path: Path) -> None:
    router = Router()
    router.add("GET", "/v1/odd", lambda _: Response(200, {"when": object()}))
    router.add("GET", "/v1/nan", lambda _: Response(200, {"x": float("nan")}))
    with APIServer(router, tcp="127.0.0.1:0") as srv:
        c = Client(http.client.HTTPConnection(*srv.tcp_address, timeout=5))
        for path in ("/v1/odd", "/v1/nan"):
            status, _, doc = c.call("GET", path)
            assert status == 500 and doc["Code"] == "internal"
        c.close()


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(client: Client) -> None:
    status, _, doc = client.call("GET", "/v1/nothing-here")
    assert status == 404 and doc["Code"] == "not_found"
    status, _, doc = client.call("GET", "/v1/compute-systems/x/y/z")
    assert status == 404
    status, headers, doc = client.call("PUT", "/v1/compute-systems/x")
    assert status == 405 and doc["Code"] == "not_supported"
    assert headers["Allow"] == "DELETE, GET"
    status, headers, _ = client.call("PATCH", "/v1/compute-systems")
    assert status == 405 and headers["Allow"] == "GET, POST"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{", "not valid JSON"),
    (b'{"Configuration": {}} trailing', "not valid JSON"),
    (b'{"Id": "a", "Id": "b"}', "appears twice"),
    (b'{"Configuration": NaN}', "not a JSON number"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "required"),
])
def test_a_bad_body_is_400_naming_body_and_changes_nothing(
        client: Client, fake: FakeCompute, raw: bytes, reason: str) -> None:
    before = fake.state()
    status, _, doc = client.call("POST", "/v1/compute-systems", raw=raw)
    assert status == 400
    assert doc["Code"] == "invalid_argument" and doc["Field"] == "body"
    assert doc["Message"].startswith("body: ") and reason in doc["Message"]
    assert fake.state() == before


def test_unknown_fields_are_refused_naming_the_field(client: Client, fake: FakeCompute) -> None:
    before = fake.state()
    doc = document()
    doc["Container"]["Linux"]["Bogus"] = 1
    status, _, err = client.call("POST", "/v1/compute-systems", {"Configuration": doc})
    assert status == 400
    assert err["Field"] == "Configuration.Container.Linux.Bogus"
    assert err["Message"].startswith("Configuration.Container.Linux.Bogus")

    status, _, err = client.call("POST", "/v1/compute-systems",
                                 {"Configuration": document(Memory={"SizeInMB": 1})})
    assert status == 400 and err["Field"] == "Configuration.Container.Memory.SizeInMB"

    status, _, err = client.call("POST", "/v1/compute-systems/x/shutdown", {"Timeout": 3})
    assert status == 400 and err["Field"] == "Timeout"
    assert fake.state() == before


def test_a_verb_without_a_body_refuses_one(client: Client) -> None:
    assert client.call("POST", "/v1/compute-systems/x/start", {})[0] == 404  # {} is no body
    status, _, err = client.call("POST", "/v1/compute-systems/x/start", {"Now": True})
    assert status == 400 and err["Field"] == "body"


def test_a_body_that_is_not_json_by_its_content_type_is_refused(client: Client) -> None:
    status, _, err = client.call("POST", "/v1/compute-systems", raw=b"a=b",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and err["Field"] == "Content-Type"


@pytest.mark.parametrize(("query", "field"), [
    ("Tail=-1", "Tail"),
    ("Tail=ten", "Tail"),
    ("Follow=maybe", "Follow"),
    ("Follow=true&Follow=false", "Follow"),
    ("Color=red", "Color"),
])
def test_query_parameters_are_checked_naming_them(client: Client, query: str,
                                                  field: str) -> None:
    client.call("POST", "/v1/compute-systems", {"Id": "q", "Configuration": document()})
    status, _, err = client.call("GET", f"/v1/compute-systems/q/logs?{query}")
    assert status == 400 and err["Field"] == field and err["Message"].startswith(field + ": ")


def test_list_state_must_be_a_state(client: Client) -> None:
    status, _, err = client.call("GET", "/v1/compute-systems?State=Sleeping")
    assert status == 400 and err["Field"] == "State"


def test_a_pid_must_be_a_process_id(client: Client) -> None:
    for bad in ("abc", "0", "-1", "99999999999", "%D9%A1"):
        status, _, err = client.call("GET", f"/v1/compute-systems/x/processes/{bad}")
        assert status == 400 and err["Field"] == "pid", bad


def test_a_body_over_the_limit_is_413(client: Client, fake: FakeCompute) -> None:
    before = fake.state()
    big = {"Configuration": document(), "Id": "x" * (70 * 1024)}
    status, headers, err = client.call("POST", "/v1/compute-systems", big)
    assert status == 413
    assert err["Code"] == "invalid_argument" and err["Field"] == "body"
    assert headers["Connection"] == "close"
    assert fake.state() == before


def test_an_oversized_body_is_refused_before_100_continue(server: APIServer) -> None:
    answer = raw_exchange(server, b"POST /v1/compute-systems HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 999999999\r\nExpect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer


def test_a_chunked_request_body_is_read(server: APIServer, fake: FakeCompute) -> None:
    body = json.dumps({"Id": "ch", "Configuration": document()}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50])
                      for i in range(0, len(body), 50))
    answer = raw_exchange(server, b"POST /v1/compute-systems HTTP/1.1\r\nHost: x\r\n"
                                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                  + chunks + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert "ch" in fake.state()["systems"]


@pytest.mark.parametrize("garbage", [
    b"NOT A REQUEST\r\n\r\n",
    b"GET /v1/compute-systems HTTP/9.9\r\n\r\n",
    b"GET /v1/compute-systems HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"POST /v1/compute-systems HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/compute-systems HTTP/1.1\r\nContent-Length: 50\r\n\r\n{}",
    b"POST /v1/compute-systems HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/compute-systems HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET /v1/compute-systems?%ff=1 HTTP/1.1\r\n\r\n",
    b"GET /v1/compute-systems/%ff HTTP/1.1\r\n\r\n",
    b"\x00\x01\x02\r\n\r\n",
])
def test_garbage_gets_a_json_error_and_the_server_lives_on(server: APIServer,
                                                          garbage: bytes) -> None:
    with socket.create_connection(server.tcp_address, timeout=5) as s:
        s.sendall(garbage)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 600 and status != 500, head
    assert json.loads(body)["Code"] in ("invalid_argument", "not_found", "not_supported")
    conn = http.client.HTTPConnection(*server.tcp_address, timeout=5)
    conn.request("GET", "/v1/compute-systems")
    assert conn.getresponse().status == 200
    conn.close()


def test_http_1_0_gets_answers_and_the_connection_closes(server: APIServer) -> None:
    answer = raw_exchange(server, b"GET /v1/compute-systems HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body) == []


# ---------------------------------------------------------------------------------------------
# Connections


def test_keep_alive_serves_many_requests_on_one_connection(client: Client) -> None:
    client.call("GET", "/v1/compute-systems")
    sock = client.conn.sock
    for _ in range(20):
        status, headers, _ = client.call("GET", "/v1/compute-systems/none")
        assert status == 404 and headers.get("Connection") != "close"
    assert client.conn.sock is sock


def test_twenty_threads_at_once(server: APIServer, fake: FakeCompute) -> None:
    failures: list[str] = []

    def worker(n: int) -> None:
        try:
            if n % 2:
                conn: http.client.HTTPConnection = UnixConnection(server.socket_path)
            else:
                conn = http.client.HTTPConnection(*server.tcp_address, timeout=10)
            c = Client(conn)
            for i in range(10):
                status, _, doc = c.call("POST", "/v1/compute-systems",
                                        {"Id": f"t{n}-{i}", "Configuration": document()})
                if status != 201:
                    failures.append(f"create {n}-{i}: {status} {doc}")
                status, _, doc = c.call("GET", f"/v1/compute-systems/t{n}-{i}")
                if status != 200 or doc["Id"] != f"t{n}-{i}":
                    failures.append(f"get {n}-{i}: {status} {doc}")
            c.close()
        except Exception as err:
            failures.append(f"worker {n}: {err!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert len(fake.state()["systems"]) == 200


def test_events_stream_chunked_as_they_happen_and_end_when_the_client_leaves(
        server: APIServer, fake: FakeCompute) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(server.socket_path)
    sock.sendall(b"GET /v1/events?Type=SystemCreated,SystemStarted&Id=a HTTP/1.1\r\n"
                 b"Host: x\r\n\r\n")
    reader = sock.makefile("rb")
    head = []
    while (line := reader.readline()) not in (b"\r\n", b""):
        head.append(line)
    assert head[0].startswith(b"HTTP/1.1 200 ")
    assert b"Transfer-Encoding: chunked\r\n" in head

    def next_event() -> dict[str, Any]:
        size = int(reader.readline().strip(), 16)
        data = reader.read(size)
        assert reader.read(2) == b"\r\n"
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        return json.loads(data)  # type: ignore[no-any-return]

    fake.create({"Id": "b", "Configuration": document()})   # filtered out by Id
    fake.create({"Id": "a", "Configuration": document()})
    assert next_event()["Type"] == "SystemCreated"
    fake.start("a")
    event = next_event()
    assert (event["Type"], event["Id"]) == ("SystemStarted", "a")

    reader.close()
    sock.close()
    # Nothing more happens: the server notices the departure while the stream is quiet.
    deadline = time.monotonic() + 5
    while fake.streams_closed < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.streams_closed == 1


def test_a_plain_iterator_stream_ends_at_the_write_after_the_client_left(
        tmp_path: Path) -> None:
    closed = threading.Event()
    more = threading.Event()

    def items() -> Iterator[dict[str, Any]]:
        try:
            yield {"n": 0}
            while True:
                more.wait(5)
                more.clear()
                yield {"n": 1}
        finally:
            closed.set()

    router = Router()
    router.add("GET", "/v1/plain", lambda _: Stream(items()))
    with APIServer(router, tcp="127.0.0.1:0") as srv:
        conn = http.client.HTTPConnection(*srv.tcp_address, timeout=5)
        conn.request("GET", "/v1/plain")
        resp = conn.getresponse()
        assert json.loads(resp.readline()) == {"n": 0}
        conn.close()
        resp.close()
        for _ in range(50):  # writes into a closed connection fail within a few tries
            more.set()
            if closed.wait(0.1):
                break
        assert closed.is_set()


def test_a_stream_that_fails_midway_is_cut_short(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: Any) -> Stream:
        def items() -> Iterator[dict[str, Any]]:
            yield {"n": 1}
            raise RuntimeError("disk on fire")
        return Stream(items())

    router = Router()
    router.add("GET", "/v1/broken", broken)
    with APIServer(router, tcp="127.0.0.1:0") as srv:
        conn = http.client.HTTPConnection(*srv.tcp_address, timeout=5)
        conn.request("GET", "/v1/broken")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
        conn.close()
    assert any("disk on fire" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_stop_ends_open_streams(tmp_path: Path, fake: FakeCompute) -> None:
    srv = APIServer(make_router(fake), socket_path=str(tmp_path / "s.sock"))
    srv.start()
    conn = UnixConnection(srv.socket_path)
    conn.request("GET", "/v1/events")
    resp = conn.getresponse()
    assert resp.status == 200
    srv.stop()
    fake.close()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        resp.read()
    conn.close()
    assert not os.path.exists(srv.socket_path)


# ---------------------------------------------------------------------------------------------
# The socket file


def test_the_socket_is_0600_and_removed_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "run" / "silod.sock"
    srv = APIServer(Router(), socket_path=str(path))
    srv.start()
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    srv.stop()
    assert not path.exists()


def test_a_second_server_on_an_answered_socket_refuses_to_start(tmp_path: Path) -> None:
    path = str(tmp_path / "silod.sock")
    with APIServer(Router(), socket_path=path):
        with pytest.raises(errors.AlreadyExists):
            APIServer(Router(), socket_path=path).start()
        # A server that answers but holds no lock (an older silod) is refused as well.
        os.unlink(path + ".lock")
        with pytest.raises(errors.AlreadyExists, match="answers"):
            APIServer(Router(), socket_path=path).start()
        assert UnixConnection(path) is not None


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "silod.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays; nobody listens
    router = Router()
    router.add("GET", "/v1/ping", lambda _: Response(200, {"ok": True}))
    with APIServer(router, socket_path=path):
        conn = UnixConnection(path)
        conn.request("GET", "/v1/ping")
        assert json.loads(conn.getresponse().read()) == {"ok": True}
        conn.close()


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "silod.sock"
    path.write_text("precious")
    with pytest.raises(errors.InvalidArgument):
        APIServer(Router(), socket_path=str(path)).start()
    assert path.read_text() == "precious"


def test_tcp_listens_on_loopback_only() -> None:
    for bad in ("0.0.0.0:1234", "10.1.2.3:80", "example.com:80", "127.0.0.1", "127.0.0.1:x"):
        with pytest.raises(errors.InvalidArgument):
            APIServer(Router(), tcp=bad).start()


def test_a_socket_path_too_long_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="socket"):
        UnixSocket("/tmp/" + "x" * 120)
