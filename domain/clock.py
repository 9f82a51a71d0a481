"""Time: real time, or a subscription's frozen test clock in the sandbox."""

from __future__ import annotations

import time

__all__ = ["now_s", "subscription_now"]


def now_s() -> int:
    return int(time.time())


def subscription_now(frozen_time: int | None) -> int:
    """The subscription's "now": its test clock's frozen time when it has one."""
    return now_s() if frozen_time is None else frozen_time
