"""Every log line is redacted on its way out: API keys, webhook secrets and the passwords of
URLs and DSNs are masked whatever logged them — a message, its arguments, an exception, a
JSON line's extra fields, a Python warning, an uncaught exception."""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.ids import new_id, new_secret
from infra.telemetry import _QUIET, redact, setup_logging

TOKEN = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    min_size=1,
    max_size=64,
)
PASSWORD = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/"),
    min_size=1,
    max_size=40,
)


@given(prefix=st.sampled_from(["sk_test", "sk_live", "rk_test", "rk_live", "whsec"]), body=TOKEN)
def test_keys_and_webhook_secrets_are_masked(prefix: str, body: str) -> None:
    secret = f"{prefix}_{body}"
    for text in (secret, f"Bearer {secret}", f"key='{secret}'.", f'{{"key":"{secret}"}}'):
        masked = redact(text)
        assert secret not in masked
        assert f"{prefix}_[REDACTED]" in masked


@given(
    scheme=st.sampled_from(["postgresql", "postgres", "redis", "rediss", "https", "amqp"]),
    user=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=12),
    password=PASSWORD,
)
def test_url_passwords_are_masked(scheme: str, user: str, password: str) -> None:
    url = f"{scheme}://{user}:{password}@db.internal:5432/vinr"
    masked = redact(f"cannot connect to {url} (refused)")
    assert (
        masked == f"cannot connect to {scheme}://{user}:[REDACTED]@db.internal:5432/vinr (refused)"
    )


def test_password_parameters_are_masked() -> None:
    assert (
        redact("postgresql://127.0.0.1/vinr?user=root&password=s3cret&sslmode=require")
        == "postgresql://127.0.0.1/vinr?user=root&password=[REDACTED]&sslmode=require"
    )
    assert redact("host=db PASSWORD=s3cret port=5432") == "host=db PASSWORD=[REDACTED] port=5432"


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://root@127.0.0.1:5432/vinr",
        "redis://127.0.0.1:6379/0",
        "http://127.0.0.1:8080/v1/usage_records?limit=10",
        "invalid API key provided: sk_test_…a1B2",  # the hint of a key is no secret
        "key_0123456789abcdef01234567 for acct_x: mask_test_value",
        new_id("si") + " " + new_id("prod") + " " + new_id("we") + " " + new_id("evt"),
        "sk_testing is not a key; neither is whsec alone",
    ],
)
def test_what_is_not_secret_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def logging_state() -> Iterator[None]:
    """setup_logging changes process-wide state: put it all back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in _QUIET}
    hooks = sys.excepthook, threading.excepthook
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in quiet.items():
            logging.getLogger(name).setLevel(value)
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)


def _emit_everything(key: str, dsn: str) -> None:
    log = logging.getLogger("vinr.test")
    log.debug("authenticated with %s", key)
    log.info("connected", extra={"ctx": {"dsn": dsn, "authorization": f"Bearer {key}"}})
    try:
        raise ConnectionError(f"could not connect to {dsn}")
    except ConnectionError:
        log.exception("connection failed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated option in {dsn}", UserWarning, stacklevel=1)
    try:
        raise RuntimeError(f"crashed holding {key}")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    logging.getLogger("httpx").info("HTTP Request: POST https://hooks.example/%s", key)


@pytest.mark.parametrize("json_logs", [False, True])
def test_every_log_line_is_redacted(
    logging_state: None, capsys: pytest.CaptureFixture[str], json_logs: bool
) -> None:
    key, dsn = new_secret("sk_live"), "postgresql://vinr:pgS3cretPassw0rd@db:5432/vinr"
    setup_logging("DEBUG", json_logs)
    _emit_everything(key, dsn)
    out = capsys.readouterr().err
    assert key not in out and key.removeprefix("sk_live_") not in out
    assert "pgS3cretPassw0rd" not in out
    lines = out.splitlines()
    assert "HTTP Request" not in out, "httpx request lines are held back (URLs may carry tokens)"
    messages = [json.loads(line)["msg"] for line in lines if line.startswith("{")]
    if json_logs:
        assert len(messages) == len([line for line in lines if line.startswith("{")])
        assert "authenticated with sk_live_[REDACTED]" in messages
        assert "uncaught exception" in messages
        assert any("deprecated option in postgresql://vinr:[REDACTED]@db" in m for m in messages)
        assert "postgresql://vinr:[REDACTED]@db:5432/vinr" in out  # the ctx field and the exc
    else:
        assert "DEBUG vinr.test: authenticated with sk_live_[REDACTED]" in out
        assert "ConnectionError: could not connect to postgresql://vinr:[REDACTED]@db" in out
        assert "CRITICAL vinr: uncaught exception" in out
        assert "RuntimeError: crashed holding sk_live_[REDACTED]" in out
