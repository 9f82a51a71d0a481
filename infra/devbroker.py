"""The dev Kafka broker: librdkafka's built-in mock cluster, via the confluent-kafka wheel.

In-memory and not durable: for development and tests only, never a production default.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = ["DevBroker", "DevBrokerUnavailable"]

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"replaced with (\d+\.\d+\.\d+\.\d+:\d+)")


class _AddressCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.address: str | None = None
        self.found = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        match = _ADDRESS.search(record.getMessage())
        if match and not self.found.is_set():
            self.address = match.group(1)
            self.found.set()


class DevBrokerUnavailable(RuntimeError):
    """The dev broker cannot start here; the message says what to install or configure."""


class DevBroker:
    """Hosts a one-broker mock cluster in this process; ``bootstrap`` is its address."""

    def __init__(self) -> None:
        self._producer: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.bootstrap: str | None = None

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the mock cluster; its bootstrap address.

        Raises:
            DevBrokerUnavailable: confluent-kafka (the ``devbroker`` extra) is not installed.
        """
        try:
            import confluent_kafka
        except ImportError:
            raise DevBrokerUnavailable(
                "the dev broker needs confluent-kafka, which a production install leaves out:"
                " pip install 'vinr[devbroker]', or point VINR_KAFKA_BOOTSTRAP at a Kafka"
            ) from None

        catcher = _AddressCatcher()
        mock_log = logging.getLogger("infra.devbroker.librdkafka")
        mock_log.setLevel(logging.DEBUG)
        mock_log.propagate = False
        mock_log.addHandler(catcher)
        self._producer = confluent_kafka.Producer(
            {"test.mock.num.brokers": 1, "debug": "mock", "bootstrap.servers": "mock:9092"},
            logger=mock_log,
        )
        self._thread = threading.Thread(target=self._serve, name="devbroker", daemon=True)
        self._thread.start()
        if not catcher.found.wait(timeout_s) or catcher.address is None:
            raise RuntimeError("the dev broker did not report its address")
        mock_log.removeHandler(catcher)
        mock_log.setLevel(logging.WARNING)
        self.bootstrap = catcher.address
        log.warning(
            "dev Kafka broker at %s (in-memory, not durable: dev and tests only)", self.bootstrap
        )
        return self.bootstrap

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.2)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout=5)
        self._thread = None
        self._producer = None
