"""Policies → one nft table per family, in VFP-like layers, as text applied in one transaction.

The table ``inet <prefix>`` has a fixed skeleton (its base chains and the maps they look up) and
one *part* per network and per endpoint: that object's own chains and sets, and its elements
in the skeleton's maps. Adding or removing an endpoint is the add or delete of its part, a small
transaction whatever the number of endpoints; a rebuild writes the skeleton and every part at
once. ``bridge <prefix>`` holds the PORT layer.

Layers, in the order a packet meets them:

- ``PORT``: first the eBPF fast path on each host veth (``network/fastpath.py``, for the
  endpoints :func:`fast_path` names: no ACL of their own or of their network, no QOS), then
  ``bridge <prefix>`` (bridge prerouting, before br_netfilter hands a frame to the inet
  hooks): anti-spoofing, in one lookup for a valid IP frame (port name . source MAC . source
  IP); between two such endpoints, what the eBPF path did not take (a peer reached through
  the gateway, a second address) is not tracked (``notrack``: the source's lookup jumps to its
  network's chain, which checks the destination's subnet and looks it up, over the protocols
  the default inbound filter passes), and the forward layer accepts it at once. Hash lookups
  only: deleting an element of an interval set costs a dump of the whole set (nft 1.0.6).
  Anything else (the host, a published port, another network, an endpoint with ACLs) stays
  tracked. Then the slow checks: MAC of the port, ARP sender, DHCP discovery, IPv6
  link-local, VLAN tags.
- ``NAT`` (nat prerouting/output): port mappings, as elements of DNAT maps keyed on
  VIP·protocol·port (``pm4``/``pm6``) or protocol·port for every host address
  (``pmany4``/``pmany6``); the ``…l`` maps hold the mappings reachable from the host itself
  (LocalRoutedVip), 127.0.0.1 included.
- ``ISOLATION`` (filter forward): nothing crosses from one silo bridge to another unless it
  was published (``ct status dnat``); Internal and Private networks have no way out or in.
- ``ACL`` (filter forward/input/output): per-endpoint chains, dispatched by verdict maps keyed
  on the endpoint's addresses; replies of allowed flows pass by conntrack state. Rules of equal
  action that follow each other by priority share one concatenated interval set, so 1,000
  rules cost a few set lookups, not 1,000 rule evaluations.
- ``METER`` (in the PORT layer: the bridge table's verdict for a valid source of an endpoint
  with a QOS policy is its own chain): its outgoing bytes, to anywhere, policed by a
  ``limit`` (out of reach of the container, whatever capabilities it holds).
- ``NAT`` (nat postrouting): 127/8 masquerade for LocalRoutedVip, hairpin masquerade, an
  endpoint's OutBoundNAT chain (exceptions, destinations, VIP), the network's masquerade.

Pure: builds text, touches nothing. Imports only the rules model and policies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from silo.network.rules.model import EndpointSpec, NetworkSpec
from silo.network.rules.policy import ICMP, ICMPV6, IGMP, PORTED, TCP, UDP, AclRule, Net

_PROTO = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "ipv6-icmp", IGMP: "igmp"}
DEFAULT_IN = (TCP, UDP, ICMP, ICMPV6, IGMP)   # reference §3.7: other protocols blocked

SKELETON_INET = """\
	set bridges { type ifname; }
	set same_net { type ifname . ifname; }
	set closed { type ifname; }
	set hostless { type ifname; }
	set hairpin4 { type ipv4_addr . ifname; flags interval; }
	set hairpin6 { type ipv6_addr . ifname; flags interval; }
	map masq4 { type ipv4_addr : verdict; flags interval; }
	map masq6 { type ipv6_addr : verdict; flags interval; }
	map pm4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
	map pmany4 { type inet_proto . inet_service : ipv4_addr . inet_service; }
	map pml4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
	map pmanyl4 { type inet_proto . inet_service : ipv4_addr . inet_service; }
	map pm6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
	map pmany6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
	map pml6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
	map pmanyl6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
	map acl_in4 { type ipv4_addr : verdict; }
	map acl_out4 { type ipv4_addr : verdict; }
	map acl_in6 { type ipv6_addr : verdict; }
	map acl_out6 { type ipv6_addr : verdict; }
	map snat4 { type ipv4_addr : verdict; }
	map snat6 { type ipv6_addr : verdict; }
	chain nat_prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @pm4
		meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @pmany4
		meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @pm6
		meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @pmany6
	}
	chain nat_output {
		type nat hook output priority -100; policy accept;
		meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @pml4
		meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @pmanyl4
		meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @pml6
		meta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @pmanyl6
	}
	chain nat_postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname @bridges ip saddr 127.0.0.0/8 masquerade
		ct status dnat ip saddr . oifname @hairpin4 masquerade
		ct status dnat ip6 saddr . oifname @hairpin6 masquerade
		ip saddr vmap @snat4
		ip6 saddr vmap @snat6
		ip saddr vmap @masq4
		ip6 saddr vmap @masq6
	}
	counter drop_default_in { }
	chain acl_default_in {
		meta l4proto { tcp, udp, icmp, ipv6-icmp, igmp } return
		counter name "drop_default_in" drop
	}
	chain isolation {
		iifname @closed oifname != @bridges drop
		oifname @closed iifname != @bridges drop
		iifname @bridges oifname @bridges ct status dnat return
		iifname @bridges oifname @bridges iifname . oifname != @same_net drop
	}
	chain acl {
		ip saddr vmap @acl_out4
		ip6 saddr vmap @acl_out6
		ip daddr vmap @acl_in4
		ip6 daddr vmap @acl_in6
	}
	chain filter_forward {
		type filter hook forward priority filter; policy accept;
		ct state untracked accept
		ct state established,related accept
		jump isolation
		jump acl
	}
	chain filter_input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iifname @hostless drop
		ip saddr vmap @acl_out4
		ip6 saddr vmap @acl_out6
	}
	chain filter_output {
		type filter hook output priority filter; policy accept;
		ct state established,related accept
		oifname @hostless drop
		ip daddr vmap @acl_in4
		ip6 daddr vmap @acl_in6
	}
