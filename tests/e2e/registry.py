"""A real registry for the end-to-end tests and the pull benchmark: Debian's ``docker-registry``
(distribution v2) on a free loopback port, with its own storage directory and configuration.

:class:`Registry` serves plain http, http with htpasswd (bcrypt) Basic auth, or https with a
server certificate signed by a test CA that the fixture makes with ``openssl``; it is stopped and
its directory removed at the end. Also here:

- :func:`build_layout` writes an OCI image layout with a few layers (and, for a multi-platform
  image, one manifest per platform under an index) that ``skopeo copy oci:...`` pushes;
- :class:`CuttingProxy`, a loopback TCP proxy that cuts the connection after a number of bytes
  from the registry, to break a pull in the middle;
- :func:`skopeo` to run skopeo against such a registry.

It imports nothing of silo: what silo pulls is put there, and what silo pushes is read back, by
other tools.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REGISTRY_BIN = "docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def missing() -> str | None:
    """None when docker-registry, skopeo and openssl are installed, else what is missing."""
    absent = [c for c in (REGISTRY_BIN, "skopeo", "openssl") if shutil.which(c) is None]
    if absent:
        return f"missing commands: {', '.join(absent)} (scripts/setup installs them)"
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        return "the bcrypt module is missing (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: Sequence[str], *, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}\n"
                           f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}")
    return proc


class TokenServer:
    """A token realm for the registry's ``token`` auth, on loopback: ``GET /token?service=&
    scope=`` answers a JWT (RS256, signed by ``openssl`` with a self-signed key whose
    certificate the registry trusts and the token carries in ``x5c``) granting what the scope
    asks. With ``credentials`` it wants them (Basic) and answers 401 to others; anonymous
    requests get a token that grants nothing."""

    SERVICE = "silo-test-registry"
    ISSUER = "silo-test-issuer"

    def __init__(self, workdir: Path, credentials: tuple[str, str] | None) -> None:
        import http.server

        self.credentials = credentials
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             str(self.key), "-out", str(self.cert), "-days", "2", "-subj", "/CN=silo token"])
        der = run_bytes(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"])
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[dict[str, str]] = []
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server_self._answer(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, h: Any) -> None:
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(h.path).query)
        auth = h.headers.get("Authorization", "")
        self.requests.append({"auth": auth, "scope": " ".join(q.get("scope", []))})
        user = ""
        if auth:
            want = base64.b64encode(":".join(self.credentials or ("", "")).encode()).decode()
            if not self.credentials or auth != f"Basic {want}":
                body = b'{"details":"invalid credentials"}'
                h.send_response(401)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)
                return
            user = self.credentials[0]
        access = []
        if user or not self.credentials:
            for scope in q.get("scope", []):
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        body = json.dumps({"token": self._sign(user, access), "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _sign(self, user: str, access: list[dict[str, object]]) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.ISSUER, "sub": user, "aud": self.SERVICE, "exp": now + 300,
                  "nbf": now - 60, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = run_bytes(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                        input=signing.encode())
        return f"{signing}.{b64(sig)}"


def run_bytes(argv: Sequence[str], *, input: bytes | None = None) -> bytes:
    proc = subprocess.run(list(argv), capture_output=True, timeout=60, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr!r}")
    return proc.stdout


class Registry:
    """One ``docker-registry serve`` on ``127.0.0.1:<port>`` (``localhost:<port>`` with TLS).

    ``credentials=(user, password)`` turns on htpasswd auth, or with ``token=True`` token
    auth through a :class:`TokenServer` of its own (``self.token``); ``tls=True`` serves
    https with ``self.ca_file`` as the CA that signed its certificate.
    """

    def __init__(self, workdir: Path, *, credentials: tuple[str, str] | None = None,
                 tls: bool = False, token: bool = False) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.credentials = credentials
        self.tls = tls
        self.use_token = token
        self.token: TokenServer | None = None
        self.port = 0
        self.ca_file = workdir / "ca.crt"
        self.log_path = workdir / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"{'localhost' if self.tls else '127.0.0.1'}:{self.port}"

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        auth = tls = ""
        if self.use_token:
            self.token = TokenServer(self.workdir, self.credentials)
            auth = (f"auth:\n  token:\n    realm: {self.token.realm}\n"
                    f"    service: {TokenServer.SERVICE}\n    issuer: {TokenServer.ISSUER}\n"
                    f"    rootcertbundle: {self.token.cert}\n")
        elif self.credentials:
            import bcrypt

            user, password = self.credentials
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.workdir / "htpasswd").write_text(f"{user}:{hashed}\n")
            auth = (f"auth:\n  htpasswd:\n    realm: silo-test\n"
                    f"    path: {self.workdir / 'htpasswd'}\n")
        if self.tls:
            self._make_certs()
            tls = (f"  tls:\n    certificate: {self.workdir / 'server.crt'}\n"
                   f"    key: {self.workdir / 'server.key'}\n")
        for _ in range(5):  # the free port may be taken between the probe and the bind
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n"
                "  delete:\n    enabled: true\n"
                "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {secrets.token_hex(16)}\n"
                f"{tls}{auth}")
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
            if self._wait_ready():
                return
            self.stop(remove=False)
        raise RuntimeError(f"docker-registry did not start:\n{self.log()}")

    def _wait_ready(self, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def _make_certs(self) -> None:
        d = self.workdir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run(["openssl", "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out",
             str(self.ca_file), "-days", "2", "-subj", "/CN=silo test CA"])
        run(["openssl", "req", "-new", *ec, "-keyout", str(d / "server.key"), "-out",
             str(d / "server.csr"), "-subj", "/CN=localhost"])
        (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                   "extendedKeyUsage=serverAuth\n")
        run(["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(self.ca_file),
             "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.crt"),
             "-days", "2", "-extfile", str(d / "ext.cnf")])

    def stop(self, *, remove: bool = True) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if remove and self.token is not None:
            self.token.close()
            self.token = None
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (to tamper with them in a test)."""
        hexd = digest.split(":", 1)[1]
        return (self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] /
                hexd / "data")

    def skopeo_flags(self, direction: str) -> list[str]:
        """``--src-...``/``--dest-...`` flags (direction "src" or "dest") for this registry."""
        flags = [f"--{direction}-tls-verify=false"]
        if self.credentials:
            flags.append(f"--{direction}-creds={self.credentials[0]}:{self.credentials[1]}")
        return flags

    def url(self, repo_tag: str) -> str:
        return f"docker://{self.host}/{repo_tag}"

    def push_layout(self, layout: Path, ref_name: str, repo_tag: str, *,
                    docker_format: bool = False, all_platforms: bool = False) -> None:
        """``skopeo copy oci:LAYOUT:REF docker://HOST/REPO:TAG``."""
        argv = ["skopeo", "copy", "--quiet", *self.skopeo_flags("dest")]
        if docker_format:
            argv.append("--format=v2s2")
        if all_platforms:
            argv.append("--all")
        run([*argv, f"oci:{layout}:{ref_name}", self.url(repo_tag)])

    def raw_manifest(self, repo_ref: str) -> bytes:
        """What the registry serves for ``repo:tag`` or ``repo@digest``, read by skopeo."""
        flags = ["--tls-verify=false"]  # inspect has no --src- prefix
        if self.credentials:
            flags.append(f"--creds={self.credentials[0]}:{self.credentials[1]}")
        out = subprocess.run(["skopeo", "inspect", "--raw", *flags, self.url(repo_ref)],
                             capture_output=True, timeout=60, check=True,
                             stdin=subprocess.DEVNULL)
        return out.stdout

    def put(self, path: str, data: bytes, content_type: str) -> int:
        """A raw PUT (plain http, no auth) to store what skopeo would not (a schema 1 or an odd
        media type); returns the status."""
        req = urllib.request.Request(f"http://{self.host}{path}", data=data, method="PUT",
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)


