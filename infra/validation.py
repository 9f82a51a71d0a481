"""Refusals of request bodies, built from pydantic's error lists: the first problem named by
its camelCase path (``records[3].quantity``), or one 400 naming every bad parameter. Used by
the usage hot path and the control plane alike, so every endpoint words refusals the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.errors import InvalidRequest

__all__ = ["combined_error", "problem", "validation_error"]

_NAMED_REASONS = 10  # a multi-error message explains this many problems in full


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problem(error: Any) -> tuple[str, str, str]:
    """(param, code, message) for one pydantic error."""
    loc = tuple(p for p in error["loc"] if p not in ("body", "query", "path", "header"))
    param = _param(loc)
    kind = error["type"]
    if not param and kind == "missing":
        return param, "parameter_missing", "a request body is required: a JSON object"
    if not param and isinstance(error.get("input"), bytes | bytearray):
        return (
            param,
            "parameter_invalid",
            ("the request body must be JSON, sent with Content-Type: application/json"),
        )
    if not param and kind in ("model_type", "model_attributes_type", "dict_type"):
        return param, "parameter_invalid", "the request body must be a JSON object"
    if kind == "extra_forbidden":
        return param, "parameter_unknown", f"received unknown parameter: {param}"
    if kind == "missing":
        return param, "parameter_missing", f"missing required parameter: {param}"
    return param, "parameter_invalid", f"invalid {param or 'body'}: {error['msg']}"


def validation_error(errors: Sequence[Any]) -> InvalidRequest:
    """The first problem of a pydantic error list, named by its camelCase path
    (``records[3].quantity``); ``body``/``query``/``path`` location prefixes are dropped."""
    if not errors:
        return InvalidRequest("invalid request")
    first = errors[0]
    if first["type"] == "json_invalid":
        detail = (first.get("ctx") or {}).get("error") or first["msg"]
        return InvalidRequest(f"request body is not valid JSON: {detail}", code="json_invalid")
    param, code, message = problem(first)
    if code == "parameter_invalid" and len(errors) > 1:
        message += f" (and {len(errors) - 1} more problems)"
    return InvalidRequest(message, param=param or None, code=code)


def combined_error(problems: list[tuple[str, str, str]]) -> InvalidRequest:
    """One 400 naming every bad parameter (``records[3].quantity, records[7].timestamp``),
    with the reasons of the first few."""
    if len(problems) == 1:
        param, code, message = problems[0]
        return InvalidRequest(message, param=param or None, code=code)
    names = ", ".join(p or "body" for p, _, _ in problems)
    reasons = "; ".join(m for _, _, m in problems[:_NAMED_REASONS])
    more = f"; and {len(problems) - _NAMED_REASONS} more" if len(problems) > _NAMED_REASONS else ""
    codes = {c for _, c, _ in problems}
    return InvalidRequest(
        f"{len(problems)} invalid parameters, nothing was recorded: {names}. {reasons}{more}",
        param=problems[0][0] or None,
        code=codes.pop() if len(codes) == 1 else "parameter_invalid",
    )
