"""The OCI distribution (registry v2) client: manifests and blobs, down and up.

Owns the wire with a registry: the scheme and TLS, the auth challenge (anonymous, ``Basic``,
``Bearer`` tokens fetched from the realm and cached per scope), retries with backoff, redirects,
and translating what goes wrong into ``silo.errors`` once, here, with the cause kept. Stdlib only
(``http.client``, ``ssl``); it imports nothing of silo but ``errors``, so ``pull`` and ``push``
put it together with the image store.

Scheme. https by default, verified against the system CAs or ``ca_file``. ``insecure=True`` means
plain http. A loopback registry (``localhost``, 127.0.0.0/8, ``::1``) that answers a TLS hello in
plain http is spoken to in http, as docker treats loopback registries as insecure; nothing else
ever falls back, and a certificate that does not verify is never ignored.

Errors, by what the caller can do about them:

- NotFound: the repository, tag, manifest or blob does not exist (names the reference);
- InvalidArgument: the registry refused the credentials or wants some (names the registry),
  its certificate is not trusted (field ``ca_file``), or it served something wrong (a digest
  that does not match, a truncated blob, a media type silo does not read);
- NotSupported: a v2 schema 1 manifest;
- Unavailable: the registry could not be reached or kept failing (5xx, resets) after
  ``retries`` retries with backoff.
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from silo import errors
from silo.storage import mediatypes
from silo.storage.descriptor import MAX_MANIFEST, sha256

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

OP = "storage::registry"

# What the client accepts as a manifest: image manifests and indexes, OCI and Docker.
MANIFEST_TYPES = mediatypes.MANIFESTS | mediatypes.INDEXES
SCHEMA1_TYPES = (mediatypes.DOCKER_MANIFEST_V1, mediatypes.DOCKER_MANIFEST_V1_SIGNED)
MAX_REDIRECTS = 5
BUFSIZE = 1 << 20
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


class Blob(Protocol):
    """What the client needs to know of a blob: a descriptor's digest and size."""

    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...


@dataclass(frozen=True)
class RemoteManifest:
    """A manifest or index as served: its bytes, media type and digest (sha256 of the bytes)."""

    data: bytes
    media_type: str
    digest: str

    @property
    def is_index(self) -> bool:
        return mediatypes.is_index(self.media_type)


@dataclass(frozen=True)
class Challenge:
    """One parsed ``WWW-Authenticate`` header: the scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """``Bearer realm="https://a/token",service="r",scope="repository:x:pull,push"``."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for m in _CHALLENGE_PARAM.finditer(rest):
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
    return Challenge(scheme.lower(), params)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (with or without a port)."""
    name = host
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    """``host[:port]`` without the port, as ``urlsplit(...).hostname`` spells it."""
    return urllib.parse.urlsplit(f"//{host}").hostname or host


def check_repository(repository: str) -> str:
    if not _REPO_RE.match(repository) or len(repository) > 255:
        raise errors.invalid("repository", f"{repository!r} is not a repository name", op=OP)
    return repository


def check_reference(reference: str) -> str:
    """A tag or a ``sha256:`` digest, as the last part of a manifest URL."""
    if not (_DIGEST_RE.match(reference) or _TAG_RE.match(reference)):
        raise errors.invalid("reference", f"{reference!r} is neither a tag nor a sha256 digest",
                             op=OP)
    return reference


class _Retry(Exception):
    """An attempt failed in a way another attempt may not (5xx, reset, refused)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Response:
    """A whole answer: status, headers (case-insensitive) and body."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes,
                 authorized: bool = False) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.authorized = authorized  # the request carried credentials or a token

    def registry_error(self) -> str:
        """The first message of the registry's ``errors`` array, or the status line."""
        try:
            doc = json.loads(self.body)
            first = doc["errors"][0]
            code = first.get("code", "")
            message = first.get("message", "")
            return f"{code}: {message}" if code else str(message)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return f"HTTP {self.status}"


