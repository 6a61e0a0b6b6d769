"""The network data path: Linux bridges, veth pairs, network namespaces and one nft table.

``DataPath`` is what the Host Network Service calls to make its documents true on the host.
It takes normalised HNS v2 dicts (network, endpoint, namespace) and owns nothing persistent:
every Linux fact it makes is returned to the caller to keep (``Linux`` keys) and can be
recreated from the documents by :meth:`DataPath.rebuild`.

Each network type is one driver (``network/drivers/``); policies compile into the table
``inet <prefix>`` (+ ``bridge <prefix>`` for port anti-spoofing) in VFP-like layers
(``network/rules/``), applied as one atomic nft transaction per change.

May import kernel, schema, errors. Never compute.
"""

from __future__ import annotations

from typing import Any

from silo.errors import NotSupported

Doc = dict[str, Any]


class DataPath:
    """Programs networks, endpoints and policies into the kernel.

    Errors: InvalidArgument (a field of a document the data path cannot honour, named by its
    path), AlreadyExists (a host port already mapped on the same VIP/protocol), NotSupported
    (a network type or policy it does not do), Internal (the kernel refused; nothing changed).
    A failed call leaves the host as it was before the call.
    """

    def __init__(self, *, prefix: str = "silo", run_dir: str = "/run/silo",
                 netlink: Any = None, nft: Any = None) -> None:
        self.prefix = prefix
        self.run_dir = run_dir

    def ensure_network(self, net: Doc) -> Doc:
        """Make the network's bridge (and uplink binding) exist and its rules present.
        Idempotent. Returns the Linux facts to persist: ``{"Bridge": ifname, "Gateways": [ip]}``."""
        raise NotSupported("data path not built yet", op="hns::EnsureNetwork")

    def remove_network(self, net: Doc) -> None:
        """Remove the network's bridge and rules (its endpoints must be detached first)."""
        raise NotSupported("data path not built yet", op="hns::RemoveNetwork")

    def attach(self, net: Doc, ep: Doc, netns_path: str, *, ifname: str = "eth0") -> Doc:
        """Plug an endpoint into the network inside the netns at ``netns_path``: veth pair,
        addresses, routes, MTU, MAC, QoS, and its rules. Returns
        ``{"HostInterface": veth, "InterfaceName": ifname}``."""
        raise NotSupported("data path not built yet", op="hns::Attach")

    def detach(self, net: Doc, ep: Doc) -> None:
        """Unplug an endpoint: its veth pair and its rules go. Idempotent."""
        raise NotSupported("data path not built yet", op="hns::Detach")

    def update_endpoint(self, net: Doc, ep: Doc) -> None:
        """An attached endpoint's policies changed in place: rewrite its rules (one transaction)."""
        raise NotSupported("data path not built yet", op="hns::UpdateEndpoint")

    def update_network(self, net: Doc) -> None:
        """A network's policies changed: rewrite that network's part of the rules."""
        raise NotSupported("data path not built yet", op="hns::UpdateNetwork")

    def counters(self, ep: Doc) -> Doc:
        """BytesReceived/Sent, PacketsReceived/Sent, DroppedPacketsIncoming/Outgoing of an
        attached endpoint, as seen by the container."""
        raise NotSupported("data path not built yet", op="hns::Counters")

    def rules(self, net: Doc | None = None) -> str:
        """The rules in readable layers (vfpctrl /list-rule style), of one network or all."""
        raise NotSupported("data path not built yet", op="hns::Rules")

    def rebuild(self, nets: list[Doc], eps: list[Doc], namespaces: list[Doc]) -> None:
        """At silod start: recreate what the documents say in one transaction, and remove
        every interface, netns file and table with our prefix that they do not name."""
        raise NotSupported("data path not built yet", op="hns::Rebuild")

    def create_namespace(self, ns_id: str) -> str:
        """A new network namespace bound at ``<run_dir>/netns/<prefix>-<id>``; its path."""
        raise NotSupported("data path not built yet", op="hns::CreateNamespace")

    def delete_namespace(self, path: str) -> None:
        """Unbind and remove a namespace made by :meth:`create_namespace`. Idempotent."""
        raise NotSupported("data path not built yet", op="hns::DeleteNamespace")
