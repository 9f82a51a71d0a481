"""The dev broker is an extra: without confluent-kafka it says what to install instead of
failing on an import deep inside ``vinr up``."""

from __future__ import annotations

import sys

import pytest

from infra.devbroker import DevBroker, DevBrokerUnavailable


def test_without_confluent_kafka_the_dev_broker_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import raises ImportError
    with pytest.raises(DevBrokerUnavailable, match=r"vinr\[devbroker\].*VINR_KAFKA_BOOTSTRAP"):
        DevBroker().start()


def test_the_dev_broker_reports_a_loopback_address() -> None:
    broker = DevBroker()
    try:
        address = broker.start()
        assert address.startswith("127.0.0.1:")
    finally:
        broker.stop()
