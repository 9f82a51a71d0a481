"""The rate-limit rules without I/O: limits in effect, lease sizes, Retry-After, the
refusal's wording and a process's local bucket."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ratelimit.rules import (
    LEASE_TTL_S,
    MAX_RATE_LIMIT,
    Limit,
    LocalBucket,
    Overrides,
    Plane,
    lease_size,
    limits_in_effect,
    refusal,
    retry_after_s,
)
from infra.settings import Settings

SETTINGS = Settings()


def test_the_defaults_are_the_documented_ones() -> None:
    effect = limits_in_effect(SETTINGS, Overrides())
    assert effect == {Plane.CONTROL: Limit(100, 200), Plane.USAGE: Limit(20_000, 20_000)}


def test_an_override_replaces_only_its_own_value() -> None:
    effect = limits_in_effect(SETTINGS, Overrides(control_burst=7, usage_rate=3))
    assert effect == {Plane.CONTROL: Limit(100, 7), Plane.USAGE: Limit(3, 20_000)}


def test_the_defaults_come_from_settings() -> None:
    custom = Settings(control_rate_limit=5, usage_rate_burst=9)
    effect = limits_in_effect(custom, Overrides(usage_rate=4))
    assert effect == {Plane.CONTROL: Limit(5, 200), Plane.USAGE: Limit(4, 9)}


def test_lease_sizes() -> None:
    assert lease_size(Limit(20_000, 20_000)) == 200  # 10 ms of the rate
    assert lease_size(Limit(100, 200)) == 1
    assert lease_size(Limit(1, 1)) == 1
    assert lease_size(Limit(1_000_000, 50)) == 50  # never more than the bucket holds


@given(
    st.integers(1, MAX_RATE_LIMIT),
    st.integers(1, MAX_RATE_LIMIT),
)
def test_a_lease_is_at_least_one_token_and_at_most_the_burst(rate: int, burst: int) -> None:
    size = lease_size(Limit(rate, burst))
    assert 1 <= size <= burst
    assert size <= max(1, rate / 100 + 1)


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after_s(0.0) == 1
    assert retry_after_s(0.004) == 1
    assert retry_after_s(1.0) == 1
    assert retry_after_s(1.001) == 2
    assert retry_after_s(59.5) == 60


def test_the_refusal_says_the_limit_and_when_to_retry() -> None:
    error = refusal(Plane.CONTROL, Limit(100, 200), 0.01)
    assert (error.status, error.type, error.code) == (429, "rate_limit_error", "rate_limited")
    assert error.message == (
        "this key exceeded its limit of 100 requests/s on the control plane (burst 200);"
        " retry after 1 s"
    )
    assert error.headers() == {"Retry-After": "1"}
    usage = refusal(Plane.USAGE, Limit(20_000, 20_000), 2.5)
    assert "20,000 requests/s on usage ingestion (burst 20,000); retry after 3 s" in usage.message
    assert usage.headers() == {"Retry-After": "3"}


def test_a_local_bucket_admits_what_was_leased_until_it_expires() -> None:
    bucket = LocalBucket(Limit(10, 10))
    assert not bucket.take(0.0)  # nothing leased yet
    bucket.fill(2, now=100.0)
    assert bucket.take(100.0) and bucket.take(100.5)
    assert not bucket.take(100.5)  # used up
    bucket.fill(3, now=200.0)
    assert bucket.take(200.0)
    assert not bucket.take(200.0 + LEASE_TTL_S)  # the rest expired unused
    assert bucket.idle(200.0 + LEASE_TTL_S)


def test_a_blocked_bucket_counts_down_and_holds_nothing() -> None:
    bucket = LocalBucket(Limit(10, 10))
    bucket.fill(5, now=0.0)
    bucket.block(0.25, now=1.0)
    assert not bucket.take(1.0)
    assert bucket.blocked_for(1.1) == pytest.approx(0.15)
    assert bucket.blocked_for(1.25) <= 0
    assert not bucket.idle(1.2) and bucket.idle(1.25)
