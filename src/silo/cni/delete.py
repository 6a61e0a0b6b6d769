"""DEL: remove the endpoint ``<containerID>_<network>`` (silod detaches it first), the
namespace document of a client's netns once it holds nothing, and the delegated IPAM's
address. Idempotent: a second DEL, an empty ``CNI_NETNS``, an endpoint already gone all
succeed.

silod unreachable: try again later while ``CNI_IFNAME`` is still in the container's netns
(something of ours is plugged in and only silod can unplug it); success when it is not, or
the netns is gone: nothing of this container is left in the kernel, and what silod may still
record is GC's to collect. (containerd 1.6 keeps, forever, the netns of a sandbox whose
RunPodSandbox failed and whose DEL failed too.)
"""

from __future__ import annotations

import os

from silo.cni import common
from silo.errors import SiloError, Timeout, Unavailable
from silo.schema import cni

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
    except (Unavailable, Timeout) as err:
        if _plugged_in(call):
            raise common.translate(err, f"removing endpoint {call.endpoint_name}") from None
    except SiloError as err:
        raise common.translate(err, f"removing endpoint {call.endpoint_name}") from None
    if call.delegated_ipam:
        common.ipam_exec(call, "DEL")
    return None


def _plugged_in(call: common.Call) -> bool:
    if not call.netns or not os.path.exists(call.netns):
        return False
    try:
        return bool(common.ip_in_netns(call, "link", "show", "dev", call.ifname))
    except cni.CniError:
        return True  # cannot tell: try again later