# -- images --------------------------------------------------------------------------------


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer: regular files (parent directories made as needed), root-owned;
    ELF binaries and scripts are 0755, the rest 0644."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o755 if files[name][:4] == b"\x7fELF" or files[name][:2] == b"#!" \
                else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


class Layout:
    """An OCI image layout being written: blobs, and the index's manifests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.manifests: list[dict[str, object]] = []

    def blob(self, data: bytes, media_type: str) -> dict[str, object]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (self.path / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, layers: Sequence[dict[str, bytes]], *, arch: str = "amd64",
              os_name: str = "linux", cmd: Sequence[str] = ("/bin/sh",)) -> dict[str, object]:
        """Write one image's layers, config and manifest; returns the manifest descriptor."""
        descs = []
        diff_ids = []
        for files in layers:
            tar = layer_tar(files)
            diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
            descs.append(self.blob(gzip.compress(tar, compresslevel=1, mtime=0),
                                   OCI_LAYER_GZIP))
        config = {"architecture": arch, "os": os_name,
                  "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        cdesc = self.blob(json.dumps(config).encode(), OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                    "layers": descs}
        mdesc = self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)
        mdesc["platform"] = {"architecture": arch, "os": os_name}
        return mdesc

    def tag(self, desc: dict[str, object], name: str) -> None:
        self.manifests.append({**desc, "annotations": {"org.opencontainers.image.ref.name": name}})
        self._write_index()

    def tag_index(self, descs: Sequence[dict[str, object]], name: str) -> dict[str, object]:
        """An index of several manifests (one per platform), tagged ``name``."""
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                 "manifests": list(descs)}
        idesc = self.blob(json.dumps(index).encode(), OCI_INDEX)
        self.tag(idesc, name)
        return idesc

    def _write_index(self) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests}
        (self.path / "index.json").write_text(json.dumps(index))


