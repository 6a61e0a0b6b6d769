"""GC (CNI 1.1): remove the endpoints this plugin made on the network (named
``<containerID>_<network>``, in a client's netns or in none) whose container is not among
``cni.dev/valid-attachments``, with the namespace documents left empty."""

from __future__ import annotations

from silo.cni import common
from silo.errors import NotFound, SiloError
from silo.schema import cni

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def run(call: common.Call) -> dict[str, Any] | None:
    keep = {cid for cid, _ in cni.valid_attachments(call.conf)}
    suffix = f"_{call.network}"
    client = call.client
    try:
        try:
            endpoints = client.list_endpoints({"HostComputeNetwork": call.network})
        except NotFound:
            return None
        managed = {ns["ID"] for ns in client.list_namespaces()
                   if ns.get("Linux", {}).get("Managed")}
        for ep in endpoints:
            name = ep.get("Name", "")
            if not name.endswith(suffix) or ep.get("HostComputeNamespace") in managed:
                continue  # not one of ours: silod's own containers live in its namespaces
            if name[:-len(suffix)] not in keep:
                common.remove_endpoint(call, ep)
    except SiloError as err:
        raise common.translate(err, "collecting endpoints") from None
    return None
