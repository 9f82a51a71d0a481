"""``vinr_sdk.webhooks.verify``: headers made by ``generate_test_header`` (whose output the
shared fixture file pins)."""

from __future__ import annotations

import json
import time

import pytest
from vinr_sdk import (
    SignatureVerificationError,
    VinrError,
    construct_event,
    generate_test_header,
    verify,
)
from vinr_sdk import webhooks as webhooks_module

from ._mock import Script, sync_client

SECRET = "whsec_test_abc123"
EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "invoice.paid",
    "livemode": False,
    "data": {"id": "inv_1", "subscription": "sub_1", "periodEnd": 1766592000},
}
PAYLOAD = json.dumps(EVENT).encode()


def sign(secret: str, payload: bytes, timestamp: int | None = None, *extra: str) -> str:
    return generate_test_header(payload, secret, timestamp, extra)


def test_a_good_signature_returns_the_event() -> None:
    event = verify(PAYLOAD, sign(SECRET, PAYLOAD), SECRET)
    assert event == EVENT
    assert event.type == "invoice.paid" and event.data.subscription == "sub_1"
    assert event.data.period_end == 1766592000 and event["data"]["periodEnd"] == 1766592000


def test_a_text_payload_is_accepted() -> None:
    event = verify(PAYLOAD.decode(), sign(SECRET, PAYLOAD), SECRET)
    assert event.id == "evt_1"


def test_a_tampered_payload_is_refused() -> None:
    tampered = PAYLOAD.replace(b"1766592000", b"1799999999")
    with pytest.raises(SignatureVerificationError, match="no signature matches"):
        verify(tampered, sign(SECRET, PAYLOAD), SECRET)


def test_the_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureVerificationError):
        verify(PAYLOAD, sign("whsec_other", PAYLOAD), SECRET)


def test_a_stale_signature_is_refused() -> None:
    stale = sign(SECRET, PAYLOAD, int(time.time()) - 301)
    with pytest.raises(SignatureVerificationError, match="tolerance"):
        verify(PAYLOAD, stale, SECRET)
    assert verify(PAYLOAD, stale, SECRET, tolerance_s=600).id == "evt_1"


@pytest.mark.parametrize("header", [None, "", "garbage", "t=1"])
def test_a_missing_or_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureVerificationError) as info:
        verify(PAYLOAD, header, SECRET)
    assert isinstance(info.value, VinrError)


def test_the_secret_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VINR_WEBHOOK_SECRET", SECRET)
    assert verify(PAYLOAD, sign(SECRET, PAYLOAD)).id == "evt_1"
    with pytest.raises(SignatureVerificationError):
        verify(PAYLOAD, sign("whsec_other", PAYLOAD))


def test_no_secret_anywhere_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VINR_WEBHOOK_SECRET", raising=False)
    with pytest.raises(VinrError, match="VINR_WEBHOOK_SECRET") as info:
        verify(PAYLOAD, sign(SECRET, PAYLOAD))
    assert not isinstance(info.value, SignatureVerificationError)


def test_a_rolled_secret_header_verifies_with_either_secret() -> None:
    header = sign("whsec_new", PAYLOAD, None, SECRET)
    assert verify(PAYLOAD, header, SECRET).id == "evt_1"
    assert verify(PAYLOAD, header, "whsec_new").id == "evt_1"


def test_a_signed_non_object_payload_is_an_error() -> None:
    with pytest.raises(VinrError, match="JSON"):
        verify(b"not json", sign(SECRET, b"not json"), SECRET)


def test_client_webhooks_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VINR_WEBHOOK_SECRET", SECRET)
    assert construct_event is verify is webhooks_module.construct_event
    with sync_client(Script()) as client:
        assert client.webhooks.verify(PAYLOAD, sign(SECRET, PAYLOAD)).type == "invoice.paid"
        assert client.webhooks.construct_event(PAYLOAD, sign(SECRET, PAYLOAD)).id == "evt_1"


@pytest.mark.parametrize(
    ("payload", "header", "code"),
    [
        (PAYLOAD.replace(b"inv_1", b"inv_2"), sign(SECRET, PAYLOAD, 1000), "no_matching_signature"),
        (PAYLOAD, sign("whsec_other", PAYLOAD, 1000), "no_matching_signature"),
        (PAYLOAD, sign(SECRET, PAYLOAD, 1000 - 301), "timestamp_outside_tolerance"),
        (PAYLOAD, sign(SECRET, PAYLOAD, 1000 + 301), "timestamp_outside_tolerance"),
        (PAYLOAD, None, "missing_header"),
        (PAYLOAD, "t=1", "malformed_header"),
    ],
)
def test_every_refusal_says_why(payload: bytes, header: str | None, code: str) -> None:
    with pytest.raises(SignatureVerificationError) as info:
        verify(payload, header, SECRET, now=1000)
    assert info.value.code == code
    assert info.value.type == "signature_verification_error"


def test_the_clock_can_be_given() -> None:
    header = sign(SECRET, PAYLOAD, 1_000_000)
    assert verify(PAYLOAD, header, SECRET, now=1_000_300).id == "evt_1"
    with pytest.raises(SignatureVerificationError):
        verify(PAYLOAD, header, SECRET, now=1_000_301)


def test_generated_test_headers() -> None:
    header = generate_test_header(PAYLOAD, SECRET, 1_764_000_000)
    t, v1 = header.split(",")
    assert t == "t=1764000000" and len(v1) == len("v1=") + 64
    rolled = generate_test_header(PAYLOAD, "whsec_new", 1_764_000_000, ["whsec_old"])
    assert rolled.split(",")[:2] == generate_test_header(PAYLOAD, "whsec_new", 1_764_000_000).split(
        ","
    )
    assert (
        rolled.split(",")[2]
        == generate_test_header(PAYLOAD, "whsec_old", 1_764_000_000).split(",")[1]
    )
    assert verify(PAYLOAD, generate_test_header(PAYLOAD, SECRET), SECRET).id == "evt_1"
