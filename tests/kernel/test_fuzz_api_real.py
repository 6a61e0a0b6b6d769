"""Fuzzing silod's API (as tests/unit/test_fuzz_api.py does) against the real ComputeService.

One ComputeService per module, on a DaemonConfig of its own (data, run and runtime dirs in a
temp dir, a cgroup parent ``/silo-fuzz-<hex>``), behind the real HTTP server on loopback TCP.
The unit module's seeded systems (created, running, paused, stopped, with a process in the
running and paused ones) are made once and re-made only when a generated request changed one;
what a request created is deleted after it. Generated requests are fewer than in the unit
test (each one may start a container), and the waiting verbs get TimeoutSeconds 0.

The checks are the unit test's, and a refused request (any 4xx) must change nothing in the API's
view (every system, its state and document) nor in the kernel's: the cgroups under the fuzz
parent, the mounts under the temp dir, the processes that mention the run dir (conmon). At the
end every system is deleted and nothing may be left: mount, cgroup, process or file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from silo import errors
from silo.service.compute import ComputeService
from silo.service.config import DaemonConfig
from tests import probes
from tests.kernel.conftest import CGROUP_MOUNT, SKIP, mounts_below, processes_mentioning
from tests.unit import fuzzing
from tests.unit import test_fuzz_api as unit

MISSING = probes.need_all(SKIP, probes.need_binary("conmon"))
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(bool(MISSING), reason=MISSING or "")]

MAX_EXAMPLES = 12
WAITING = ("/wait", "/shutdown")  # path endings whose TimeoutSeconds is forced to 0


class Env:
    """The temp dir, the config over it and the one service of the module."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="silo-fuzz-"))
        self.tmp.chmod(0o711)
        self.cgroup_name = f"silo-fuzz-{secrets.token_hex(4)}"
        data = self.tmp / "data"
        (data / "images").mkdir(parents=True)
        (data / "images" / "busybox").symlink_to(probes.BUSYBOX_IMAGE)
        self.config = DaemonConfig(
            data_dir=str(data), run_dir=str(self.tmp / "run"),
            runtime=str(probes.RUNTIME), conmon=shutil.which("conmon") or "/usr/bin/conmon",
            cgroup_parent="/" + self.cgroup_name, stop_timeout=1)
        self.api = ComputeService(self.config)
        self.api.reconcile()
        self.pids: dict[str, list[int]] = {}
        self.mapped = self.tmp / "mapped"
        self.mapped.mkdir()
        self.turn = 0
        self.dirty = False

    # -- the kernel's view ---------------------------------------------------------------------

    def cgroups(self) -> list[str]:
        out = []
        for hierarchy in sorted(os.listdir(CGROUP_MOUNT)):
            top = CGROUP_MOUNT / hierarchy / self.cgroup_name
            for d, subs, _ in os.walk(top):
                out += [os.path.relpath(os.path.join(d, s), CGROUP_MOUNT) for s in subs]
        return sorted(out)

    def kernel_view(self) -> dict[str, Any]:
        conmon = {pid: cmd for pid, cmd in processes_mentioning(self.config.run_dir).items()
                  if os.path.basename(cmd.split(" ", 1)[0]) == "conmon"}
        return {"cgroups": self.cgroups(), "mounts": sorted(mounts_below(self.tmp)),
                "conmon": conmon}

    def snapshot(self) -> Any:
        return {"api": unit.snapshot(self.api), "kernel": self.kernel_view()}

    # -- seeds ---------------------------------------------------------------------------------

    def _in_shape(self, system_id: str) -> bool:
        try:
            summary = self.api.get(system_id)
        except errors.NotFound:
            return False
        want = {"created": "Created", "running": "Running", "paused": "Paused",
                "stopped": "Stopped"}[system_id]
        if summary["State"] != want:
            return False
        if want in ("Running", "Paused"):
            pids = self.pids.get(system_id) or []
            return bool(pids) and not self.api.process_status(system_id, pids[0])["Exited"]
        return True

    def reseed(self) -> None:
        """Delete what is not a seed; re-make each seed that is gone or changed; then, if the
        last request or this changed anything, wait for what follows on its own (an exit
        recorded by the watcher) to be over, so that it is not taken for the next one's doing."""
        for s in self.api.list():
            if s["Id"] not in unit.SEED_IDS:
                self.api.delete(s["Id"], force=True)
                self.dirty = True
        for system_id in unit.SEED_IDS:
            if self._in_shape(system_id):
                continue
            try:
                self.api.delete(system_id, force=True)
            except errors.NotFound:
                pass
            self.pids[system_id] = unit.seed_one(self.api, system_id)
            self.dirty = True
        if self.dirty:
            self.settle()
            self.dirty = False

    def settle(self, timeout: float = 3.0) -> None:
        last, deadline = self.snapshot(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.snapshot()
            if now == last:
                return
            last = now

    # -- the end -------------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        problems = []
        try:
            for s in self.api.list():
                self.api.delete(s["Id"], force=True)
        except Exception as err:  # the check below says what is left
            problems.append(f"cleanup failed: {err!r}")
        self.api.close()
        problems += [f"mount {m}" for m in mounts_below(self.tmp)]
        problems += [f"process {pid}: {cmd}"
                     for pid, cmd in processes_mentioning(str(self.tmp)).items()]
        problems += [f"cgroup {d}" for d in self.cgroups()]
        c = self.config
        for d in (os.path.join(c.run_dir, "bundles"), os.path.join(c.run_dir, "exits"),
                  os.path.join(c.data_dir, "scratch"), c.runtime_root):
            if os.path.isdir(d) and os.listdir(d):
                problems.append(f"files in {d}: {sorted(os.listdir(d))}")
        self.scrub()
        return problems

    def scrub(self) -> None:
        for pid in processes_mentioning(str(self.tmp)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for m in sorted(mounts_below(self.tmp), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        for hierarchy in os.listdir(CGROUP_MOUNT):
            top = CGROUP_MOUNT / hierarchy / self.cgroup_name
            for d, _, _ in os.walk(top, topdown=False):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.tmp)], capture_output=True)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    yield e
    problems = e.teardown()
    if problems:
        pytest.fail("the fuzzed service left things behind: " + "; ".join(problems),
                    pytrace=False)


