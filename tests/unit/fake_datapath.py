"""A DataPath that records its calls and keeps a picture of the "host" (tests of the Host
Network Service without root). ``fail`` makes the next call of a method raise; ``host()``
snapshots what exists, so a test proves a refused request left nothing behind."""

from __future__ import annotations

import copy
from typing import Any

Doc = dict[str, Any]


class FakeDataPath:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.bridges: dict[str, Doc] = {}
        self.ports: dict[str, tuple[str, str]] = {}   # endpoint id -> (netns path, ifname)
        self.netns: set[str] = set()
        self.policies: dict[str, list[Doc]] = {}     # endpoint id -> policies as programmed
        self.fail: dict[str, BaseException] = {}
        self.rebuilt: tuple[list[Doc], list[Doc], list[Doc]] | None = None

    def _call(self, name: str, obj: str) -> None:
        self.calls.append((name, obj))
        err = self.fail.pop(name, None)
        if err is not None:
            raise err

    def host(self) -> Doc:
        return copy.deepcopy({"bridges": sorted(self.bridges), "ports": self.ports,
                              "netns": sorted(self.netns), "policies": self.policies})

    def ensure_network(self, net: Doc) -> Doc:
        self._call("ensure_network", net["ID"])
        self.bridges[net["ID"]] = copy.deepcopy(net)
        return {"Bridge": "tstbr" + net["ID"][:8], "Gateways": net["Linux"]["Gateways"]}

    def remove_network(self, net: Doc) -> None:
        self._call("remove_network", net["ID"])
        self.bridges.pop(net["ID"], None)

    def attach(self, net: Doc, ep: Doc, netns_path: str, *, ifname: str = "eth0") -> Doc:
        self._call("attach", ep["ID"])
        assert net["ID"] in self.bridges
        assert netns_path in self.netns or not netns_path.startswith("/run/fake/")
        self.ports[ep["ID"]] = (netns_path, ifname)
        self.policies[ep["ID"]] = copy.deepcopy(ep["Policies"])
        return {"HostInterface": "tst" + ep["ID"][:10], "InterfaceName": ifname}

    def detach(self, net: Doc, ep: Doc) -> None:
        self._call("detach", ep["ID"])
        self.ports.pop(ep["ID"], None)
        self.policies.pop(ep["ID"], None)

    def update_endpoint(self, net: Doc, ep: Doc) -> None:
        self._call("update_endpoint", ep["ID"])
        self.policies[ep["ID"]] = copy.deepcopy(ep["Policies"])

    def update_network(self, net: Doc) -> None:
        self._call("update_network", net["ID"])
        self.bridges[net["ID"]] = copy.deepcopy(net)

    def counters(self, ep: Doc) -> Doc:
        self._call("counters", ep["ID"])
        return {"BytesReceived": 10, "BytesSent": 20, "PacketsReceived": 1, "PacketsSent": 2,
                "DroppedPacketsIncoming": 0, "DroppedPacketsOutgoing": 3}

    def rules(self, net: Doc | None = None) -> str:
        self._call("rules", net["ID"] if net else "")
        return f"Layer ACL\n  network {net['ID'] if net else '*'}\n"

    def rebuild(self, nets: list[Doc], eps: list[Doc], namespaces: list[Doc]) -> None:
        self._call("rebuild", "")
        self.rebuilt = (nets, eps, namespaces)

    def create_namespace(self, ns_id: str) -> str:
        self._call("create_namespace", ns_id)
        path = f"/run/fake/netns/tst-{ns_id}"
        self.netns.add(path)
        return path

    def delete_namespace(self, path: str) -> None:
        self._call("delete_namespace", path)
        self.netns.discard(path)
