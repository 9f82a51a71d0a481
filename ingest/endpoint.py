"""What the hot path's endpoints share: the raw-ASGI request cycle, in order.

``HotPath`` is the base of the usage endpoint (``ingest.usage``) and the meter-event
endpoint (``ingest.meter_events``). Per request it:

1. refuses the request (429 ``too_many_requests_in_flight``) when the process already has
   ``max_inflight_requests`` requests in flight — one bound for both endpoints (``InFlight``);
2. reads the key, resolves it to a tenant (cached: ``domain.accounts``), checks a
   restricted key's permissions (403), admits it under its usage rate limit (429);
3. reads the body within ``max_body_bytes`` (413) and parses it (400 naming what to fix);
4. hands the request to the endpoint's ``_accept``, and answers 200 with what it returns
   (``Idempotent-Replayed: true`` for a replay), or the error a step raised; a bug is
   logged and answered 500 in the API's error shape.

It also keeps what both endpoints need around ``_accept``: lease tokens for idempotency
claims, the release of a failed request's claims and the settlement of an accepted one's,
and the short "Kafka is down" backoff after a failed publish.

Everything here is bound or looked up once per endpoint, not per request: the usage
endpoint pays for the sharing with nothing.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg
import orjson
from pydantic import ValidationError
from redis.exceptions import RedisError

from domain.idempotency import RecordKey, check_idempotency_key
from domain.permissions import check as check_permission
from domain.services import Services
from domain.tenant import Tenant
from infra.asgi import Receive, Scope, Send, read_body, send_error, send_json
from infra.errors import (
    DependencyUnavailable,
    InvalidRequest,
    RateLimited,
    VinrError,
    refused_value,
)
from infra.telemetry import M

__all__ = ["HotPath", "InFlight"]

log = logging.getLogger(__name__)

KAFKA_BACKOFF_S = 1.0  # after a failed publish, answer 503 at once for this long
_INTERNAL = orjson.dumps(
    {
        "error": {
            "type": "api_error",
            "code": "internal_error",
            "param": None,
            "message": "an internal error occurred; retrying with the same Idempotency-Key is safe",
        }
    }
)

R = TypeVar("R")  # an endpoint's parsed request


class _Rejections:
    """Pre-resolved counter children: ``labels()`` per request costs more than the work."""

    def __init__(self) -> None:
        self._rejected: dict[str, Any] = {}

    def rejected(self, code: str) -> None:
        child = self._rejected.get(code)
        if child is None:
            child = self._rejected[code] = M.ingest_rejected.labels(code)
        child.inc()


class InFlight:
    """The process's count of hot-path requests in flight, shared by its endpoints, and the
    bound on it (``max_inflight_requests``), exported as gauges."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.limit = limit
        M.ingest_inflight.set_function(lambda: self.count)
        M.ingest_inflight_limit.set(limit)


