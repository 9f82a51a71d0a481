"""Transport: ``Vinr`` (sync) and ``AsyncVinr`` (async) over httpx, with retries.

Every POST carries an ``Idempotency-Key`` — the caller's, or a uuid4 made once per logical
call — and every retry of that call sends the same key and the same bytes, so the API
replays the first answer instead of acting twice. Retried: transport errors and HTTP
409/429/500/502/503/504, up to ``max_retries`` times, sleeping ``Retry-After`` seconds when
the API sends it, else exponential backoff with full jitter (0.25 s doubling, capped at 8 s).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import httpx

from ._errors import APIConnectionError, APIError, AuthenticationError, error_from_response
from ._object import VinrObject
from ._resources import ResourceNamespaces
from .webhooks import Webhooks

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "DEFAULT_API_BASE",
    "MAX_RETRY_AFTER_S",
    "RETRY_STATUSES",
    "VERSION",
    "AsyncVinr",
    "Vinr",
]

VERSION = "0.1.0"
DEFAULT_API_BASE = "http://127.0.0.1:8080"
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
MAX_RETRY_AFTER_S = 60.0

Query = Mapping[str, Any]
Body = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Settings:
    secret_key: str
    api_base: str
    max_retries: int
    timeout_s: float

    def __repr__(self) -> str:
        return (
            f"api_base={self.api_base!r}, secret_key={_mask(self.secret_key)!r}, "
            f"max_retries={self.max_retries}, timeout_s={self.timeout_s}"
        )


def _mask(secret: str) -> str:
    prefix = (
        secret[:8] if secret.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")) else ""
    )
    return f"{prefix}***"


def _resolve(
    secret_key: str | None, api_base: str | None, max_retries: int, timeout_s: float
) -> _Settings:
    key = secret_key if secret_key is not None else os.environ.get("VINR_SECRET_KEY")
    if not key:
        raise AuthenticationError(
            "No secret key provided: pass Vinr(secret_key='sk_test_...') "
            "or set the VINR_SECRET_KEY environment variable"
        )
    base = api_base or os.environ.get("VINR_API_BASE") or DEFAULT_API_BASE
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"api_base must be an http(s) URL, got {base!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return _Settings(key, base.rstrip("/"), max_retries, float(timeout_s))


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    params: httpx.QueryParams
    content: bytes | None
    headers: dict[str, str]


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _prepare(
    method: str, path: str, query: Query | None, body: Body | None, idempotency_key: str | None
) -> _Request:
    params: list[tuple[str, str]] = []
    for name, value in (query or {}).items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        params.extend((name, _query_value(v)) for v in values)
    headers: dict[str, str] = {}
    content: bytes | None = None
    if method == "POST":
        headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
    if body is not None or method == "POST":
        headers["Content-Type"] = "application/json"
        content = json.dumps(
            dict(body or {}),
            default=_json_default,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode()
    return _Request(method, path, httpx.QueryParams(tuple(params)), content, headers)


def _json_default(value: Any) -> Any:
    """Decimals go out as strings, the API's form for ``unitAmountDecimal`` and friends."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, MAX_RETRY_AFTER_S)


def _delay_s(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before retry number ``attempt + 1``."""
    if response is not None:
        after = _retry_after_s(response.headers)
        if after is not None:
            return after
    return random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def _decode_json(response: httpx.Response) -> Any:
    if not response.content:
        return {}
    try:
        return json.loads(response.content)
    except ValueError:
        return response.text


def _result(response: httpx.Response) -> VinrObject:
    """The response's object, or the matching ``VinrError`` raised."""
    body = _decode_json(response)
    if not 200 <= response.status_code < 300:
        raise error_from_response(response.status_code, response.headers, body)
    if not isinstance(body, dict):
        raise APIError(
            "the API answered with something other than a JSON object",
            http_status=response.status_code,
            headers=response.headers,
            body=body,
        )
    return VinrObject(body)


def _is_retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def _connection_error(exc: httpx.HTTPError, req: _Request) -> APIConnectionError:
    return APIConnectionError(f"could not reach the vinr API for {req.method} {req.path}: {exc!r}")


class _Base:
    """Settings, headers and ``webhooks`` shared by both clients."""

    webhooks: Webhooks

    def __init__(
        self, secret_key: str | None, api_base: str | None, max_retries: int, timeout_s: float
    ) -> None:
        self._settings = _resolve(secret_key, api_base, max_retries, timeout_s)
        self.webhooks = Webhooks()

    @property
    def api_base(self) -> str:
        return self._settings.api_base

    @property
    def max_retries(self) -> int:
        return self._settings.max_retries

    def _default_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._settings.secret_key}",
            "Accept": "application/json",
            "User-Agent": f"vinr-python/{VERSION}",
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._settings!r})"


