"""One line per kind of repeated failure, not a hundred a second.

While a broker is away, aiokafka logs each failed connect, metadata update and fetch at ERROR,
about ten times a second per kind, and librdkafka its own ``FAIL`` lines: a 20-second outage
wrote over 2,000 ERROR lines into a worker's log. ``RepeatLimiter`` lets a message through once
per window and folds the repeats into the next one it lets through ("... (and 212 more like
it)"). Messages are the same when they differ only in numbers (ports, ids, milliseconds).
Hand-written because the standard library has no rate-limiting filter, and the few packages
that offer one are unmaintained; it is a dictionary and a clock.
"""

from __future__ import annotations

import logging
import re
import threading
import time

__all__ = ["NOISY_LOGGERS", "RepeatLimiter", "limit_repeats"]

# Where the per-retry lines come from (aiokafka logs through these module loggers).
NOISY_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "nba.librdkafka",
)
_NUMBERS = re.compile(r"\d+")


class RepeatLimiter(logging.Filter):
    def __init__(self, window_s: float = 30.0) -> None:
        super().__init__()
        self._window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, _NUMBERS.sub("N", record.getMessage()))
        now = time.monotonic()
        with self._lock:
            shown_at, folded = self._seen.get(key, (float("-inf"), 0))
            if now - shown_at < self._window_s:
                self._seen[key] = (shown_at, folded + 1)
                return False
            self._seen[key] = (now, 0)
        if folded:
            record.msg = f"{record.getMessage()} (and {folded} more like it before)"
            record.args = None
        return True


def limit_repeats(names: tuple[str, ...] = NOISY_LOGGERS, window_s: float = 30.0) -> None:
    limiter = RepeatLimiter(window_s)
    for name in names:
        logging.getLogger(name).addFilter(limiter)
