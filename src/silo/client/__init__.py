"""silo.client: a small, stdlib-only client of silod's API (docs/api.md).

Imports only silo.errors and silo.schema (the layer contract) and, of the standard library,
only what starts fast: its HTTP/1.1 is written on ``_socket`` (:mod:`silo.client._http`), its
JSON is :mod:`silo.schema.jsonio`. Commands that run once per call (``silo``, ``silo-cni``)
build on it.

    from silo.client import Client
    c = Client()                                   # $SILO_HOST, else unix:///run/silo/silod.sock
    s = c.create_system(config, name="web")        # -> Summary
    c.start(s["Id"])
    for line in c.logs(s["Id"], follow=True):      # -> {"Time", "Stream", "Line"} ...
        print(line["Line"])
    c.wait(s["Id"])                                # -> {"ExitCode", "ExitType"}

Every method returns the answer's document (dicts and lists in the shapes of docs/api.md) and
raises :mod:`silo.errors`:

- the error silod answered with, rebuilt by ``silo.errors.from_wire`` (``NotFound`` for an
  unknown id, ``InvalidArgument`` naming the field of a bad document, ``InvalidState``, ...);
- ``Unavailable`` when silod cannot be reached (``silod is not running (no socket at ...)``)
  or the connection breaks;
- ``Timeout`` when the client's own ``timeout`` passes without an answer.

Streams (:meth:`Client.logs`, :meth:`Client.events`) send their request and check the status
at the call, then yield one document per JSON line as silod sends it; ``close()`` them (or use
``with``) to leave early. Stdio of a process is reached through its monitor: see
:func:`attach` (:mod:`silo.client._attach`).
"""

from __future__ import annotations

from silo.client._http import DEFAULT_HOST, Address, Response, decode, default_host, query
from silo.client._http import quote as _q
from silo.client._http import request as _request
from silo.client._images import ImagesMixin
from silo.client._network import NetworkClient
from silo.errors import from_wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from silo.client._attach import Attachment

__all__ = ["DEFAULT_HOST", "Client", "Stream", "attach"]

_SYSTEMS = "/v1/compute-systems"


