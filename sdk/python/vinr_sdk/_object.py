"""``VinrObject``: the dict every response comes back as, readable by attribute too.

The keys are the API's own (camelCase: ``price["unitAmountDecimal"]``); attributes are their
snake_case names (``price.unit_amount_decimal``), by the one rule of ``_casing``. An
attribute names the key spelt exactly so when there is one (``metadata`` keys, which are
the caller's), else its camelCase key. Nested objects and lists of objects are wrapped when
the object is built, so ``summary.data[0].total_usage`` works.

A key that shares its name with a ``dict`` method (``items``, ``keys``, ``values``, ``get``,
``update``, ``copy``, ``pop``, …) must be read by subscript: ``subscription["items"]`` —
the attribute is the method, exactly as with any other dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._casing import to_camel, to_snake

__all__ = ["VinrObject"]


def _wrap(value: Any) -> Any:
    if isinstance(value, VinrObject):
        return value
    if isinstance(value, Mapping):
        return VinrObject(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class VinrObject(dict[str, Any]):
    """A JSON object from the API: a plain ``dict`` that also allows ``obj.snake_name``.

    Reading a missing attribute raises ``AttributeError`` (so ``hasattr`` and ``getattr``
    with a default behave); setting or deleting an attribute sets or deletes the key.
    """

    __slots__ = ()

    def __init__(
        self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **fields: Any
    ) -> None:
        merged = dict(data, **fields)
        super().__init__((k, _wrap(v)) for k, v in merged.items())

    def _key(self, name: str) -> str:
        """The key an attribute name stands for."""
        return name if name in self else to_camel(name)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._key(name)]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no attribute or key {name!r}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[self._key(name)] = _wrap(value)

    def __delattr__(self, name: str) -> None:
        try:
            del self[self._key(name)]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self) -> Iterable[str]:
        fields = {to_snake(key) for key in self if isinstance(key, str) and key.isidentifier()}
        return sorted(set(super().__dir__()) | fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"
