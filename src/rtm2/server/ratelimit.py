"""A token bucket: ``rate`` per second, bursts of up to one second's worth."""

from __future__ import annotations

__all__ = ["RateBucket"]


class RateBucket:
    __slots__ = ("allowance", "stamp")

    def __init__(self, rate: float, now: float) -> None:
        self.allowance = rate
        self.stamp = now

    def allow(self, now: float, rate: float) -> bool:
        allowance = min(rate, self.allowance + (now - self.stamp) * rate)
        self.stamp = now
        if allowance < 1.0:
            self.allowance = allowance
            return False
        self.allowance = allowance - 1.0
        return True
