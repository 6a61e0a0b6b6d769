"""DEL: remove the endpoint ``<containerID>_<network>`` (silod detaches it first), the
namespace document of a client's netns once it holds nothing, and the delegated IPAM's
address. Idempotent: a second DEL, an empty ``CNI_NETNS``, an endpoint already gone all
succeed. Only silod being unreachable fails it (try again later), since then nothing can be
known to be removed.
"""

from __future__ import annotations

from silo.cni import common
from silo.errors import SiloError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def run(call: common.Call) -> dict[str, Any] | None:
    try:
        ep = common.find_endpoint(call)
        if ep is not None:
            common.remove_endpoint(call, ep)
        elif call.netns:
            # An ADD that died between the namespace and the endpoint left the document.
            ns = common.namespace_by_path(call, call.netns)
            if ns is not None:
                common.forget_namespace(call, ns["ID"])
    except SiloError as err:
        raise common.translate(err, f"removing endpoint {call.endpoint_name}") from None
    if call.delegated_ipam:
        common.ipam_exec(call, "DEL")
    return None
