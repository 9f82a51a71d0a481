"""Schemathesis over every operation of the API's OpenAPI document, against a live API on
real Postgres, Redis and the dev broker, authenticated with a sandbox key: no answer is a
server error, and every status, content type, header and body is the one documented for
the operation (errors: the ``ApiError`` body with a ``type`` that goes with its status);
a request the document calls invalid is refused, and one without a valid key is a 401.

Reproducible: schemathesis's seed is fixed and hypothesis runs derandomized without an
example database (``tests.support.fuzz.FUZZ``), so CI sends what a developer's run sent.
Each operation gets schemathesis's explicit examples and coverage cases (boundaries,
missing and wrong-typed parameters) and ``EXAMPLES`` generated ones, valid and invalid.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import settings
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.errors import error_types
from tests.support.api import PATH_KINDS
from tests.support.fuzz import FUZZ, Target
from vinr.api import openapi_document

EXAMPLES = 100  # generated cases per operation, besides the explicit and coverage ones

DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": 20261201,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        }
    ),
)
_TYPES = error_types()


@schemathesis.check
def error_type_fits_status(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """An error's ``type`` is one the status comes with (``infra.errors``): a 401 is an
    ``authentication_error``, a 503 an ``api_error``, and so on."""
    if response.status_code < 400:
        return None
    error = response.json()["error"]
    allowed = _TYPES.get(response.status_code, frozenset())
    assert error["type"] in allowed, (
        f"{response.status_code} answered with type {error['type']!r}; expected one of"
        f" {sorted(allowed)}"
    )
    assert error["message"], "an error says what went wrong"
    return None


_EXTRA_LOCATIONS = (ParameterLocation.QUERY, ParameterLocation.HEADER, ParameterLocation.COOKIE)


@schemathesis.check
def negative_data_refused(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """schemathesis's ``negative_data_rejection``, except for a case negated only by dropping
    or spoiling ``Authorization`` and by adding undeclared query, header or cookie
    parameters: every call here sends the valid key (``_auth``), which undoes the first, and
    an undeclared parameter that does not survive serialization leaves a request that was
    valid all along (the API refuses unknown parameters that reach it: 400
    ``parameter_unknown``, tested in tests/control/test_hostile_text.py). Every other
    negative case is judged."""
    data = case.meta.phase.data if case.meta else None
    mutations = list(getattr(data, "mutations", None) or ())
    on_key = [m for m in mutations if (m.parameter or "").lower() == "authorization"]
    others = [m for m in mutations if m not in on_key]
    if on_key and all(
        m.parameter is None and m.parameter_location in _EXTRA_LOCATIONS for m in others
    ):
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_refused,
    ignored_auth,
    error_type_fits_status,
]


def _auth(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.key}"}


@schema.parametrize()
@settings(FUZZ, max_examples=EXAMPLES)
def test_operation_conforms(case: Case, target: Target) -> None:
    case.call_and_validate(base_url=target.url, headers=_auth(target), checks=CHECKS)


def test_the_fuzzed_document_is_the_served_one(target: Target) -> None:
    served = httpx.get(f"{target.url}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == DOCUMENT
    operations = [(m, p) for p, ops in DOCUMENT["paths"].items() for m in ops]
    assert len(operations) >= 38  # every route of the API is in the document


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/usage_records/summaries", {"subscriptionItem": "item"}),
        ("/v1/invoices", {"subscription": "subscription", "customer": "customer"}),
        ("/v1/charges", {"invoice": "invoice"}),
        ("/v1/subscriptions", {"customer": "customer"}),
        ("/v1/events/{event_id}/deliveries", {"webhookEndpoint": "endpoint"}),
        ("/v1/billing/alerts", {"meter": "meter"}),
    ],
)
def test_filtered_lists_of_seeded_objects_conform(
    target: Target, path: str, query: dict[str, str]
) -> None:
    params = {name: target.objects[kind] for name, kind in PATH_KINDS.items() if name in path}
    case = schema[path]["GET"].Case(
        path_parameters=params or None,
        query={name: target.objects[kind] for name, kind in query.items()},
    )
    response = case.call_and_validate(base_url=target.url, headers=_auth(target), checks=CHECKS)
    assert response.status_code == 200, response.text
    assert response.json()["data"], "the filter finds the seeded object"


# Bodies for the operations on a seeded object; deletions and archiving last (they end the
# object).
_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/billing/meters/{meter_id}"): {"displayName": "renamed"},
    ("POST", "/v1/customers/{customer_id}"): {"name": "Grace", "metadata": {"k": "w"}},
    ("POST", "/v1/subscriptions/{sub_id}"): {"metadata": {"k": "v"}, "cancelAtPeriodEnd": False},
    ("POST", "/v1/test_helpers/test_clocks/{clock_id}/advance"): {"frozenTime": 1_760_000_000},
    ("POST", "/v1/webhook_endpoints/{endpoint_id}"): {"description": "changed"},
    ("POST", "/v1/events/{event_id}/resend"): {},
    ("POST", "/v1/api_keys/{key_id}/roll"): {"expiresIn": 60},
}


def _by_id() -> list[tuple[str, str]]:
    found = [
        (method.upper(), path)
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
        if "{" in path
    ]
    return sorted(found, key=lambda op: op[0] == "DELETE" or op[1].endswith("/archive"))


# Queries the operations on a seeded object require (kinds of seeded objects, or values).
_QUERIES: dict[tuple[str, str], dict[str, str | int]] = {
    ("GET", "/v1/billing/meters/{meter_id}/event_summaries"): {
        "customer": "customer",
        "startTime": 1_750_000_000 - 1_750_000_000 % 3600,
        "endTime": 1_750_000_000 - 1_750_000_000 % 3600 + 86_400,
    },
    ("GET", "/v1/billing/meters/{meter_id}/events"): {"customer": "customer"},
}


def test_every_operation_on_a_seeded_object_conforms(target: Target) -> None:
    """The generated ids above are nearly all unknown (404); here every operation that
    takes an id runs on a real object, its 2xx answer checked against the document."""
    # A key of its own: the hostile-body tests may have rolled (expired) the seeded one.
    fresh = httpx.post(
        f"{target.url}/v1/api_keys",
        json={"name": "seeded producer", "restricted": True},
        headers=_auth(target),
        timeout=30,
    )
    assert fresh.status_code == 200, fresh.text
    objects = target.objects | {"api_key": fresh.json()["id"]}
    for method, path in _by_id():
        operation = schema[path][method]
        params = {
            name: objects[kind] for name, kind in PATH_KINDS.items() if "{" + name + "}" in path
        }
        body = _BODIES.get((method, path))
        documented = "requestBody" in DOCUMENT["paths"][path][method.lower()]
        query = {
            name: objects[value] if isinstance(value, str) else value
            for name, value in _QUERIES.get((method, path), {}).items()
        }
        case = (
            operation.Case(path_parameters=params, body=body, query=query or None)
            if documented and body is not None
            else operation.Case(path_parameters=params, query=query or None)
        )
        response = case.call_and_validate(base_url=target.url, headers=_auth(target), checks=CHECKS)
        if path == "/v1/invoices/{invoice_id}/pay":
            # the seeded invoice was charged when the subscription began: it is paid
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "invoice_not_open"
        else:
            assert response.status_code == 200, (method, path, response.text)
