"""A refused configuration names the setting and what is wrong with it, and never repeats a
secret setting's value (a DSN and its password)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.settings import METER_CACHE_STALE_S, METER_EPOCH_POLL_S, Settings, describe_errors
from vinr.cli import main

DSN = "postgresql://vinr:pgS3cretPassw0rd@db:5432/vinr"
REDIS = "redis://default:rdS3cretPassw0rd@cache:6379/0"


def _refusal(**values: object) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    return describe_errors(refused.value)


def test_a_rule_over_several_settings_does_not_quote_the_input() -> None:
    text = _refusal(database_url=DSN, redis_url=REDIS, close_settle_s=1)
    assert text.startswith("settings: VINR_CLOSE_SETTLE_S (1.0) must exceed VINR_PUBLISH_TIMEOUT_S")
    assert "S3cretPassw0rd" not in text and "db:5432" not in text


def test_a_bad_value_is_named_and_quoted_unless_secret() -> None:
    # An unknown setting may be a misspelt secret one: it is named, its value is not shown.
    text = _refusal(database_url=DSN, api_port="eighty", log_level="LOUD", database_urls=DSN)
    lines = text.splitlines()
    assert "VINR_API_PORT: Input should be a valid integer, unable to parse string as an" in text
    assert "(got 'eighty')" in text
    assert (
        "VINR_LOG_LEVEL: VINR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'" in lines
    )
    assert "VINR_DATABASE_URLS: Extra inputs are not permitted" in lines
    assert "S3cretPassw0rd" not in text


def test_a_secret_setting_of_the_wrong_type_is_named_without_its_value() -> None:
    text = _refusal(database_url=12345678)
    assert text == "VINR_DATABASE_URL: Input should be a valid string"


def test_the_command_says_why_it_will_not_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VINR_DATABASE_URL", DSN)
    monkeypatch.setenv("VINR_REDIS_URL", REDIS)
    monkeypatch.setenv("VINR_CLOSE_SETTLE_S", "0.5")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vinr: invalid configuration:\nsettings: VINR_CLOSE_SETTLE_S (0.5)")
    assert "S3cretPassw0rd" not in err


def test_the_settle_time_outlasts_the_publish_deadline_and_the_meter_cache_lag() -> None:
    # A meter event may be checked against a closing boundary up to METER_CACHE_STALE_S
    # old, then take up to the publish deadline to reach Kafka.
    assert METER_CACHE_STALE_S == 2 * METER_EPOCH_POLL_S
    text = _refusal(publish_timeout_s=5.0, close_settle_s=5.0 + METER_CACHE_STALE_S)
    assert text.startswith("settings: VINR_CLOSE_SETTLE_S (5.5) must exceed VINR_PUBLISH_TIMEOUT_S")
    assert "plus 0.5 s" in text and "meter event" in text and "above 5.5" in text
    accepted = Settings(publish_timeout_s=5.0, close_settle_s=5.0 + METER_CACHE_STALE_S + 0.01)
    assert accepted.close_settle_s == 5.51
    assert Settings().close_settle_s > Settings().publish_timeout_s + METER_CACHE_STALE_S
