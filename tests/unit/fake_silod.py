"""Fakes for unit tests of silo.client and silo.cli: silod, as ``http.server`` on a unix
socket in a temp dir answering the routes of docs/api.md from a small in-memory model and
recording every request; and conmon's attach socket (:class:`FakeConmon`).

A system is addressed by its Id, its Name or a unique Id prefix of 3 characters or more, as
silod resolves them (``names=False``: by its Id only, as silod did at first).
``override(method, path_regex, fn)`` replaces an answer: ``fn(request)`` returns
``(status, body)``: body a document, None for no body, or ``Lines([...])`` for a chunked
JSON-lines answer, where a line may be a callable run before it is sent (to pause the stream).
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, Any]


class Lines(list[Any]):
    """A chunked JSON-lines answer (logs, events)."""

_STATUS = {"invalid_argument": 400, "not_found": 404, "already_exists": 409,
           "invalid_state": 409, "not_supported": 501, "unavailable": 503, "timeout": 504,
           "internal": 500}


def error(code: str, message: str, **extra: str) -> Answer:
    return _STATUS[code], {"Code": code, "Message": message, **extra}


class Request:
    def __init__(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> None:
        split = urlsplit(raw_path)
        self.method = method
        self.raw_path = raw_path
        self.path = unquote(split.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<{self.method} {self.raw_path} {self.body!r}>"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that leaves a stream early (``silo pull -q``, a closed log) is normal;
        socketserver would print its traceback on stderr, which the CLI tests capture."""
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class FakeSilod:
    def __init__(self, path: str, names: bool = True) -> None:
        self.names = names
        self.path = path
        self.host = "unix://" + path
        self.requests: list[Request] = []
        self.systems: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.exit_code = 0
        self.process_exit_code = 0
        self.log_lines: list[dict[str, Any]] = []
        self.process_log_lines: list[dict[str, Any]] = []
        self.events: list[Any] = []
        self.stdio: dict[str, Any] | None = None
        self.statistics: dict[str, Any] = {
            "Memory": {"UsageBytes": 8 << 20, "LimitBytes": 64 << 20, "MaxUsageBytes": 9 << 20},
            "Processor": {"TotalRuntimeNs": 5_000_000},
            "Pids": {"Current": 2, "Limit": 100},
        }
        self.process_list = [{"ProcessId": 4242, "CommandLine": "sleep 100", "UserName": "root"}]
        self.info: dict[str, Any] = {"Cgroups": "v2", "Overlayfs": True, "Kvm": False,
                                     "Runtime": {"Name": "silo-runtime", "Version": "0.1.0"},
                                     "Version": "0.1.0"}
        self._overrides: list[tuple[str, re.Pattern[str], Callable[[Request], Answer]]] = []
        self._next = 0
        self._pid = 100
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                req = Request(self.command, self.path, dict(self.headers.items()), body)
                fake.requests.append(req)
                status, answer = fake.answer(req)
                if isinstance(answer, Lines):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for line in answer:
                        if callable(line):
                            line()
                            continue
                        data = (json.dumps(line) + "\n").encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.close_connection = True
                    return
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status != 204:
                    self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_DELETE = _handle

        self._server = _Server(path, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    # -- control ------------------------------------------------------------------------------

    def __enter__(self) -> FakeSilod:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def override(self, method: str, path_regex: str, fn: Callable[[Request], Answer]) -> None:
        self._overrides.insert(0, (method, re.compile(path_regex + "$"), fn))

    def add(self, name: str, state: str = "Running", image: str = "busybox",
            config: dict[str, Any] | None = None) -> str:
        """A system that exists already; returns its Id."""
        self._next += 1
        sid = f"{self._next:02d}" + "ab" * 31
        self.systems[sid] = {"Id": sid, "Name": name, "Owner": "silo",
                             "SystemType": "Container", "State": state,
                             "Pid": 4242 if state in ("Running", "Paused") else 0,
                             "Created": "2026-11-27T23:00:00Z", "Image": image}
        self.configs[sid] = config or {"Owner": "silo", "Container": {
            "Storage": {"Image": image},
            "Linux": {"Process": {"CommandArgs": ["sleep", "100"]}}}}
        return sid

    def calls(self, skip_list: bool = True) -> list[tuple[str, str, Any]]:
        """(method, raw path, body) of every request, without the listings clients use to
        resolve names."""
        return [(r.method, r.raw_path, r.body) for r in self.requests
                if not (skip_list and r.method == "GET" and r.raw_path == "/v1/compute-systems")]

    # -- the model ----------------------------------------------------------------------------

    def answer(self, req: Request) -> Answer:
        for method, pattern, fn in self._overrides:
            if method == req.method and pattern.match(req.path):
                return fn(req)
        p = req.path
        if p == "/v1/compute-systems":
            return self._create(req) if req.method == "POST" else self._list(req)
        if p == "/v1/events":
            return 200, Lines(self.events)
        if p == "/v1/system/info":
            return 200, self.info
        m = re.match(r"/v1/compute-systems/([^/]+)(?:/(.*))?$", p)
        if not m:
            return error("not_found", f"no route {p}")
        sid, rest = self.resolve(m.group(1)), m.group(2) or ""
        if sid not in self.systems:
            return error("not_found", f"no compute system {sid!r}", Id=sid)
        s = self.systems[sid]
        if rest == "" and req.method == "GET":
            return 200, {**s, "Configuration": self.configs[sid]}
        if rest == "" and req.method == "DELETE":
            if s["State"] in ("Running", "Paused") and req.query.get("Force") != ["true"]:
                return error("invalid_state", f"compute system {sid} is {s['State']}")
            del self.systems[sid]
            return 204, None
        if rest == "start":
            if s["State"] != "Created":
                return error("invalid_state", f"compute system {sid} is {s['State']}")
            s.update(State="Running", Pid=4242, Started="2026-11-27T23:00:01Z")
            return 200, s
        if rest in ("shutdown", "terminate"):
            s.update(State="Stopped", Pid=0, ExitCode=self.exit_code,
                     ExitType="GracefulExit" if rest == "shutdown" else "ForcedExit")
            return 200, s
        if rest == "pause":
            s["State"] = "Paused"
            return 200, s
        if rest == "resume":
            s["State"] = "Running"
            return 200, s
        if rest == "properties":
            props: dict[str, Any] = {**s, "Configuration": self.configs[sid]}
            types = (req.body or {}).get("PropertyTypes", [])
            if "Statistics" in types:
                props["Statistics"] = self.statistics
            if "ProcessList" in types:
                props["ProcessList"] = self.process_list
            return 200, props
        if rest == "modify":
            return 200, s
        if rest == "wait":
            s.update(State="Stopped", Pid=0, ExitCode=self.exit_code, ExitType="GracefulExit")
            return 200, {"ExitCode": self.exit_code, "ExitType": "GracefulExit"}
        if rest == "logs":
            tail = req.query.get("Tail")
            lines = self.log_lines[-int(tail[0]):] if tail and tail[0] != "0" else (
                [] if tail else self.log_lines)
            return 200, Lines(lines)
        if rest == "processes" and req.method == "POST":
            self._pid += 1
            ans: dict[str, Any] = {"ProcessId": self._pid}
            if self.stdio is not None:
                ans["Stdio"] = self.stdio
            return 201, ans
        m = re.match(r"processes/(\d+)(?:/(.*))?$", rest)
        if m:
            pid, verb = int(m.group(1)), m.group(2) or ""
            if verb == "":
                return 200, {"ProcessId": pid, "Exited": False}
            if verb == "wait":
                return 200, {"ProcessId": pid, "Exited": True, "ExitCode": self.process_exit_code}
            if verb == "logs":
                return 200, Lines(self.process_log_lines)
            return 204, None
        return error("not_found", f"no route {p}")

    def resolve(self, ref: str) -> str:
        if ref in self.systems or not self.names:
            return ref
        for sid, s in self.systems.items():
            if s["Name"] == ref:
                return sid
        hits = [sid for sid in self.systems if len(ref) >= 3 and sid.startswith(ref)]
        return hits[0] if len(hits) == 1 else ref

    def _create(self, req: Request) -> Answer:
        body = req.body or {}
        config = body.get("Configuration") or {}
        image = (config.get("Container") or {}).get("Storage", {}).get("Image", "")
        if image != "busybox":
            return error("not_found", f"image {image!r} not found (only busybox exists)",
                         Field="Container.Storage.Image")
        name = body.get("Name") or f"auto{self._next}"
        if any(s["Name"] == name for s in self.systems.values()):
            return error("already_exists", f"a compute system named {name!r} exists")
        sid = self.add(name, state="Created", image=image, config=config)
        if body.get("Id"):
            self.systems[body["Id"]] = {**self.systems.pop(sid), "Id": body["Id"]}
            self.configs[body["Id"]] = self.configs.pop(sid)
            sid = body["Id"]
        self.systems[sid]["Pid"] = 0
        answer = dict(self.systems[sid])
        if self.stdio is not None:
            answer["Stdio"] = self.stdio
        return 201, answer

    def _list(self, req: Request) -> Answer:
        out = list(self.systems.values())
        for key in ("Owner", "Name", "State"):
            if key in req.query:
                out = [s for s in out if s[key] == req.query[key][0]]
        return 200, out


class FakeConmon:
    """conmon's attach socket (SOCK_SEQPACKET) and ctl fifo: sends ``packets`` to the first
    client, then records what the client writes until it shuts its side down, then closes
    once ``release`` is set. With ``exits``, it closes right after the packets, as conmon
    does when the process exits without reading its stdin."""

    def __init__(self, directory: str, packets: list[bytes], path: str | None = None,
                 exits: bool = False) -> None:
        self.exits = exits
        self.path = path or os.path.join(directory, "attach")
        self.ctl = os.path.join(directory, "ctl")
        os.mkfifo(self.ctl)
        self.received: list[bytes] = []
        self.stdin_closed = threading.Event()
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if len(self.path) > 100:  # bind through the directory, as conmon does
            fd = os.open(os.path.dirname(self.path), os.O_PATH)
            self.srv.bind(f"/proc/self/fd/{fd}/{os.path.basename(self.path)}")
            os.close(fd)
        else:
            self.srv.bind(self.path)
        self.srv.listen(1)
        self.packets = packets
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.srv.accept()
        for p in self.packets:
            conn.send(p)
        while not self.exits:
            data = conn.recv(65536)
            if not data:
                self.stdin_closed.set()
                break
            self.received.append(data)
        self.release.wait(10)
        conn.close()
        self.srv.close()
