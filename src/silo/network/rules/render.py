"""The rules of networks and endpoints in readable layers, as ``vfpctrl /list-rule`` prints a
port's VFP layers: what ``silo network rules`` shows. Written from the compiled model, so it
says what the nft table holds, in the words of the policies that made it."""

from __future__ import annotations

from silo.network.rules.compiler import DEFAULT_IN, acl_groups, fast_path
from silo.network.rules.model import EndpointSpec, NetworkSpec
from silo.network.rules.policy import PROTO_NAMES, AclRule

_NAMES = {v: k.upper() for k, v in PROTO_NAMES.items()}


def _list(items: tuple[object, ...], empty: str = "any") -> str:
    return ",".join(str(i) for i in items) or empty


def _ports(ports: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ports) or "any"


def _acl(rule: AclRule) -> str:
    protos = ",".join(_NAMES.get(p, str(p)) for p in rule.protocols) or "any"
    return (f"priority {rule.priority:<5} {rule.action:<5} proto {protos} "
            f"local {_list(rule.local)}:{_ports(rule.local_ports)} "
            f"remote {_list(rule.remote)}:{_ports(rule.remote_ports)}")


def render(nets: list[NetworkSpec], eps: list[EndpointSpec]) -> str:
    lines: list[str] = []
    for net in nets:
        t = net.traits
        lines.append(f"Network {net.id} ({net.type}) bridge {net.bridge}")
        lines.append("  Layer ISOLATION")
        lines.append("    other silo networks: block (published ports excepted)")
        lines.append(f"    outside interfaces: {'allow' if t.way_out else 'block'}")
        lines.append(f"    host: {'allow' if t.host_reach else 'block'}")
        if t.masquerade:
            lines.append("  Layer NAT")
            lines.append(f"    masquerade {', '.join(str(s) for s in net.subnets)} "
                         "to other interfaces")
        for ep in (e for e in eps if e.network_id == net.id):
            addrs = ", ".join(str(a) for a, _ in ep.addresses) or "no address"
            lines.append(f"  Port {ep.id} {ep.host_veth} {ep.mac} ({addrs})")
            rules = [*net.policies.acls, *ep.policies.acls]
            lines.append("    Layer PORT")
            lines.append(f"      source MAC {ep.mac}, ARP and IP from {addrs} only, "
                         "no VLAN tags")
            if fast_path(net, ep):
                lines.append("      fast path to such ports of its network (no ACLs, no "
                             "QOS): veth to veth (eBPF), else untracked")
            for direction in ("In", "Out"):
                lines.append(f"    Layer ACL {direction.upper()}")
                for n, (_action, group) in enumerate(
                        acl_groups([r for r in rules if r.direction == direction])):
                    lines.append(f"      Group {n}")
                    lines.extend(f"        Rule {_acl(r)}" for r in group)
                default = ("allow " + ",".join(_NAMES[p] for p in DEFAULT_IN) +
                           "; block other" if direction == "In" else "allow all")
                lines.append(f"      Default {default}")
            pol = ep.policies
            if pol.port_mappings or pol.outbound_nat:
                lines.append("    Layer NAT")
            for pm in pol.port_mappings:
                proto = _NAMES[pm.protocol]
                vip = str(pm.vip) if pm.vip else "*"
                flags = " LocalRoutedVip" if pm.local else ""
                lines.append(f"      PortMapping {proto} {vip}:{pm.external} -> "
                             f":{pm.internal}{flags}")
            if pol.outbound_nat:
                o = pol.outbound_nat
                lines.append(f"      OutBoundNAT to {o.vip or 'host address'} except "
                             f"{_list(o.exceptions, 'none')} only {_list(o.destinations)}")
            if pol.routes:
                lines.append("    Layer ROUTE")
                lines.extend(f"      {r.destination} via {r.next_hop or 'on-link'}"
                             for r in pol.routes)
            if pol.max_bytes_per_sec or pol.encap_overhead:
                lines.append("    Layer METER")
                if pol.max_bytes_per_sec:
                    lines.append(f"      QOS egress {pol.max_bytes_per_sec} bytes/s")
                if pol.encap_overhead:
                    lines.append(f"      EncapOverhead {pol.encap_overhead} (MTU "
                                 f"{1500 - pol.encap_overhead})")
    return "\n".join(lines) + ("\n" if lines else "")
