"""When to try a failing endpoint again, and when failing has lasted long enough to tell.

Exponential backoff with "equal jitter" (half the delay fixed, half random), so partners
that fail together are not all retried in the same instant. Retrying never stops: after
`give_up_after` of failing the subscription goes to `error` (the partner can see why in
`$status`) and is still tried at the longest delay, so it resumes by itself when the
endpoint comes back. Nothing waiting for it is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    first: float
    """Seconds before the first retry."""
    ceiling: float
    """The longest wait between two attempts."""
    give_up_after: float
    """Seconds of failing after which the subscription is in `error`."""

    def delay(self, failures: int, jitter: float) -> float:
        """Seconds to wait after the `failures`-th failure in a row; `jitter` in [0, 1)."""
        exponent = min(max(failures - 1, 0), 60)
        base = min(self.ceiling, self.first * 2.0**exponent)
        return base / 2 + base / 2 * jitter

    def in_error(self, failing_for: float) -> bool:
        return failing_for >= self.give_up_after
