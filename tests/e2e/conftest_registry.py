"""Fixtures of a real registry (tests/e2e/registry.py): plain http, htpasswd auth, TLS with a
test CA; each test gets its own, stopped and removed afterwards. conftest.py imports them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import registry as reg


def _skip_if_missing() -> None:
    reason = reg.missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def registry_plain(tmp_path: Path) -> Iterator[reg.Registry]:
    """docker-registry on 127.0.0.1, plain http, no auth."""
    _skip_if_missing()
    with reg.registry(tmp_path / "registry") as r:
        yield r


@pytest.fixture
def registry_auth(tmp_path: Path) -> Iterator[reg.Registry]:
    """docker-registry with htpasswd (bcrypt) auth: ``.credentials`` is the one user."""
    _skip_if_missing()
    with reg.registry(tmp_path / "registry-auth", credentials=("silo-test", "s3cret pw")) as r:
        yield r


@pytest.fixture
def registry_tls(tmp_path: Path) -> Iterator[reg.Registry]:
    """docker-registry on https://localhost:PORT, its certificate signed by ``.ca_file``."""
    _skip_if_missing()
    with reg.registry(tmp_path / "registry-tls", tls=True) as r:
        yield r


@pytest.fixture
def registry_token(tmp_path: Path) -> Iterator[reg.Registry]:
    """docker-registry with token auth: a Bearer challenge naming a token realm of its own
    (``.token``), which wants ``.credentials``."""
    _skip_if_missing()
    with reg.registry(tmp_path / "registry-token", credentials=("silo-bearer", "t0ken pw"),
                      token=True) as r:
        yield r
