"""The decision log as the topics carry it: `nba-actions` and `outcomes` messages parsed (a
message that does not parse is counted, never fatal) and joined decision by decision
(feedback.readout)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

from feedback.readout import Feedback, join_feedback
from stream_app.messages import NbaAction, Outcome

__all__ = ["actions_frame", "feedback_from_messages"]


def _parse(values: Iterable[bytes], model: type[BaseModel]) -> tuple[list[dict[str, Any]], int]:
    rows, bad = [], 0
    for value in values:
        try:
            rows.append(model.model_validate_json(value).model_dump(mode="json"))
        except ValidationError:
            bad += 1
    return rows, bad


def _frame(rows: list[dict[str, Any]], columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(columns))


def actions_frame(actions: Iterable[bytes]) -> pd.DataFrame:
    """One row per parsed `nba-actions` message."""
    return _frame(_parse(actions, NbaAction)[0], NbaAction.model_fields)


def feedback_from_messages(messages: Iterable[bytes], outcomes: Iterable[bytes]) -> Feedback:
    """``messages`` of `nba-actions`, ``outcomes`` of `outcomes`, joined."""
    action_rows, bad_actions = _parse(messages, NbaAction)
    outcome_rows, bad_outcomes = _parse(outcomes, Outcome)
    actions = _frame(action_rows, NbaAction.model_fields)
    joined, quality = join_feedback(actions, _frame(outcome_rows, Outcome.model_fields))
    unreadable = {"nba-actions": bad_actions, "outcomes": bad_outcomes}
    return Feedback(joined, quality, unreadable, actions.drop_duplicates("action_id"))
