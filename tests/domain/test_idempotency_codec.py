"""The idempotency value format and key rule, in Python: values round-trip whatever they
store, garbage is refused, and the Idempotency-Key bound is 1 to 255 characters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.idempotency import MAX_KEY_LENGTH, body_digest, check_idempotency_key
from domain.idempotency.codec import LUA, decode_value, done_value, pending_value
from domain.idempotency.scripts import BEGIN, COMPLETE, OPS, RELEASE
from infra.errors import InvalidRequest

_digests = st.binary(max_size=64).map(body_digest)


@given(_digests, st.text(alphabet="0123456789abcdef", min_size=1, max_size=24))
def test_a_pending_value_round_trips(digest: str, token: str) -> None:
    value = decode_value(pending_value(digest, token))
    assert (value.pending, value.digest, value.rest) == (True, digest, token.encode())


@given(_digests, st.binary(max_size=200))
def test_a_done_value_keeps_any_bytes_it_stores(digest: str, stored: bytes) -> None:
    value = decode_value(done_value(digest, stored))
    assert (value.pending, value.digest, value.rest) == (False, digest, stored)


@pytest.mark.parametrize("raw", [b"", b"P", b"X|abc|t", b"P-abc|t", b"D|abc", b"abc"])
def test_other_bytes_are_not_a_value(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_value(raw)


def test_every_script_starts_with_the_one_format_definition() -> None:
    for script in (BEGIN, COMPLETE, RELEASE, OPS):
        assert script.startswith(LUA)
        body = script[len(LUA) :]
        assert "'P|'" not in body and "'D|'" not in body and "'$" not in body


def test_digests_are_hex_of_the_size_asked() -> None:
    assert len(body_digest(b"x")) == 32 and len(body_digest(b"x", 8)) == 16
    assert body_digest(b"x") != body_digest(b"y")
    int(body_digest(b"x"), 16)


@pytest.mark.parametrize("length", [1, 2, MAX_KEY_LENGTH])
def test_keys_of_1_to_255_characters_pass(length: int) -> None:
    assert check_idempotency_key("k" * length) == "k" * length


@pytest.mark.parametrize("length", [0, MAX_KEY_LENGTH + 1, 4 * MAX_KEY_LENGTH])
def test_other_keys_are_refused_naming_the_header(length: int) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_idempotency_key("k" * length)
    assert refused.value.param == "Idempotency-Key"
    assert "1 to 255 characters" in str(refused.value)