def small_layers(seed: str, count: int = 3, files: int = 3,
                 size: int = 4096) -> list[dict[str, bytes]]:
    """``count`` layers of ``files`` pseudo-random files each, distinct per ``seed``."""
    out = []
    for i in range(count):
        layer = {}
        for j in range(files):
            data = hashlib.sha256(f"{seed}/{i}/{j}".encode()).digest() * (size // 32)
            layer[f"{seed}/layer{i}/file{j}"] = data
        out.append(layer)
    return out


# -- a proxy that breaks downloads -----------------------------------------------------------


class CuttingProxy:
    """A loopback TCP proxy to ``127.0.0.1:<port>``: the first ``cuts`` connections that carry
    more than ``after`` bytes from the registry are cut there (both ends closed), or, with
    ``stall=True``, hang there until the proxy is closed.

    ``host`` is ``127.0.0.1:<proxy port>``; connections after the cuts pass untouched;
    ``cut`` counts the connections cut (or stalled) so far.
    """

    def __init__(self, target_port: int, *, after: int, cuts: int = 1,
                 stall: bool = False) -> None:
        self.target_port = target_port
        self.after = after
        self.cuts_left = cuts
        self.stall = stall
        self.cut = 0
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self.port = int(self._sock.getsockname()[1])
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop = True
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._accepter.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
        except OSError:
            client.close()
            return
        with self._lock:
            cutting = self.cuts_left > 0
        done = threading.Event()

        def up() -> None:
            with contextlib.suppress(OSError):
                while not done.is_set():
                    data = client.recv(65536)
                    if not data:
                        break
                    upstream.sendall(data)
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=up, daemon=True)
        t.start()
        sent = 0
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if cutting and sent + len(data) > self.after:
                    with self._lock:
                        cutting = self.cuts_left > 0
                        if cutting:
                            self.cuts_left -= 1
                    if cutting:
                        client.sendall(data[: self.after - sent])
                        with self._lock:
                            self.cut += 1
                        if self.stall:
                            self._closed.wait()
                        break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            done.set()
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            t.join(timeout=5)


@contextlib.contextmanager
def registry(workdir: Path, **kw: object) -> Iterator[Registry]:
    reg = Registry(workdir, **kw)  # type: ignore[arg-type]
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


def skopeo(*args: str, timeout: float = 120) -> str:
    return run(["skopeo", *args], timeout=timeout).stdout
