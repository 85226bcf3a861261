"""Repeated failure lines are folded: one per window, with the count of the others."""

from __future__ import annotations

import logging
import time

import pytest

from stream_app.log_limits import RepeatLimiter


def test_a_repeated_message_shows_once_per_window_then_says_how_many_were_folded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.noisy")
    limiter = RepeatLimiter(window_s=0.2)
    logger.addFilter(limiter)
    try:
        with caplog.at_level(logging.ERROR, logger="test.noisy"):
            for port in range(50):
                logger.error("Unable connect to node: 127.0.0.1:%d refused", 40_000 + port)
            logger.error("Another kind of failure")
            time.sleep(0.25)
            logger.error("Unable connect to node: 127.0.0.1:%d refused", 41_000)
    finally:
        logger.removeFilter(limiter)
    shown = [r.getMessage() for r in caplog.records]
    assert shown == [
        "Unable connect to node: 127.0.0.1:40000 refused",
        "Another kind of failure",
        "Unable connect to node: 127.0.0.1:41000 refused (and 49 more like it before)",
    ]
