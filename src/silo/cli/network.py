"""silo network create|ls|inspect|rm|rules: HNS networks on silod, with docker's habits.

``create`` builds a HostComputeNetwork from flags (or takes one whole with ``--file``);
``rules`` prints the network's compiled rule layers, as ``vfpctrl /list-rule`` does on Windows.
"""

from __future__ import annotations

from silo.cli.common import Context, each, inspect_each, out, parse_args, print_ref, table
from silo.cli.flags import BOOL, HELP, MULTI, STR, Flag, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TYPES = {"nat": "NAT", "internal": "Internal", "private": "Private",
         "transparent": "Transparent", "l2bridge": "L2Bridge"}

CREATE_FLAGS = [
    Flag("driver", STR, "d", default="nat", help="network type: " + ", ".join(TYPES)),
    Flag("subnet", MULTI, help="a subnet (172.20.0.0/24, fd00:20::/64); repeat for more"),
    Flag("no-gateway", BOOL, help="do not reserve the subnets' first address as gateway"),
    Flag("mac-pool", STR, default="", help="MACs to give endpoints: START-END "
                                           "(02-00-00-00-00-01-02-00-00-00-00-ff)"),
    Flag("dns", MULTI, help="a DNS server for the endpoints; repeat for more"),
    Flag("adapter", STR, default="", help="host interface to bind (Transparent, L2Bridge)"),
    Flag("file", STR, "f", default="", help="a whole HostComputeNetwork JSON document "
                                            "('-' for stdin); NAME overrides its Name"),
    HELP,
]
LS_FLAGS = [
    Flag("quiet", BOOL, "q", help="only IDs"),
    Flag("filter", STR, default="", help="NAME=VALUE, a field of the document (Name=nat)"),
    Flag("format", STR, default="table", help="table or json (a JSON line per network)"),
    HELP,
]
RM_FLAGS = [Flag("force", BOOL, "f", help="also delete the networks' endpoints"), HELP]
USAGE = """COMMAND

Manage networks (HNS HostComputeNetwork).

Commands:
  create    Create a network
  ls        List networks
  inspect   Show networks' documents as JSON
  rm        Remove networks
  rules     Show a network's compiled rule layers"""


def main(ctx: Context, args: list[str]) -> int:
    if not args or args[0] in ("--help", "-h"):
        out(f"Usage:  silo network {USAGE}")
        return 0 if args else 125
    sub, rest = args[0], args[1:]
    verbs = {"create": _create, "ls": _ls, "list": _ls, "inspect": _inspect, "rm": _rm,
             "remove": _rm, "rules": _rules}
    if sub not in verbs:
        raise UsageError(f"silo network {sub}: unknown command (create, ls, inspect, rm, "
                         "rules)", field="network")
    return verbs[sub](ctx, rest)


def build(values: dict[str, Any], name: str) -> dict[str, Any]:
    """The HostComputeNetwork the flags describe."""
    driver = values["driver"].lower()
    if driver not in TYPES:
        raise UsageError(f"--driver: {values['driver']!r} is not one of {', '.join(TYPES)}",
                         field="--driver")
    doc: dict[str, Any] = {"Name": name, "Type": TYPES[driver]}
    flags = 1 if values["no_gateway"] else 0
    if values["subnet"]:
        doc["Ipams"] = [{"Type": "Static", "Subnets": [
            {"IpAddressPrefix": s, "Flags": flags} for s in values["subnet"]]}]
    if values["mac_pool"]:
        parts = values["mac_pool"].split("-")
        if len(parts) != 12:
            raise UsageError("--mac-pool: must be START-END, each six hex pairs joined by '-'",
                             field="--mac-pool")
        doc["MacPool"] = {"Ranges": [{"StartMacAddress": "-".join(parts[:6]),
                                      "EndMacAddress": "-".join(parts[6:])}]}
    if values["dns"]:
        doc["Dns"] = {"ServerList": values["dns"]}
    if values["adapter"]:
        doc["Policies"] = [{"Type": "NetAdapterName",
                            "Settings": {"NetworkAdapterName": values["adapter"]}}]
    return doc


def _create(ctx: Context, args: list[str]) -> int:
    values, rest = parse_args("network create", "[OPTIONS] NAME\n\nCreate a network.",
                              CREATE_FLAGS, args, max_args=1)
    if values["file"]:
        doc = _read_document(values["file"])
        if rest:
            doc["Name"] = rest[0]
    elif not rest:
        raise UsageError('"silo network create" requires a NAME', field="network create")
    else:
        doc = build(values, rest[0])
    out(ctx.client().create_network(doc)["ID"])
    return 0


def _read_document(path: str) -> dict[str, Any]:
    import sys

    from silo.schema import jsonio

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise UsageError(f"--file: {e.strerror}: {path}", field="--file") from None
    doc = jsonio.loads(text, "--file")
    if not isinstance(doc, dict):
        raise UsageError("--file: must hold a JSON object", field="--file")
    return doc


def subnets(net: dict[str, Any]) -> str:
    return ",".join(s["IpAddressPrefix"] for i in net.get("Ipams", [])
                    for s in i.get("Subnets", []))


def _ls(ctx: Context, args: list[str]) -> int:
    values, _ = parse_args("network ls", "[OPTIONS]\n\nList networks.", LS_FLAGS, args,
                           max_args=0)
    client = ctx.client()
    nets = client.list_networks(_filter(values["filter"]))
    if values["quiet"]:
        for n in nets:
            out(n["ID"])
        return 0
    if values["format"] == "json":
        from silo.schema import jsonio

        for n in nets:
            out(jsonio.dumps(n))
        return 0
    counts: dict[str, int] = {}
    for e in client.list_endpoints():
        counts[e["HostComputeNetwork"]] = counts.get(e["HostComputeNetwork"], 0) + 1
    rows = [["NETWORK ID", "NAME", "TYPE", "SUBNETS", "BRIDGE", "ENDPOINTS"]]
    rows += [[n["ID"][:12], n.get("Name", ""), n.get("Type", ""), subnets(n),
              n.get("Linux", {}).get("Bridge", ""), str(counts.get(n["ID"], 0))] for n in nets]
    out(table(rows))
    return 0


def _filter(text: str) -> dict[str, Any] | None:
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--filter: must be FIELD=VALUE, got {text!r}", field="--filter")
    return {key: value}


def _inspect(ctx: Context, args: list[str]) -> int:
    _, refs = parse_args("network inspect", "NETWORK [NETWORK...]\n\nShow networks' "
                         "documents as JSON.", [HELP], args, min_args=1)
    return inspect_each(refs, ctx.client().get_network)


def _rm(ctx: Context, args: list[str]) -> int:
    values, refs = parse_args("network rm", "[OPTIONS] NETWORK [NETWORK...]\n\nRemove "
                              "networks.", RM_FLAGS, args, min_args=1)
    client = ctx.client()
    return each(refs, lambda ref: client.delete_network(ref, force=values["force"]),
                print_ref)


def _rules(ctx: Context, args: list[str]) -> int:
    _, refs = parse_args("network rules", "NETWORK\n\nShow the network's compiled rule "
                         "layers (as vfpctrl /list-rule).", [HELP], args, min_args=1,
                         max_args=1)
    text = ctx.client().network_rules(refs[0]).get("Text", "")
    out(text.rstrip("\n"))
    return 0
