"""Failed authentication per client address: past a budget, that address is refused for a while (429)."""

from __future__ import annotations

import threading
import time
from collections import deque


class FailedAuthLimiter:
    """At most `max_failures` failed authentications (an unknown token, invite link or admin token) per client
    address in any `window_seconds`. Past that, the address gets 429 for every authenticated request until its
    oldest counted failure is `window_seconds` old: a guesser then makes `max_failures` guesses a window.

    Correct requests pay a dict lookup and are never delayed. Each web process keeps its own count.
    """

    def __init__(self, max_failures: int, window_seconds: float = 60.0, max_addresses: int = 100_000) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may authenticate again, or None if it may now."""
        failures = self._failures.get(address)
        if failures is None or len(failures) < self.max_failures:
            return None
        wait = failures[0] + self.window_seconds - time.monotonic()
        return wait if wait > 0 else None

    def record_failure(self, address: str) -> None:
        with self._lock:
            if address not in self._failures and len(self._failures) >= self.max_addresses:
                self._failures.clear()  # a flood of addresses: forget them all rather than grow without bound
            self._failures.setdefault(address, deque(maxlen=self.max_failures)).append(time.monotonic())
