"""``silod``: the host service's entry point (``python -m silo.service.daemon``, ``silod``).

Order of a start: claim the API socket first (so a second silod refuses to start before it
touches the database), answer 503 while :meth:`ComputeService.reconcile` brings the database and
the host into agreement, then serve the compute API. SIGTERM or SIGINT stops it gracefully: no
new requests, open streams cut, the socket removed, the service closed. Containers keep running:
they belong to their monitors (conmon), and the next silod re-adopts them.

Logs go to stderr. Without ``--foreground`` silod forks into a session of its own (stdin and
stdout on /dev/null), logs to stderr until it serves and then to ``<run_dir>/silod.log``, and the
command returns 0 once that child serves, or 1 when it could not start.

Owns only the wiring; what it wires lives in config, compute, app and http.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Protocol

from silo.errors import SiloError
from silo.service.app import make_router
from silo.service.config import DaemonConfig
from silo.service.http import APIServer, Unready, parse_tcp_address
from silo.service.interface import ComputeAPI

log = logging.getLogger("silod")

LOG_LEVELS = ("debug", "info", "warning", "error")


class Service(ComputeAPI, Protocol):
    """What silod serves: the compute API, and reconcile once at start."""

    def reconcile(self) -> Any: ...

    def adopt_network(self, network: Any) -> list[str]:
        """Serve the loaded network service (as ``.network``); the containers whose stale
        network it removed."""
        ...


ServiceFactory = Callable[[DaemonConfig], Service]
NetworkFactory = Callable[[DaemonConfig], Any]


def _compute_service(config: DaemonConfig) -> Service:
    from silo.service.compute import ComputeService

    return ComputeService(config)


def _network_service(config: DaemonConfig) -> Any:
    """The Host Network Service on the state database and the Linux data path."""
    from silo.network.datapath import DataPath
    from silo.network.hns import HostNetworkService
    from silo.service.netstore import SQLiteNetworkStore

    return HostNetworkService(SQLiteNetworkStore(config.db_path),
                              DataPath(prefix=config.network_prefix, run_dir=config.run_dir,
                                       fast_path=config.network_fast_path))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = DaemonConfig(runtime="silo-runtime")
    p = argparse.ArgumentParser(
        prog="silod", description="silo's host service: the compute API on a unix socket.")
    p.add_argument("--data-dir", default=defaults.data_dir,
                   help="state database and scratch layers (default %(default)s)")
    p.add_argument("--run-dir", default=defaults.run_dir,
                   help="sockets, bundles, monitors' files (default %(default)s)")
    p.add_argument("--socket", default="",
                   help="the API's unix socket (default RUN_DIR/silod.sock)")
    p.add_argument("--listen", default="", metavar="tcp:127.0.0.1:PORT",
                   help="also serve on this loopback TCP address (tests, fuzzing)")
    p.add_argument("--runtime", default="",
                   help="the silo-runtime command (default: the one beside this Python)")
    p.add_argument("--cgroup-parent", default=defaults.cgroup_parent,
                   help="containers' cgroups go under this one (default %(default)s)")
    p.add_argument("--network-prefix", default=defaults.network_prefix,
                   help="starts the name of every interface, netns and nft table of the "
                        "network service (default %(default)s)")
    p.add_argument("--no-network-fast-path", dest="network_fast_path", action="store_false",
                   help="track every flow between containers (needed when another "
                        "service DNATs traffic between two containers of one network, e.g. "
                        "kube-proxy in iptables mode)")
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    p.add_argument("--foreground", action="store_true",
                   help="stay attached to the terminal instead of detaching once serving")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> DaemonConfig:
    """DaemonConfig from the flags; InvalidArgument naming the flag that is wrong."""
    from silo.errors import invalid

    listen = args.listen
    if listen:
        if not listen.startswith("tcp:"):
            raise invalid("--listen", f"must be tcp:HOST:PORT, got {listen!r}")
        listen = listen[len("tcp:"):]
        try:
            parse_tcp_address(listen)
        except SiloError as err:
            raise invalid("--listen", err.message.split(": ", 1)[-1]) from None
    from silo.network.names import check_prefix

    try:
        check_prefix(args.network_prefix)
    except SiloError as err:
        raise invalid("--network-prefix", err.message.split(": ", 1)[-1]) from None
    fields: dict[str, Any] = {
        "data_dir": os.path.abspath(args.data_dir),
        "run_dir": os.path.abspath(args.run_dir),
        "socket": os.path.abspath(args.socket) if args.socket else "",
        "listen_tcp": listen,
        "cgroup_parent": args.cgroup_parent,
        "network_prefix": args.network_prefix,
        "network_fast_path": args.network_fast_path,
    }
    if args.runtime:
        fields["runtime"] = args.runtime
    return DaemonConfig(**fields)


def setup_logging(level: str) -> logging.Handler:
    """Log to stderr at ``level``; returns the handler (run() removes it when it returns)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s silod[%(process)d] %(levelname)s %(name)s: %(message)s"))
    handler.set_name("silod-stderr")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "silod-stderr"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    return handler


