"""What a Dashboard page handler gets (``Req``) and how it answers (``render``): Jinja2
templates from the package, autoescaped, with the Dashboard's filters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from dashboard.format import FILTERS
from dashboard.http import Answer
from dashboard.sessions import Session
from domain.services import Services
from domain.tenant import Tenant
from infra.asgi import Scope

__all__ = ["PAGE_SIZE", "Req", "render"]

PAGE_SIZE = 25

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(FILTERS)


@dataclass
class Req:
    """One request as a handler sees it: path parameters, query, the form of a POST
    (already checked for its CSRF token), and who is logged in."""

    scope: Scope
    services: Services
    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    session: Session | None = None
    tenant: Tenant | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def t(self) -> Tenant:
        if self.tenant is None:  # routes that need a tenant are given one
            raise RuntimeError("this route needs a logged-in session")
        return self.tenant

    @property
    def path(self) -> str:
        return str(self.scope["path"])


def render(
    req: Req, template: str, *, status: int = 200, section: str = "", **values: Any
) -> Answer:
    """A page (or fragment) of the Dashboard; the layout gets the session's mode, key and
    CSRF token. ``section``: the path under ``/dashboard/`` its navigation marks current."""
    body = _ENV.get_template(template).render(
        tenant=req.tenant,
        session=req.session,
        csrf=req.session.csrf if req.session else "",
        section=section,
        **values,
    )
    return Answer(status, body.encode(), headers=list(req.headers))
