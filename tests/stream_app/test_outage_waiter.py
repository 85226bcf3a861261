"""The outage waiter's word to an SRE: 'answer again' only after an outage, not a slow step."""

from __future__ import annotations

import logging
import time

import pytest
import redis

from stream_app.outage import OutageWaiter


def test_a_slow_step_without_a_failure_is_not_reported_as_a_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert OutageWaiter(max_outage_s=10).run(lambda: time.sleep(1.1) or "done", "decide")
    assert "answer again" not in caplog.text


def test_a_step_that_failed_for_over_a_second_is_reported_once_it_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = time.monotonic()

    def step() -> str:
        if time.monotonic() - started < 1.1:
            raise redis.ConnectionError("refused")
        return "done"

    with caplog.at_level(logging.WARNING):
        assert OutageWaiter(max_outage_s=10).run(step, "decide") == "done"
    assert "redis unavailable (refused)" in caplog.text
    assert "agent decide: dependencies answer again" in caplog.text
