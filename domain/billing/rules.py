"""The billing policy knobs, read once from settings and passed to every invoice step."""

from __future__ import annotations

from dataclasses import dataclass

from infra.settings import Settings

__all__ = ["InvoiceRules"]


@dataclass(frozen=True, slots=True)
class InvoiceRules:
    """The billing policy knobs, from settings."""

    finalization_grace_s: int
    retry_days: tuple[int, ...]
    final_action: str

    @classmethod
    def from_settings(cls, s: Settings) -> InvoiceRules:
        return cls(s.finalization_grace_s, s.dunning_retry_days, s.dunning_final_action)
