"""What the fuzz tests of silod's API share (tests/unit/test_fuzz_api.py,
tests/unit/test_network_api_fuzz.py, tests/kernel/test_fuzz_api_real.py): the API served on
loopback TCP, one HTTP session per module, and the checks every generated request's answer
must pass whatever service is behind it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from silo.service.app import make_router
from silo.service.http import APIServer


@contextmanager
def served(api: Any) -> Iterator[str]:
    """silod's routes over ``api`` on a loopback port; the base URL."""
    server = APIServer(make_router(api), tcp="127.0.0.1:0")
    server.start()
    try:
        host, port = server.tcp_address
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def checked_answer(response: requests.Response, code_of_5xx: dict[int, str]) -> Any:
    """The decoded body of a refusal (None for a success), once it passed what every answer
    must: no 500; a 5xx in ``code_of_5xx`` carries that error Code (an answer, not a crash); a
    400 names the field it refuses, and its Message starts with that field."""
    status = response.status_code
    assert status != 500, f"internal error: {response.text}"
    body: Any = response.json() if response.content and status >= 400 else None
    if status in code_of_5xx:
        assert body["Code"] == code_of_5xx[status], body
    if status == 400:
        field = body.get("Field")
        assert field, f"a 400 that names no field: {body}"
        assert body["Message"].startswith(field + ":"), body
    return body
