"""Guards of Studio's sign-in: a budget of failed attempts per client address, and where the
browser may be sent once signed in."""

from __future__ import annotations

import math
import threading
import time
from urllib.parse import urlsplit

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

# Failed sign-ins allowed per client address (the `limits` notation): STUDIO_SIGN_IN_LIMIT.
DEFAULT_SIGN_IN_LIMIT = "5 per minute; 30 per hour"
INDEX = "/"


class FailedSignIns:
    """Failed sign-ins per client address in a moving window. Past the budget, every attempt
    from that address is refused (429, Retry-After) without looking at the password, the
    right one too, until the oldest failure leaves the window: the password cannot be tried,
    nor confirmed, faster than the budget. Studio is one process: counters live in memory."""

    def __init__(self, limit: str = DEFAULT_SIGN_IN_LIMIT):
        self.limits = parse_many(limit)  # ValueError on a malformed limit
        self.strategy = MovingWindowRateLimiter(MemoryStorage())
        # Checking the budget, the password and counting a failure is one step: concurrent
        # attempts cannot all pass the check before any of them is counted.
        self.lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it may try now."""
        for limit in self.limits:
            if not self.strategy.test(limit, "studio-sign-in", address):
                reset = self.strategy.get_window_stats(limit, "studio-sign-in", address).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None

    def failed(self, address: str) -> None:
        for limit in self.limits:
            self.strategy.hit(limit, "studio-sign-in", address)


def local_path(target: str | None) -> str:
    """`target` when it is a path on this site, else Studio's index. Browsers drop tabs and
    newlines inside URLs and read a backslash as a slash, so `/\\tevil`, `/\\evil` and
    `//evil` all leave the site: any control character, space or backslash refuses it."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return INDEX
    if any(ch == "\\" or ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return INDEX
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return INDEX
    return target
