"""The OpenAPI document lists every status each operation can answer, each error with the
one ``ApiError`` body, each 2xx with the object it answers; and a router made with
``api_router`` gets all of it for its routes without declaring any."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi

from control.routing import ERROR_SCHEMA_REF, api_router, error_responses
from infra.errors import error_types
from vinr.api import openapi_document

DOCUMENT = openapi_document()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
]
LABELS = [f"{m} {p}" for m, p, _ in OPERATIONS]


def _expected(method: str, path: str) -> set[str]:
    statuses = {"200", "400", "401", "403", "429", "503"}
    if method == "POST":
        statuses |= {"409", "413"}
    if "{" in path:
        statuses.add("404")
    return statuses


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=LABELS)
def test_every_status_is_documented(method: str, path: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    assert _expected(method, path) <= set(responses), sorted(responses)
    assert "422" not in responses  # a failed validation is answered 400
    for status, response in responses.items():
        schema = response["content"]["application/json"]["schema"]
        if status.startswith("2"):
            assert schema["$ref"].startswith("#/components/schemas/"), schema
            assert schema["$ref"] != ERROR_SCHEMA_REF
        else:
            assert int(status) in error_types(), status
            assert schema == {"$ref": ERROR_SCHEMA_REF}, (status, schema)
        retry_after = response.get("headers", {}).get("Retry-After")
        if status in ("429", "503"):
            assert retry_after is not None and retry_after["required"], response
        else:
            assert retry_after is None, status
    names = [p["name"] for p in operation.get("parameters", [])]
    if method == "POST":
        assert "Idempotency-Key" in names
        assert "Idempotent-Replayed" in responses["200"]["headers"]
    for parameter in operation.get("parameters", []):
        if parameter["in"] in ("path", "query"):
            options = parameter["schema"].get("anyOf", [parameter["schema"]])
            for option in options:
                if option.get("type") == "string":
                    assert option["maxLength"] <= 255, parameter


def test_statuses_that_only_some_operations_answer() -> None:
    documented = {f"{m} {p}": set(op["responses"]) for m, p, op in OPERATIONS}
    for label in (
        "GET /v1/usage_records/summaries",
        "GET /v1/usage_records/dead_letters",
        "POST /v1/test_helpers/test_clocks",
        "POST /v1/usage_records",
        "POST /v1/usage_records/batch",
    ):
        assert "404" in documented[label], label


def test_the_error_body_and_the_key_are_components() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    error = schemas["ApiError"]
    assert error["required"] == ["error"]
    detail = schemas["ApiErrorDetail"]
    assert set(detail["required"]) == {"type", "code", "message", "param"}
    assert sorted(detail["properties"]["type"]["enum"]) == sorted(
        {
            "invalid_request_error",
            "idempotency_error",
            "authentication_error",
            "permission_error",
            "rate_limit_error",
            "api_error",
        }
    )
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert DOCUMENT["components"]["securitySchemes"]["secretKey"]["scheme"] == "bearer"
    assert DOCUMENT["security"] == [{"secretKey": []}]


async def test_the_served_document_is_this_one(api: str) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=30) as anonymous:
        served = await anonymous.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def test_a_new_router_documents_its_errors_with_one_line() -> None:
    router = api_router("widgets")  # the one line

    @router.post("/v1/widgets/{widget_id}/spin")
    async def spin(widget_id: str, request: Request) -> dict[str, str]:
        return {"id": widget_id}

    @router.get("/v1/widgets", responses=error_responses(404))
    async def widgets(request: Request) -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router)
    paths = get_openapi(title="t", version="1", routes=app.routes)["paths"]
    spun = paths["/v1/widgets/{widget_id}/spin"]["post"]
    assert {"400", "401", "403", "404", "409", "413", "429", "503"} <= set(spun["responses"])
    assert [p["name"] for p in spun["parameters"]] == ["widget_id", "Idempotency-Key"]
    listed = paths["/v1/widgets"]["get"]["responses"]
    assert {"400", "401", "403", "404", "429", "503"} <= set(listed)
    assert "409" not in listed and "413" not in listed
    with pytest.raises(ValueError, match="never answers 418"):
        error_responses(418)
