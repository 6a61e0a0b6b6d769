"""CHECK: the container's network is still what ADD answered. silod's record first (the
endpoint ``<containerID>_<network>`` exists, is attached to the namespace document of
``CNI_NETNS`` as ``CNI_IFNAME``, holds the prevResult's addresses), then the namespace itself
(the interface is up there with those addresses, and the default routes through the network's
gateways are in place), read with ``ip`` run in the namespace (:func:`common.ip_in_netns`).
Success prints nothing.
"""

from __future__ import annotations

from silo.cni import common
from silo.errors import SiloError
from silo.schema import cni

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Doc = dict[str, Any]


def _wrong(what: str) -> cni.CniError:
    return cni.CniError(cni.SILOD_REFUSED, f"CHECK: {what}")


def run(call: common.Call) -> Doc | None:
    prev = call.conf.get("prevResult")
    if prev is None:
        raise cni.bad("prevResult", "required for CHECK: the result of the ADD")
    wanted = sorted(cni.prev_addresses(prev))
    try:
        ep = common.find_endpoint(call)
        if ep is None:
            raise _wrong(f"no endpoint {call.endpoint_name} in silod")
        ns_id = ep.get("HostComputeNamespace", "")
        if not ns_id:
            raise _wrong(f"endpoint {call.endpoint_name} is not attached to a namespace")
        ns = call.client.get_namespace(ns_id)
        net = call.client.get_network(ep["HostComputeNetwork"])
    except SiloError as err:
        raise common.translate(err, "CHECK") from None
    path = ns.get("Linux", {}).get("NetnsPath", "")
    if path != call.netns:
        raise _wrong(f"endpoint {call.endpoint_name} is attached to {path}, not {call.netns}")
    ifname = ep.get("Linux", {}).get("InterfaceName", "")
    if ifname != call.ifname:
        raise _wrong(f"endpoint {call.endpoint_name} is {ifname} in the namespace, not "
                     f"{call.ifname}")
    have = sorted(f"{c['IpAddress']}/{c.get('PrefixLength', 0)}"
                  for c in ep.get("IpConfigurations", []))
    if have != wanted:
        raise _wrong(f"endpoint {call.endpoint_name} holds {', '.join(have) or 'no address'}, "
                     f"the previous result {', '.join(wanted) or 'none'}")
    _inside(call, ifname, have, net.get("Linux", {}).get("Gateways", []))
    return None


def _inside(call: common.Call, ifname: str, addresses: list[str], gateways: list[str]) -> None:
    links = common.ip_in_netns(call, "-d", "addr", "show", "dev", ifname)
    if not links:
        raise _wrong(f"{ifname} is missing in {call.netns}")
    link = links[0]
    if "UP" not in link.get("flags", []):
        raise _wrong(f"{ifname} is down in {call.netns}")
    there = {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])}
    for addr in addresses:
        if addr not in there:
            raise _wrong(f"{ifname} in {call.netns} lacks {addr} (has "
                         f"{', '.join(sorted(there)) or 'none'})")
    families = {":" in a for a in addresses}
    for gw in gateways:
        v6 = ":" in gw
        if v6 not in families:
            continue
        routes = common.ip_in_netns(call, "-6" if v6 else "-4", "route", "show", "default")
        if not any(r.get("gateway") == gw and r.get("dev") == ifname for r in routes):
            raise _wrong(f"no default route via {gw} dev {ifname} in {call.netns}")

