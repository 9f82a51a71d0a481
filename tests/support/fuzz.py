"""Shared pieces of the fuzzing tests (``tests/fuzz/``): the hypothesis profile they run
under, the fuzzed API instance, and the check every answer to a hostile request passes."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from control.routing import ApiError
from domain.idempotency import MAX_KEY_LENGTH
from infra.errors import error_types
from tests.support.server import ThreadedApi

__all__ = ["FUZZ", "LATIN1", "Target", "check_error", "hostile_headers"]

# The fuzzing profile: derandomized (the same examples on every run, so CI reproduces what
# a developer saw), no example database, no deadline (a request's time is the server's).
settings.register_profile(
    "vinr-fuzz",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
FUZZ = settings.get_profile("vinr-fuzz")

_TYPES = error_types()


@dataclass(frozen=True)
class Target:
    """The fuzzed API: its thread, URL, a sandbox key of its account, and the ids of the
    objects seeded in that account (kind → id)."""

    api: ThreadedApi
    url: str
    key: str
    objects: dict[str, str]


def check_error(response: httpx.Response, sent: object = None) -> ApiError:
    """``response`` is a documented refusal: a 4xx (never a server error), JSON in the
    ``ApiError`` shape, with a ``type`` its status comes with and a message."""
    context = (repr(sent)[:300], response.status_code, response.text[:500])
    assert 400 <= response.status_code < 500, context
    assert response.headers["content-type"].startswith("application/json"), context
    error = ApiError.model_validate_json(response.content)
    assert error.error.type in _TYPES[response.status_code], context
    assert len(error.error.message) > 10, context
    return error


# What an HTTP header value can carry: any byte but control characters, as latin-1 text.
LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")


def hostile_headers() -> st.SearchStrategy[dict[str, bytes]]:
    """A content type, right or wrong, and maybe an Idempotency-Key of any bytes a header
    can carry (invalid UTF-8 among them), empty or too long."""
    idempotency = (
        st.one_of(
            st.text(LATIN1, min_size=1, max_size=MAX_KEY_LENGTH + 50),
            st.sampled_from(["", "k" * (MAX_KEY_LENGTH + 1)]),
        )
        .filter(lambda key: key.strip() == key)  # HTTP trims a value's outer spaces
        .map(lambda key: key.encode("latin-1"))
    )
    return st.fixed_dictionaries(
        {"Content-Type": st.sampled_from([b"application/json", b"text/plain", b"\xff"])},
        optional={"Idempotency-Key": idempotency},
    )