class RegistryClient:
    """A client of one registry, safe to share between threads (blobs stream in parallel).

    ``registry_host`` is ``host[:port]`` as in a reference (``docker.io`` means Docker Hub's API
    host). ``credentials`` is ``(username, password)``; they go to the registry (Basic) or to
    its token realm (Bearer), never anywhere else in clear text.
    """

    def __init__(self, registry_host: str, *, insecure: bool = False,
                 ca_file: str | None = None, credentials: tuple[str, str] | None = None,
                 retries: int = 3, timeout: float = 30, backoff: float = 0.25) -> None:
        if not registry_host or "/" in registry_host or any(c.isspace() for c in registry_host):
            raise errors.invalid("registry", f"{registry_host!r} is not a registry host", op=OP)
        if retries < 0:
            raise errors.invalid("retries", "must not be negative", op=OP)
        if credentials is not None and (len(credentials) != 2 or not credentials[0]):
            raise errors.invalid("credentials", "must be (username, password)", op=OP,
                                 obj=registry_host)
        self.registry = registry_host
        self.host = DOCKER_HUB_API if registry_host == DOCKER_HUB else registry_host
        self.insecure = insecure
        self.credentials = credentials
        self.retries = retries
        self.timeout = timeout
        self.scheme = "http" if insecure else "https"
        self._ssl = self._ssl_context(ca_file)
        self._lock = threading.Lock()
        self._idle: list[tuple[str, str, http.client.HTTPConnection]] = []
        self._basic = False  # the registry asked for Basic: send it up front from now on
        self._bearer: dict[str, Challenge] = {}  # the challenge seen, by scope
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expires at)
        self.backoff = backoff  # seconds before the first retry; doubles, at most 4 s

    # -- public: manifests ---------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> RemoteManifest:
        """The manifest or index ``repository:reference`` (a tag or a digest) as served.

        A digest reference is checked against the bytes; so is the registry's
        ``Docker-Content-Digest``. NotFound names ``registry/repository:reference``.
        """
        check_repository(repository)
        check_reference(reference)
        name = self._name(repository, reference)
        resp = self._call("GET", f"/v2/{repository}/manifests/{reference}",
                          scope=f"repository:{repository}:pull",
                          headers={"Accept": ", ".join(mediatypes.ACCEPT_MANIFESTS)},
                          what=name, limit=MAX_MANIFEST)
        if resp.status == 404:
            raise errors.NotFound(f"{name}: manifest unknown ({resp.registry_error()})",
                                  op=OP, obj=name)
        self._expect(resp, (200,), name)
        data = resp.body
        media_type = self._manifest_type(resp, name)
        digest = sha256(data)
        served = resp.headers.get("Docker-Content-Digest", "")
        if served.startswith("sha256:") and served != digest:
            raise errors.invalid("manifest", f"{name}: the registry says its digest is {served} "
                                 f"but its bytes hash to {digest}", op=OP, obj=name)
        if _DIGEST_RE.match(reference) and reference != digest:
            raise errors.invalid("manifest", f"{name}: the registry served bytes whose digest "
                                 f"is {digest}", op=OP, obj=name)
        return RemoteManifest(data, media_type, digest)

    def put_manifest(self, repository: str, reference: str, data: bytes,
                     media_type: str) -> str:
        """Upload a manifest under a tag (or its digest); returns its digest, checked against
        the registry's answer."""
        check_repository(repository)
        check_reference(reference)
        name = self._name(repository, reference)
        digest = sha256(data)
        if _DIGEST_RE.match(reference) and reference != digest:
            raise errors.invalid("reference", f"{reference} is not the digest of the manifest "
                                 f"({digest})", op=OP, obj=name)
        resp = self._call("PUT", f"/v2/{repository}/manifests/{reference}",
                          scope=f"repository:{repository}:pull,push",
                          headers={"Content-Type": media_type}, body=data, what=name)
        self._expect(resp, (200, 201), name)
        served = resp.headers.get("Docker-Content-Digest", "")
        if served and served != digest:
            raise errors.invalid("manifest", f"{name}: the registry stored the manifest as "
                                 f"{served}, not {digest}", op=OP, obj=name)
        return digest

    # -- public: blobs -------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        check_repository(repository)
        name = self._name(repository, digest)
        resp = self._call("HEAD", f"/v2/{repository}/blobs/{digest}",
                          scope=f"repository:{repository}:pull", what=name, follow=True)
        if resp.status == 404:
            return False
        self._expect(resp, (200,), name)
        return True

    def open_blob(self, repository: str, blob: Blob) -> BinaryIO:
        """A stream of the blob's bytes, at most ``blob.size`` of them.

        A connection that breaks mid-blob is resumed where it broke (with ``Range``, else by
        skipping what was read) up to ``retries`` times. A registry that serves fewer bytes
        than the descriptor says raises InvalidArgument naming the blob; the caller checks the
        digest.
        """
        check_repository(repository)
        if not _DIGEST_RE.match(blob.digest):
            raise errors.invalid("digest", f"{blob.digest!r} is not a sha256 digest", op=OP)
        raw = _BlobStream(self, repository, blob.digest, blob.size)
        return io.BufferedReader(raw, buffer_size=BUFSIZE)

    def blob_source(self, repository: str) -> RegistryBlobSource:
        """A ``BlobSource`` of one repository, for ``ImageStore.add``."""
        return RegistryBlobSource(self, repository)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link a blob it has in ``from_repository``; False if it did not."""
        check_repository(repository)
        check_repository(from_repository)
        query = urllib.parse.urlencode({"mount": digest, "from": from_repository})
        name = self._name(repository, digest)
        resp = self._call("POST", f"/v2/{repository}/blobs/uploads/?{query}",
                          scope=f"repository:{repository}:pull,push "
                                f"repository:{from_repository}:pull",
                          body=b"", what=name)
        if resp.status == 201:
            return True
        if resp.status == 202:  # an upload session instead: end it, the caller uploads
            location = resp.headers.get("Location", "")
            if location:
                try:
                    self._call("DELETE", location, scope=f"repository:{repository}:pull,push",
                               what=name)
                except errors.SiloError:
                    pass
            return False
        self._expect(resp, (201, 202), name)
        return False

    def upload_blob(self, repository: str, blob: Blob,
                    opener: Callable[[], BinaryIO]) -> None:
        """Upload a blob in one PUT (POST for a session, then PUT with ``?digest=``).

        ``opener`` returns a fresh stream of the blob each time it is called: a failed attempt
        starts over from the beginning.
        """
        check_repository(repository)
        name = self._name(repository, blob.digest)
        scope = f"repository:{repository}:pull,push"
        for attempt in range(self.retries + 1):
            resp = self._call("POST", f"/v2/{repository}/blobs/uploads/", scope=scope,
                              body=b"", what=name)
            self._expect(resp, (202,), name)
            location = resp.headers.get("Location", "")
            if not location:
                raise errors.Internal(f"{name}: the registry started an upload without a "
                                      "Location", op=OP, obj=self.registry)
            sep = "&" if "?" in location else "?"
            url = f"{location}{sep}{urllib.parse.urlencode({'digest': blob.digest})}"
            with opener() as stream:
                try:
                    resp = self._call("PUT", url, scope=scope, body=stream, what=name,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(blob.size)},
                                      attempts=1)
                except errors.Unavailable:
                    if attempt == self.retries:
                        raise
                    self._sleep(attempt)
                    continue
            self._expect(resp, (201,), name)
            served = resp.headers.get("Docker-Content-Digest", "")
            if served and served != blob.digest:
                raise errors.invalid("blob", f"{name}: the registry stored the blob as "
                                     f"{served}", op=OP, obj=name)
            return

    # -- the wire ------------------------------------------------------------------------

    def _name(self, repository: str, reference: str) -> str:
        sep = "@" if reference.startswith("sha256:") else ":"
        return f"{self.registry}/{repository}{sep}{reference}"

    @staticmethod
    def _manifest_type(resp: _Response, name: str) -> str:
        media_type = resp.headers.get("Content-Type", "").partition(";")[0].strip()
        declared = ""
        schema = None
        try:
            doc = json.loads(resp.body)
            if isinstance(doc, dict):
                declared = str(doc.get("mediaType", ""))
                schema = doc.get("schemaVersion")
        except ValueError as e:
            raise errors.invalid("manifest", f"{name}: the registry served a manifest that is "
                                 f"not JSON: {e}", op=OP, obj=name) from e
        if media_type in SCHEMA1_TYPES or declared in SCHEMA1_TYPES or schema == 1:
            raise errors.NotSupported(f"{name}: Docker image manifest v2 schema 1 is not "
                                      "supported (deprecated; push the image again with a "
                                      "current client)", op=OP, obj=name)
        if media_type not in MANIFEST_TYPES:
            # Registries may serve application/json; the body then says what it is.
            media_type = declared or (mediatypes.OCI_INDEX if "manifests" in (doc or {})
                                      else mediatypes.OCI_MANIFEST)
        if media_type not in MANIFEST_TYPES:
            raise errors.invalid("manifest", f"{name}: media type {media_type!r} is not a "
                                 "manifest or index silo reads", op=OP, obj=name)
        return media_type

    def _expect(self, resp: _Response, ok: tuple[int, ...], name: str) -> None:
        if resp.status in ok:
            return
        if resp.status == 404:
            raise errors.NotFound(f"{name}: not found ({resp.registry_error()})", op=OP,
                                  obj=name)
        if resp.status in (401, 403):
            raise errors.invalid("credentials", f"registry {self.registry} denied access to "
                                 f"{name}: {resp.registry_error()}", op=OP, obj=self.registry)
        if resp.status == 416:
            raise errors.invalid("blob", f"{name}: the registry has fewer bytes than asked "
                                 "for (truncated blob)", op=OP, obj=name)
        raise errors.invalid("request", f"registry {self.registry} answered {resp.status} "
                             f"for {name}: {resp.registry_error()}", op=OP, obj=name)

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(self.backoff * (2 ** attempt), 4.0))

    def _ssl_context(self, ca_file: str | None) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise errors.invalid("ca_file", f"cannot load CA certificates from {ca_file}: {e}",
                                 op=OP, obj=self.registry) from e
        return ctx

    def _connection(self, scheme: str, netloc: str,
                    fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """(a connection, whether it is a kept-alive one from the pool)."""
        if not fresh:
            with self._lock:
                for i, (s, n, conn) in enumerate(self._idle):
                    if s == scheme and n == netloc:
                        del self._idle[i]
                        return conn, True
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ssl,
                                               blocksize=BUFSIZE), False
        return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=BUFSIZE), False

    def _release(self, netloc: str, conn: http.client.HTTPConnection) -> None:
        scheme = "https" if isinstance(conn, http.client.HTTPSConnection) else "http"
        with self._lock:
            if len(self._idle) < 8:
                self._idle.append((scheme, netloc, conn))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, _, conn in idle:
            conn.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str) -> tuple[str, str, str]:
        """(scheme, netloc, path?query) of a path on the registry or an absolute URL."""
        if path.startswith("/"):
            return self.scheme, self.host, path
        u = urllib.parse.urlsplit(path)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise errors.Internal(f"registry {self.registry} sent an unusable URL {path!r}",
                                  op=OP, obj=self.registry)
        return u.scheme, u.netloc, urllib.parse.urlunsplit(("", "", u.path or "/", u.query, ""))

    def _auth_header(self, scope: str, netloc: str) -> str | None:
        if netloc != self.host:
            return None  # credentials and tokens are for the registry only, not a redirect
        with self._lock:
            token = self._tokens.get(scope)
            if token and token[1] > time.monotonic():
                return f"Bearer {token[0]}"
            challenge = self._bearer.get(scope)
        if challenge is not None:
            return f"Bearer {self._fetch_token(challenge, scope)}"
        if self._basic and self.credentials:
            return "Basic " + base64.b64encode(
                f"{self.credentials[0]}:{self.credentials[1]}".encode()).decode()
        return None

    def _call(self, method: str, path: str, *, scope: str, what: str,
              headers: dict[str, str] | None = None, body: bytes | BinaryIO | None = None,
              limit: int = 1 << 20, follow: bool = False, attempts: int = 0) -> _Response:
        """One request with auth and retries; the whole answer (at most ``limit`` bytes)."""
        attempts = attempts or self.retries + 1
        authed = False
        last = ""
        attempt = 0
        while True:
            try:
                resp = self._attempt(method, path, scope=scope, headers=headers or {},
                                     body=body, limit=limit, follow=follow, what=what)
            except _Retry as e:
                last = e.reason
                attempt += 1
                if attempt >= attempts or not self._rewindable(body):
                    raise errors.Unavailable(
                        f"registry {self.registry} is unavailable ({what}): {last}",
                        op=OP, obj=self.registry) from e.__cause__
                self._sleep(attempt - 1)
                continue
            if resp.status == 401 and not authed:
                authed = True
                self._answer_challenge(resp, scope)
                if self._rewindable(body):
                    continue
            if resp.status == 401:
                self._refused(resp)
            return resp

    @staticmethod
    def _rewindable(body: bytes | BinaryIO | None) -> bool:
        if body is None or isinstance(body, bytes):
            return True
        try:
            body.seek(0)
            return True
        except (OSError, ValueError):
            return False

    def _attempt(self, method: str, path: str, *, scope: str, headers: dict[str, str],
                 body: bytes | BinaryIO | None, limit: int, follow: bool,
                 what: str) -> _Response:
        scheme, netloc, target = self._url(path)
        for _ in range(MAX_REDIRECTS + 1):
            resp, conn, authorized = self._send(method, scheme, netloc, target, scope,
                                                headers, body, what)
            try:
                status = resp.status
                if status in (301, 302, 303, 307, 308) and (follow or method in ("GET", "HEAD")):
                    resp.read()
                    location = resp.getheader("Location", "")
                    self._release(netloc, conn)
                    scheme, netloc, target = self._redirect(scheme, netloc, target, location)
                    continue
                if status >= 500 or status == 429:
                    resp.read()
                    conn.close()
                    raise _Retry(f"HTTP {status} {resp.reason}")
                data = resp.read(limit + 1) if method != "HEAD" else b""
                if len(data) > limit:
                    conn.close()
                    raise errors.invalid("response", f"registry {self.registry} sent more than "
                                         f"{limit} bytes for {what}", op=OP, obj=what)
                if resp.isclosed() or method == "HEAD":
                    self._release(netloc, conn)
                else:
                    conn.close()
                return _Response(status, resp.headers, data, authorized)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise _Retry(f"{type(e).__name__}: {e}") from e
        raise errors.invalid("response", f"registry {self.registry} redirected {what} more "
                             f"than {MAX_REDIRECTS} times", op=OP, obj=what)

    def _redirect(self, scheme: str, netloc: str, target: str,
                  location: str) -> tuple[str, str, str]:
        if not location:
            raise errors.Internal(f"registry {self.registry} redirected without a Location",
                                  op=OP, obj=self.registry)
        url = urllib.parse.urljoin(f"{scheme}://{netloc}{target}", location)
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise errors.invalid("response", f"registry {self.registry} redirected to "
                                 f"{location!r}", op=OP, obj=self.registry)
        if scheme == "https" and u.scheme == "http" and not self.insecure:
            raise errors.invalid("response", f"registry {self.registry} redirected from https "
                                 f"to plain http ({u.netloc})", op=OP, obj=self.registry)
        return u.scheme, u.netloc, urllib.parse.urlunsplit(("", "", u.path or "/", u.query, ""))

    def _send(self, method: str, scheme: str, netloc: str, target: str, scope: str,
              headers: dict[str, str], body: bytes | BinaryIO | None, what: str,
              fresh: bool = False,
              ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection, bool]:
        """Send one request on a pooled connection; a broken connection becomes _Retry.

        A kept-alive connection the registry closed while idle fails at once; the request
        is sent again on a new one, without counting as a retry."""
        hdrs = dict(headers)
        auth = self._auth_header(scope, netloc)
        if auth:
            hdrs["Authorization"] = auth
        if isinstance(body, bytes):
            hdrs.setdefault("Content-Length", str(len(body)))
        conn, reused = self._connection(scheme, netloc, fresh)
        try:
            conn.request(method, target, body=body, headers=hdrs)
            return conn.getresponse(), conn, auth is not None
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise errors.invalid(
                "ca_file", f"registry {self.registry}: its TLS certificate is not trusted "
                f"({e.verify_message}); give the CA that signed it (ca_file)",
                op=OP, obj=self.registry) from e
        except ssl.SSLError as e:
            conn.close()
            if (scheme == "https" and netloc == self.host and is_loopback(self.host)
                    and self._speaks_http(e)):
                self.scheme = "http"  # a loopback registry in plain http (see the docstring)
                return self._send(method, "http", netloc, target, scope, headers, body, what)
            raise _Retry(f"TLS: {e}") from e
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            if reused and self._rewindable(body):
                return self._send(method, scheme, netloc, target, scope, headers, body, what,
                                  fresh=True)
            raise _Retry(f"{type(e).__name__}: {e}") from e

    @staticmethod
    def _speaks_http(e: ssl.SSLError) -> bool:
        return e.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                            "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST")

    # -- auth ----------------------------------------------------------------------------

    def _answer_challenge(self, resp: _Response, scope: str) -> None:
        header = resp.headers.get("WWW-Authenticate", "")
        challenge = parse_challenge(header) if header else Challenge("", {})
        if challenge.scheme == "basic":
            if not self.credentials:
                raise errors.invalid("credentials", f"registry {self.registry} requires "
                                     "credentials (none were given)", op=OP, obj=self.registry)
            if resp.authorized:
                self._refused(resp)
            self._basic = True
            return
        if challenge.scheme == "bearer":
            if "realm" not in challenge.params:
                raise errors.invalid("response", f"registry {self.registry} asked for a token "
                                     "without a realm", op=OP, obj=self.registry)
            with self._lock:
                if scope in self._bearer and scope in self._tokens:
                    del self._tokens[scope]  # the cached token was rejected: fetch again once
                self._bearer[scope] = challenge
            return
        raise errors.NotSupported(f"registry {self.registry} asks for authentication scheme "
                                  f"{challenge.scheme or '(none)'!r}", op=OP, obj=self.registry)

    def _refused(self, resp: _Response) -> None:
        if self.credentials:
            raise errors.invalid("credentials", f"registry {self.registry} refused the "
                                 f"credentials of {self.credentials[0]!r}: "
                                 f"{resp.registry_error()}", op=OP, obj=self.registry)
        raise errors.invalid("credentials", f"registry {self.registry} requires credentials "
                             f"(none were given): {resp.registry_error()}", op=OP,
                             obj=self.registry)

    def _fetch_token(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params["realm"]
        u = urllib.parse.urlsplit(realm)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise errors.invalid("response", f"registry {self.registry} names a token realm "
                                 f"{realm!r} that is not an http(s) URL", op=OP,
                                 obj=self.registry)
        query: list[tuple[str, str]] = []
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        for s in (challenge.params.get("scope") or scope).split(" "):
            if s:
                query.append(("scope", s))
        if "scope" in challenge.params and challenge.params["scope"] != scope:
            for s in scope.split(" "):
                if s and ("scope", s) not in query:
                    query.append(("scope", s))
        headers = {"Accept": "application/json"}
        # Basic credentials go to the realm only over TLS, or in plain http to the registry's
        # own host name (another port of it: a token server beside a local registry).
        if self.credentials and (u.scheme == "https" or u.hostname == _hostname(self.host)):
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{self.credentials[0]}:{self.credentials[1]}".encode()).decode()
        target = urllib.parse.urlunsplit(("", "", u.path or "/",
                                          "&".join(x for x in (u.query, urllib.parse.urlencode(
                                              query)) if x), ""))
        last = ""
        for attempt in range(self.retries + 1):
            conn = (http.client.HTTPSConnection(u.netloc, timeout=self.timeout,
                                                context=self._ssl)
                    if u.scheme == "https" else
                    http.client.HTTPConnection(u.netloc, timeout=self.timeout))
            try:
                conn.request("GET", target, headers=headers)
                r = conn.getresponse()
                body = r.read(1 << 20)
                status = r.status
            except ssl.SSLCertVerificationError as e:
                raise errors.invalid(
                    "ca_file", f"token server {u.netloc} of registry {self.registry}: its TLS "
                    f"certificate is not trusted ({e.verify_message})", op=OP,
                    obj=self.registry) from e
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
                self._sleep(attempt)
                continue
            finally:
                conn.close()
            if status >= 500 or status == 429:
                last = f"HTTP {status}"
                self._sleep(attempt)
                continue
            if status in (401, 403):
                self._refused(_Response(status, r.headers, body))
            if status != 200:
                raise errors.invalid("response", f"token server {u.netloc} of registry "
                                     f"{self.registry} answered {status}", op=OP,
                                     obj=self.registry)
            try:
                doc = json.loads(body)
                token = str(doc.get("token") or doc.get("access_token") or "")
                expires = float(doc.get("expires_in") or 60)
            except (ValueError, AttributeError, TypeError) as e:
                raise errors.invalid("response", f"token server {u.netloc} of registry "
                                     f"{self.registry} sent no JSON token", op=OP,
                                     obj=self.registry) from e
            if not token:
                raise errors.invalid("response", f"token server {u.netloc} of registry "
                                     f"{self.registry} sent an empty token", op=OP,
                                     obj=self.registry)
            with self._lock:
                self._tokens[scope] = (token, time.monotonic() + max(expires - 10, 1))
            return token
        raise errors.Unavailable(f"token server {u.netloc} of registry {self.registry} is "
                                 f"unavailable: {last}", op=OP, obj=self.registry)


class RegistryBlobSource:
    """The ``BlobSource`` of one repository on a registry (``ImageStore.add`` reads from it)."""

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = check_repository(repository)

    def open_blob(self, desc: Blob) -> BinaryIO:
        return self.client.open_blob(self.repository, desc)


class _BlobStream(io.RawIOBase):
    """``GET /v2/<repo>/blobs/<digest>``, redirects followed, resumed after a break."""

    def __init__(self, client: RegistryClient, repository: str, digest: str,
                 size: int) -> None:
        super().__init__()
        self._client = client
        self._repository = repository
        self._digest = digest
        self._size = size
        self._name = client._name(repository, digest)
        self._offset = 0
        self._breaks = 0
        self._resp: http.client.HTTPResponse | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._open()

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        while True:
            if self._offset >= self._size:
                self._finish()
                return 0
            if self._resp is None:
                self._open()
            assert self._resp is not None
            view = memoryview(b)[: self._size - self._offset]
            try:
                n = self._resp.readinto(view)
            except (OSError, http.client.HTTPException) as e:
                self._broken(e)
                continue
            if n == 0:
                # http.client returns 0, not IncompleteRead, when the connection ends before
                # Content-Length; a declared length shorter than the blob was refused in _open.
                self._broken(ConnectionError(f"the connection ended after {self._offset} of "
                                             f"{self._size} bytes"))
                continue
            self._offset += n
            return n

    def close(self) -> None:
        self._finish()
        super().close()

    def _finish(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._resp = None

    def _truncated(self, served: int) -> errors.InvalidArgument:
        what = "truncated" if served < self._size else "longer than its descriptor"
        return errors.invalid("blob", f"{self._name}: the registry serves {served} bytes, "
                              f"the descriptor says {self._size} ({what})", op=OP,
                              obj=self._name)

    def _broken(self, cause: BaseException) -> None:
        self._finish()
        self._breaks += 1
        if self._breaks > self._client.retries:
            raise errors.Unavailable(f"registry {self._client.registry}: the download of "
                                     f"{self._name} broke {self._breaks} times "
                                     f"({type(cause).__name__}: {cause})", op=OP,
                                     obj=self._client.registry) from cause
        self._client._sleep(self._breaks - 1)

    def _open(self) -> None:
        """GET from ``self._offset`` (Range when resuming); skip what was read if the registry
        answers the whole blob instead of the range."""
        client = self._client
        scope = f"repository:{self._repository}:pull"
        headers = {"Range": f"bytes={self._offset}-"} if self._offset else {}
        scheme, netloc, target = client._url(f"/v2/{self._repository}/blobs/{self._digest}")
        authed = False
        redirects = 0
        while True:
            try:
                resp, conn, authorized = client._send("GET", scheme, netloc, target, scope,
                                                      headers, None, self._name)
            except _Retry as e:
                self._broken(e.__cause__ or e)
                scheme, netloc, target = client._url(
                    f"/v2/{self._repository}/blobs/{self._digest}")
                continue
            status = resp.status
            if status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location", "")
                conn.close()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise errors.invalid("response", f"registry {client.registry} redirected "
                                         f"{self._name} too often", op=OP, obj=self._name)
                scheme, netloc, target = client._redirect(scheme, netloc, target, location)
                continue
            if status in (200, 206):
                break
            try:
                body = resp.read(1 << 16)
            except (OSError, http.client.HTTPException):
                body = b""
            conn.close()
            answer = _Response(status, resp.headers, body, authorized)
            if status == 401 and not authed:
                authed = True
                client._answer_challenge(answer, scope)
                continue
            if status == 401:
                client._refused(answer)
            if status >= 500 or status == 429:
                self._broken(_Retry(f"HTTP {status}"))
                continue
            if status == 404:
                raise errors.NotFound(f"{self._name}: blob unknown to the registry", op=OP,
                                      obj=self._name)
            client._expect(answer, (200, 206), self._name)
        self._resp, self._conn = resp, conn
        if status == 206:
            first, total = _content_range(resp.getheader("Content-Range", ""))
            if total not in (-1, self._size):
                self._finish()
                raise self._truncated(total)
            if first != self._offset:
                self._finish()
                raise errors.invalid("response", f"{self._name}: the registry answered bytes "
                                     f"from {first}, not {self._offset}", op=OP, obj=self._name)
            return
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) != self._size:
            self._finish()
            raise self._truncated(int(length))
        skip = self._offset
        while skip:
            chunk = resp.read(min(skip, BUFSIZE))
            if not chunk:
                self._finish()
                raise errors.invalid("blob", f"{self._name}: the registry served fewer bytes "
                                     "than before", op=OP, obj=self._name)
            skip -= len(chunk)


def _content_range(content_range: str) -> tuple[int, int]:
    """(first byte, total size) of ``bytes 100-199/200``; -1 for what it does not say."""
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    if not m:
        return -1, -1
    return int(m.group(1)), (int(m.group(2)) if m.group(2) != "*" else -1)


__all__ = [
    "MANIFEST_TYPES",
    "Challenge",
    "RegistryBlobSource",
    "RegistryClient",
    "RemoteManifest",
    "is_loopback",
    "parse_challenge",
]