@pytest.fixture(scope="module")
def base_url(env: Env) -> Iterator[str]:
    with fuzzing.served(env.api) as url:
        yield url


session = fuzzing.session  # one HTTP session for the module's requests


CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
})
schema = schemathesis.openapi.from_dict(unit._document(), config=CONFIG).exclude(
    path="/v1/events")
schema.hook(unit.flatmap_path_parameters)
schema.hook(unit.flatmap_body)
schema.hook(unit.map_query)


def _steer_create(case: Any, env: Env) -> None:
    """Schema version 2 and the busybox image where the case has valid values there, and in a
    positive case one of the mutually exclusive Processor settings: the phases that skip the
    body hook would otherwise stop nearly every create before it reaches the kernel. Also in
    a positive case, the paths the schema cannot say must be absolute: no Networking.Namespace
    (a namespace of its own), WorkingDirectory "/", HostPath a directory of the temp dir,
    ContainerPath "/mnt"; and StopSignal SIGTERM (the schema takes any integer)."""
    if case.operation.path != "/v1/compute-systems" or not isinstance(case.body, dict):
        return
    config = case.body.get("Configuration")
    if not isinstance(config, dict):
        return
    version = config.get("SchemaVersion")
    if isinstance(version, dict) and type(version.get("Major")) is int and version["Major"] >= 0:
        version["Major"] = 2
    container = config.get("Container")
    storage = container.get("Storage") if isinstance(container, dict) else None
    if isinstance(storage, dict) and isinstance(storage.get("Image"), str) and storage["Image"]:
        storage["Image"] = "busybox"
    processor = container.get("Processor") if isinstance(container, dict) else None
    meta = getattr(case, "meta", None)
    positive = meta is not None and meta.generation.mode == GenerationMode.POSITIVE
    if positive and isinstance(processor, dict):
        for extra in [k for k in ("Count", "Maximum", "Weight") if k in processor][1:]:
            del processor[extra]
    if not positive or not isinstance(container, dict):
        return
    networking = container.get("Networking")
    if isinstance(networking, dict):
        networking.pop("Namespace", None)
    linux = container.get("Linux")
    process = linux.get("Process") if isinstance(linux, dict) else None
    _steer_process(process)
    if isinstance(linux, dict) and "StopSignal" in linux:
        linux["StopSignal"] = "SIGTERM"
    for mapped in container.get("MappedDirectories") or []:
        if isinstance(mapped, dict) and "HostPath" in mapped:
            mapped["HostPath"] = str(env.mapped)
        if isinstance(mapped, dict) and "ContainerPath" in mapped:
            mapped["ContainerPath"] = "/mnt"