"""

SKELETON_BRIDGE = """\
	set ports { type ifname; }
	set mac_ok { type ifname . ether_addr; }
	map src4 { type ifname . ether_addr . ipv4_addr : verdict; }
	map src6 { type ifname . ether_addr . ipv6_addr : verdict; }
	set peer4 { type ipv4_addr . inet_proto; }
	set peer6 { type ipv6_addr . inet_proto; }
	chain port_security {
		type filter hook prerouting priority -300; policy accept;
		ether type ip iifname . ether saddr . ip saddr vmap @src4
		ether type ip6 iifname . ether saddr . ip6 saddr vmap @src6
		iifname != @ports accept
		iifname . ether saddr != @mac_ok drop
		ether type { vlan, 0x88a8 } drop
		ether type arp arp saddr ip 0.0.0.0 accept
		ether type arp iifname . arp saddr ether . arp saddr ip vmap @src4
		ether type arp drop
		ether type ip ip saddr 0.0.0.0 udp dport 67 accept
		ether type ip drop
		ether type ip6 ip6 saddr { ::, fe80::/10 } accept
		ether type ip6 drop
	}
"""


@dataclass
class Part:
    """One object's share of the tables: sets and chains it owns, elements it puts in the
    skeleton's sets and maps. Added and deleted whole, in one transaction."""

    sets: list[tuple[str, str, list[str]]] = field(default_factory=list)  # name, decl, elements
    chains: list[tuple[str, list[str]]] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)
    # family, set/map name, element, create (refuse a key that exists)
    elements: list[tuple[str, str, str, bool]] = field(default_factory=list)
    bridge_chains: list[tuple[str, list[str]]] = field(default_factory=list)  # bridge table

    def objects(self, counters: bool = True) -> list[str]:
        """Its counters, sets and chains as lines of the inet table's block."""
        block = [f"\tcounter {name} {{ }}" for name in self.counters] if counters else []
        for name, decl, elems in self.sets:
            block.append(f"\tset {name} {{ {decl}; elements = {{ {', '.join(elems)} }} }}"
                         if elems else f"\tset {name} {{ {decl}; }}")
        return block + _chains(self.chains)

    def bridge_objects(self) -> list[str]:
        """Its chains of the bridge table, as lines of that table's block."""
        return _chains(self.bridge_chains)

    def element_lines(self, prefix: str) -> list[str]:
        return [f"{'create' if create else 'add'} element {fam} {prefix} {target} {{ {elem} }}"
                for fam, target, elem, create in self.elements]

    def add_lines(self, prefix: str, counters: bool = True) -> list[str]:
        """Its own objects as a table block, then its elements. (nft 1.0.6 cannot resolve a
        jump, from an element of an interval map made in the same transaction, to a chain
        declared in a later block or command; :func:`full_script` puts all objects in one
        block.)"""
        blocks = [("inet", self.objects(counters)), ("bridge", self.bridge_objects())]
        return ["\n".join([f"table {fam} {prefix} {{", *objects, "}"])
                for fam, objects in blocks if objects] + self.element_lines(prefix)

    def delete_lines(self, prefix: str, counters: bool = True) -> list[str]:
        out = []
        for fam, target, elem, _ in self.elements:
            key = elem.split(" : ", 1)[0]
            out.append(f"delete element {fam} {prefix} {target} {{ {key} }}")
        chains = [("inet", name) for name, _r in self.chains] + \
            [("bridge", name) for name, _r in self.bridge_chains]
        out += [f"flush chain {fam} {prefix} {name}" for fam, name in chains]
        out += [f"delete chain {fam} {prefix} {name}" for fam, name in chains]
        for name, _decl, _elems in self.sets:
            out.append(f"delete set inet {prefix} {name}")
        if counters:
            out += [f"delete counter inet {prefix} {name}" for name in self.counters]
        return out


