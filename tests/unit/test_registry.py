"""The registry client's logic against a fake registry on loopback: the auth challenge (Basic,
Bearer with a token realm, tokens cached per scope), retries and backoff, redirects, resuming
a broken blob, manifest checks, uploads, and the error each bad case raises.

The fake is an in-process ``http.server`` speaking the distribution v2 API with knobs to fail;
the real registry (``docker-registry``) is exercised by the e2e tests.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from silo import errors
from silo.storage import mediatypes
from silo.storage.descriptor import Descriptor
from silo.storage.registry import (
    RegistryClient,
    is_loopback,
    parse_challenge,
)

pytestmark = pytest.mark.unit

REPO = "team/app"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Fake:
    """The registry's state and the failures to inject."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # "repo:ref"
    auth: str = ""  # "", "basic" or "bearer"
    user: tuple[str, str] = ("alice", "secret")
    token_realm: str = ""
    fail_statuses: list[int] = field(default_factory=list)  # answered before anything else
    cut_after: int | None = None  # cut the first blob GETs after this many bytes
    cuts: int = 0
    ranges: bool = True
    short_by: int = 0  # serve blobs this many bytes short (with a matching Content-Length)
    redirect_to: str = ""  # blob GETs answer 307 to this base URL
    content_digest: str | None = None  # a Docker-Content-Digest to lie with
    hang_up: bool = False  # close every connection after one answer, without saying so
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def manifest(self, ref: str, doc: dict[str, Any] | bytes, media_type: str,
                 repo: str = REPO) -> str:
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        d = digest_of(data)
        self.manifests[f"{repo}:{ref}"] = (data, media_type)
        self.manifests[f"{repo}:{d}"] = (data, media_type)
        return d

    def blob(self, data: bytes) -> Descriptor:
        d = digest_of(data)
        self.blobs[d] = data
        return Descriptor(mediatypes.OCI_LAYER_GZIP, d, len(data))