def _steer_process(process: Any) -> None:
    """A positive case's ProcessParameters: WorkingDirectory "/", and for an exec (whose
    CommandArgs the schema lets be empty) a command the image has."""
    if isinstance(process, dict) and "WorkingDirectory" in process:
        process["WorkingDirectory"] = "/"
    if isinstance(process, dict) and isinstance(process.get("CommandArgs"), list):
        process["CommandArgs"][:1] = ["true"]


def _steer_exec(case: Any) -> None:
    meta = getattr(case, "meta", None)
    if (case.operation.path == "/v1/compute-systems/{id}/processes"
            and meta is not None and meta.generation.mode == GenerationMode.POSITIVE):
        _steer_process(case.body)


def _steer_id(case: Any, env: Env) -> None:
    """Every other positive case with an id goes to a seeded system, in turn (the phases that
    skip the path hook would otherwise ask mostly for systems that do not exist)."""
    meta = getattr(case, "meta", None)
    params = case.path_parameters
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE or not params:
        return
    if "id" in params and params["id"] not in unit.SEED_IDS:
        env.turn += 1
        if env.turn % 2:
            params["id"] = unit.SEED_IDS[env.turn // 2 % len(unit.SEED_IDS)]
            if "pid" in params:
                params["pid"] = "seeded"


def _no_follow(case: Any) -> None:
    """Follow=false (the query hook's rule, which the phases that skip it need too): a
    running system's logs would stream until the client leaves."""
    query = case.query
    if isinstance(query, dict) and query.get("Follow") in (True, "true", "True", "1"):
        query["Follow"] = "false"


def _no_long_waits(case: Any) -> None:
    """TimeoutSeconds 0 wherever the document allows one and the case does not make it
    invalid: a running system would otherwise hold the request for the verb's default."""
    if not case.operation.path.endswith(WAITING):
        return
    if case.body is NOT_SET or case.body is None:
        case.body = {"TimeoutSeconds": 0}
    elif isinstance(case.body, dict):
        t = case.body.get("TimeoutSeconds", 0)
        if type(t) is int and t >= 0:
            case.body["TimeoutSeconds"] = 0


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_real_service_holds_up_under_generated_requests(
        case: Any, env: Env, base_url: str, session: requests.Session) -> None:
    env.reseed()
    _steer_id(case, env)
    unit._resolve_pid(case, env)  # type: ignore[arg-type]
    _steer_create(case, env)
    _steer_exec(case)
    _no_long_waits(case)
    _no_follow(case)
    before = env.snapshot()

    response = case.call_and_validate(
        base_url=base_url, session=session, timeout=30,
        excluded_checks=[not_a_server_error, positive_data_acceptance])

    status = response.status_code
    assert status < 500 or status in unit.CODE_OF_5XX, f"{status}: {response.text}"
    body = fuzzing.checked_answer(response, unit.CODE_OF_5XX)
    if not 400 <= status < 500 and case.method not in ("GET", "HEAD"):
        env.dirty = True
    if 400 <= status < 500:
        assert env.snapshot() == before, f"{status} {body} changed the service"
