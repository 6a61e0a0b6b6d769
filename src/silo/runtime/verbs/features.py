"""``features``: what this runtime supports, in runc's JSON shape."""

from __future__ import annotations

from silo.runtime.flags import parse
from silo.runtime.verbs._common import write_out

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from silo.runtime.main import Globals


def features() -> dict[str, Any]:
    from silo.kernel import capabilities, cgroups, mounts, seccomp
    from silo.schema import oci

    layout = cgroups.detect()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": list(oci.HOOKS),
        "mountOptions": mounts.ALL_OPTIONS,
        "linux": {
            "namespaces": sorted(oci.NAMESPACES),
            "capabilities": list(capabilities.CAPS),
            "cgroup": {"v1": layout.mode in ("v1", "hybrid"), "v2": layout.v2 is not None,
                       "systemd": False, "systemdUser": False},
            "seccomp": seccomp.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.github.silo.runtime.version": "0.1.0"},
    }


def run(g: Globals, argv: list[str]) -> int:
    from silo.schema.jsonio import dumps_pretty

    parse([], argv, "features")
    write_out(dumps_pretty(features()) + "\n")
    return 0
