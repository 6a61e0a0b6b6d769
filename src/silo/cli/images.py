"""silo images (also silo image ls): the images in silod's store, as docker prints them."""

from __future__ import annotations

from silo.cli.common import Context, out, parse_args, print_template, table
from silo.cli.flags import BOOL, HELP, STR, Flag

FLAGS = [
    Flag("all", BOOL, "a", help="(accepted for docker's habits: every image is shown)"),
    Flag("quiet", BOOL, "q", help="only image Ids"),
    Flag("no-trunc", BOOL, help="full image Ids"),
    Flag("digests", BOOL, help="show digests"),
    Flag("format", STR, default="table",
         help="table, json (a JSON line per image) or a template: '{{.Repository}}:{{.Tag}}'"),
    HELP,
]
USAGE = "[OPTIONS] [REPOSITORY[:TAG]]\n\nList images."

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def split_tag(name: str) -> tuple[str, str]:
    """``repo:tag`` → (repo, tag); a ``:`` in a registry's port is not a tag."""
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "<none>"
    return repo, tag


def rows(images: list[dict[str, Any]], trunc: bool, now: float) -> list[dict[str, str]]:
    from silo.cli.imagefmt import human_size, short_image_id
    from silo.cli.timefmt import ago

    result = []
    for image in images:
        image_id = str(image.get("Id", ""))
        shown_id = short_image_id(image_id) if trunc else image_id
        digests = [str(d) for d in image.get("RepoDigests") or []]
        common = {"ID": shown_id, "CreatedSince": ago(image.get("Created"), now) or "N/A",
                  "CreatedAt": str(image.get("Created", "")),
                  "Size": human_size(int(image.get("Size", 0)))}
        names = [str(t) for t in image.get("RepoTags") or []] or ["<none>:<none>"]
        for name in names:
            repo, tag = ("<none>", "<none>") if name == "<none>:<none>" else split_tag(name)
            digest = next((d.rsplit("@", 1)[1] for d in digests
                           if d.rsplit("@", 1)[0] == repo), "<none>")
            result.append({"Repository": repo, "Tag": tag, "Digest": digest, **common})
    return result


def matches(row: dict[str, str], wanted: str) -> bool:
    repo, tag = split_tag(wanted)
    if tag == "<none>":
        return row["Repository"] == wanted
    return row["Repository"] == repo and row["Tag"] == tag


def main(ctx: Context, args: list[str], verb: str = "images") -> int:
    values, rest = parse_args(verb, USAGE, FLAGS, args, max_args=1)
    images = ctx.client().images()
    fmt = values["format"]
    if fmt == "json":
        from silo.schema import jsonio

        for image in images:
            out(jsonio.dumps(image))
        return 0
    import time

    found = rows(images, not values["no_trunc"], time.time())
    if rest:
        found = [r for r in found if matches(r, rest[0])]
    if values["quiet"]:
        seen: list[str] = []
        for r in found:
            if r["ID"] not in seen:
                seen.append(r["ID"])
                out(r["ID"])
        return 0
    if fmt == "table":
        header = ["REPOSITORY", "TAG", *(["DIGEST"] if values["digests"] else []),
                  "IMAGE ID", "CREATED", "SIZE"]
        cells = [[r["Repository"], r["Tag"], *([r["Digest"]] if values["digests"] else []),
                  r["ID"], r["CreatedSince"], r["Size"]] for r in found]
        out(table([header, *cells]))
        return 0
    print_template(fmt, found)
    return 0