class HotPath(ABC, Generic[R]):
    """A raw-ASGI hot-path endpoint; subclasses set the parsers and write ``_accept``.

    ``routes``: the metric route labels of the single and the batch route; ``what``: how a
    log line names the endpoint's requests."""

    _parse_single: Callable[[bytes], R]
    _parse_batch: Callable[[bytes], R]
    _refusal: Callable[[ValidationError, bool], InvalidRequest]

    def __init__(
        self,
        services: Services,
        inflight: InFlight | None,
        *,
        routes: tuple[str, str],
        what: str,
    ) -> None:
        self._s = services
        self._cfg = services.settings
        self._gate = inflight or InFlight(services.settings.max_inflight_requests)
        self._routes = routes
        self._what = what
        self._rejections = _Rejections()
        self._limiter = services.limiter.usage
        self._admit = self._limiter.take  # bound once: the hot path's one call for the limit
        self._kafka_down_until = 0.0
        # Lease tokens: unique per request (a random process prefix and a counter) — they
        # only tell this request's pending keys from another's; no secret, no syscall.
        self._token_prefix = secrets.token_hex(6)
        self._tokens = itertools.count()

    @property
    def inflight(self) -> InFlight:
        """The in-flight count, for another endpoint of the process to share."""
        return self._gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch = scope["path"].endswith("/batch")
        route = self._routes[batch]
        started = time.perf_counter()
        status = 200
        gate = self._gate
        if gate.count >= gate.limit:
            exc: VinrError = RateLimited(
                f"this API process is at its limit of {gate.limit} requests in"
                " flight; retry shortly",
                code="too_many_requests_in_flight",
            )
            self._rejections.rejected(exc.code)
            M.usage.request(route, exc.status, time.perf_counter() - started)
            await send_error(send, exc)
            return
        gate.count += 1
        try:
            body, replayed = await self._handle(scope, receive, batch)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            if replayed:
                headers.append((b"idempotent-replayed", b"true"))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except VinrError as exc:
            status = exc.status
            self._rejections.rejected(exc.code)
            await send_error(send, exc)
        except Exception:
            # A bug, not bad input: logged with its traceback, answered in the API's shape.
            log.exception("%s request failed", self._what)
            status = 500
            await send_json(send, 500, _INTERNAL)
        finally:
            gate.count -= 1
            M.usage.request(route, status, time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, batch: bool) -> tuple[bytes, bool]:
        authorization = idem_key = None
        for name, value in scope["headers"]:  # both headers in one pass
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"idempotency-key" and idem_key is None:
                idem_key = value.decode("latin-1")
        auth = self._s.auth
        tenant = auth.cached(authorization)
        if tenant is None:
            try:
                tenant = await auth.authenticate(authorization)
            except asyncpg.DataError as exc:
                raise refused_value(exc) from exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise DependencyUnavailable("postgres", str(exc)) from exc
        if tenant.restricted:
            check_permission(tenant, "POST", scope["path"])
        if not self._admit(tenant.key_id):
            await self._limiter.acquire(tenant)
        message = await receive()
        body = message.get("body", b"")
        if (
            message["type"] != "http.request"
            or message.get("more_body", False)
            or len(body) > self._cfg.max_body_bytes
        ):
            body = await read_body(receive, self._cfg.max_body_bytes, message)
        try:
            req = self._parse_batch(body) if batch else self._parse_single(body)
        except ValidationError as exc:
            raise self._refusal(exc, batch) from None
        if idem_key is not None:
            check_idempotency_key(idem_key)
        return await self._accept(tenant, req, idem_key)

    @abstractmethod
    async def _accept(self, tenant: Tenant, req: R, idem_key: str | None) -> tuple[bytes, bool]:
        """(the answer, whether it replays an earlier one). Raises VinrError to refuse."""

    def _check_kafka(self) -> None:
        """503 now, before claiming anything, when Kafka is known to be away."""
        if time.monotonic() < self._kafka_down_until:
            raise DependencyUnavailable("kafka", "recent publish failures")
        _ = self._s.producer  # raises when not connected

    def _kafka_failed(self, exc: BaseException) -> DependencyUnavailable:
        """The 503 for a failed publish; requests in the next second are answered 503 at
        once instead of each waiting out the publish deadline."""
        self._kafka_down_until = time.monotonic() + KAFKA_BACKOFF_S
        return DependencyUnavailable("kafka", str(exc) or type(exc).__name__)

    def _new_token(self) -> str:
        return f"{self._token_prefix}{next(self._tokens):x}"

    async def _release(
        self,
        request_key: str | None,
        digest: str,
        token: str,
        records: Sequence[RecordKey],
        ref: bytes = b"",
    ) -> None:
        """Free what a failed request claimed, before it is answered: the client's retry
        must find the key free, not pending. ``ref``: the claim's (``Claim.ref``)."""
        if request_key is None and not records:
            return
        try:
            await self._s.idempotency.release_claim(request_key, digest, token, records, ref)
        except (RedisError, OSError):
            log.warning("could not release idempotency keys; their lease will expire")

    def _complete(
        self,
        request_key: str | None,
        digest: str,
        token: str,
        stored: bytes,
        records: Sequence[tuple[RecordKey, str]],
        created: int,
        ref: bytes = b"",
    ) -> None:
        """Mark the keys done, without waiting: Kafka has the request, it is accepted. The
        settlement is queued before the answer is written, ahead of any claim a retry could
        make; if it fails, the keys stay pending until their lease runs out and a retry then
        republishes the same ids, which the aggregator's ledger drops. ``created``: the time
        the keys' entries live from."""
        if request_key is None and not records:
            return
        self._s.idempotency.complete_claim(
            request_key, digest, token, stored=stored, records=records, created=created, ref=ref
        )
