"""The ACL layer with real traffic: allow/block, in/out, protocol, port, priority, stateful
replies, the defaults of reference §3.7 (in: TCP/UDP/ICMP/IGMP only), network-wide ACLs, all
changed in place on attached endpoints."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.kernel.test_datapath_lab import BLOCKED_AFTER, Ep, Lab, requires_lab

pytestmark = [pytest.mark.kernel, requires_lab]

RAW_RECV = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
try:
    s.recvfrom(100)
    print("got")
except OSError:
    print("nothing")
"""

RAW_SEND = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
s.sendto(b"hello", (sys.argv[1], 0))
"""


def acl(action: str, direction: str, **more: Any) -> dict[str, Any]:
    return {"Type": "ACL", "Settings": {"Action": action, "Direction": direction, **more}}


def set_policies(lab: Lab, net: dict[str, Any], ep: Ep, *policies: dict[str, Any]) -> None:
    ep.doc["Policies"] = list(policies)
    lab.dp.update_endpoint(net, ep.doc)


def open_ways(lab: Lab, a: Ep, b: Ep) -> dict[str, bool]:
    """Which of B→A tcp/80, tcp/81, udp/53, udp/54, ping, host→A tcp/80 get through."""
    return {
        "tcp80": lab.reach(b.path, a.ip, 80) is not None,
        "tcp81": lab.reach(b.path, a.ip, 81) is not None,
        "udp53": lab.reach(b.path, a.ip, 53, "udp") is not None,
        "udp54": lab.reach(b.path, a.ip, 54, "udp") is not None,
        "ping": lab.ping(b.path, a.ip),
        "host80": lab.reach(lab.host, a.ip, 80) is not None,
    }


ALL = {"tcp80": True, "tcp81": True, "udp53": True, "udp54": True, "ping": True,
       "host80": True}


def test_acl_matrix() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        for port in (80, 81):
            lab.serve(a.path, port)
        for port in (53, 54):
            lab.serve(a.path, port, "udp")
        assert open_ways(lab, a, b) == ALL

        cases: list[tuple[str, Ep, list[dict[str, Any]], dict[str, bool]]] = [
            ("in block tcp/80", a,
             [acl("Block", "In", Protocols="6", LocalPorts="80")],
             {**ALL, "tcp80": False, "host80": False}),
            ("in block a port range", a,
             [acl("Block", "In", Protocols="6", LocalPorts="79-80")],
             {**ALL, "tcp80": False, "host80": False}),
            ("in allow from B beats a later block", a,
             [acl("Block", "In", Protocols="6", LocalPorts="80", Priority=200),
              acl("Allow", "In", Protocols="6", LocalPorts="80", RemoteAddresses=b.ip,
                  Priority=100)],
             {**ALL, "host80": False}),
            ("block wins a tie", a,
             [acl("Allow", "In", Protocols="6", LocalPorts="80", Priority=100),
              acl("Block", "In", Protocols="6", LocalPorts="80", Priority=100)],
             {**ALL, "tcp80": False, "host80": False}),
            ("a higher priority block beats an allow", a,
             [acl("Allow", "In", Protocols="6", LocalPorts="80", Priority=300),
              acl("Block", "In", Protocols="6,17", Priority=100)],
             {**ALL, "tcp80": False, "tcp81": False, "udp53": False, "udp54": False,
              "host80": False}),
            ("in block udp/53", a,
             [acl("Block", "In", Protocols="17", LocalPorts="53")],
             {**ALL, "udp53": False}),
            ("in block by remote port range", a,
             [acl("Block", "In", Protocols="6", RemotePorts="1-65535")],
             {**ALL, "tcp80": False, "tcp81": False, "host80": False}),
            ("in block icmp", a,
             [acl("Block", "In", Protocols="1")],
             {**ALL, "ping": False}),
            ("out block tcp/80 at the client", b,
             [acl("Block", "Out", Protocols="6", RemotePorts="80")],
             {**ALL, "tcp80": False}),
            ("out: block all but tcp/80, at the client", b,
             [acl("Block", "Out", Priority=200),
              acl("Allow", "Out", Protocols="6", RemotePorts="80", Priority=100)],
             {**ALL, "tcp81": False, "udp53": False, "udp54": False, "ping": False}),
            ("out block to B at the server: replies still flow (stateful)", a,
             [acl("Block", "Out", RemoteAddresses=b.ip)],
             ALL),
        ]
        for name, target, policies, expected in cases:
            set_policies(lab, net, target, *policies)
            assert open_ways(lab, a, b) == expected, name
            set_policies(lab, net, target)
        assert open_ways(lab, a, b) == ALL
        # blocked packets are counted on the endpoint, and its counter lives through changes
        set_policies(lab, net, a, acl("Block", "In", Protocols="6", LocalPorts="80"))
        assert lab.reach(b.path, a.ip, 80) is None
        dropped = lab.dp.counters(a.doc)["DroppedPacketsIncoming"]
        assert dropped > 0
        set_policies(lab, net, a, acl("Block", "In", Protocols="6", LocalPorts="81"))
        assert lab.dp.counters(a.doc)["DroppedPacketsIncoming"] >= dropped
        set_policies(lab, net, a)

        # an out block at the server does stop what it starts itself
        lab.serve(b.path, 80)
        set_policies(lab, net, a, acl("Block", "Out", RemoteAddresses=b.ip))
        assert lab.reach(a.path, b.ip, 80) is None
        set_policies(lab, net, a)
        assert lab.reach(a.path, b.ip, 80) == a.ip


def raw_delivered(lab: Lab, src: Ep, dst: Ep) -> bool:
    import subprocess

    recv = subprocess.Popen(["nsenter", f"--net={dst.path}", sys.executable, "-c", RAW_RECV,
                             str(BLOCKED_AFTER)], stdout=subprocess.PIPE, text=True)
    assert recv.stdout is not None
    assert recv.stdout.readline().strip() == "ready"
    lab.run(src.path, sys.executable, "-c", RAW_SEND, dst.ip)
    out = recv.stdout.read().strip()
    recv.stdout.close()
    recv.wait()
    return out == "got"


def test_other_protocols_are_blocked_inbound_unless_allowed() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        a, b = lab.endpoint(net, 2), lab.endpoint(net, 3)
        assert not raw_delivered(lab, b, a)           # protocol 253: blocked by default
        set_policies(lab, net, a, acl("Allow", "In", Protocols="253"))
        assert raw_delivered(lab, b, a)


def test_network_acl_applies_to_every_endpoint_and_changes_in_place() -> None:
    with Lab() as lab:
        net = lab.network("NAT")
        a, b, c = lab.endpoint(net, 2), lab.endpoint(net, 3), lab.endpoint(net, 4)
        for ep in (a, b):
            lab.serve(ep.path, 80)
        assert lab.reach(c.path, a.ip, 80) and lab.reach(c.path, b.ip, 80)
        net["Policies"] = [{"Type": "NetworkACL", "Settings": {
            "Action": "Block", "Direction": "In", "Protocols": "6", "LocalPorts": "80"}}]
        lab.dp.update_network(net)
        assert lab.reach(c.path, a.ip, 80) is None and lab.reach(c.path, b.ip, 80) is None
        assert "Block proto TCP local any:80" in lab.dp.rules(net)
        net["Policies"] = []
        lab.dp.update_network(net)
        assert lab.reach(c.path, a.ip, 80) == c.ip
