"""The one naming rule between Python and the wire.

Python names are snake_case (``unit_amount_decimal``), the API's JSON fields camelCase
(``unitAmountDecimal``). Outgoing parameters are converted key by key, nested objects and
lists included (``recurring={"usage_type": "metered"}`` goes out as
``{"usageType": "metered"}``); incoming objects keep the API's keys and are read by
attribute in snake_case (``summary.total_usage``), see ``VinrObject``.

``metadata`` is the caller's own data, and a meter event's ``payload`` is keyed by the
meter's own payload keys (``customer_mapping``/``value_settings``): their keys are sent and
read exactly as given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["FREE_FORM_KEYS", "camelize", "to_camel", "to_snake"]

FREE_FORM_KEYS = frozenset({"metadata", "payload"})

_UPPER = re.compile(r"(?!^)([A-Z])")


def to_camel(name: str) -> str:
    """``unit_amount_decimal`` → ``unitAmountDecimal``; names without ``_`` are unchanged.

    Names that start with ``_`` (private and special names) are left alone.
    """
    if name.startswith("_") or "_" not in name:
        return name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_snake(name: str) -> str:
    """``unitAmountDecimal`` → ``unit_amount_decimal``; the inverse of ``to_camel``."""
    return _UPPER.sub(lambda m: "_" + m.group(1).lower(), name)


def camelize(value: Any) -> Any:
    """A copy of ``value`` with every mapping key (at any depth) passed through ``to_camel``,
    except inside ``metadata`` and ``payload``."""
    if isinstance(value, Mapping):
        return {
            (to_camel(key) if isinstance(key, str) else key): dict(item)
            if key in FREE_FORM_KEYS and isinstance(item, Mapping)
            else camelize(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [camelize(item) for item in value]
    return value
