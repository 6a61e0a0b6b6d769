"""The compute service: HCS's compute systems, kept by silod, run by silo-runtime under conmon.

``ComputeService`` implements :class:`silo.service.interface.ComputeAPI`. Each compute system is
a row in the state database (:mod:`silo.service.store`), a bundle ``<run_dir>/bundles/<id>``
whose root filesystem is the image store's overlay of the image's layers and a scratch layer
(:meth:`ImageService.create_rootfs`, ``<data_dir>/storage/containers/<id>``, which also keeps
the image from being removed while the system exists), a container in
``silo-runtime --root <runtime_root>``, a cgroup ``<cgroup_parent>/<id>``, and one conmon
(:mod:`silo.service.monitor`) that ran ``silo-runtime create`` and keeps stdio, log and exit code.

States: Created → Running ⇄ Paused → Stopped, then deleted. A row is written as "Creating"
(hidden from the API) so that the id and name are taken atomically before anything exists.
Exit types: ForcedExit after terminate or a shutdown's SIGKILL; GracefulExit after a shutdown's
stop signal, or an exit of its own with code 0; UnexpectedExit otherwise (non-zero, OOM kill,
or a monitor that vanished).

Crash safety: every multi-step operation writes an intent row to the journal first and removes
it last; :meth:`ComputeService.reconcile`, run at silod's start, finishes or undoes what the
journal names, re-adopts running containers (their conmon outlived silod), records exits that
happened meanwhile (conmon's exit files), and removes silo's leftovers that no row owns
(a root filesystem the image store made for a create that never got recorded among them).

Concurrency: the HTTP layer calls from many threads. Each system has a lock held by the verbs
that change it; waiting (wait, shutdown's grace period) happens outside it. Exits arrive on the
monitor's watcher thread and are recorded under the same lock; the database's compare-and-set
updates (``where_state``) keep a late exit and a verb from overwriting each other.

Part of silod: may import every library layer (compute, kernel, schema, storage), never the
HTTP layer or the commands.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import json
import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from silo import errors
from silo.compute import translate
from silo.kernel import cgroups, libc, proc
from silo.schema import hcs, hns
from silo.service import monitor
from silo.service.config import DaemonConfig
from silo.service.events import EventBus, rfc3339
from silo.service.images import ImageService
from silo.service.store import ProcessRow, Store, SystemRow

log = logging.getLogger("silod.compute")

CREATING = "Creating"  # internal: the row holds the id and name while create runs
CREATED, RUNNING, PAUSED, STOPPED = "Created", "Running", "Paused", "Stopped"
LIVE = (CREATED, RUNNING, PAUSED)
IMAGE_ID_ANNOTATION = "io.silo.image.id"  # in the bundle's spec: the image the system runs
MNT_DETACH = 2
_EXIT_GRACE = 10.0     # seconds to wait for an exit after SIGKILL
_RUNTIME_TIMEOUT = 60.0


Report = dict[str, list[str]]          # what reconcile did, by kind
Summaries = list[dict[str, Any]]       # list() would shadow the builtin in the class
Names = list[str]


def _op(verb: str) -> str:
    return f"compute::{verb}"


class ComputeService:
    """See the module docstring. Construct, call :meth:`reconcile` once, serve, :meth:`close`."""

    def __init__(self, config: DaemonConfig, images: ImageService | None = None) -> None:
        self.config = config
        self.bundles_dir = os.path.join(config.run_dir, "bundles")
        self.exits_dir = os.path.join(config.run_dir, "exits")
        self.scratch_dir = os.path.join(config.data_dir, "scratch")
        for d in (config.data_dir, config.run_dir, self.bundles_dir, self.exits_dir,
                  self.scratch_dir, config.runtime_root):
            os.makedirs(d, mode=0o711, exist_ok=True)
        self.store = Store(config.db_path)
        self.bus = EventBus()
        self.images = images or ImageService(config.storage_dir, self.bus,
                                             images_dir=config.images_dir)
        try:
            self.images.ensure_builtin()
        except errors.SiloError as err:
            log.warning("the embedded busybox image is not in the store: %s", err)
        # silod's network service (silo.network.hns.HostNetworkService), set by
        # :meth:`adopt_network` once it has loaded: a system's Networking.Network reaches it
        self.network: Any = None
        self.watcher = monitor.ExitWatcher()
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._changed = threading.Condition()
        self._closed = False

    # -- plumbing ----------------------------------------------------------------------------

    def _lock(self, system_id: str) -> threading.RLock:
        with self._locks_guard:
            lock = self._locks.get(system_id)
            if lock is None:
                lock = self._locks[system_id] = threading.RLock()
            return lock

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def resolve(self, ref: str) -> str:
        """The id of the system that ``ref`` names: its id, its name, or (as docker does) a
        prefix of its id that no other id shares. NotFound otherwise; InvalidArgument for a
        prefix shared by several."""
        row = self.store.find_system(ref)
        if row is not None and row.state != CREATING:
            return row.id
        if len(ref) >= 3:
            matches = [r.id for r in self.store.list_systems() if r.id.startswith(ref)
                       and r.state != CREATING]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise errors.InvalidArgument(
                    f"id: {ref!r} is a prefix of {len(matches)} compute systems' ids",
                    field="id", obj=ref)
        raise errors.NotFound(f"no compute system {ref!r}", obj=ref)

    def _row(self, system_id: str, op: str) -> SystemRow:
        row = self.store.get_system(system_id)
        if row is None or row.state == CREATING:
            raise errors.NotFound(f"no compute system {system_id!r}", op=_op(op), obj=system_id)
        return row

    def _runtime(self, *args: str, input: bytes | None = None, op: str, obj: str,
                 ok_missing: bool = False) -> subprocess.CompletedProcess[bytes]:
        """Run silo-runtime with silod's --root. Raises Internal with the runtime's message on
        failure; with ``ok_missing``, a container that does not exist is not a failure, nor is
        a ``kill`` of one that has stopped (it exited after silod last looked: its monitor's
        exit file records it, and the watcher with it)."""
        argv = [self.config.runtime, "--root", self.config.runtime_root, *args]
        try:
            r = subprocess.run(argv, input=input, capture_output=True,
                               stdin=None if input is not None else subprocess.DEVNULL,
                               timeout=_RUNTIME_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise errors.Internal(f"silo-runtime {args[0]}: {err}", op=_op(op), obj=obj) from err
        if r.returncode != 0:
            said = r.stderr.decode(errors="replace").strip().splitlines()
            message = said[-1] if said else f"exit status {r.returncode}"
            if ok_missing and ("does not exist" in message or
                               (args[0] == "kill" and ": it is stopped" in message)):
                return r
            raise errors.Internal(f"silo-runtime {args[0]}: {message}", op=_op(op), obj=obj)
        return r

    def _runtime_state(self, system_id: str) -> dict[str, Any] | None:
        """The runtime's view (status created/running/paused/stopped), None if it has none."""
        try:
            r = self._runtime("state", system_id, op="state", obj=system_id, ok_missing=True)
        except errors.Internal:
            return None
        if r.returncode != 0:
            return None
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def _paths(self, row: SystemRow) -> monitor.Paths:
        return monitor.container_paths(row.bundle, self.exits_dir)

    def _summary(self, row: SystemRow) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Id": row.id, "Name": row.name, "Owner": row.owner, "SystemType": "Container",
            "State": row.state, "Pid": row.pid if row.state in LIVE else 0,
            "Created": rfc3339(row.created), "Image": row.image,
        }
        if row.started is not None:
            out["Started"] = rfc3339(row.started)
        if row.state in LIVE and self._wants_stdio(row):
            paths = self._paths(row)
            out["Stdio"] = {"AttachSocket": paths.attach, "ControlFifo": paths.ctl}
        if row.state == STOPPED:
            out["ExitCode"] = row.exit_code if row.exit_code is not None else -1
            out["ExitType"] = row.exit_type or "UnexpectedExit"
            if row.finished is not None:
                out["Finished"] = rfc3339(row.finished)
        return out

    @staticmethod
    def _wants_stdio(row: SystemRow) -> bool:
        """Whether the first process asked for a console or pipes (then its monitor's attach
        socket is the way to its stdio; see docs/api.md, Stdio)."""
        process = ((row.document.get("Container") or {}).get("Linux") or {}).get("Process") or {}
        return bool(row.terminal or row.stdin or process.get("EmulateConsole")
                    or process.get("CreateStdInPipe") or process.get("CreateStdOutPipe")
                    or process.get("CreateStdErrPipe"))

    def _publish(self, kind: str, system_id: str, **more: Any) -> None:
        self.bus.publish({"Type": kind, "Id": system_id, **more})

    # -- images ------------------------------------------------------------------------------

    def _image(self, name: str) -> Any:
        """The image of a new system, or NotFound naming Storage.Image."""
        return self.images.for_container(name, "Configuration.Container.Storage.Image",
                                         _op("create"))

    def _image_config(self, row: SystemRow) -> dict[str, Any]:
        """The config of the image a system runs ({} if it cannot be read)."""
        try:
            with open(os.path.join(row.bundle, "config.json"), "rb") as f:
                spec = json.load(f)
            image_id = spec.get("annotations", {}).get(IMAGE_ID_ANNOTATION) or row.image
            config = self.images.get(image_id).config
        except (OSError, ValueError, AttributeError, errors.SiloError):
            return {}
        return config if isinstance(config, dict) else {}

    # -- create ------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        hcs.validate("CreateRequest", body)
        doc = copy.deepcopy(body["Configuration"])
        system_id = body.get("Id") or str(uuid.uuid4())
        name = body.get("Name") or system_id
        container = doc["Container"]
        image = container.setdefault("Storage", {}).setdefault("Image", "busybox")
        resolved = self._image(image)
        container["Storage"]["Layers"] = self.images.layer_paths(resolved)
        process = container["Linux"]["Process"]
        bundle = os.path.join(self.bundles_dir, system_id)
        scratch = ""  # the image store keeps the scratch layer (remove_rootfs removes it)
        cgroup_path = self.config.cgroup_parent.rstrip("/") + "/" + system_id
        row = SystemRow(
            id=system_id, name=name, owner=doc.get("Owner", ""), state=CREATING, document=doc,
            created=time.time(), bundle=bundle, scratch=scratch, cgroup=cgroup_path,
            image=image, terminal=bool(process.get("EmulateConsole")),
            stdin=bool(process.get("CreateStdInPipe")))
        with self._lock(system_id):
            # checked before the journal entry: reconcile undoes the create of the id it names
            if self.store.get_system(system_id) is not None:
                raise errors.AlreadyExists(f"a compute system with Id {system_id!r} exists",
                                           op=_op("create"), obj=system_id)
            op_id = self.store.begin(system_id, "create", {
                "bundle": bundle, "scratch": scratch, "cgroup": cgroup_path})
            try:
                self.store.insert_system(row)
            except errors.AlreadyExists as err:
                self.store.end(op_id)
                raise errors.AlreadyExists(err.message, op=_op("create"), obj=system_id) from err
            try:
                self._build(row, resolved)
            except BaseException:
                try:
                    self._teardown(row)
                    self.store.delete_system(system_id)
                    self.store.end(op_id)
                except Exception:
                    # the journal entry stays: reconcile finishes the undo
                    log.exception("create %s: undo failed", system_id)
                raise
            self.store.end(op_id)
            row = self._row(system_id, "create")
        self._publish("SystemCreated", system_id)
        return self._summary(row)

    def _build(self, row: SystemRow, image: Any) -> None:
        try:
            self._build_steps(row, image)
        except OSError as err:
            raise errors.Internal(f"build the bundle: {err}", op=_op("create"),
                                  obj=row.id) from err

    def _build_steps(self, row: SystemRow, image: Any) -> None:
        paths = self._paths(row)
        os.makedirs(row.bundle)
        os.chmod(row.bundle, 0o711)
        container = row.document["Container"]
        size_mb = container["Storage"].get("ScratchSizeInMB")
        try:
            rootfs = self.images.create_rootfs(row.id, image.id,
                                               size=None if size_mb is None else size_mb << 20)
        except errors.InvalidArgument as err:
            raise errors.invalid("Configuration.Container.Storage.ScratchSizeInMB",
                                 err.message, op=_op("create"), obj=row.id) from err
        except errors.AlreadyExists as err:
            raise errors.Internal(f"mount the root filesystem: {err}", op=_op("create"),
                                  obj=row.id) from err
        # where a runc bundle has it, for people and tools that look there (the spec names the
        # mount itself)
        os.symlink(rootfs, os.path.join(row.bundle, "rootfs"))
        spec = translate.to_oci_spec(
            row.id, row.document, rootfs=rootfs, image_config=image.config,
            cgroups_path=row.cgroup, netns=self._join_network(row))
        spec["annotations"][IMAGE_ID_ANNOTATION] = image.id
        with open(os.path.join(row.bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        argv = monitor.command(self.config.conmon, self.config.runtime,
                               self.config.runtime_root, row.id, paths, uuid=row.id,
                               name=row.name, terminal=row.terminal, stdin=row.stdin)
        launched, _ = monitor.launch(
            argv, paths, op=_op("create"), obj=row.id,
            command_field="Configuration.Container.Linux.Process.CommandArgs")
        baseline = _oom_kills(row.cgroup)
        self.store.update_system(row.id, state=CREATED, pid=launched.pid,
                                 pid_start=launched.pid_start, conmon_pid=launched.conmon_pid,
                                 conmon_start=launched.conmon_start, oom_kills=baseline)
        self._watch(row.id, paths, launched.conmon_pid, launched.conmon_start)

    def _network_service(self, field: str, op: str, obj: str) -> Any:
        if self.network is None:
            raise errors.Unavailable(f"{field}: silod's network service is not running "
                                     "(see silod's log)", op=_op(op), obj=obj)
        return self.network

    def _join_network(self, row: SystemRow) -> str | None:
        """The netns path the container joins: Networking.Namespace (a path, or an HNS
        namespace ID), or a namespace of its own with an endpoint on Networking.Network."""
        net = row.document["Container"].get("Networking", {})
        where = "Configuration.Container.Networking"
        ns = net.get("Namespace")
        if ns is not None and hns.is_guid(ns):
            network = self._network_service(where + ".Namespace", "create", row.id)
            try:
                doc = network.get("namespace", ns)
            except errors.NotFound as err:
                raise errors.NotFound(f"{where}.Namespace: no HNS namespace {ns}",
                                      op=_op("create"), obj=row.id) from err
            return str(doc["Linux"]["NetnsPath"])
        if "Network" not in net:
            return str(ns) if ns is not None else None
        network = self._network_service(where + ".Network", "create", row.id)
        try:
            return str(network.attach_container(net["Network"], row.id,
                                                net.get("PortMappings", ())))
        except (errors.NotFound, errors.InvalidArgument, errors.AlreadyExists,
                errors.InvalidState, errors.NotSupported) as err:
            # the network service names its own documents' fields; say which of ours it was
            field = where + (".Network" if isinstance(err, errors.NotFound) else
                             ".PortMappings")
            raise type(err)(f"{field}: {err.message}", op=_op("create"), obj=row.id,
                            field=field) from err

    def adopt_network(self, network: Any) -> list[str]:
        """Serve ``network`` (a loaded HostNetworkService) to the systems, and remove the
        namespaces and endpoints it keeps for containers that no longer exist (a create that
        never got recorded, a delete cut short). Returns the ids it cleaned up after."""
        self.network = network
        known = {r.id for r in self.store.list_systems()}
        gone = []
        for ns in network.query("namespace"):
            for r in ns.get("Resources", []):
                cid = r.get("Data", {}).get("ID")
                if r.get("Type") == "Container" and cid and cid not in known:
                    try:
                        network.detach_container(cid)
                        gone.append(cid)
                    except errors.SiloError as err:
                        log.warning("reconcile: the network of %s stays: %s", cid, err)
        return gone

    def _leave_network(self, row: SystemRow) -> None:
        if self.network is not None:
            self.network.detach_container(row.id)
        elif row.document.get("Container", {}).get("Networking", {}).get("Network"):
            # adopt_network cleans up after it once the network service is back
            log.warning("delete %s: the network service is not running; its endpoint stays "
                        "until silod starts with it", row.id)

    def _network_settings(self, row: SystemRow) -> dict[str, Any] | None:
        """Docker's NetworkSettings: the container's endpoints, their addresses and ports."""
        if self.network is None:
            return None
        ns = self.network.container_namespace(row.id)
        if ns is None:
            return None
        eps = []
        for ep in self.network.query("endpoint", {"HostComputeNamespace": ns["ID"]}):
            eps.append({
                "EndpointId": ep["ID"], "Network": ep["HostComputeNetwork"],
                "IpConfigurations": ep.get("IpConfigurations", []),
                "MacAddress": ep.get("MacAddress", ""),
                "PortMappings": [p["Settings"] for p in ep.get("Policies", [])
                                 if p.get("Type") == "PortMapping"],
            })
        ips = [c["IpAddress"] for e in eps for c in e["IpConfigurations"]]
        return {"Namespace": ns["ID"], "NetnsPath": ns["Linux"]["NetnsPath"],
                "IPAddress": next((a for a in ips if ":" not in a), ""),
                "GlobalIPv6Address": next((a for a in ips if ":" in a), ""),
                "Endpoints": eps}

    def _watch(self, system_id: str, paths: monitor.Paths, pid: int,
               start: int | None) -> None:
        self.watcher.watch(system_id, paths.exit_file(system_id),
                           monitor.alive_check(pid, start),
                           lambda code: self._on_exit(system_id, code))

    # -- exits -------------------------------------------------------------------------------

    def _on_exit(self, system_id: str, code: int | None) -> None:
        with self._lock(system_id):
            row = self.store.get_system(system_id)
            if row is not None:
                self._record_exit(row, code)

    def _record_exit(self, row: SystemRow, code: int | None) -> bool:
        """Mark a live system Stopped with ``code`` (None: unknown) and publish; False if it
        was already stopped (callers race to record the same exit)."""
        oom_now = _oom_kills(row.cgroup)
        oom = oom_now > row.oom_kills
        if row.stop_requested in ("terminate", "kill"):
            exit_type = "ForcedExit"
        elif row.stop_requested == "shutdown":
            exit_type = "GracefulExit"
        elif oom or code is None or code != 0:
            exit_type = "UnexpectedExit"
        else:
            exit_type = "GracefulExit"
        exit_code = -1 if code is None else code
        changed = self.store.update_system(
            row.id, where_state=LIVE, state=STOPPED, exit_code=exit_code, exit_type=exit_type,
            finished=time.time(), oom_kills=max(oom_now, row.oom_kills))
        if changed:
            if oom:
                self._publish("OutOfMemory", row.id)
            self._publish("SystemExited", row.id, ExitCode=exit_code, ExitType=exit_type)
            self._notify()
        return changed

    def _on_process_exit(self, system_id: str, exec_id: str, code: int | None) -> None:
        p = self.store.get_process_by_exec(system_id, exec_id)
        if p is None:
            return
        exit_code = -1 if code is None else code
        if self.store.update_process(system_id, exec_id, only_running=True, exited=True,
                                     exit_code=exit_code, finished=time.time()):
            self._publish("ProcessExited", system_id, ProcessId=p.pid, ExitCode=exit_code)
            self._notify()

    def _wait_for(self, cond: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``cond()`` (re-checked after every recorded change, and twice a second
        in case one slipped by) or the timeout; returns the last ``cond()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not cond():
                if self._closed:
                    raise errors.Unavailable("silod is stopping", op=_op("wait"))
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    return cond()
                self._changed.wait(left)
            return True

    def _stopped(self, system_id: str) -> Callable[[], bool]:
        def check() -> bool:
            row = self.store.get_system(system_id)
            return row is None or row.state == STOPPED
        return check

    def _collect_exit(self, row: SystemRow, timeout: float) -> None:
        """Wait (without the watcher) for conmon to write the exit file or vanish, then record
        the exit; the caller holds the system's lock."""
        paths = self._paths(row)
        deadline = time.monotonic() + timeout
        while True:
            code = monitor.read_exit_file(paths.exit_file(row.id))
            if code is not None or not proc.is_alive(row.conmon_pid, row.conmon_start):
                if code is None:
                    code = monitor.read_exit_file(paths.exit_file(row.id))
                break
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        self.watcher.unwatch(row.id)
        fresh = self.store.get_system(row.id)
        if fresh is not None:
            self._record_exit(fresh, code)

    # -- list and get ------------------------------------------------------------------------

    def list(self, owner: str | None = None, name: str | None = None,
             state: str | None = None) -> Summaries:
        rows = self.store.list_systems(owner=owner, name=name, state=state)
        return [self._summary(r) for r in rows if r.state != CREATING]

    def get(self, system_id: str) -> dict[str, Any]:
        return self.properties(system_id, {})

    # -- lifecycle verbs ---------------------------------------------------------------------

    def start(self, system_id: str) -> dict[str, Any]:
        with self._lock(system_id):
            row = self._row(system_id, "start")
            if row.state != CREATED:
                raise errors.InvalidState(f"compute system is {row.state}, not Created",
                                          op=_op("start"), obj=system_id)
            op_id = self.store.begin(system_id, "start")
            try:
                self._runtime("start", system_id, op="start", obj=system_id)
                self.store.update_system(system_id, where_state=(CREATED,), state=RUNNING,
                                         started=time.time())
            finally:
                self.store.end(op_id)
            self._publish("SystemStarted", system_id)
            return self._summary(self._row(system_id, "start"))

    def shutdown(self, system_id: str, timeout: float | None = None) -> dict[str, Any]:
        grace = float(self.config.stop_timeout if timeout is None else timeout)
        if grace < 0:
            raise errors.invalid("TimeoutSeconds", "must be >= 0", op=_op("shutdown"))
        with self._lock(system_id):
            row = self._row(system_id, "shutdown")
            if row.state == STOPPED:
                return self._summary(row)
            sig = translate.stop_signal(row.document, self._image_config(row))
            op_id = self.store.begin(system_id, "shutdown")
            try:
                self.store.update_system(system_id, stop_requested="shutdown")
                if row.state == PAUSED:
                    self._resume_locked(row, "shutdown")
                self._runtime("kill", system_id, str(sig), op="shutdown", obj=system_id,
                              ok_missing=True)
            except BaseException:
                self.store.end(op_id)
                raise
        try:
            if not self._wait_for(self._stopped(system_id), grace):
                with self._lock(system_id):
                    row = self._row(system_id, "shutdown")
                    if row.state != STOPPED:
                        self.store.update_system(system_id, stop_requested="kill")
                        self._runtime("kill", "--all", system_id, "9", op="shutdown",
                                      obj=system_id, ok_missing=True)
                if not self._wait_for(self._stopped(system_id), _EXIT_GRACE):
                    raise errors.Timeout("the container did not exit after SIGKILL",
                                         op=_op("shutdown"), obj=system_id)
        finally:
            self.store.end(op_id)
        return self._summary(self._row(system_id, "shutdown"))

    def terminate(self, system_id: str) -> dict[str, Any]:
        with self._lock(system_id):
            row = self._row(system_id, "terminate")
            if row.state == STOPPED:
                return self._summary(row)
            op_id = self.store.begin(system_id, "terminate")
            try:
                self.store.update_system(system_id, stop_requested="terminate")
                self._runtime("kill", "--all", system_id, "9", op="terminate", obj=system_id,
                              ok_missing=True)
                if row.state == PAUSED:
                    # a frozen task dies once thawed; the runtime may have thawed it already
                    with contextlib.suppress(errors.Internal):
                        self._resume_locked(row, "terminate")
            except BaseException:
                self.store.end(op_id)
                raise
        try:
            if not self._wait_for(self._stopped(system_id), _EXIT_GRACE):
                raise errors.Timeout("the container did not exit after SIGKILL",
                                     op=_op("terminate"), obj=system_id)
        finally:
            self.store.end(op_id)
        return self._summary(self._row(system_id, "terminate"))

    def pause(self, system_id: str) -> dict[str, Any]:
        with self._lock(system_id):
            row = self._row(system_id, "pause")
            if row.state != RUNNING:
                raise errors.InvalidState(f"compute system is {row.state}, not Running",
                                          op=_op("pause"), obj=system_id)
            self._runtime("pause", system_id, op="pause", obj=system_id)
            if self.store.update_system(system_id, where_state=(RUNNING,), state=PAUSED):
                self._publish("SystemPaused", system_id)
            return self._summary(self._row(system_id, "pause"))

    def resume(self, system_id: str) -> dict[str, Any]:
        with self._lock(system_id):
            row = self._row(system_id, "resume")
            if row.state != PAUSED:
                raise errors.InvalidState(f"compute system is {row.state}, not Paused",
                                          op=_op("resume"), obj=system_id)
            self._resume_locked(row, "resume")
            return self._summary(self._row(system_id, "resume"))

    def _resume_locked(self, row: SystemRow, op: str) -> None:
        self._runtime("resume", row.id, op=op, obj=row.id)
        if self.store.update_system(row.id, where_state=(PAUSED,), state=RUNNING):
            self._publish("SystemResumed", row.id)

    def wait(self, system_id: str, timeout: float | None = None) -> dict[str, Any]:
        self._row(system_id, "wait")
        if not self._wait_for(self._stopped(system_id), timeout):
            raise errors.Timeout(f"compute system did not exit in {timeout:g}s",
                                 op=_op("wait"), obj=system_id)
        row = self.store.get_system(system_id)
        if row is None:
            raise errors.NotFound("compute system was deleted while waiting", op=_op("wait"),
                                  obj=system_id)
        summary = self._summary(row)
        return {"ExitCode": summary["ExitCode"], "ExitType": summary["ExitType"]}

    # -- properties and modify ---------------------------------------------------------------

    def properties(self, system_id: str, query: dict[str, Any]) -> dict[str, Any]:
        hcs.validate("PropertyQuery", query)
        row = self._row(system_id, "properties")
        out = self._summary(row)
        out["Configuration"] = row.document
        settings = self._network_settings(row)
        if settings is not None:
            out["NetworkSettings"] = settings
        wanted = set(query.get("PropertyTypes", ()))
        live = row.state in LIVE
        if "Statistics" in wanted or "Memory" in wanted:
            stats = self._statistics(row) if live else {}
            if "Statistics" in wanted:
                out["Statistics"] = stats
            if "Memory" in wanted:
                out["Memory"] = stats.get("Memory", {})
        if "ProcessList" in wanted:
            out["ProcessList"] = self._process_list(row) if live else []
        return out

    def _statistics(self, row: SystemRow) -> dict[str, Any]:
        try:
            raw = cgroups.Cgroup(row.cgroup).stats()
        except errors.SiloError as err:
            raise errors.Internal(f"read the statistics: {err}", op=_op("properties"),
                                  obj=row.id) from err
        mem = raw.get("memory", {}).get("usage", {})
        limit = mem.get("limit")
        pids = raw.get("pids", {})
        return {
            "Memory": {"UsageBytes": mem.get("usage", 0),
                       "LimitBytes": None if limit is None or limit >= 1 << 62 else limit,
                       "MaxUsageBytes": mem.get("max", mem.get("usage", 0))},
            "Processor": {"TotalRuntimeNs": raw.get("cpu", {}).get("usage", {}).get("total", 0)},
            "Pids": {"Current": pids.get("current", 0), "Limit": pids.get("limit")},
        }

    def _process_list(self, row: SystemRow) -> Summaries:
        try:
            pids = cgroups.Cgroup(row.cgroup).pids()
        except errors.SiloError as err:
            raise errors.Internal(f"list the processes: {err}", op=_op("properties"),
                                  obj=row.id) from err
        users = _passwd(os.path.join(_rootfs_of(row.bundle), "etc", "passwd"))
        out = []
        for pid in sorted(pids):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
                uid = _status_uid(pid)
            except OSError:
                continue  # gone meanwhile
            entry: dict[str, Any] = {"ProcessId": pid, "CommandLine": cmd}
            if uid is not None:
                entry["UserName"] = users.get(uid, str(uid))
            out.append(entry)
        return out

    def modify(self, system_id: str, request: dict[str, Any]) -> dict[str, Any]:
        hcs.validate("ModifySettingRequest", request)
        with self._lock(system_id):
            row = self._row(system_id, "modify")
            resources = translate.modify_to_resources(request, hcs.host_cpus())
            if row.state in LIVE:
                self._runtime("update", "--resources", "-", system_id,
                              input=json.dumps(resources).encode(), op="modify", obj=system_id)
            doc = row.document
            container = doc["Container"]
            if request["ResourcePath"] == "Container/Memory/SizeInMB":
                container["Memory"] = {"SizeInMB": request["Settings"]}
            else:
                container["Processor"] = dict(request["Settings"])
            self.store.update_system(system_id, document=doc)
            return self._summary(self._row(system_id, "modify"))

    # -- delete ------------------------------------------------------------------------------

    def delete(self, system_id: str, force: bool = False) -> None:
        with self._lock(system_id):
            row = self._row(system_id, "delete")
            if row.state in (RUNNING, PAUSED) and not force:
                raise errors.InvalidState(f"compute system is {row.state}; shut it down first "
                                          "or delete with Force", op=_op("delete"),
                                          obj=system_id)
            op_id = self.store.begin(system_id, "delete", {
                "bundle": row.bundle, "scratch": row.scratch, "cgroup": row.cgroup})
            if row.state in LIVE:
                self.store.update_system(system_id, stop_requested="terminate")
                row.stop_requested = "terminate"
                self._runtime("delete", "--force", system_id, op="delete", obj=system_id,
                              ok_missing=True)
                self._collect_exit(row, _EXIT_GRACE)
            self._teardown(row)
            self.store.delete_system(system_id)
            self.store.end(op_id)
        with self._locks_guard:
            self._locks.pop(system_id, None)
        self._publish("SystemDeleted", system_id)
        self._notify()

    def _teardown(self, row: SystemRow) -> None:
        """Remove everything a system has on the host; each step tolerates its part being
        gone already, so an interrupted teardown can simply run again. OSErrors become
        Internal."""
        try:
            self._teardown_steps(row)
        except OSError as err:
            raise errors.Internal(f"remove the compute system's files: {err}",
                                  op=_op("delete"), obj=row.id) from err

    def _teardown_steps(self, row: SystemRow) -> None:
        self.watcher.unwatch(row.id)
        processes = self.store.list_processes(row.id)
        for p in processes:
            self.watcher.unwatch(f"{row.id}/{p.exec_id}")
        self._runtime("delete", "--force", row.id, op="delete", obj=row.id, ok_missing=True)
        paths = self._paths(row)
        # pids from conmon's own files too: a create or exec that failed half-way has none
        # recorded (only a conmon whose command line names this system is ever signalled)
        monitors = {(row.conmon_pid, row.conmon_start), (monitor.read_pids(paths)[1], None)}
        monitors |= {(p.conmon_pid, p.conmon_start) for p in processes}
        for exec_id in _listdir(os.path.join(row.bundle, "exec")):
            exec_paths = monitor.exec_paths(row.bundle, exec_id)
            monitors.add((monitor.read_pids(exec_paths)[1], None))
        for pid, start in monitors:
            _stop_monitor(pid, start, row.id)
        _remove_bundle(row.bundle)
        self._leave_network(row)
        self.images.remove_rootfs(row.id)
        _rmtree(row.scratch)  # a system of an older silod had its scratch here
        if row.cgroup:
            try:
                cg = cgroups.Cgroup(row.cgroup)
                if cg.exists():
                    cg.destroy()
            except errors.SiloError as err:
                raise errors.Internal(f"remove the cgroup {row.cgroup}: {err}",
                                      op=_op("delete"), obj=row.id) from err
        with contextlib.suppress(FileNotFoundError):
            os.unlink(paths.exit_file(row.id))

    # -- logs --------------------------------------------------------------------------------

    def logs(self, system_id: str, follow: bool = False, tail: int | None = None,
             timestamps: bool = False) -> LogStream:
        """The first process's output, from conmon's log. Every line carries ``Time`` (the
        schema requires it; ``timestamps`` is for a client that prints lines). Following ends
        when the system has stopped and its log is read to the end, or is deleted."""
        row = self._row(system_id, "logs")
        if tail is not None and tail < 0:
            raise errors.invalid("Tail", "must be >= 0", op=_op("logs"), obj=system_id)
        return self._log_lines(row, follow, tail)

    def _log_lines(self, row: SystemRow, follow: bool, tail: int | None) -> LogStream:
        def done() -> bool:
            if self._closed:
                return True
            current = self.store.get_system(row.id)
            return current is None or current.state == STOPPED

        return self._log_stream(self._paths(row).log, row.state == STOPPED, follow, tail, done)

    def _log_stream(self, path: str, finished: bool, follow: bool, tail: int | None,
                    done: Callable[[], bool]) -> LogStream:
        reader = monitor.LogFollower(path)
        first = reader.read()
        if finished or not follow:
            first += reader.flush()
        if tail is not None:
            first = list(deque(first, maxlen=tail)) if tail else []
        return LogStream(first, reader if follow and not finished else None, done,
                         self._changed)

    def process_logs(self, system_id: str, pid: int, follow: bool = False,
                     tail: int | None = None) -> LogStream:
        """An exec'd process's output from its monitor's log: complete from its first byte,
        unlike the attach socket, which only has what comes after a client connects."""
        if tail is not None and tail < 0:
            raise errors.invalid("Tail", "must be >= 0", op=_op("process-logs"), obj=system_id)
        row, p = self._find_process(system_id, pid, "process-logs")
        if p is None:
            return self._log_lines(row, follow, tail)
        key = p.exec_id

        def done() -> bool:
            if self._closed:
                return True
            current = self.store.get_process(system_id, pid)
            return current is None or current.exited or current.exec_id != key

        paths = monitor.exec_paths(row.bundle, p.exec_id)
        return self._log_stream(paths.log, p.exited, follow, tail, done)

    # -- processes ---------------------------------------------------------------------------

    def create_process(self, system_id: str, params: dict[str, Any]) -> dict[str, Any]:
        hcs.validate("ProcessParameters", params)
        with self._lock(system_id):
            row = self._row(system_id, "create-process")
            if row.state != RUNNING:
                raise errors.InvalidState(f"compute system is {row.state}, not Running",
                                          op=_op("create-process"), obj=system_id)
            try:
                with open(os.path.join(row.bundle, "config.json")) as f:
                    container_spec = json.load(f)
                container_process = container_spec.get("process", {})
                rootfs = os.path.join(row.bundle, container_spec["root"]["path"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise errors.Internal(f"read the container's spec: {err}",
                                      op=_op("create-process"), obj=system_id) from err
            spec = translate.to_oci_exec_process(params, container_process, rootfs=rootfs)
            exec_id = uuid.uuid4().hex[:16]
            paths = monitor.exec_paths(row.bundle, exec_id)
            terminal = bool(params.get("EmulateConsole"))
            stdin = bool(params.get("CreateStdInPipe"))
            op_id = self.store.begin(system_id, "exec", {"exec_id": exec_id, "dir": paths.dir})
            launched: monitor.Launched | None = None
            try:
                os.makedirs(paths.exit_dir)
                spec_path = os.path.join(paths.dir, "process.json")
                with open(spec_path, "w") as f:
                    json.dump(spec, f)
                argv = monitor.command(self.config.conmon, self.config.runtime,
                                       self.config.runtime_root, system_id, paths,
                                       uuid=exec_id, name=row.name, terminal=terminal,
                                       stdin=stdin, exec_spec=spec_path)
                launched, reader = monitor.launch(argv, paths, op=_op("create-process"),
                                                  obj=system_id, command_field="CommandArgs")
                if reader is not None:
                    os.close(reader)  # the exit code is read from the exit file instead
                self.store.insert_process(ProcessRow(
                    system_id=system_id, exec_id=exec_id, params=params, dir=paths.dir,
                    created=time.time(), pid=launched.pid, pid_start=launched.pid_start,
                    conmon_pid=launched.conmon_pid, conmon_start=launched.conmon_start))
            except BaseException as err:
                if launched is not None:  # it runs, but silod could not record it
                    with contextlib.suppress(OSError):
                        os.kill(launched.pid, 9)
                    _stop_monitor(launched.conmon_pid, launched.conmon_start, system_id)
                _rmtree(paths.dir)
                self.store.end(op_id)
                if isinstance(err, OSError):
                    raise errors.Internal(f"start the process: {err}", op=_op("create-process"),
                                          obj=system_id) from err
                raise
            self.store.end(op_id)
            self._watch_process(system_id, exec_id, paths, launched.conmon_pid,
                                launched.conmon_start)
        self._publish("ProcessCreated", system_id, ProcessId=launched.pid)
        out: dict[str, Any] = {"ProcessId": launched.pid}
        if terminal or stdin or params.get("CreateStdOutPipe") or params.get("CreateStdErrPipe"):
            out["Stdio"] = {"AttachSocket": paths.attach, "ControlFifo": paths.ctl}
        return out

    def _watch_process(self, system_id: str, exec_id: str, paths: monitor.Paths, pid: int,
                       start: int | None) -> None:
        self.watcher.watch(f"{system_id}/{exec_id}", paths.exit_file(system_id),
                           monitor.alive_check(pid, start),
                           lambda code: self._on_process_exit(system_id, exec_id, code))

    def _find_process(self, system_id: str, pid: int,
                      op: str) -> tuple[SystemRow, ProcessRow | None]:
        """The system, and the exec'd process with that pid (None: the first process)."""
        row = self._row(system_id, op)
        if pid == row.pid and row.pid:
            return row, None
        p = self.store.get_process(system_id, pid)
        if p is None:
            raise errors.NotFound(f"no process {pid} in compute system {system_id!r}",
                                  op=_op(op), obj=system_id)
        return row, p

    def _process_status(self, row: SystemRow, p: ProcessRow | None) -> dict[str, Any]:
        if p is None:
            out: dict[str, Any] = {"ProcessId": row.pid, "Exited": row.state == STOPPED}
            if row.state == STOPPED:
                out["ExitCode"] = row.exit_code if row.exit_code is not None else -1
            return out
        out = {"ProcessId": p.pid, "Exited": p.exited}
        if p.exited:
            out["ExitCode"] = p.exit_code if p.exit_code is not None else -1
        return out

    def process_status(self, system_id: str, pid: int) -> dict[str, Any]:
        row, p = self._find_process(system_id, pid, "process-status")
        return self._process_status(row, p)

    def signal_process(self, system_id: str, pid: int, signal: int) -> None:
        if not 0 < signal <= hcs.SIGRTMAX:
            raise errors.invalid("Signal", f"{signal} is not a signal number",
                                 op=_op("signal"), obj=system_id)
        with self._lock(system_id):
            row = self._row(system_id, "signal")
            if row.state not in LIVE:
                raise errors.InvalidState(f"compute system is {row.state}", op=_op("signal"),
                                          obj=system_id)
            try:
                members = cgroups.Cgroup(row.cgroup).pids()
            except errors.SiloError as err:
                raise errors.Internal(f"list the processes: {err}", op=_op("signal"),
                                      obj=system_id) from err
            if pid not in members:
                raise errors.NotFound(f"no running process {pid} in compute system "
                                      f"{system_id!r}", op=_op("signal"), obj=system_id)
            try:
                os.kill(pid, signal)
            except ProcessLookupError as err:
                raise errors.NotFound(f"process {pid} has exited", op=_op("signal"),
                                      obj=system_id) from err
            except OSError as err:
                raise errors.Internal(f"kill {pid}: {err}", op=_op("signal"),
                                      obj=system_id) from err

    def _stdio_paths(self, system_id: str, pid: int, op: str,
                     need: str) -> monitor.Paths:
        row, p = self._find_process(system_id, pid, op)
        if p is None:
            has = row.terminal if need == "console" else row.stdin
            paths, exited = self._paths(row), row.state == STOPPED
        else:
            key = "EmulateConsole" if need == "console" else "CreateStdInPipe"
            has = bool(p.params.get(key))
            paths, exited = monitor.exec_paths(row.bundle, p.exec_id), p.exited
        if not has:
            what = "a console" if need == "console" else "a stdin pipe"
            raise errors.InvalidState(f"process {pid} has no {what}", op=_op(op), obj=system_id)
        if exited:
            raise errors.InvalidState(f"process {pid} has exited", op=_op(op), obj=system_id)
        return paths

    def resize_console(self, system_id: str, pid: int, height: int, width: int) -> None:
        for name, value in (("Height", height), ("Width", width)):
            if not 0 < value <= 1000:  # conmon's own bound
                raise errors.invalid(name, "must be 1..1000", op=_op("resize"), obj=system_id)
        monitor.resize(self._stdio_paths(system_id, pid, "resize", "console"), height, width)

    def close_stdin(self, system_id: str, pid: int) -> None:
        monitor.close_stdin(self._stdio_paths(system_id, pid, "close-stdin", "stdin"))

    def wait_process(self, system_id: str, pid: int,
                     timeout: float | None = None) -> dict[str, Any]:
        self._find_process(system_id, pid, "wait-process")

        def done() -> bool:
            try:
                row, p = self._find_process(system_id, pid, "wait-process")
            except errors.NotFound:
                return True
            return row.state == STOPPED if p is None else p.exited

        if not self._wait_for(done, timeout):
            raise errors.Timeout(f"process {pid} did not exit in {timeout:g}s",
                                 op=_op("wait-process"), obj=system_id)
        return self.process_status(system_id, pid)

    # -- events and host facts ---------------------------------------------------------------

    def events(self, since: float | None = None, types: set[str] | None = None,
               ids: set[str] | None = None) -> Iterator[dict[str, Any]]:
        return self.bus.subscribe(since, types, ids)

    def system_info(self) -> dict[str, Any]:
        try:
            layout = cgroups.detect()
            cgroup_info: dict[str, Any] = {"Mode": layout.mode, "V1": dict(layout.v1),
                                           "V2": layout.v2}
        except errors.SiloError as err:
            cgroup_info = {"Mode": "none", "Error": str(err)}
        try:
            with open("/proc/filesystems") as f:
                overlay = any(line.split()[-1] == "overlay" for line in f if line.strip())
        except OSError:
            overlay = False
        nft = shutil.which("nft")
        return {
            "Cgroups": cgroup_info,
            "Overlayfs": overlay,
            "Nftables": {"Available": nft is not None, "Path": nft or ""},
            "Kvm": os.path.exists("/dev/kvm"),
            "Runtime": {"Path": self.config.runtime, "Version": _version(self.config.runtime)},
            "Monitor": {"Path": self.config.conmon, "Version": _version(self.config.conmon)},
            "Images": self._image_names(),
        }

    def _image_names(self) -> Names:
        try:
            return sorted(t for i in self.images.list() for t in i["RepoTags"])
        except errors.SiloError as err:
            log.warning("system info: the image store: %s", err)
            return []

    def close(self) -> None:
        """Stop watching and answering; the containers and their monitors keep running."""
        self._closed = True
        self.images.close()
        self.watcher.close()
        self.bus.close()
        self._notify()
        self.store.close()

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self) -> Report:
        """Bring the database and the host into agreement (see the module docstring).
        Returns what it did, by kind, for silod's log."""
        report: Report = {"undone": [], "finished": [], "adopted": [],
                          "exited": [], "removed": []}
        # After a reboot no recorded pid names the same process any more, whatever /proc says
        # (start times count from boot): every live system has stopped.
        boot = _boot_id()
        rebooted = self.store.get_meta("boot_id") not in (None, boot)
        for entry in self.store.operations():
            try:
                self._replay(entry.system_id, entry.kind, entry.detail, report)
            except Exception:
                log.exception("reconcile: %s of %s", entry.kind, entry.system_id)
                continue
            self.store.end(entry.id)
        for row in self.store.list_systems():
            try:
                with self._lock(row.id):
                    self._adopt(row, report, rebooted)
            except Exception:
                log.exception("reconcile: system %s", row.id)
        self._remove_leftovers(report)
        self.store.set_meta("boot_id", boot)
        return report

    def _replay(self, system_id: str, kind: str, detail: dict[str, Any],
                report: Report) -> None:
        row = self.store.get_system(system_id)
        if kind == "create":
            # never finished: undo every piece that may exist
            ghost = row or SystemRow(
                id=system_id, name=system_id, owner="", state=CREATING, document={},
                created=0.0, bundle=detail.get("bundle", ""),
                scratch=detail.get("scratch", ""), cgroup=detail.get("cgroup", ""))
            self._teardown(ghost)
            self.store.delete_system(system_id)
            report["undone"].append(f"create {system_id}")
        elif kind == "delete":
            if row is not None:
                self._teardown(row)
                self.store.delete_system(system_id)
                self._publish("SystemDeleted", system_id)
            report["finished"].append(f"delete {system_id}")
        elif kind == "start" and row is not None and row.state == CREATED:
            state = self._runtime_state(system_id)
            if state is not None and state.get("status") in ("running", "paused", "stopped"):
                self.store.update_system(system_id, where_state=(CREATED,), state=RUNNING,
                                         started=time.time())
                report["finished"].append(f"start {system_id}")
        elif kind in ("shutdown", "terminate") and row is not None and row.state in LIVE:
            # the stop was asked for and may have half happened: finish it the sure way
            self.store.update_system(system_id, stop_requested="kill")
            self._runtime("kill", "--all", system_id, "9", op=kind, obj=system_id,
                          ok_missing=True)
            report["finished"].append(f"{kind} {system_id}")
        elif kind == "exec" and row is not None:
            exec_id = detail.get("exec_id", "")
            if exec_id and self.store.get_process_by_exec(system_id, exec_id) is None:
                d = detail.get("dir", "")
                if d:
                    _stop_monitor(monitor.read_pids(monitor.Paths(d, d))[1], None, system_id)
                    _rmtree(d)
                report["undone"].append(f"exec {system_id}/{exec_id}")

    def _adopt(self, row: SystemRow, report: Report, rebooted: bool = False) -> None:
        if row.state == CREATING:
            self._teardown(row)
            self.store.delete_system(row.id)
            report["undone"].append(f"create {row.id}")
            return
        if row.state in LIVE:
            paths = self._paths(row)
            code = monitor.read_exit_file(paths.exit_file(row.id))
            if code is not None or rebooted:
                self._record_exit(row, code)
                report["exited"].append(row.id)
            elif proc.is_alive(row.conmon_pid, row.conmon_start):
                self._refresh_state(row)
                self._watch(row.id, paths, row.conmon_pid, row.conmon_start)
                report["adopted"].append(row.id)
            elif proc.is_alive(row.pid, row.pid_start):
                # the monitor is gone but the container runs: follow it by its pid; its exit
                # code is lost with the monitor
                self._refresh_state(row)
                self.watcher.watch(row.id, paths.exit_file(row.id),
                                   monitor.alive_check(row.pid, row.pid_start),
                                   functools.partial(self._on_exit, row.id))
                report["adopted"].append(row.id)
            else:
                self._record_exit(row, None)
                report["exited"].append(row.id)
        for p in self.store.list_processes(row.id, running_only=True):
            paths = monitor.exec_paths(row.bundle, p.exec_id)
            code = monitor.read_exit_file(paths.exit_file(row.id))
            if code is None and not rebooted and proc.is_alive(p.conmon_pid, p.conmon_start):
                self._watch_process(row.id, p.exec_id, paths, p.conmon_pid, p.conmon_start)
            else:
                self._on_process_exit(row.id, p.exec_id, code)

    def _refresh_state(self, row: SystemRow) -> None:
        state = self._runtime_state(row.id)
        status = (state or {}).get("status")
        mapped = {"created": CREATED, "running": RUNNING, "paused": PAUSED}.get(str(status))
        if mapped and mapped != row.state:
            self.store.update_system(row.id, where_state=LIVE, state=mapped,
                                     started=row.started or (time.time() if mapped != CREATED
                                                             else None))

    def _remove_leftovers(self, report: Report) -> None:
        known = {r.id for r in self.store.list_systems()}
        for sid in _listdir(self.bundles_dir):
            if sid not in known:
                bundle = os.path.join(self.bundles_dir, sid)
                self._runtime("delete", "--force", sid, op="reconcile", obj=sid,
                              ok_missing=True)
                ghost = monitor.container_paths(bundle, self.exits_dir)
                _stop_monitor(monitor.read_pids(ghost)[1], None, sid)
                _remove_bundle(bundle)
                report["removed"].append(f"bundle {sid}")
        for sid in _listdir(self.config.runtime_root):
            if sid not in known and os.path.isdir(os.path.join(self.config.runtime_root, sid)):
                self._runtime("delete", "--force", sid, op="reconcile", obj=sid,
                              ok_missing=True)
                report["removed"].append(f"runtime state {sid}")
        for sid in _listdir(self.scratch_dir):
            if sid not in known:
                _rmtree(os.path.join(self.scratch_dir, sid))
                report["removed"].append(f"scratch {sid}")
        for sid in self.images.rootfs_ids():
            if sid not in known:  # made by a create that silod never recorded
                try:
                    self.images.remove_rootfs(sid)
                    report["removed"].append(f"rootfs {sid}")
                except errors.SiloError as err:
                    log.warning("reconcile: the root filesystem of %s stays: %s", sid, err)
        for sid in _listdir(self.exits_dir):
            if sid not in known:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.exits_dir, sid))
        for sid in self._cgroup_children():
            if sid not in known:
                try:
                    cgroups.Cgroup(self.config.cgroup_parent.rstrip("/") + "/" + sid).destroy()
                    report["removed"].append(f"cgroup {sid}")
                except errors.SiloError as err:
                    log.warning("reconcile: cgroup %s stays: %s", sid, err)

    def _cgroup_children(self) -> set[str]:
        try:
            parent = cgroups.Cgroup(self.config.cgroup_parent)
        except errors.SiloError:
            return set()
        found: set[str] = set()
        for d in set(parent.paths.values()):
            with contextlib.suppress(OSError):
                found.update(e.name for e in os.scandir(d) if e.is_dir())
        return found


class LogStream(Iterator[dict[str, Any]]):
    """Log lines as wire documents: those read so far, then (with a ``follower``) the new ones
    until ``done()``. Like an event subscription it has ``get(timeout)``, returning None when
    nothing came in time, so that a streaming HTTP handler can check its client while a
    followed container is quiet."""

    def __init__(self, first: list[monitor.LogLine], follower: monitor.LogFollower | None,
                 done: Callable[[], bool], wake: threading.Condition) -> None:
        self._pending = deque(first)
        self._follower = follower
        self._done = done
        self._wake = wake
        self._closed = False

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise StopIteration
            if self._pending:
                line = self._pending.popleft()
                return {"Time": line.time, "Stream": line.stream, "Line": line.line}
            if self._follower is None:
                raise StopIteration
            finished = self._done()
            self._pending.extend(self._follower.flush() if finished else self._follower.read())
            if finished:
                self._follower = None
                continue
            if self._pending:
                continue
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return None
            with self._wake:
                self._wake.wait(left)

    def __next__(self) -> dict[str, Any]:
        line = self.get(None)
        assert line is not None
        return line

    def close(self) -> None:
        self._closed = True


# -- host helpers ------------------------------------------------------------------------------

def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _oom_kills(cgroup_path: str) -> int:
    try:
        return cgroups.Cgroup(cgroup_path).oom_kill_count()
    except errors.SiloError:
        return 0


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _rmtree(path: str) -> None:
    if not path or not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def _rootfs_of(bundle: str) -> str:
    """The root filesystem the bundle's spec names (the image store's merged dir; an older
    silod's ``<bundle>/rootfs``)."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            path = json.load(f)["root"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return os.path.join(bundle, "rootfs")
    return os.path.join(bundle, str(path))


def _remove_bundle(bundle: str) -> None:
    """Unmount the bundle's rootfs and remove the bundle; refuses to recurse into a rootfs
    that is still mounted (that would delete the container's files, not the bundle)."""
    if not bundle:
        return
    rootfs = os.path.join(bundle, "rootfs")
    for _ in range(100):
        if not os.path.ismount(rootfs):
            break
        try:
            libc.umount2(rootfs, MNT_DETACH)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.ENOENT):
                raise errors.Internal(f"unmount {rootfs}: {err}", op=_op("delete")) from err
    if os.path.ismount(rootfs):
        raise errors.Internal(f"{rootfs} is still mounted", op=_op("delete"))
    _rmtree(bundle)


def _is_monitor_of(pid: int, system_id: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and os.path.basename(argv[0]) == b"conmon" and \
        system_id.encode() in argv


def _stop_monitor(pid: int, start: int | None, system_id: str) -> None:
    """Wait briefly for a conmon to leave on its own (it does once its process is gone), then
    kill it. Only a conmon of this system is ever signalled."""
    if pid <= 0 or not proc.is_alive(pid, start) or not _is_monitor_of(pid, system_id):
        return
    deadline = time.monotonic() + 2.0
    while proc.is_alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.is_alive(pid, start) and _is_monitor_of(pid, system_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        deadline = time.monotonic() + 2.0
        while proc.is_alive(pid, start) and time.monotonic() < deadline:
            time.sleep(0.01)


def _passwd(path: str) -> dict[int, str]:
    users: dict[int, str] = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2].isdigit():
                    users.setdefault(int(parts[2]), parts[0])
    except OSError:
        pass
    return users


def _status_uid(pid: int) -> int | None:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def _version(binary: str) -> str:
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = r.stdout.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else ""

