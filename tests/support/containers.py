"""Which real services the suite runs against: the machine's own, or containers.

``VINR_TESTCONTAINERS``:

- unset or ``0`` — the local Postgres and Redis on 127.0.0.1 and, unless
  ``VINR_KAFKA_BOOTSTRAP`` names a Kafka, the dev broker;
- ``1`` — containers started with testcontainers for the session: PostgreSQL, Redis and a
  real Kafka broker in KRaft mode. A Docker engine is required: without one the session
  stops with a message saying so, rather than silently testing something else;
- ``auto`` — containers when a Docker engine answers, the local services otherwise.

Either way the suite reaches its services through the same variables
(``VINR_TEST_DATABASE_ROOT``, ``VINR_REDIS_URL``, ``VINR_KAFKA_BOOTSTRAP``), which the
container path sets for this process and every role subprocess it starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KAFKA_IMAGE",
    "POSTGRES_IMAGE",
    "REDIS_IMAGE",
    "ServicePath",
    "choose_path",
    "docker_engine_answers",
    "start_containers",
]

POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


@dataclass(frozen=True)
class ServicePath:
    containers: bool
    reason: str


def choose_path(env: Mapping[str, str], docker_answers: Callable[[], bool]) -> ServicePath:
    """Containers or local services, from ``VINR_TESTCONTAINERS``; asks Docker only when
    the answer depends on it.

    Raises:
        RuntimeError: containers were required (``1``) and no Docker engine answers, or
            the value is not one of ``0``, ``1``, ``auto``.
    """
    wanted = env.get("VINR_TESTCONTAINERS", "0").strip().lower()
    if wanted in ("", "0"):
        return ServicePath(False, "local services (VINR_TESTCONTAINERS unset or 0)")
    if wanted not in ("1", "auto"):
        raise RuntimeError(f"VINR_TESTCONTAINERS must be 0, 1 or auto, got {wanted!r}")
    if docker_answers():
        return ServicePath(True, f"testcontainers (VINR_TESTCONTAINERS={wanted})")
    if wanted == "1":
        raise RuntimeError(
            "VINR_TESTCONTAINERS=1 needs a Docker engine and none answers; start Docker, or"
            " unset VINR_TESTCONTAINERS to test against the local Postgres, Redis and the"
            " dev broker"
        )
    return ServicePath(False, "local services (VINR_TESTCONTAINERS=auto, no Docker engine)")


def docker_engine_answers() -> bool:
    try:
        import docker  # testcontainers' own client

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, no permission, no engine: all mean "no Docker"
        return False


def start_containers(stack: ExitStack) -> dict[str, str]:
    """Start PostgreSQL, Redis and Kafka (KRaft) for the session, stopped when ``stack``
    closes; the environment that points the suite at them."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer

    postgres: Any = stack.enter_context(
        PostgresContainer(POSTGRES_IMAGE, username="vinr", password="vinr", dbname="postgres")
    )
    redis: Any = stack.enter_context(RedisContainer(REDIS_IMAGE))
    kafka: Any = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
    pg_host = postgres.get_container_host_ip()
    pg_port = postgres.get_exposed_port(5432)
    redis_host = redis.get_container_host_ip()
    redis_port = redis.get_exposed_port(6379)
    return {
        "VINR_TEST_DATABASE_ROOT": f"postgresql://vinr:vinr@{pg_host}:{pg_port}",
        "VINR_REDIS_URL": f"redis://{redis_host}:{redis_port}/0",
        "VINR_KAFKA_BOOTSTRAP": kafka.get_bootstrap_server(),
    }


def apply(env: Mapping[str, str]) -> None:
    os.environ.update(env)
