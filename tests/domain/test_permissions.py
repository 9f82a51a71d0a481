"""The permission table: a secret key may call anything; a restricted key exactly the routes
its permissions allow, and a refusal names what the key holds and what it asked for."""

from __future__ import annotations

import pytest

from domain.permissions import PERMISSIONS, RESTRICTED_DEFAULT, USAGE_RECORDS_WRITE, check, denial
from domain.tenant import Tenant
from infra.errors import PermissionDenied

SECRET = Tenant("acct_1", False, "key_1")
RESTRICTED = Tenant("acct_1", False, "key_2", True, RESTRICTED_DEFAULT)
USAGE_ROUTES = [
    ("POST", "/v1/usage_records"),
    ("POST", "/v1/usage_records/batch"),
    ("GET", "/v1/usage_records/summaries"),
    ("POST", "/v1/billing/meter_events"),
    ("POST", "/v1/billing/meter_events/batch"),
    ("POST", "/v1/billing/meter_event_adjustments"),
    ("GET", "/v1/billing/meters/{id}/event_summaries"),
]
OTHER_ROUTES = [
    ("GET", "/v1/invoices"),
    ("POST", "/v1/products"),
    ("GET", "/v1/api_keys"),
    ("POST", "/v1/api_keys"),
    ("DELETE", "/v1/api_keys/key_1"),
    ("GET", "/v1/usage_records"),
    ("POST", "/v1/usage_records/summaries"),
    ("GET", "/v1/usage_records/summaries/"),
    ("GET", "/v1/nowhere"),
    ("GET", "/v1/billing/meters"),
    ("POST", "/v1/billing/meters"),
    ("GET", "/v1/billing/meters/mtr_1"),
    ("GET", "/v1/billing/meters//event_summaries"),
    ("GET", "/v1/billing/meters/mtr_1/x/event_summaries"),
    ("POST", "/v1/billing/meters/mtr_1/event_summaries"),
    ("POST", "/v1/billing/alerts"),
]


def test_restricted_keys_get_usage_records_write() -> None:
    assert frozenset({USAGE_RECORDS_WRITE}) == RESTRICTED_DEFAULT
    assert sorted(PERMISSIONS[USAGE_RECORDS_WRITE]) == sorted(USAGE_ROUTES)


@pytest.mark.parametrize(("method", "path"), USAGE_ROUTES + OTHER_ROUTES)
def test_a_secret_key_may_call_anything(method: str, path: str) -> None:
    assert denial(SECRET, method, path) is None


@pytest.mark.parametrize(("method", "path"), USAGE_ROUTES)
def test_a_restricted_key_may_report_usage_and_read_summaries(method: str, path: str) -> None:
    check(RESTRICTED, method, path.replace("{id}", "mtr_8aZ2"))


@pytest.mark.parametrize(("method", "path"), OTHER_ROUTES)
def test_a_restricted_key_is_refused_everything_else(method: str, path: str) -> None:
    with pytest.raises(PermissionDenied) as refused:
        check(RESTRICTED, method, path)
    assert refused.value.status == 403 and refused.value.type == "permission_error"
    assert refused.value.message == (
        f"this restricted key has the permission 'usage_records: write', which does not"
        f" allow {method} {path}; use a secret key"
    )


def test_a_restricted_key_without_permissions_may_call_nothing() -> None:
    bare = Tenant("acct_1", True, "key_3", True, frozenset())
    refused = denial(bare, "POST", "/v1/usage_records")
    assert refused is not None and "holds no permission" in refused.message
    unknown = Tenant("acct_1", True, "key_4", True, frozenset({"prices: write"}))
    assert denial(unknown, "POST", "/v1/prices") is not None


def test_a_long_path_is_cut_in_the_message() -> None:
    refused = denial(RESTRICTED, "GET", "/v1/" + "x" * 5000)
    assert refused is not None and len(refused.message) < 400