class Vinr(_Base, ResourceNamespaces[VinrObject]):
    """Synchronous client.

    Args:
        secret_key: ``sk_test_…``/``sk_live_…``; defaults to ``VINR_SECRET_KEY``.
        api_base: defaults to ``VINR_API_BASE``, then ``http://127.0.0.1:8080``.
        max_retries: retries after the first attempt (0 disables retrying).
        timeout_s: per-attempt timeout.
        transport: an ``httpx`` transport (e.g. ``httpx.MockTransport`` in tests).
        sleep: how to wait between retries (``time.sleep``); injectable for tests.

    Raises:
        AuthenticationError: no key passed and none in the environment.
        ValueError: a malformed ``api_base``, ``max_retries`` or ``timeout_s``.
    """

    def __init__(
        self,
        secret_key: str | None = None,
        *,
        api_base: str | None = None,
        max_retries: int = 2,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(secret_key, api_base, max_retries, timeout_s)
        self._sleep = sleep or time.sleep
        self._http = httpx.Client(
            base_url=self._settings.api_base,
            headers=self._default_headers(),
            timeout=self._settings.timeout_s,
            transport=transport,
        )
        self._attach_resources(self)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Body | None = None,
        idempotency_key: str | None = None,
    ) -> VinrObject:
        """Send one logical call (with its retries) and return the response object.

        Raises:
            VinrError: the subclass matching the API's error, ``APIConnectionError`` when
                no answer came back, once the retries are spent.
        """
        req = _prepare(method, path, query, body, idempotency_key)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(
                    req.method,
                    req.path,
                    params=req.params,
                    content=req.content,
                    headers=req.headers,
                )
            except httpx.TransportError as exc:
                if attempt >= self._settings.max_retries:
                    raise _connection_error(exc, req) from exc
            except httpx.HTTPError as exc:
                raise _connection_error(exc, req) from exc
            else:
                if not _is_retryable(response) or attempt >= self._settings.max_retries:
                    return _result(response)
            self._sleep(_delay_s(attempt, response))
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncVinr(_Base, ResourceNamespaces[Coroutine[Any, Any, VinrObject]]):
    """Asynchronous client; every resource method is a coroutine.

    Same arguments as ``Vinr``; ``transport`` is an ``httpx.AsyncBaseTransport`` and
    ``sleep`` an async function (``asyncio.sleep`` by default).
    """

    def __init__(
        self,
        secret_key: str | None = None,
        *,
        api_base: str | None = None,
        max_retries: int = 2,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(secret_key, api_base, max_retries, timeout_s)
        self._sleep = sleep or asyncio.sleep
        self._http = httpx.AsyncClient(
            base_url=self._settings.api_base,
            headers=self._default_headers(),
            timeout=self._settings.timeout_s,
            transport=transport,
        )
        self._attach_resources(self)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Body | None = None,
        idempotency_key: str | None = None,
    ) -> VinrObject:
        """Async twin of ``Vinr.request``."""
        req = _prepare(method, path, query, body, idempotency_key)
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(
                    req.method,
                    req.path,
                    params=req.params,
                    content=req.content,
                    headers=req.headers,
                )
            except httpx.TransportError as exc:
                if attempt >= self._settings.max_retries:
                    raise _connection_error(exc, req) from exc
            except httpx.HTTPError as exc:
                raise _connection_error(exc, req) from exc
            else:
                if not _is_retryable(response) or attempt >= self._settings.max_retries:
                    return _result(response)
            await self._sleep(_delay_s(attempt, response))
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def close(self) -> None:
        """Alias of ``aclose``."""
        await self.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