def make_handler(fake: Fake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str) -> None:
            body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
            hdrs = {"Content-Type": "application/json"}
            if status == 401:
                if fake.auth == "basic":
                    hdrs["WWW-Authenticate"] = 'Basic realm="fake"'
                else:
                    hdrs["WWW-Authenticate"] = (
                        f'Bearer realm="{fake.token_realm}",service="fake",'
                        f'scope="{self._scope()}"')
            self._send(status, body, hdrs)

        def _scope(self) -> str:
            repo = self.path.split("/v2/", 1)[-1].rsplit("/", 2)[0].split("/blobs")[0]
            write = self.command in ("POST", "PUT", "PATCH", "DELETE")
            return f"repository:{repo}:{'pull,push' if write else 'pull'}"

        def _authorized(self) -> bool:
            got = self.headers.get("Authorization", "")
            if fake.auth == "basic":
                want = base64.b64encode(":".join(fake.user).encode()).decode()
                return got == f"Basic {want}"
            if fake.auth == "bearer":
                return got == "Bearer tok-" + self._scope()
            return True

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def handle_one(self) -> None:
            if fake.hang_up:
                self.close_connection = True
            with fake.lock:
                fake.requests.append((self.command, self.path, dict(self.headers)))
                status = fake.fail_statuses.pop(0) if fake.fail_statuses else 0
            if status:
                self._body()
                self._send(status, b"failing")
                return
            if self.path.startswith("/token"):
                self._token()
                return
            if not self._authorized():
                self._body()
                self._error(401, "UNAUTHORIZED")
                return
            url = urlsplit(self.path)
            parts = url.path.split("/")
            if "/manifests/" in url.path:
                repo, ref = url.path[4:].split("/manifests/")
                self._manifest(repo, ref)
            elif "/blobs/uploads" in url.path:
                self._upload(url.path, parse_qs(url.query))
            elif "/blobs/" in url.path:
                self._blob(parts[-1])
            else:
                self._send(200, b"{}")

        def _token(self) -> None:
            q = parse_qs(urlsplit(self.path).query)
            got = self.headers.get("Authorization", "")
            fake.token_requests.append({"query": q, "auth": got})
            if got:
                want = base64.b64encode(":".join(fake.user).encode()).decode()
                if got != f"Basic {want}":
                    self._send(401, b'{"details":"bad credentials"}')
                    return
            scopes = q.get("scope", [""])
            self._send(200, json.dumps({"token": "tok-" + scopes[0],
                                        "expires_in": 300}).encode())

        def _manifest(self, repo: str, ref: str) -> None:
            if self.command == "PUT":
                data = self._body()
                d = digest_of(data)
                fake.manifests[f"{repo}:{ref}"] = (data, self.headers["Content-Type"])
                fake.manifests[f"{repo}:{d}"] = (data, self.headers["Content-Type"])
                self._send(201, headers={"Docker-Content-Digest": fake.content_digest or d})
                return
            got = fake.manifests.get(f"{repo}:{ref}")
            if got is None:
                self._error(404, "MANIFEST_UNKNOWN")
                return
            data, mt = got
            self._send(200, data, {"Content-Type": mt,
                                   "Docker-Content-Digest": fake.content_digest
                                   or digest_of(data)})

        def _blob(self, d: str) -> None:
            if fake.redirect_to and self.command == "GET":
                self._send(307, headers={"Location": f"{fake.redirect_to}/cdn/{d}"})
                return
            self._serve_blob(d)

        def _serve_blob(self, d: str) -> None:
            data = fake.blobs.get(d)
            if data is None:
                self._error(404, "BLOB_UNKNOWN")
                return
            data = data[: len(data) - fake.short_by]
            start = 0
            rng = self.headers.get("Range", "")
            if rng and fake.ranges:
                start = int(rng.split("=")[1].rstrip("-"))
            body = data[start:]
            hdrs = {"Content-Length": str(len(body))}
            status = 200
            if start:
                status = 206
                hdrs["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self.send_response(status)
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            with fake.lock:
                cut = fake.cut_after is not None and fake.cuts > 0
                if cut:
                    fake.cuts -= 1
            if cut:
                assert fake.cut_after is not None
                self.wfile.write(body[: fake.cut_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.close()
                return
            self.wfile.write(body)

        def _upload(self, path: str, query: dict[str, list[str]]) -> None:
            if self.command == "POST":
                self._body()
                if "mount" in query:
                    d = query["mount"][0]
                    if d in fake.blobs:
                        self._send(201, headers={"Docker-Content-Digest": d})
                        return
                uid = f"u{len(fake.uploads)}"
                fake.uploads[uid] = bytearray()
                self._send(202, headers={"Location": f"/v2/{REPO}/blobs/uploads/{uid}?_state=x"})
                return
            if self.command == "DELETE":
                self._send(204)
                return
            uid = path.rsplit("/", 1)[-1]
            data = self._body()
            want = query["digest"][0]
            if digest_of(data) != want:
                self._error(400, "DIGEST_INVALID")
                return
            fake.blobs[want] = data
            self._send(201, headers={"Docker-Content-Digest": want,
                                     "Location": f"/v2/{REPO}/blobs/{want}"})
            fake.uploads.pop(uid, None)

        def do_GET(self) -> None:
            if self.path.startswith("/cdn/"):
                with fake.lock:
                    fake.requests.append((self.command, self.path, dict(self.headers)))
                self._serve_blob(self.path.rsplit("/", 1)[-1])
                return
            self.handle_one()

        do_HEAD = do_GET
        do_PUT = do_POST = do_DELETE = handle_one

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up on a cut blob is what the test wanted


_OPEN: list[RegistryClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def fake() -> Iterator[tuple[Fake, str]]:
    with serving() as served:
        yield served


@contextmanager
def serving() -> Iterator[tuple[Fake, str]]:
    """A fake registry on 127.0.0.1: (its state, ``host:port``)."""
    state = Fake()
    server = _QuietServer(("127.0.0.1", 0), make_handler(state))
    host = f"127.0.0.1:{server.server_address[1]}"
    state.token_realm = f"http://{host}/token"
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True)
    t.start()
    try:
        yield state, host
    finally:
        server.shutdown()
        server.server_close()
        t.join()


def client(host: str, **kw: Any) -> RegistryClient:
    kw.setdefault("insecure", True)
    kw.setdefault("backoff", 0)
    c = RegistryClient(host, **kw)
    _OPEN.append(c)  # its kept-alive connections are closed after the test
    return c


def oci_manifest(layers: list[Descriptor]) -> dict[str, Any]:
    config = {"mediaType": mediatypes.OCI_CONFIG, "digest": digest_of(b"{}"), "size": 2}
    return {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": config,
            "layers": [d.to_dict() for d in layers]}


# -- parsing ---------------------------------------------------------------------------------


def test_challenge_keeps_quoted_commas_and_escapes() -> None:
    c = parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                        'scope="repository:a/b:pull,push", error="say \\"no\\""')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "reg",
                        "scope": "repository:a/b:pull,push", "error": 'say "no"'}
    assert parse_challenge('Basic realm="x"').scheme == "basic"


@pytest.mark.parametrize(("host", "loop"), [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.9.9.9", True),
    ("[::1]:5000", True), ("::1", True), ("registry.example:5000", False),
    ("10.0.0.1:5000", False), ("localhost.example", False)])
def test_loopback_hosts(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


@pytest.mark.parametrize("kw", [{"registry_host": ""}, {"registry_host": "a/b"},
                                {"registry_host": "a b"}, {"retries": -1},
                                {"credentials": ("", "x")}])
def test_bad_client_arguments(kw: dict[str, Any]) -> None:
    args = {"registry_host": "127.0.0.1:1", **kw}
    with pytest.raises(errors.InvalidArgument):
        RegistryClient(args.pop("registry_host"), **args)


def test_bad_ca_file_names_it(tmp_path: Any) -> None:
    with pytest.raises(errors.InvalidArgument) as e:
        RegistryClient("r.example", ca_file=str(tmp_path / "nope.pem"))
    assert e.value.field == "ca_file"


# -- manifests -------------------------------------------------------------------------------


def test_manifest_by_tag_and_by_digest(fake: tuple[Fake, str]) -> None:
    state, host = fake
    d = state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    c = client(host)
    by_tag = c.get_manifest(REPO, "v1")
    assert (by_tag.digest, by_tag.media_type, by_tag.is_index) == (
        d, mediatypes.OCI_MANIFEST, False)
    assert c.get_manifest(REPO, d).data == by_tag.data
    accept = state.requests[0][2]["Accept"]
    for mt in mediatypes.ACCEPT_MANIFESTS:
        assert mt in accept


def test_unknown_tag_is_not_found_naming_the_reference(fake: tuple[Fake, str]) -> None:
    _, host = fake
    with pytest.raises(errors.NotFound) as e:
        client(host).get_manifest(REPO, "nope")
    assert f"{host}/{REPO}:nope" in str(e.value)


def test_digest_header_that_lies_is_refused(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    state.content_digest = "sha256:" + "1" * 64
    with pytest.raises(errors.InvalidArgument, match="registry says its digest"):
        client(host).get_manifest(REPO, "v1")


def test_manifest_under_a_digest_it_does_not_have_is_refused(fake: tuple[Fake, str]) -> None:
    state, host = fake
    other = "sha256:" + "2" * 64
    state.manifests[f"{REPO}:{other}"] = (json.dumps(oci_manifest([])).encode(),
                                          mediatypes.OCI_MANIFEST)
    state.content_digest = other  # the header agrees with the request, the bytes do not
    with pytest.raises(errors.InvalidArgument, match="digest"):
        client(host).get_manifest(REPO, other)


def test_schema1_is_not_supported(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.manifest("old", {"schemaVersion": 1, "name": REPO, "fsLayers": []},
                   mediatypes.DOCKER_MANIFEST_V1_SIGNED)
    with pytest.raises(errors.NotSupported, match="schema 1"):
        client(host).get_manifest(REPO, "old")


def test_unknown_media_type_is_refused(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.manifest("odd", {"schemaVersion": 2, "mediaType": "application/x-odd"},
                   "application/x-odd")
    with pytest.raises(errors.InvalidArgument, match="x-odd"):
        client(host).get_manifest(REPO, "odd")


def test_json_content_type_falls_back_to_the_body(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.manifest("j", {"schemaVersion": 2, "manifests": []}, "application/json")
    assert client(host).get_manifest(REPO, "j").media_type == mediatypes.OCI_INDEX


@pytest.mark.parametrize(("repo", "ref"), [("Team/App", "v1"), ("a//b", "v1"),
                                           (REPO, "-bad"), (REPO, "sha256:abc"),
                                           (REPO, "../../x")])
def test_bad_names_are_refused_before_any_request(fake: tuple[Fake, str], repo: str,
                                                  ref: str) -> None:
    state, host = fake
    with pytest.raises(errors.InvalidArgument):
        client(host).get_manifest(repo, ref)
    assert state.requests == []


# -- auth ------------------------------------------------------------------------------------


def test_basic_auth_with_the_right_credentials(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.auth = "basic"
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    c = client(host, credentials=state.user)
    c.get_manifest(REPO, "v1")
    c.get_manifest(REPO, "v1")
    # one challenge, then credentials are sent up front
    assert [r[2].get("Authorization", "")[:5] for r in state.requests] == ["", "Basic",
                                                                           "Basic"]


@pytest.mark.parametrize(("creds", "words"), [(None, "requires credentials"),
                                              (("alice", "wrong"), "refused the credentials")])
def test_basic_auth_refused(fake: tuple[Fake, str], creds: tuple[str, str] | None,
                            words: str) -> None:
    state, host = fake
    state.auth = "basic"
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    with pytest.raises(errors.InvalidArgument) as e:
        client(host, credentials=creds).get_manifest(REPO, "v1")
    assert words in str(e.value) and host in str(e.value)
    assert e.value.field == "credentials"


def test_bearer_token_is_fetched_once_per_scope(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.auth = "bearer"
    layer = state.blob(b"x" * 1000)
    state.manifest("v1", oci_manifest([layer]), mediatypes.OCI_MANIFEST)
    c = client(host, credentials=state.user)
    c.get_manifest(REPO, "v1")
    c.get_manifest(REPO, "v1")
    with c.open_blob(REPO, layer) as f:
        assert f.read() == b"x" * 1000
    assert len(state.token_requests) == 1
    tr = state.token_requests[0]
    assert tr["query"]["scope"] == [f"repository:{REPO}:pull"]
    assert tr["query"]["service"] == ["fake"]
    assert tr["auth"].startswith("Basic ")  # the realm is the registry's own host


def test_bearer_anonymous(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.auth = "bearer"
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    client(host).get_manifest(REPO, "v1")
    assert state.token_requests[0]["auth"] == ""


def test_bearer_with_refused_credentials(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.auth = "bearer"
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    with pytest.raises(errors.InvalidArgument, match="refused the credentials of 'alice'"):
        client(host, credentials=("alice", "nope")).get_manifest(REPO, "v1")


def test_credentials_are_not_sent_to_a_plain_http_realm_elsewhere(
        fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.auth = "bearer"
    state.token_realm = state.token_realm.replace("127.0.0.1", "localhost")
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    client(host, credentials=state.user).get_manifest(REPO, "v1")  # an anonymous token
    assert state.token_requests and state.token_requests[0]["auth"] == ""


# -- retries ---------------------------------------------------------------------------------


def test_5xx_is_retried(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    state.fail_statuses = [503, 500]
    client(host, retries=2).get_manifest(REPO, "v1")
    assert len(state.requests) == 3


def test_5xx_after_the_retries_is_unavailable(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.fail_statuses = [503] * 10
    with pytest.raises(errors.Unavailable) as e:
        client(host, retries=2).get_manifest(REPO, "v1")
    assert len(state.requests) == 3
    assert host in str(e.value) and "503" in str(e.value)


def test_registry_down_is_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.Unavailable) as e:
        client(f"127.0.0.1:{port}", retries=1).get_manifest(REPO, "v1")
    assert f"127.0.0.1:{port}" in str(e.value)
    assert isinstance(e.value.__cause__, ConnectionRefusedError)


# -- blobs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ranges", [True, False])
def test_a_broken_blob_download_resumes(fake: tuple[Fake, str], ranges: bool) -> None:
    state, host = fake
    data = bytes(range(256)) * 4096
    desc = state.blob(data)
    state.cut_after, state.cuts, state.ranges = 300_000, 2, ranges
    with client(host).open_blob(REPO, desc) as f:
        got = f.read()
    assert got == data
    gets = [r for r in state.requests if r[0] == "GET"]
    assert len(gets) == 3
    if ranges:
        assert gets[1][2].get("Range") == "bytes=300000-"


def test_a_blob_that_keeps_breaking_is_unavailable(fake: tuple[Fake, str]) -> None:
    state, host = fake
    desc = state.blob(b"y" * 100_000)
    state.cut_after, state.cuts = 10, 10
    with pytest.raises(errors.Unavailable, match="broke"), \
            client(host, retries=2).open_blob(REPO, desc) as f:
        f.read()


def test_a_short_blob_is_refused(fake: tuple[Fake, str]) -> None:
    state, host = fake
    desc = state.blob(b"z" * 5000)
    state.short_by = 100
    with pytest.raises(errors.InvalidArgument) as e:
        client(host).open_blob(REPO, desc).read()
    assert desc.digest in str(e.value) and "4900" in str(e.value)
    assert "truncated" in str(e.value)


def test_unknown_blob_is_not_found(fake: tuple[Fake, str]) -> None:
    _, host = fake
    desc = Descriptor(mediatypes.OCI_LAYER_GZIP, "sha256:" + "3" * 64, 10)
    with pytest.raises(errors.NotFound, match="3333"):
        client(host).open_blob(REPO, desc)


def test_blob_redirect_drops_the_authorization(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.auth = "basic"
    data = b"redirected" * 1000
    desc = state.blob(data)
    # the "CDN" is the same server under another name: a different host for the client
    state.redirect_to = f"http://localhost:{host.rsplit(':', 1)[1]}"
    with client(host, credentials=state.user).open_blob(REPO, desc) as f:
        assert f.read() == data
    cdn = [r for r in state.requests if r[1].startswith("/cdn/")]
    assert len(cdn) == 1 and "Authorization" not in cdn[0][2]


def test_https_to_http_redirect_is_refused() -> None:
    c = RegistryClient("r.example")
    with pytest.raises(errors.InvalidArgument, match="plain http"):
        c._redirect("https", "r.example", "/v2/x", "http://cdn.example/blob")


# -- uploads ---------------------------------------------------------------------------------


def test_upload_mount_and_manifest(fake: tuple[Fake, str]) -> None:
    state, host = fake
    c = client(host)
    data = b"layer bytes" * 100
    desc = Descriptor(mediatypes.OCI_LAYER_GZIP, digest_of(data), len(data))
    assert not c.has_blob(REPO, desc.digest)
    assert not c.mount_blob(REPO, desc.digest, "other/repo")
    c.upload_blob(REPO, desc, lambda: io.BytesIO(data))
    assert state.blobs[desc.digest] == data
    assert c.has_blob(REPO, desc.digest)
    assert c.mount_blob(REPO, desc.digest, "other/repo")
    manifest = json.dumps(oci_manifest([desc])).encode()
    assert c.put_manifest(REPO, "v2", manifest, mediatypes.OCI_MANIFEST) == digest_of(manifest)
    assert state.manifests[f"{REPO}:v2"] == (manifest, mediatypes.OCI_MANIFEST)


def test_upload_retried_after_a_5xx(fake: tuple[Fake, str]) -> None:
    state, host = fake
    data = b"again" * 100
    desc = Descriptor(mediatypes.OCI_LAYER_GZIP, digest_of(data), len(data))
    opened: list[int] = []

    def opener() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    state.fail_statuses = [0, 503]  # the first POST passes, its PUT fails
    c = client(host, retries=2)
    c.upload_blob(REPO, desc, opener)
    assert state.blobs[desc.digest] == data
    assert len(opened) == 2


def test_manifest_digest_the_registry_disputes_is_refused(fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.content_digest = "sha256:" + "4" * 64
    with pytest.raises(errors.InvalidArgument, match="stored the manifest as"):
        client(host).put_manifest(REPO, "v1", b'{"schemaVersion":2}', mediatypes.OCI_MANIFEST)


def test_a_loopback_registry_in_plain_http_is_reached_without_insecure(
        fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    c = client(host, insecure=False)
    assert c.scheme == "https"
    c.get_manifest(REPO, "v1")
    assert c.scheme == "http"  # remembered: the next request goes straight to http
    c.get_manifest(REPO, "v1")
    assert len(state.requests) == 2


def test_a_kept_alive_connection_the_registry_closed_is_replaced(
        fake: tuple[Fake, str]) -> None:
    state, host = fake
    state.manifest("v1", oci_manifest([]), mediatypes.OCI_MANIFEST)
    state.hang_up = True
    c = client(host, retries=0)  # no retry to spend: the stale connection must not cost one
    for _ in range(3):
        c.get_manifest(REPO, "v1")
    assert len(state.requests) == 3
