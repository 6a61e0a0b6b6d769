"""silod's settings, with the embedded defaults the README's demo runs on."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field


def _default_runtime() -> str:
    """The silo-runtime launcher beside this interpreter (the venv's bin), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "silo-runtime")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("silo-runtime") or "silo-runtime"


@dataclass
class DaemonConfig:
    data_dir: str = "/var/lib/silo"          # SQLite database, container scratch layers
    run_dir: str = "/run/silo"               # sockets, bundles, conmon pid and exit files
    socket: str = ""                         # default: <run_dir>/silod.sock
    listen_tcp: str = ""                     # "127.0.0.1:PORT" for tests and fuzzing
    runtime: str = field(default_factory=_default_runtime)
    runtime_root: str = ""                   # default: <run_dir>/runtime (silo-runtime --root)
    conmon: str = field(default_factory=lambda: shutil.which("conmon") or "/usr/bin/conmon")
    images_dir: str = ""                     # default: <data_dir>/images
    stop_timeout: int = 10                   # seconds between the stop signal and SIGKILL
    cgroup_parent: str = "/silo"             # containers go to <cgroup_parent>/<id>
    network_prefix: str = "silo"             # names of the network's interfaces, netns, tables
    network_fast_path: bool = True           # flows between ACL-less endpoints untracked

    def __post_init__(self) -> None:
        if not self.socket:
            self.socket = os.path.join(self.run_dir, "silod.sock")
        if not self.runtime_root:
            self.runtime_root = os.path.join(self.run_dir, "runtime")
        if not self.images_dir:
            self.images_dir = os.path.join(self.data_dir, "images")

    @property
    def log_file(self) -> str:
        return os.path.join(self.run_dir, "silod.log")

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "silod.db")

    @property
    def storage_dir(self) -> str:
        """The image store's root (docs/design/storage.md)."""
        return os.path.join(self.data_dir, "storage")
