"""Scores for a project's bundle in a worker: the Feast online store's customer features, the
live event features, one bundle call per batch.

Per micro-batch, before any decision, ``observe`` adds the batch's valid events to the live
windows (stream_app.event_windows). Each trigger is then scored with its customer's profile
(the project's generated Feast views: declared features, consent, value, CLV) and the event
features as of the trigger's own time, computed from the windows by the stream's executor of
the batch job's rules: an event in this batch before the trigger already counts, so a burst of
events moves the very next decision. The windows replace the batch copy of the event features
that Feast also holds, and the values computed are written to Feast's `event_windows` view
before the batch is scored. The batch's profiles, stored events, opt-outs and the event times
Feast holds for the view are read in one Redis round trip (they were five with the write).

Consent, do-not-disturb and value come from the project (model_export.project_serving): a
channel without a consent column or with a blank is no consent, a blank value is worth nothing;
a declared opt-out event withdraws its channels from the batch that carries it on
(stream_app.opt_outs), whatever the profile says. A customer the store has never seen (a cold
start) is encoded with the training medians and unseen levels, and without consent or value the
policy leaves them alone.

Each decision's reasons end with the features that moved the customer's risk most
(``driver:<feature>:<log-odds>``, model_export.explain).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ingest.project import Project
from model_export.project_serving import contact_state, project_scores
from policies.decide import Scores
from policies.rules import ContactState
from stream_app.engine.intake import ValidEvents
from stream_app.event_windows import EventWindowStore
from stream_app.feature_store import FeatureStoreAdapter, ViewRow, ViewWriter
from stream_app.opt_outs import OptOutStore
from stream_app.redis_clients import RedisClient
from stream_app.scorer import ServedModel, store_segments

__all__ = ["ProjectScoreSource"]


class ProjectScoreSource:
    def __init__(
        self,
        project: Project,
        model: ServedModel,
        store: FeatureStoreAdapter,
        client: RedisClient,
        windows: EventWindowStore | None = None,
        opt_outs: OptOutStore | None = None,
        publish: ViewWriter | None = None,
        engagement_base: NDArray[np.float64] | None = None,
    ) -> None:
        """``client``: the engine's Redis, which also holds the Feast online store; one
        pipeline of it reads a batch's features, stored events, opt-outs and the event times
        ``publish`` needs. ``publish``: where the live event features go before scoring (the
        project's Feast `event_windows` view), so that every reader of the store sees what the
        model saw. ``engagement_base``: the base's sorted engagement values, which a
        micro-batch's customers are ranked against
        (model_export.project_serving.engagement_reference)."""
        self._project = project
        self.model = model
        self._store = store
        self._client = client
        self._windows = windows
        self._opt_outs = opt_outs
        self._publish = publish
        self._engagement_base = engagement_base
        self._times: dict[str, datetime] = {}
        self._contacts: dict[str, tuple[NDArray[np.bool_], bool]] = {}
        self._notes: dict[str, dict[str, Any]] = {}

    def observe(self, events: ValidEvents) -> None:
        """The batch's valid events, before any of its decisions (the engine's aggregates
        hook): into the live windows, and each one's time for the trigger it may be."""
        self._times = {e.event_id: e.occurred_at for _, e in events}
        if self._windows is not None:
            self._windows.add(e for _, e in events)
        if self._opt_outs is not None:
            self._opt_outs.apply(e for _, e in events)

    def _read(
        self, customers: Sequence[str], event_ids: Sequence[str]
    ) -> tuple[pd.DataFrame, NDArray[np.bool_] | None]:
        """What the model reads for each trigger (the profile, then the live event features)
        and the withdrawn channels, read in one round trip; the live event features are
        written to Feast (``publish``) in one more."""
        times = [self._times[event_id] for event_id in event_ids] if self._windows else []
        publishing = self._publish if self._windows is not None else None
        with self._client.pipeline(transaction=False) as pipe:
            self._store.queue_read(pipe, customers)
            if self._windows is not None:
                self._windows.queue_stored(pipe, customers, times)
            if self._opt_outs is not None:
                self._opt_outs.queue_revoked(pipe, customers)
            keys = publishing.queue_reads(pipe, customers) if publishing is not None else []
            reads = 1 + sum(
                part is not None for part in (self._windows, self._opt_outs, publishing)
            )
            replies = iter(_by_read(pipe.execute(), len(customers), reads))
        frame = self._store.frame_of(customers, next(replies))
        live: list[dict[str, float]] = []
        if self._windows is not None:
            live = self._windows.computed(times, self._windows.stored_of(next(replies)))
            frame = frame.assign(
                **{f.name: [row[f.name] for row in live] for f in self._windows.declared}
            )
        revoked = None
        if self._opt_outs is not None:
            revoked = self._opt_outs.revoked_of(customers, next(replies))
        if publishing is not None:
            rows = list(zip(customers, times, live, strict=True))
            self._write_live(publishing, rows, keys, next(replies))
        return frame, revoked

    def _write_live(
        self, writer: ViewWriter, rows: Sequence[ViewRow], keys: list[bytes], stored: list[Any]
    ) -> None:
        """The live event features into Feast (``stored``: the event times it holds)."""
        writer.check(rows)
        with self._client.pipeline(transaction=False) as pipe:
            writer.queue_writes(pipe, rows, keys, stored)
            pipe.execute()

    def scores(self, customers: Sequence[str], event_ids: Sequence[str]) -> Scores:
        frame, revoked = self._read(customers, event_ids)
        state = contact_state(self._project, frame, revoked)
        self._contacts = {
            str(c): (state.consent[i], bool(state.do_not_disturb[i]))
            for i, c in enumerate(frame["customer_id"])
        }
        predictions, drivers = self.model.predict_frame(frame)
        notes = [
            {**segments, "reasons": reasons}
            for segments, reasons in zip(store_segments(frame), drivers, strict=True)
        ]
        self._notes = dict(zip(event_ids, notes, strict=True))
        return project_scores(
            frame,
            self._project,
            predictions,
            decision_keys=list(event_ids),
            engagement_base=self._engagement_base,
        )

    def annotations(self, event_ids: Sequence[str]) -> list[dict[str, Any]]:
        """For the triggers scored just before: their risk drivers (reason codes) and the
        customer's persona and RFM segment from the store."""
        return [self._notes.get(event_id, {}) for event_id in event_ids]

    def contacts(self, customers: Sequence[str]) -> ContactState:
        """Consent and do-not-disturb of the customers scored just before; the engine adds the
        contact history."""
        rows = [self._contacts[c] for c in customers]
        consent = np.array([r[0] for r in rows], dtype=bool).reshape(len(customers), -1)
        state = ContactState.fresh(len(customers), consent)
        return replace(state, do_not_disturb=np.array([r[1] for r in rows], dtype=bool))


def _by_read(replies: list[Any], customers: int, reads: int) -> list[list[Any]]:
    """A pipeline's replies cut into its ``reads``, each of one reply per customer."""
    return [replies[k * customers : (k + 1) * customers] for k in range(reads)]
