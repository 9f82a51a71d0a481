"""HTTP for the Dashboard: the security headers every answer carries, cookies, the
same-origin check of every POST, and bounded form bodies.

Every page is ``no-store`` (it shows account data), may not be framed, and runs under a
Content-Security-Policy that allows only the Dashboard's own stylesheet and script — no
inline script or style anywhere, so injected markup cannot run.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlsplit

from infra.asgi import Receive, Scope, Send, header, read_body
from infra.errors import InvalidRequest, PermissionDenied

__all__ = [
    "CSP",
    "MAX_FORM_BYTES",
    "Answer",
    "check_origin",
    "cookie",
    "cookies",
    "expired_cookie",
    "read_form",
]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
MAX_FORM_BYTES = 16 * 1024
_MAX_FIELDS = 20
PREFIX = "/dashboard"


class Answer:
    """A response: status, body, content type and extra headers; sent with the security
    headers and, unless ``cache`` says otherwise, ``Cache-Control: no-store``."""

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "text/html; charset=utf-8",
        headers: list[tuple[str, str]] | None = None,
        cache: str = "no-store",
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []
        self.cache = cache

    @classmethod
    def redirect(cls, location: str, *, headers: list[tuple[str, str]] | None = None) -> Answer:
        """303 See Other: after a POST the browser GETs ``location`` (no resubmission)."""
        return cls(303, headers=[("location", location), *(headers or [])])

    async def send(self, send: Send, *, head: bool = False) -> None:
        raw = [
            (b"content-type", self.content_type.encode()),
            (b"content-length", str(len(self.body)).encode()),
            (b"cache-control", self.cache.encode()),
            *_SECURITY_HEADERS,
        ]
        raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers)
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if head else self.body})


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies (a malformed Cookie header counts as none)."""
    raw = header(scope, b"cookie")
    if not raw:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # http.cookies raises CookieError and others on garbage
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def cookie(scope: Scope, name: str, value: str, *, max_age: int | None = None) -> tuple[str, str]:
    """A Set-Cookie header for the Dashboard's paths: HttpOnly, SameSite=Strict, and Secure
    when the request came over HTTPS."""
    parts = [f"{name}={value}", f"Path={PREFIX}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if scope.get("scheme") == "https":
        parts.append("Secure")
    return ("set-cookie", "; ".join(parts))


def expired_cookie(scope: Scope, name: str) -> tuple[str, str]:
    return cookie(scope, name, "", max_age=0)


def check_origin(scope: Scope) -> None:
    """Refuse (403) a POST another site's page sent: its ``Origin`` (or, without one, its
    ``Referer``) must name this host. The scheme is not compared, so the check holds behind
    a proxy that ends TLS; the session's CSRF token is checked besides."""
    host = header(scope, b"host")
    origin = header(scope, b"origin")
    source = origin if origin is not None else header(scope, b"referer")
    if source is None:
        return  # not a browser's cross-site request: browsers send Origin with every POST
    if source == "null" or host is None or urlsplit(source).netloc.lower() != host.lower():
        raise PermissionDenied(
            "this form was sent from another site; open the Dashboard and try again",
            code="cross_site_request",
        )


async def read_form(scope: Scope, receive: Receive) -> Mapping[str, str]:
    """A URL-encoded form body: each field once (the first value counts), UTF-8."""
    content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    body = await read_body(receive, MAX_FORM_BYTES)
    if body and content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest(
            "send the form as application/x-www-form-urlencoded", code="unsupported_media_type"
        )
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form is not valid UTF-8 form data", code="form_invalid") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if "\x00" in value or "\x00" in name:
            raise InvalidRequest(f"the field {name[:40]!r} contains a NUL character")
        form.setdefault(name, value)
    return form
