"""ADD: the network (made on the first ADD, as sdnbridge does), an endpoint
``<containerID>_<network>`` with the configuration's policies, port mappings and DNS, attached
as ``CNI_IFNAME`` to the namespace document of ``CNI_NETNS``; prints the result.

All or nothing: a failure at any step removes what this call made (endpoint, namespace
document, network, the delegated IPAM's address) and answers the spec's error.
"""

from __future__ import annotations

from silo.cni import common
from silo.errors import AlreadyExists, NotFound, SiloError
from silo.schema import cni

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Doc = dict[str, Any]


def run(call: common.Call) -> Doc:
    undo: list[Callable[[], None]] = []
    try:
        return _add(call, undo)
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except (SiloError, cni.CniError):
                pass  # the first error is the one to report
        raise


def _add(call: common.Call, undo: list[Callable[[], None]]) -> Doc:
    client = call.client
    try:
        existing = common.find_endpoint(call)
    except SiloError as err:
        raise common.translate(err, "looking up the endpoint") from None
    if existing is not None:
        _stale_or_twice(call, existing)
    static: list[Doc] = []
    if call.delegated_ipam:
        got = common.ipam_exec(call, "ADD")
        undo.append(lambda: _ignore(common.ipam_exec(call, "DEL")))
        static = _ipam_addresses(call, got or {})
    net = _ensure_network(call, static, undo)
    try:
        ns = common.namespace_by_path(call, call.netns)
        if ns is None:
            ns = client.create_namespace({"Linux": {"NetnsPath": call.netns}})
            made = ns["ID"]
            undo.append(lambda: common.forget_namespace(call, made))
    except SiloError as err:
        raise common.translate(err, "creating the namespace") from None
    doc: Doc = {"Name": call.endpoint_name, "HostComputeNetwork": net["ID"],
                "Policies": common.endpoint_policies(call.conf)}
    if static:
        doc["IpConfigurations"] = static
    dns = common.dns(call.conf)
    if dns:
        doc["Dns"] = dns
    try:
        ep = client.create_endpoint(doc)
    except SiloError as err:
        raise common.translate(err, "creating the endpoint") from None
    undo.append(lambda: common.ignore_missing(lambda: client.delete_endpoint(ep["ID"])))
    try:
        client.attach_endpoint(ns["ID"], ep["ID"], call.ifname)
        ep = client.get_endpoint(ep["ID"])
    except SiloError as err:
        raise common.translate(err, f"attaching the endpoint to {call.netns}") from None
    return common.result(call, ep, net)


def _stale_or_twice(call: common.Call, ep: Doc) -> None:
    """A second ADD for the same container, interface and netns is refused (the first stays
    as it is); an endpoint of that name left by an ADD whose DEL never came (another netns,
    or none) is removed, as win-bridge treats it: corrupt."""
    ns_id = ep.get("HostComputeNamespace", "")
    path = ""
    if ns_id:
        try:
            path = call.client.get_namespace(ns_id).get("Linux", {}).get("NetnsPath", "")
        except NotFound:
            path = ""
    if path == call.netns:
        raise cni.CniError(cni.SILOD_REFUSED, f"container {call.container_id} is already "
                           f"added to network {call.network} (endpoint {ep['Name']}, "
                           f"{ep.get('Linux', {}).get('InterfaceName', '?')} in {path}); DEL "
                           "it first")
    common.remove_endpoint(call, ep)


def _ipam_addresses(call: common.Call, got: Doc) -> list[Doc]:
    out: list[Doc] = []
    for i, ip in enumerate(got.get("ips") or []):
        text = ip.get("address", "") if isinstance(ip, dict) else ""
        addr, _, plen = text.partition("/")
        if not addr or not plen.isdigit():
            raise cni.CniError(cni.DECODE_FAILURE, f"ipam ({call.delegated_ipam}): ips[{i}]."
                               f"address {text!r} is not an address in CIDR form")
        out.append({"IpAddress": addr, "PrefixLength": int(plen)})
    if not out:
        raise cni.CniError(cni.DECODE_FAILURE, f"ipam ({call.delegated_ipam}): its result "
                           "has no address")
    return out


def _ensure_network(call: common.Call, static: list[Doc],
                    undo: list[Callable[[], None]]) -> Doc:
    client = call.client
    try:
        return client.get_network(call.network)
    except NotFound:
        pass
    except SiloError as err:
        raise common.translate(err, f"looking up network {call.network}") from None
    subnets = _subnets(call, static)
    doc: Doc = {"Name": call.network, "Type": call.conf.get("networkType", "NAT"),
                "Ipams": [{"Type": "Static",
                           "Subnets": [{"IpAddressPrefix": s} for s in subnets]}]}
    policies = common.network_policies(call.conf)
    if policies:
        doc["Policies"] = policies
    try:
        net = client.create_network(doc)
    except AlreadyExists:  # another ADD made it meanwhile
        try:
            return client.get_network(call.network)
        except SiloError as err:
            raise common.translate(err, f"looking up network {call.network}") from None
    except SiloError as err:
        raise common.translate(err, f"creating network {call.network}") from None
    # Removed again only while it has no endpoint (another ADD may have put one there).
    undo.append(lambda: common.ignore_missing(lambda: client.delete_network(net["ID"])))
    return net


def _subnets(call: common.Call, static: list[Doc]) -> list[str]:
    subnet = call.conf.get("ipam", {}).get("subnet")
    if isinstance(subnet, str):
        return [subnet]
    if isinstance(subnet, list) and subnet:
        return list(subnet)
    if static:
        import ipaddress

        return [str(ipaddress.ip_network(f"{s['IpAddress']}/{s['PrefixLength']}",
                                         strict=False)) for s in static]
    raise cni.bad("ipam.subnet", f"required: network {call.network} does not exist in silod "
                  "and is made on the first ADD from this subnet")


def _ignore(value: object) -> None:
    return None
