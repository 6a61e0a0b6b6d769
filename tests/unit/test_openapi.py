"""silod's OpenAPI document: valid OpenAPI 3.1, built from the route table, committed current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate as validate_spec

from silo.errors import NotFound
from silo.schema import hcs
from silo.service import openapi
from silo.service.app import OPERATIONS, make_router, openapi_document
from silo.service.http import MethodNotAllowed

pytestmark = pytest.mark.unit

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi.build(OPERATIONS)
    assert doc["openapi"] == "3.1.0"
    validate_spec(doc)


def test_the_committed_copy_is_what_the_code_builds() -> None:
    built = openapi.dumps(openapi.build(OPERATIONS))
    assert COMMITTED.exists(), "docs/openapi.json is missing: run scripts/openapi"
    assert COMMITTED.read_text() == built, (
        "docs/openapi.json is out of date with the route table or the schemas: "
        "run scripts/openapi and commit the result")


def test_served_document_is_the_built_one() -> None:
    assert openapi_document() == json.loads(openapi.dumps(openapi.build(OPERATIONS)))


def test_the_components_are_the_schemas_requests_are_validated_with() -> None:
    doc = openapi.build(OPERATIONS)
    assert doc["components"]["schemas"] == hcs.SCHEMAS
    for ref in refs(doc):
        kind, name = ref.removeprefix("#/components/").split("/")
        assert name in doc["components"][kind], ref


def test_every_operation_names_known_schemas_and_unique_ids() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    for op in OPERATIONS:
        for name in (op.request, op.response):
            assert name is None or name in hcs.SCHEMAS, (op.operation_id, name)
        assert set(op.path_params) <= set(openapi.PATH_PARAMS), op.path
        assert set(op.errors) <= set(openapi.ERROR_RESPONSES), op.operation_id
        assert op.path.startswith("/v1/")


def test_every_documented_operation_is_routed_and_nothing_else() -> None:
    router = make_router(object())  # type: ignore[arg-type]
    doc = openapi.build(OPERATIONS)
    for path, methods in doc["paths"].items():
        concrete = path.replace("{id}", "x").replace("{pid}", "1")
        for method in methods:
            router.match(method.upper(), concrete)
        with pytest.raises(MethodNotAllowed):
            router.match("PUT", concrete)
    with pytest.raises(NotFound):
        router.match("GET", "/v1/compute-systems/x/unknown")


def test_docs_api_md_lists_every_route() -> None:
    api_md = (COMMITTED.parent / "api.md").read_text()
    for op in OPERATIONS:
        assert f"`{op.method} {op.path}" in api_md, f"docs/api.md does not list {op.method} " \
                                                    f"{op.path}"