def serve(config: DaemonConfig, stop: threading.Event, *,
          service_factory: ServiceFactory = _compute_service,
          ready: Callable[[APIServer], None] | None = None,
          network_factory: NetworkFactory | None = None) -> None:
    """Claim the socket, reconcile, serve until ``stop`` is set, then stop gracefully.

    Raises SiloError when silod cannot start (another silod answers on the socket, ...).
    ``ready`` is called once the API is served. ``network_factory`` makes the network service
    (loaded, its data path rebuilt, then served as the service's ``network``); when it cannot
    start, silod logs why and serves the rest (the network routes answer 503).
    """
    server = APIServer(Unready("silod is starting: reconciling its state with the host"),
                       socket_path=config.socket, tcp=config.listen_tcp)
    server.start()
    service: Service | None = None
    network: Any = None
    try:
        service = service_factory(config)
        report = service.reconcile()
        if report:
            log.info("reconcile: %s", _describe(report))
        if network_factory is not None:
            network = _start_network(network_factory, config)
            if network is not None:
                gone = service.adopt_network(network)
                if gone:
                    log.info("reconcile: removed the network of %s", ", ".join(gone))
        server.set_router(make_router(service))
        log.info("silod serves the compute API on %s", ", ".join(server.addresses()))
        if ready is not None:
            ready(server)
        stop.wait()
        log.info("stopping; containers keep running under their monitors")
    finally:
        server.stop()
        if service is not None:
            service.close()
        if network is not None:
            network.close()


def _start_network(factory: NetworkFactory, config: DaemonConfig) -> Any:
    try:
        network = factory(config)
    except (SiloError, OSError) as err:
        log.error("the network service cannot start: %s", err)
        return None
    try:
        log.info("network: loaded %s", _describe(network.load()))
    except (SiloError, OSError) as err:
        log.error("the network service cannot start: %s", err)
        network.close()
        return None
    return network


def _describe(report: Any) -> str:
    if isinstance(report, dict):
        parts = [f"{kind} {', '.join(map(str, ids))}" for kind, ids in report.items() if ids]
        return "; ".join(parts) or "nothing to do"
    return str(report)


def run(argv: Sequence[str] | None = None, *,
        service_factory: ServiceFactory = _compute_service) -> int:
    """The command: flags, logging, signals, detaching; the exit status."""
    args = parse_args(argv)
    root = logging.getLogger()
    level = root.level
    handler = setup_logging(args.log_level)
    try:
        return _run(args, service_factory)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _run(args: argparse.Namespace, service_factory: ServiceFactory) -> int:
    try:
        config = build_config(args)
    except SiloError as err:
        log.error("%s", err)
        return 2
    parent = _Parent(-1 if args.foreground else _detach())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("got %s", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    try:
        serve(config, stop, service_factory=service_factory,
              ready=lambda server: parent.tell("ok\n", log=config.log_file),
              network_factory=_network_service if service_factory is _compute_service
              else None)
    except SiloError as err:
        log.error("cannot start: %s", err)
        parent.tell(f"cannot start: {err}\n")
        return 1
    except Exception as err:
        log.exception("silod failed")
        parent.tell(f"failed: {err}\n")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _detach() -> int:
    """Fork; the parent waits until the child serves (exit 0) or fails (exit 1; the child has
    logged why). Returns, in the child, the pipe to report readiness on."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
        message = b"".join(chunks).decode(errors="replace")
        if message.startswith("ok\n"):
            os._exit(0)
        if not message:  # the child logs its reason to the same stderr; this one it could not
            sys.stderr.write("silod: exited before it served\n")
        os._exit(1)
    os.close(read_end)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)   # stderr stays: it is the log
    os.close(devnull)
    return write_end


class _Parent:
    """The pipe to the waiting parent of a detached silod: told once, then closed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def tell(self, message: str, log: str = "") -> None:
        """Report to the waiting parent; once serving, a detached silod's stderr (its log)
        moves to ``log``, so that nothing of the caller's (a terminal, a pipe) stays held."""
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        if log:
            try:
                out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                os.dup2(out, 2)
                os.close(out)
            except OSError:
                pass
        try:
            os.write(fd, message.encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