def _chains(chains: list[tuple[str, list[str]]]) -> list[str]:
    out = []
    for name, rules in chains:
        out += [f"\tchain {name} {{", *(f"\t\t{rule}" for rule in rules), "\t}"]
    return out


def replace_halves(prefix: str, old: Part | None,
                   new: Part | None) -> tuple[list[str], list[str]]:
    """One object's old part out, and its new part in (either may be None), as two lists that
    may have other changes between them. Counters both parts have are kept, so they count
    across policy changes."""
    old_c = set(old.counters) if old else set()
    new_c = set(new.counters) if new else set()
    out = old.delete_lines(prefix, counters=False) if old else []
    into = [f"add counter inet {prefix} {c}" for c in new.counters if c not in old_c] \
        if new else []
    into += new.add_lines(prefix, counters=False) if new else []
    into += [f"delete counter inet {prefix} {c}" for c in old.counters if c not in new_c] \
        if old else []
    return out, into


def replace_lines(prefix: str, old: Part | None, new: Part | None) -> list[str]:
    out, into = replace_halves(prefix, old, new)
    return out + into


def script(lines: Iterable[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _q(ifname: str) -> str:
    return f'"{ifname}"'


def _set(nets: Iterable[Net]) -> str:
    return "{ " + ", ".join(str(n) for n in nets) + " }"


# -- networks ---------------------------------------------------------------------------------

def network_part(net: NetworkSpec) -> Part:
    part = Part()
    br = _q(net.bridge)
    part.elements.append(("inet", "bridges", br, False))
    part.elements.append(("inet", "same_net", f"{br} . {br}", False))
    if not net.traits.way_out:
        part.elements.append(("inet", "closed", br, False))
    if not net.traits.host_reach:
        part.elements.append(("inet", "hostless", br, False))
    # Postrouting knows no input interface: a network's traffic is known by its subnets.
    for subnet in net.subnets:
        part.elements.append(("inet", f"hairpin{subnet.version}", f"{subnet} . {br}", False))
    if net.traits.masquerade:
        chain = f"masq_{net.short}"
        part.chains.append((chain, ["oifname @bridges accept", "masquerade"]))
        for subnet in net.subnets:
            part.elements.append(("inet", f"masq{subnet.version}",
                                  f"{subnet} : jump {chain}", False))
    if net.fast_path:
        rules = []
        for fam, l3 in ((4, "ip"), (6, "ip6")):
            mine = [n for n in net.subnets if n.version == fam]
            if mine:
                dst = str(mine[0]) if len(mine) == 1 else _set(mine)
                rules.append(f"{l3} daddr {dst} {l3} daddr . meta l4proto @peer{fam} "
                             "notrack accept")
        part.bridge_chains.append((f"fast_{net.short}", [*rules, "accept"]))
    return part


# -- endpoints --------------------------------------------------------------------------------

_ANY = {4: "0.0.0.0/0", 6: "::/0"}
_L3 = {4: "ip", 6: "ip6"}
_ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}


def _fits(nets: tuple[Net, ...], family: int) -> list[str] | None:
    """The rule's addresses of one family; None if it names only the other family."""
    if not nets:
        return [_ANY[family]]
    mine = [str(n) for n in nets if n.version == family]
    return mine or None


def _range(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def _acl_elements(rule: AclRule, family: int) -> tuple[list[str], list[str]]:
    """(ported elements, portless elements) of a rule for one family, each laid out as
    proto . saddr . daddr [. sport . dport] in the rule's direction."""
    local = _fits(rule.local, family)
    remote = _fits(rule.remote, family)
    if local is None or remote is None:
        return [], []
    inbound = rule.direction == "In"
    src, dst = (remote, local) if inbound else (local, remote)
    if rule.local_ports or rule.remote_ports:
        lp = [_range(p) for p in rule.local_ports] or ["0-65535"]
        rp = [_range(p) for p in rule.remote_ports] or ["0-65535"]
        sp, dp = (rp, lp) if inbound else (lp, rp)
        protos = [p for p in (rule.protocols or PORTED) if p in PORTED]
        ported = [f"{_PROTO[p]} . {s} . {d} . {a} . {b}"
                  for p in protos for s in src for d in dst for a in sp for b in dp]
        return ported, []
    names = [_PROTO.get(p, str(p)) for p in rule.protocols] or ["0-255"]
    return [], [f"{p} . {s} . {d}" for p in names for s in src for d in dst]


def acl_groups(rules: list[AclRule]) -> list[tuple[str, list[AclRule]]]:
    """Rules in the order they decide (priority, then Block before Allow), cut into runs of
    one action: within a run the order cannot change the verdict."""
    ordered = sorted(rules, key=lambda r: (r.priority, r.action != "Block", r.index))
    groups: list[tuple[str, list[AclRule]]] = []
    for rule in ordered:
        if groups and groups[-1][0] == rule.action:
            groups[-1][1].append(rule)
        else:
            groups.append((rule.action, [rule]))
    return groups


def _acl_chain(ep: EndpointSpec, direction: str, rules: list[AclRule],
               part: Part) -> str | None:
    """The endpoint's chain for one direction, or (no rules) the shared default: inbound
    ``acl_default_in``, outbound nothing at all. An endpoint without ACLs thus owns no chain
    and no counter: the per-change cost of nft's cache of chains and objects stays flat."""
    rules = [r for r in rules if r.direction == direction]
    if not rules:
        return "acl_default_in" if direction == "In" else None
    # Only the families the endpoint has an address of: the chain is reached by no other.
    families = [f for f, mine in ((4, ep.v4()), (6, ep.v6())) if mine]
    d = "in" if direction == "In" else "out"
    chain = f"acl_{ep.short}_{d}"
    drops = f"drop_{ep.short}_{d}"
    part.counters.append(drops)
    body: list[str] = []
    for n, (action, group) in enumerate(acl_groups(rules)):
        verdict = f'counter name "{drops}" drop' if action == "Block" else "return"
        for family in families:
            ported: list[str] = []
            portless: list[str] = []
            for rule in group:
                p, q = _acl_elements(rule, family)
                ported += p
                portless += q
            l3 = _L3[family]
            at = _ADDR_TYPE[family]
            if ported:
                name = f"{chain}_{n}_{family}p"
                part.sets.append((name, f"type inet_proto . {at} . {at} . inet_service . "
                                  "inet_service; flags interval", sorted(set(ported))))
                body.append(f"meta l4proto . {l3} saddr . {l3} daddr . th sport . th dport "
                            f"@{name} {verdict}")
            if portless:
                name = f"{chain}_{n}_{family}a"
                part.sets.append((name, f"type inet_proto . {at} . {at}; flags interval",
                                  sorted(set(portless))))
                body.append(f"meta l4proto . {l3} saddr . {l3} daddr @{name} {verdict}")
    if direction == "In":
        allowed = ", ".join(_PROTO[p] for p in DEFAULT_IN)
        body.append(f"meta l4proto {{ {allowed} }} return")
        body.append(f'counter name "{drops}" drop')
    else:
        body.append("return")
    part.chains.append((chain, body))
    return chain


def _snat_chain(ep: EndpointSpec, net: NetworkSpec, part: Part) -> str | None:
    onat = ep.policies.outbound_nat
    if onat is None:
        return None
    chain = f"snat_{ep.short}"
    body = ["oifname @bridges accept"]
    for family in (4, 6):
        l3 = _L3[family]
        exc = [n for n in onat.exceptions if n.version == family]
        if exc:
            body.append(f"{l3} daddr {_set(exc)} accept")
        if onat.destinations:
            dst = [n for n in onat.destinations if n.version == family]
            nfproto = "ipv4" if family == 4 else "ipv6"
            body.append(f"{l3} daddr != {_set(dst)} accept" if dst
                        else f"meta nfproto {nfproto} accept")
    if onat.vip is not None:
        l3 = _L3[onat.vip.version]
        body.append(f"meta nfproto {'ipv4' if onat.vip.version == 4 else 'ipv6'} "
                    f"snat {l3} to {onat.vip}")
    body.append("masquerade")
    part.chains.append((chain, body))
    return chain


def endpoint_part(net: NetworkSpec, ep: EndpointSpec) -> Part:
    part = Part()
    rules = [*net.policies.acls, *ep.policies.acls]
    chain_in = _acl_chain(ep, "In", rules, part)
    chain_out = _acl_chain(ep, "Out", rules, part)
    snat = _snat_chain(ep, net, part)
    for fam, addrs in ((4, ep.v4()), (6, ep.v6())):
        for a in addrs:
            if chain_in:
                part.elements.append(("inet", f"acl_in{fam}", f"{a} : jump {chain_in}", False))
            if chain_out:
                part.elements.append(("inet", f"acl_out{fam}", f"{a} : jump {chain_out}",
                                      False))
            if snat:
                part.elements.append(("inet", f"snat{fam}", f"{a} : jump {snat}", False))
    for pm in ep.policies.port_mappings:
        fam = 6 if pm.v6 else 4
        targets: list[ipaddress.IPv4Address] | list[ipaddress.IPv6Address] = \
            ep.v6() if pm.v6 else ep.v4()
        if not targets:
            continue  # checked by the data path before it compiles
        proto = _PROTO[pm.protocol]
        value = f"{targets[0]} . {pm.internal}"
        for m in ("", "l") if pm.local else ("",):
            if pm.vip is not None:
                part.elements.append(("inet", f"pm{m}{fam}",
                                      f"{pm.vip} . {proto} . {pm.external} : {value}", True))
            else:
                part.elements.append(("inet", f"pmany{m}{fam}",
                                      f"{proto} . {pm.external} : {value}", True))
    _port_elements(net, ep, fast_path(net, ep), part)
    return part


def fast_protocols(version: int) -> tuple[int, ...]:
    """The protocols the fast path takes over one IP version: those the default inbound
    filter passes (so skipping it changes no verdict)."""
    other = (ICMPV6,) if version == 4 else (ICMP, IGMP)
    return tuple(p for p in DEFAULT_IN if p not in other)


def fast_path(net: NetworkSpec, ep: EndpointSpec) -> bool:
    """Whether the endpoint's flows with its like may skip conntrack (PORT layer)."""
    return net.fast_path and not net.policies.acls and not ep.policies.acls and \
        not ep.policies.max_bytes_per_sec


def _port_elements(net: NetworkSpec, ep: EndpointSpec, fast: bool, part: Part) -> None:
    """The PORT layer's elements of an endpoint: its port, MAC and addresses, and (``fast``)
    its place on the fast path: as a source (to its network's chain, which checks that the
    destination is of the network's subnets) and as a destination over the protocols the
    default inbound filter passes.

    A flow on the fast path never meets conntrack: a foreign DNAT of traffic between two such
    endpoints (kube-proxy in iptables mode, pod to service to a pod of the same node) would
    not see the replies; ``fast_path`` off (``silod --no-network-fast-path``) keeps every
    flow tracked."""
    port = _q(ep.host_veth)
    part.elements.append(("bridge", "ports", port, False))
    part.elements.append(("bridge", "mac_ok", f"{port} . {ep.mac}", False))
    # A valid source: accepted at once, or to its network's fast chain, or to its QOS chain
    # (never both: QOS keeps an endpoint off the fast path), each of which accepts it.
    verdict = f"goto fast_{net.short}" if fast else "accept"
    if ep.policies.max_bytes_per_sec:
        rate = ep.policies.max_bytes_per_sec
        burst = max(rate // 10, 16 * 1514)
        verdict = f"goto qos_{ep.short}"
        part.bridge_chains.append((f"qos_{ep.short}", [
            "ether type arp accept",
            f"limit rate over {rate} bytes/second burst {burst} bytes drop", "accept"]))
    for fam, addrs in ((4, ep.v4()), (6, ep.v6())):
        for a in addrs:
            part.elements.append(("bridge", f"src{fam}", f"{port} . {ep.mac} . {a} : {verdict}",
                                  False))
            if not fast:
                continue
            part.elements.append(("bridge", f"peer{fam}",
                                  ", ".join(f"{a} . {_PROTO[p]}" for p in fast_protocols(fam)),
                                  False))


# -- transactions -----------------------------------------------------------------------------

def full_script(prefix: str, nets: list[NetworkSpec], eps: list[EndpointSpec]) -> str:
    """The whole state: both tables replaced in one transaction."""
    by_id = {n.id: n for n in nets}
    parts = [network_part(n) for n in nets] + \
        [endpoint_part(by_id[e.network_id], e) for e in eps]
    objects = "".join(line + "\n" for part in parts for line in part.objects())
    bridge = "".join(line + "\n" for part in parts for line in part.bridge_objects())
    lines = [
        f"add table inet {prefix}", f"delete table inet {prefix}",
        f"add table bridge {prefix}", f"delete table bridge {prefix}",
        f"table inet {prefix} {{\n{SKELETON_INET}{objects}}}",
        f"table bridge {prefix} {{\n{SKELETON_BRIDGE}{bridge}}}",
    ]
    for part in parts:
        lines += part.element_lines(prefix)
    return script(lines)


def delete_script(prefix: str) -> str:
    """Both tables gone (quiet when they are not there)."""
    return script([f"add table inet {prefix}", f"delete table inet {prefix}",
                   f"add table bridge {prefix}", f"delete table bridge {prefix}"])
