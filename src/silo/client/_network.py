"""The network API of silod (HNS v2: networks, endpoints, namespaces) for :class:`Client`.

A mixin over the client's ``_call``: every method returns the answer's document (HNS v2 JSON,
docs/api.md) and raises :mod:`silo.errors` as the rest of the client. References are an ID or
a Name; ``filter`` is HCN's query filter, a dict of field equality (``{"Name": "nat"}``).

    c.create_network({"Name": "web", "Type": "NAT",
                      "Ipams": [{"Subnets": [{"IpAddressPrefix": "172.20.0.0/24"}]}]})
    ep = c.create_endpoint({"HostComputeNetwork": "web"})
    ns = c.create_namespace({})
    c.attach_endpoint(ns["ID"], ep["ID"])

Stdlib-only, lean: nothing is imported at import time but the client's own helpers.
"""

from __future__ import annotations

from silo.client._http import query
from silo.client._http import quote as _q

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_BASE = {"network": "/v1/networks", "endpoint": "/v1/endpoints", "namespace": "/v1/namespaces"}


class NetworkClient:
    def _call(self, method: str, path: str, body: Any = None, *, long: bool = False) -> Any:
        raise NotImplementedError  # the Client's

    # -- generic ----------------------------------------------------------------------------

    def _list(self, kind: str, filter: dict[str, Any] | None) -> list[dict[str, Any]]:
        from silo.schema import jsonio

        params = [("filter", jsonio.dumps(filter))] if filter else []
        return self._call("GET", _BASE[kind] + query(params))  # type: ignore[no-any-return]

    def _one(self, kind: str, ref: str, verb: str = "") -> str:
        return f"{_BASE[kind]}/{_q(ref)}" + (f"/{verb}" if verb else "")

    def _modify(self, kind: str, ref: str, resource: str, request: str,
                settings: dict[str, Any]) -> dict[str, Any]:
        body = {"ResourceType": resource, "RequestType": request, "Settings": settings}
        return self._call("POST", self._one(kind, ref, "modify"), body)  # type: ignore[no-any-return]

    # -- networks ---------------------------------------------------------------------------

    def create_network(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", _BASE["network"], doc)  # type: ignore[no-any-return]

    def list_networks(self, filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("network", filter)

    def get_network(self, ref: str) -> dict[str, Any]:
        return self._call("GET", self._one("network", ref))  # type: ignore[no-any-return]

    def modify_network(self, ref: str, resource: str, request: str,
                       settings: dict[str, Any]) -> dict[str, Any]:
        """``resource`` Policy (settings ``{"Policies": [...]}``) or DNS; ``request`` Add,
        Remove or Update."""
        return self._modify("network", ref, resource, request, settings)

    def delete_network(self, ref: str, force: bool = False) -> None:
        self._call("DELETE", self._one("network", ref) + ("?force=true" if force else ""))

    def network_rules(self, ref: str) -> dict[str, Any]:
        """``{"Network", "Name", "Text"}``: the compiled rule layers, readable."""
        return self._call("GET", self._one("network", ref, "rules"))  # type: ignore[no-any-return]

    # -- endpoints --------------------------------------------------------------------------

    def create_endpoint(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", _BASE["endpoint"], doc)  # type: ignore[no-any-return]

    def list_endpoints(self, filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Endpoints; ``{"HostComputeNetwork": <ID or Name>}`` for those of one network."""
        return self._list("endpoint", filter)

    def get_endpoint(self, ref: str) -> dict[str, Any]:
        return self._call("GET", self._one("endpoint", ref))  # type: ignore[no-any-return]

    def modify_endpoint(self, ref: str, request: str,
                        policies: list[dict[str, Any]]) -> dict[str, Any]:
        """Add, Remove or Update (replace those of the same Type) policies in place."""
        return self._modify("endpoint", ref, "Policy", request, {"Policies": policies})

    def delete_endpoint(self, ref: str) -> None:
        self._call("DELETE", self._one("endpoint", ref))

    def endpoint_stats(self, ref: str) -> dict[str, Any]:
        return self._call("GET", self._one("endpoint", ref, "stats"))  # type: ignore[no-any-return]

    # -- namespaces -------------------------------------------------------------------------

    def create_namespace(self, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", _BASE["namespace"], doc or {})  # type: ignore[no-any-return]

    def list_namespaces(self, filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._list("namespace", filter)

    def get_namespace(self, ref: str) -> dict[str, Any]:
        return self._call("GET", self._one("namespace", ref))  # type: ignore[no-any-return]

    def delete_namespace(self, ref: str) -> None:
        self._call("DELETE", self._one("namespace", ref))

    def attach_endpoint(self, namespace: str, endpoint: str,
                        interface: str = "") -> dict[str, Any]:
        """Attach; ``interface``: its name inside the namespace (default eth<n>)."""
        settings = {"EndpointId": endpoint}
        if interface:
            settings["InterfaceName"] = interface
        return self._modify("namespace", namespace, "Endpoint", "Add", settings)

    def detach_endpoint(self, namespace: str, endpoint: str) -> dict[str, Any]:
        return self._modify("namespace", namespace, "Endpoint", "Remove",
                            {"EndpointId": endpoint})
