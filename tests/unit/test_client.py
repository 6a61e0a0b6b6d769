"""silo.client against a fake silod (tests/unit/fake_silod.py): the request each method sends,
errors rebuilt from the wire, framing (Content-Length, chunked, to the end), streams read as
they arrive, Unavailable without a socket, and conmon's attach protocol against a fake
monitor."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from silo import errors
from silo.client import Client, attach
from silo.client._attach import DETACH_KEYS, STDERR, STDOUT, _detach_filter
from silo.client._http import Address, quote
from tests.unit.fake_silod import FakeConmon, FakeSilod, error

pytestmark = pytest.mark.unit


@pytest.fixture
def silod(tmp_path: Any) -> Iterator[FakeSilod]:
    with FakeSilod(str(tmp_path / "silod.sock")) as fake:
        yield fake


@pytest.fixture
def client(silod: FakeSilod) -> Client:
    return Client(silod.host, timeout=10)


CONFIG = {"Owner": "silo", "SchemaVersion": {"Major": 2, "Minor": 1},
          "Container": {"Storage": {"Image": "busybox"},
                        "Linux": {"Process": {"CommandArgs": ["true"]}}}}


def test_create_sends_the_document_and_returns_the_summary(silod: FakeSilod,
                                                           client: Client) -> None:
    summary = client.create_system(CONFIG, name="web")
    assert summary["Name"] == "web" and summary["State"] == "Created"
    req = silod.requests[-1]
    assert (req.method, req.path) == ("POST", "/v1/compute-systems")
    assert req.body == {"Configuration": CONFIG, "Name": "web"}
    assert req.headers["Content-Type"] == "application/json"
    client.create_system(CONFIG, id="abc")
    assert silod.requests[-1].body == {"Configuration": CONFIG, "Id": "abc"}


def test_every_method_sends_its_route(silod: FakeSilod, client: Client) -> None:
    sid = silod.add("web", state="Created")
    pid = 7
    calls = [
        (lambda: client.list_systems(owner="silo", state="Running"),
         ("GET", "/v1/compute-systems?Owner=silo&State=Running", None)),
        (lambda: client.get_system(sid), ("GET", f"/v1/compute-systems/{sid}", None)),
        (lambda: client.start(sid), ("POST", f"/v1/compute-systems/{sid}/start", None)),
        (lambda: client.pause(sid), ("POST", f"/v1/compute-systems/{sid}/pause", None)),
        (lambda: client.resume(sid), ("POST", f"/v1/compute-systems/{sid}/resume", None)),
        (lambda: client.properties(sid, ["Statistics"]),
         ("POST", f"/v1/compute-systems/{sid}/properties", {"PropertyTypes": ["Statistics"]})),
        (lambda: client.modify(sid, "Container/Memory/SizeInMB", 256),
         ("POST", f"/v1/compute-systems/{sid}/modify",
          {"ResourcePath": "Container/Memory/SizeInMB", "RequestType": "Update",
           "Settings": 256})),
        (lambda: client.create_process(sid, {"CommandArgs": ["ls"]}),
         ("POST", f"/v1/compute-systems/{sid}/processes", {"CommandArgs": ["ls"]})),
        (lambda: client.process_status(sid, pid),
         ("GET", f"/v1/compute-systems/{sid}/processes/7", None)),
        (lambda: client.signal_process(sid, pid, "SIGTERM"),
         ("POST", f"/v1/compute-systems/{sid}/processes/7/signal", {"Signal": "SIGTERM"})),
        (lambda: client.signal_process(sid, pid, 9),
         ("POST", f"/v1/compute-systems/{sid}/processes/7/signal", {"Signal": 9})),
        (lambda: client.resize(sid, pid, 24, 80),
         ("POST", f"/v1/compute-systems/{sid}/processes/7/resize",
          {"Height": 24, "Width": 80})),
        (lambda: client.close_stdin(sid, pid),
         ("POST", f"/v1/compute-systems/{sid}/processes/7/close-stdin", None)),
        (lambda: client.wait_process(sid, pid, timeout=5),
         ("POST", f"/v1/compute-systems/{sid}/processes/7/wait", {"TimeoutSeconds": 5})),
        (lambda: client.shutdown(sid, timeout=3),
         ("POST", f"/v1/compute-systems/{sid}/shutdown", {"TimeoutSeconds": 3})),
        (lambda: client.shutdown(sid), ("POST", f"/v1/compute-systems/{sid}/shutdown", {})),
        (lambda: client.terminate(sid), ("POST", f"/v1/compute-systems/{sid}/terminate", None)),
        (lambda: client.wait(sid), ("POST", f"/v1/compute-systems/{sid}/wait", {})),
        (lambda: client.system_info(), ("GET", "/v1/system/info", None)),
        (lambda: client.delete(sid, force=True),
         ("DELETE", f"/v1/compute-systems/{sid}?Force=true", None)),
    ]
    for call, expected in calls:
        call()
        req = silod.requests[-1]
        assert (req.method, req.raw_path, req.body) == expected


def test_answers_are_documents(silod: FakeSilod, client: Client) -> None:
    sid = silod.add("web")
    assert client.get_system(sid)["Configuration"]["Container"]["Storage"]["Image"] == "busybox"
    assert client.properties(sid, ["ProcessList"])["ProcessList"][0]["ProcessId"] == 4242
    assert client.wait(sid) == {"ExitCode": 0, "ExitType": "GracefulExit"}
    assert client.delete(sid) is None
    assert client.list_systems() == []


def test_a_body_less_post_says_its_length(silod: FakeSilod, client: Client) -> None:
    # Some servers wait for a body of a POST that does not say Content-Length: 0.
    sid = silod.add("web", state="Created")
    client.start(sid)
    assert silod.requests[-1].headers["Content-Length"] == "0"


@pytest.mark.parametrize(("code", "cls"), [
    ("not_found", errors.NotFound), ("already_exists", errors.AlreadyExists),
    ("invalid_argument", errors.InvalidArgument), ("invalid_state", errors.InvalidState),
    ("not_supported", errors.NotSupported), ("unavailable", errors.Unavailable),
    ("timeout", errors.Timeout), ("internal", errors.Internal),
])
def test_errors_come_back_as_the_silo_error(silod: FakeSilod, client: Client, code: str,
                                            cls: type[errors.SiloError]) -> None:
    silod.override("POST", "/v1/compute-systems", lambda req: error(
        code, "Container.Memory.SizeInMB: must be >= 4", Field="Container.Memory.SizeInMB",
        Operation="hcs::System::Create", Id="x"))
    with pytest.raises(cls) as info:
        client.create_system(CONFIG)
    err = info.value
    assert type(err) is cls
    assert err.message == "Container.Memory.SizeInMB: must be >= 4"
    assert (err.field, err.op, err.obj) == ("Container.Memory.SizeInMB", "hcs::System::Create",
                                            "x")


def test_an_error_without_a_document_is_classed_by_its_status(silod: FakeSilod,
                                                             client: Client) -> None:
    silod.override("GET", "/v1/system/info", lambda req: (404, None))
    with pytest.raises(errors.NotFound, match="silod answered 404"):
        client.system_info()
    silod.override("GET", "/v1/system/info", lambda req: (502, {"message": "bad gateway"}))
    with pytest.raises(errors.Internal, match="502"):
        client.system_info()


def test_unknown_id_is_not_found(client: Client) -> None:
    with pytest.raises(errors.NotFound):
        client.start("nope")


def test_no_socket_is_unavailable(tmp_path: Any) -> None:
    path = str(tmp_path / "gone.sock")
    with pytest.raises(errors.Unavailable) as info:
        Client("unix://" + path).list_systems()
    assert str(info.value) == f"silod is not running (no socket at {path})"
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_a_dead_socket_is_unavailable(tmp_path: Any) -> None:
    path = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the file stays, nobody listens: ECONNREFUSED
    with pytest.raises(errors.Unavailable, match="silod is not running"):
        Client(path).system_info()


def test_tcp_refused_is_unavailable() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(errors.Unavailable, match=f"nothing listens on 127.0.0.1:{port}"):
        Client(f"tcp://127.0.0.1:{port}").system_info()


def test_host_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Address("unix:///run/x.sock").path == "/run/x.sock"
    assert Address("/run/x.sock").path == "/run/x.sock"
    a = Address("tcp://127.0.0.1:8080")
    assert (a.host, a.port) == ("127.0.0.1", 8080)
    a = Address("tcp:127.0.0.1:9")
    assert (a.host, a.port) == ("127.0.0.1", 9)
    for bad in ("http://x", "tcp://host", "tcp://h:0", "unix://"):
        with pytest.raises(errors.Unavailable):
            Address(bad)
    monkeypatch.setenv("SILO_HOST", "tcp://127.0.0.1:1234")
    assert Client().address.port == 1234
    monkeypatch.delenv("SILO_HOST")
    assert Client().address.path == "/run/silo/silod.sock"


def test_ids_and_query_values_are_escaped(silod: FakeSilod, client: Client) -> None:
    assert quote("a b/c?d") == "a%20b%2Fc%3Fd"
    with pytest.raises(errors.NotFound):
        client.get_system("a/../b c")
    assert silod.requests[-1].raw_path == "/v1/compute-systems/a%2F..%2Fb%20c"
    assert silod.requests[-1].path == "/v1/compute-systems/a/../b c"
    client.list_systems(name="x&y=z")
    assert silod.requests[-1].query == {"Name": ["x&y=z"]}


def test_logs_query_and_lines(silod: FakeSilod, client: Client) -> None:
    sid = silod.add("web")
    silod.log_lines = [{"Time": "t1", "Stream": "stdout", "Line": "one"},
                       {"Time": "t2", "Stream": "stderr", "Line": "two"}]
    assert [d["Line"] for d in client.logs(sid)] == ["one", "two"]
    assert silod.requests[-1].raw_path == f"/v1/compute-systems/{sid}/logs"
    assert [d["Line"] for d in client.logs(sid, follow=True, tail=1, timestamps=True)] == ["two"]
    assert silod.requests[-1].query == {"Follow": ["true"], "Tail": ["1"],
                                        "Timestamps": ["true"]}


def test_a_stream_raises_its_error_at_the_call(client: Client) -> None:
    with pytest.raises(errors.NotFound):
        client.logs("nope")


def test_events_arrive_as_they_are_sent(silod: FakeSilod, client: Client) -> None:
    gate = threading.Event()
    silod.events = [{"Time": "t", "Type": "SystemCreated", "Id": "a"},
                    lambda: gate.wait(10),
                    {"Time": "t", "Type": "SystemExited", "Id": "a", "ExitCode": 3}]
    stream = client.events(since=12.5, types=["SystemCreated", "SystemExited"], ids=["a"])
    assert silod.requests[-1].query == {"Since": ["12.5"],
                                        "Type": ["SystemCreated", "SystemExited"], "Id": ["a"]}
    first = next(stream)  # before the server sends the second line
    assert first["Type"] == "SystemCreated"
    gate.set()
    assert next(stream)["ExitCode"] == 3
    with pytest.raises(StopIteration):
        next(stream)


def test_an_error_line_in_a_stream_is_raised(silod: FakeSilod, client: Client) -> None:
    silod.events = [{"Time": "t", "Type": "SystemCreated", "Id": "a"},
                    {"Code": "internal", "Message": "event log lost"}]
    with client.events() as stream:
        next(stream)
        with pytest.raises(errors.Internal, match="event log lost"):
            next(stream)


def test_closing_a_stream_early(silod: FakeSilod, client: Client) -> None:
    gate = threading.Event()
    silod.events = [{"Time": "t", "Type": "SystemCreated", "Id": "a"}, lambda: gate.wait(10)]
    stream = client.events()
    next(stream)
    stream.close()
    gate.set()


def _raw_server(tmp_path: Any, answer: bytes) -> tuple[str, threading.Thread]:
    """A server that answers every connection with ``answer`` as it is, then closes."""
    path = str(tmp_path / "raw.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        for i in range(0, len(answer), 7):  # in small pieces: framing must not rely on reads
            conn.sendall(answer[i:i + 7])
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return path, t


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"Id\":\"a\"}\n",
    b"HTTP/1.1 200 OK\r\n\r\n{\"Id\":\"a\"}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\n{\"Id\r\n6\r\n\":\"a\"}\r\n0\r\nX-Trailer: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"Id\":\"a\"}",
])
def test_framing(tmp_path: Any, answer: bytes) -> None:
    path, t = _raw_server(tmp_path, answer)
    assert Client(path, timeout=10).system_info() == {"Id": "a"}
    t.join()


def test_a_truncated_answer_is_unavailable(tmp_path: Any) -> None:
    path, t = _raw_server(tmp_path, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    b"20\r\n{\"Id\"")
    with pytest.raises(errors.Unavailable, match="closed in the middle"):
        Client(path, timeout=10).system_info()
    t.join()


def test_an_answer_that_is_not_json_is_internal(tmp_path: Any) -> None:
    path, t = _raw_server(tmp_path, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{no}")
    with pytest.raises(errors.Internal, match="silod's answer: not valid JSON"):
        Client(path, timeout=10).system_info()
    t.join()


def test_garbage_is_unavailable(tmp_path: Any) -> None:
    path, t = _raw_server(tmp_path, b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(errors.Unavailable, match="bad status line"):
        Client(path, timeout=10).system_info()
    t.join()


def test_resolve_like_docker(silod: FakeSilod, client: Client) -> None:
    a = silod.add("web")
    b = silod.add("db")
    assert client.resolve(a) == a
    assert client.resolve("db") == b
    assert client.resolve(a[:3]) == a
    with pytest.raises(errors.InvalidArgument, match="prefix of several"):
        client.resolve("0")
    with pytest.raises(errors.NotFound, match="no such container: zz"):
        client.resolve("zz")


# -- attach: a fake conmon ------------------------------------------------------------------


def test_attach_reads_streams_and_writes_stdin(tmp_path: Any) -> None:
    conmon = FakeConmon(str(tmp_path), [b"\x02hello\n", b"\x03oops\n", b"\x02"])
    with attach({"AttachSocket": conmon.path, "ControlFifo": conmon.ctl}) as att:
        assert att.recv() == (STDOUT, b"hello\n")
        assert att.recv() == (STDERR, b"oops\n")
        att.send(b"input\n")
        att.send(b"x" * 70000)  # more than conmon reads at once: split into packets
        att.close_stdin()
        assert conmon.stdin_closed.wait(10)
        assert conmon.received[0] == b"input\n"
        assert [len(p) for p in conmon.received[1:]] == [32768, 32768, 70000 - 65536]
        conmon.release.set()
        assert att.recv() is None  # the empty packet is skipped; then the end


def test_attach_resizes_through_the_control_fifo(tmp_path: Any) -> None:
    conmon = FakeConmon(str(tmp_path), [])
    reader = os.open(conmon.ctl, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with attach({"AttachSocket": conmon.path, "ControlFifo": conmon.ctl}) as att:
            att.resize(40, 120)
            assert os.read(reader, 100) == b"1 40 120\n"
            att.close_stdin()
            conmon.release.set()
    finally:
        os.close(reader)


def test_attach_resize_without_conmon_is_unavailable(tmp_path: Any) -> None:
    conmon = FakeConmon(str(tmp_path), [])
    with attach({"AttachSocket": conmon.path, "ControlFifo": conmon.ctl}) as att:
        with pytest.raises(errors.Unavailable, match="cannot resize"):
            att.resize(1, 1)  # no reader on the fifo: ENXIO, not a hang
        att.close_stdin()
        conmon.release.set()


def test_attach_to_a_long_path(tmp_path: Any) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    conmon = FakeConmon(str(deep), [b"\x02hi"])
    assert len(conmon.path) > 108
    with attach({"AttachSocket": conmon.path}) as att:
        assert att.recv() == (STDOUT, b"hi")
        att.close_stdin()
        conmon.release.set()


def test_attach_to_nothing_is_unavailable(tmp_path: Any) -> None:
    with pytest.raises(errors.Unavailable, match="cannot attach"):
        attach({"AttachSocket": str(tmp_path / "none")})
    with pytest.raises(errors.InvalidArgument, match="AttachSocket"):
        attach({})


def test_relay_detaches_on_the_keys(tmp_path: Any) -> None:
    conmon = FakeConmon(str(tmp_path), [])
    r_in, w_in = os.pipe()
    os.write(w_in, b"ab\x10c\x10\x11rest")
    with attach({"AttachSocket": conmon.path}) as att:
        assert att.relay(stdin=r_in, stdout=1, stderr=2) is True
    conmon.release.set()
    conmon.thread.join(10)
    # ctrl-p not followed by ctrl-q is passed on; nothing after the keys is
    assert b"".join(conmon.received) == b"ab\x10c"
    for fd in (r_in, w_in):
        os.close(fd)


def test_relay_ends_with_the_output_and_passes_stdin_eof(tmp_path: Any) -> None:
    conmon = FakeConmon(str(tmp_path), [b"\x02out", b"\x03err", b"\x02done"])
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    os.write(w_in, b"data")
    os.close(w_in)
    with attach({"AttachSocket": conmon.path}) as att:
        threading.Timer(0.2, conmon.release.set).start()
        assert att.relay(stdin=r_in, stdout=w_out, stderr=w_err) is False
    assert conmon.stdin_closed.is_set()
    assert b"".join(conmon.received) == b"data"
    assert os.read(r_out, 100) == b"outdone"
    assert os.read(r_err, 100) == b"err"
    for fd in (r_in, r_out, w_out, r_err, w_err):
        os.close(fd)



def test_detach_keys_split_across_reads() -> None:
    assert _detach_filter(b"x\x10", DETACH_KEYS, 0) == (b"x", 1, False)
    assert _detach_filter(b"\x11", DETACH_KEYS, 1) == (b"", 0, True)
    assert _detach_filter(b"y", DETACH_KEYS, 1) == (b"\x10y", 0, False)
    assert _detach_filter(b"\x10\x10\x11", DETACH_KEYS, 0) == (b"\x10", 0, True)
    assert _detach_filter(b"\x10\x11", b"", 0) == (b"\x10\x11", 0, False)
