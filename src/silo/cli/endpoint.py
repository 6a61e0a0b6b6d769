"""silo endpoint ls|inspect|stats: HNS endpoints on silod and their counters."""

from __future__ import annotations

from silo.cli.common import Context, inspect_each, out, parse_args, table
from silo.cli.flags import BOOL, HELP, STR, Flag, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LS_FLAGS = [
    Flag("network", STR, "n", default="", help="only the endpoints of this network"),
    Flag("quiet", BOOL, "q", help="only IDs"),
    Flag("stats", BOOL, "s", help="with counters (bytes, packets, drops)"),
    Flag("format", STR, default="table", help="table or json (a JSON line per endpoint)"),
    HELP,
]
USAGE = """COMMAND

Manage endpoints (HNS HostComputeEndpoint).

Commands:
  ls        List endpoints (--stats: with counters)
  inspect   Show endpoints' documents, with their counters, as JSON
  stats     Show endpoints' counters"""

COUNTERS = ("BytesReceived", "BytesSent", "PacketsReceived", "PacketsSent",
            "DroppedPacketsIncoming", "DroppedPacketsOutgoing")


def main(ctx: Context, args: list[str]) -> int:
    if not args or args[0] in ("--help", "-h"):
        out(f"Usage:  silo endpoint {USAGE}")
        return 0 if args else 125
    sub, rest = args[0], args[1:]
    verbs = {"ls": _ls, "list": _ls, "inspect": _inspect, "stats": _stats}
    if sub not in verbs:
        raise UsageError(f"silo endpoint {sub}: unknown command (ls, inspect, stats)",
                         field="endpoint")
    return verbs[sub](ctx, rest)


def addresses(ep: dict[str, Any]) -> str:
    return ",".join(f"{c['IpAddress']}/{c.get('PrefixLength', '')}".rstrip("/")
                    for c in ep.get("IpConfigurations", []))


def _ls(ctx: Context, args: list[str]) -> int:
    values, _ = parse_args("endpoint ls", "[OPTIONS]\n\nList endpoints.", LS_FLAGS, args,
                           max_args=0)
    client = ctx.client()
    eps = client.list_endpoints({"HostComputeNetwork": values["network"]}
                                if values["network"] else None)
    if values["quiet"]:
        for e in eps:
            out(e["ID"])
        return 0
    if values["format"] == "json":
        from silo.schema import jsonio

        for e in eps:
            if values["stats"]:
                e = {**e, "Statistics": client.endpoint_stats(e["ID"])}
            out(jsonio.dumps(e))
        return 0
    names = {n["ID"]: n.get("Name", "") for n in client.list_networks()}
    header = ["ENDPOINT ID", "NAME", "NETWORK", "ADDRESSES", "MAC", "NAMESPACE", "INTERFACE"]
    if values["stats"]:
        header += ["RX BYTES", "TX BYTES", "RX PKTS", "TX PKTS", "DROP IN", "DROP OUT"]
    rows = [header]
    for e in eps:
        row = [e["ID"][:12], e.get("Name", ""), names.get(e["HostComputeNetwork"], "")
               or e["HostComputeNetwork"][:12], addresses(e), e.get("MacAddress", ""),
               e.get("HostComputeNamespace", "")[:12],
               e.get("Linux", {}).get("HostInterface", "")]
        if values["stats"]:
            s = client.endpoint_stats(e["ID"])
            row += [str(s.get(k, 0)) for k in COUNTERS]
        rows.append(row)
    out(table(rows))
    return 0


def _inspect(ctx: Context, args: list[str]) -> int:
    _, refs = parse_args("endpoint inspect", "ENDPOINT [ENDPOINT...]\n\nShow endpoints' "
                         "documents, with their counters, as JSON.", [HELP], args, min_args=1)
    client = ctx.client()
    return inspect_each(refs, lambda ref: {**client.get_endpoint(ref),
                                           "Statistics": client.endpoint_stats(ref)})


def _stats(ctx: Context, args: list[str]) -> int:
    _, refs = parse_args("endpoint stats", "ENDPOINT [ENDPOINT...]\n\nShow endpoints' "
                         "counters.", [HELP], args, min_args=1)
    client = ctx.client()
    rows = [["ENDPOINT", "RX BYTES", "TX BYTES", "RX PKTS", "TX PKTS", "DROP IN", "DROP OUT"]]
    for ref in refs:
        s = client.endpoint_stats(ref)
        rows.append([ref, *(str(s.get(k, 0)) for k in COUNTERS)])
    out(table(rows))
    return 0
