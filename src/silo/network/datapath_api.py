"""The seam between the Host Network Service and the data path, as a Protocol.

:class:`silo.network.datapath.DataPath` is the Linux implementation (docs/design/network.md);
:mod:`silo.network.hns` types against this Protocol so that its unit tests run with a fake that
records the calls. The service hands the data path whole validated documents (HNS v2 dicts
with their ``Linux`` facts) and never touches the kernel itself. A call either does all of its
work or raises a :class:`~silo.errors.SiloError` having undone what it began; the service then
undoes its own steps (addresses, records).

Imports nothing of silo.
"""

from __future__ import annotations

from typing import Any, Protocol

Doc = dict[str, Any]


class DataPath(Protocol):
    def ensure_network(self, net: Doc) -> Doc:
        """Make the network's bridge and rules; the Linux facts (``Bridge``, ``Gateways``)."""

    def remove_network(self, net: Doc) -> None: ...

    def attach(self, net: Doc, ep: Doc, netns_path: str, *, ifname: str = "eth0") -> Doc:
        """Plug the endpoint in; ``{"HostInterface", "InterfaceName"}``."""

    def detach(self, net: Doc, ep: Doc) -> None: ...

    def update_endpoint(self, net: Doc, ep: Doc) -> None: ...

    def update_network(self, net: Doc) -> None: ...

    def counters(self, ep: Doc) -> Doc: ...

    def rules(self, net: Doc | None = None) -> str: ...

    def rebuild(self, nets: list[Doc], eps: list[Doc], namespaces: list[Doc]) -> None: ...

    def create_namespace(self, ns_id: str) -> str: ...

    def delete_namespace(self, path: str) -> None: ...