class Stream:
    """An answer of JSON lines (logs, events), read as it arrives. Iterate for the documents;
    ``close()`` ends it early. A line that is an error document (``{"Code", "Message"}``)
    is raised as that error."""

    def __init__(self, resp: Response) -> None:
        self._resp = resp
        self._lines = resp.iter_lines()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        line = next(self._lines)
        doc = decode(line)
        if isinstance(doc, dict) and "Code" in doc and "Message" in doc and len(doc) <= 5 \
                and "Type" not in doc and "Line" not in doc:
            self.close()
            raise from_wire({k: str(v) for k, v in doc.items()})
        return doc  # type: ignore[no-any-return]

    def close(self) -> None:
        self._lines.close()
        self._resp.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client(ImagesMixin, NetworkClient):
    """silod's compute-service API. ``host``: ``unix:///PATH``, ``/PATH``, ``tcp://HOST:PORT``
    (default ``$SILO_HOST``, else ``unix:///run/silo/silod.sock``). ``timeout`` (seconds, None =
    wait forever) bounds each call that answers at once; waits and streams are never bounded
    by it (their own ``timeout`` arguments go to silod). The image methods (``images``,
    ``pull``, ``inspect_image``, ...) are :mod:`silo.client._images`'s."""

    def __init__(self, host: str | None = None, timeout: float | None = None) -> None:
        self.host = host or default_host()
        self.address = Address(self.host)
        self.timeout = timeout

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, *, long: bool = False) -> Any:
        resp = _request(self.address, method, path, body, None if long else self.timeout)
        return decode(resp.read())

    def _stream(self, path: str) -> Stream:
        return Stream(_request(self.address, "GET", path, None, None))

    # -- compute systems --------------------------------------------------------------------

    def create_system(self, config: dict[str, Any], id: str | None = None,
                      name: str | None = None) -> dict[str, Any]:
        """``POST /v1/compute-systems``: create (not start) a compute system from its
        document. Returns its ``Summary``. AlreadyExists when the id or name is taken;
        InvalidArgument naming the field of a bad document; NotFound for an unknown image."""
        body: dict[str, Any] = {"Configuration": config}
        if id is not None:
            body["Id"] = id
        if name is not None:
            body["Name"] = name
        return self._call("POST", _SYSTEMS, body)  # type: ignore[no-any-return]

    def list_systems(self, owner: str | None = None, name: str | None = None,
                     state: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/compute-systems``: the ``Summary`` of each system, filtered by owner,
        name and state (``Created``, ``Running``, ``Paused``, ``Stopped``) when given."""
        params = [(k, v) for k, v in (("Owner", owner), ("Name", name), ("State", state))
                  if v is not None]
        return self._call("GET", _SYSTEMS + query(params))  # type: ignore[no-any-return]

    def get_system(self, id: str) -> dict[str, Any]:
        """``GET /v1/compute-systems/{id}``: its ``Properties`` (Summary + Configuration)."""
        return self._call("GET", self._sys(id))  # type: ignore[no-any-return]

    def start(self, id: str) -> dict[str, Any]:
        """Start a created system; returns its ``Summary``. InvalidState unless Created."""
        return self._call("POST", self._sys(id, "start"))  # type: ignore[no-any-return]

    def shutdown(self, id: str, timeout: float | None = None) -> dict[str, Any]:
        """Ask the first process to stop (its StopSignal), kill it after ``timeout`` seconds
        (silod's default: 10); returns the stopped ``Summary``."""
        body = {} if timeout is None else {"TimeoutSeconds": int(timeout)}
        return self._call("POST", self._sys(id, "shutdown"), body,  # type: ignore[no-any-return]
                          long=True)

    def terminate(self, id: str) -> dict[str, Any]:
        """Kill the system's processes at once; returns its ``Summary``."""
        return self._call("POST", self._sys(id, "terminate"), long=True)  # type: ignore[no-any-return]

    def pause(self, id: str) -> dict[str, Any]:
        """Freeze every process of the system; returns its ``Summary``."""
        return self._call("POST", self._sys(id, "pause"))  # type: ignore[no-any-return]

    def resume(self, id: str) -> dict[str, Any]:
        """Thaw a paused system; returns its ``Summary``."""
        return self._call("POST", self._sys(id, "resume"))  # type: ignore[no-any-return]

    def properties(self, id: str, types: Iterable[str]) -> dict[str, Any]:
        """``Properties`` with the asked ``PropertyTypes`` (``Statistics``, ``ProcessList``,
        ``Memory``) filled in."""
        return self._call("POST", self._sys(id, "properties"),  # type: ignore[no-any-return]
                          {"PropertyTypes": list(types)})

    def modify(self, id: str, resource_path: str, settings: Any) -> dict[str, Any]:
        """Update a resource of a live system: ``modify(id, "Container/Memory/SizeInMB", 256)``
        or ``modify(id, "Container/Processor", {"Maximum": 5000})``; returns its Summary."""
        return self._call("POST", self._sys(id, "modify"),  # type: ignore[no-any-return]
                          {"ResourcePath": resource_path, "RequestType": "Update",
                           "Settings": settings})

    def wait(self, id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the system has stopped: ``{"ExitCode", "ExitType"}``. With ``timeout``
        (seconds), silod answers Timeout when it has not stopped by then."""
        body = {} if timeout is None else {"TimeoutSeconds": int(timeout)}
        return self._call("POST", self._sys(id, "wait"), body,  # type: ignore[no-any-return]
                          long=True)

    def delete(self, id: str, force: bool = False) -> None:
        """Remove a stopped (or, with ``force``, any: it is killed first) system."""
        self._call("DELETE", self._sys(id) + query([("Force", "true")] if force else []),
                   long=force)

    def logs(self, id: str, follow: bool = False, tail: int | None = None,
             timestamps: bool = False) -> Stream:
        """The system's output as ``{"Time", "Stream", "Line"}`` documents; with ``follow``,
        also what it writes from now on, until it stops. ``tail``: only the last N lines."""
        params = []
        if follow:
            params.append(("Follow", "true"))
        if tail is not None:
            params.append(("Tail", str(int(tail))))
        if timestamps:
            params.append(("Timestamps", "true"))
        return self._stream(self._sys(id, "logs") + query(params))

    # -- processes --------------------------------------------------------------------------

    def process_logs(self, id: str, pid: int, follow: bool = False,
                     tail: int | None = None) -> Stream:
        """A process's output from its first byte (its monitor's log), as ``{"Time",
        "Stream", "Line"}`` documents; with ``follow``, until it exits."""
        params = []
        if follow:
            params.append(("Follow", "true"))
        if tail is not None:
            params.append(("Tail", str(int(tail))))
        return self._stream(self._proc(id, pid, "logs") + query(params))

    def create_process(self, id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Start a process (ProcessParameters) in a running system: ``{"ProcessId",
        "Stdio"?}``; ``Stdio`` (``{"AttachSocket", "ControlFifo"}``) when it has pipes or a
        console, for :func:`attach`."""
        return self._call("POST", self._sys(id, "processes"), params)  # type: ignore[no-any-return]

    def process_status(self, id: str, pid: int) -> dict[str, Any]:
        """``{"ProcessId", "Exited", "ExitCode"?}``."""
        return self._call("GET", self._proc(id, pid))  # type: ignore[no-any-return]

    def signal_process(self, id: str, pid: int, sig: int | str) -> None:
        """Send a signal, by number or name (``"SIGTERM"``, ``15``)."""
        self._call("POST", self._proc(id, pid, "signal"), {"Signal": sig})

    def resize(self, id: str, pid: int, h: int, w: int) -> None:
        """Set the size of the process's console (rows, columns)."""
        self._call("POST", self._proc(id, pid, "resize"), {"Height": int(h), "Width": int(w)})

    def close_stdin(self, id: str, pid: int) -> None:
        """Close the process's stdin pipe (it reads end of file)."""
        self._call("POST", self._proc(id, pid, "close-stdin"))

    def wait_process(self, id: str, pid: int, timeout: float | None = None) -> dict[str, Any]:
        """Block until the process exits; its ``ProcessStatus``."""
        body = {} if timeout is None else {"TimeoutSeconds": int(timeout)}
        return self._call("POST", self._proc(id, pid, "wait"), body,  # type: ignore[no-any-return]
                          long=True)

    # -- host -------------------------------------------------------------------------------

    def events(self, since: float | str | None = None, types: Iterable[str] | None = None,
               ids: Iterable[str] | None = None) -> Stream:
        """Events (``{"Time", "Type", "Id", ...}``) as they happen, until closed; ``since``
        replays from that time. ``types``/``ids`` filter; each value is one ``Type=``/``Id=``
        query parameter (repeated)."""
        params = []
        if since is not None:
            params.append(("Since", str(since)))
        params += [("Type", t) for t in types or ()]
        params += [("Id", i) for i in ids or ()]
        return self._stream("/v1/events" + query(params))

    def system_info(self) -> dict[str, Any]:
        """Host facts: cgroup layout, overlayfs, nftables, KVM, runtime."""
        return self._call("GET", "/v1/system/info")  # type: ignore[no-any-return]

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document silod validates requests with."""
        return self._call("GET", "/v1/openapi.json")  # type: ignore[no-any-return]

    # -- names ------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The Id of the system ``ref`` names, as docker resolves: an exact Id, else an exact
        Name, else a unique Id prefix. NotFound when none matches, InvalidArgument when a
        prefix matches several."""
        from silo.errors import InvalidArgument, NotFound

        systems = self.list_systems()
        for key in ("Id", "Name"):
            for s in systems:
                if s.get(key) == ref:
                    return str(s["Id"])
        hits = [str(s["Id"]) for s in systems if ref and str(s.get("Id", "")).startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise InvalidArgument(f"{ref!r} is a prefix of several ids: {', '.join(hits)}",
                                  obj=ref)
        raise NotFound(f"no such container: {ref}", obj=ref)

    @staticmethod
    def _sys(id: str, verb: str = "") -> str:
        return f"{_SYSTEMS}/{_q(id)}" + (f"/{verb}" if verb else "")

    @classmethod
    def _proc(cls, id: str, pid: int, verb: str = "") -> str:
        return cls._sys(id, "processes") + f"/{int(pid)}" + (f"/{verb}" if verb else "")


def attach(stdio_info: dict[str, Any]) -> Attachment:
    """Connect to a process's monitor (conmon) from the ``Stdio`` document of an answer
    (``{"AttachSocket", "ControlFifo"}``). See :mod:`silo.client._attach` for the protocol."""
    from silo.client._attach import Attachment

    try:
        return Attachment(stdio_info["AttachSocket"], stdio_info.get("ControlFifo", ""))
    except (KeyError, TypeError):
        from silo.errors import InvalidArgument

        raise InvalidArgument("Stdio.AttachSocket: missing from the answer",
                              field="Stdio.AttachSocket") from None
