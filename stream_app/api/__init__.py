"""The HTTP face of the engine (issue 22): the decision API for a CRM and the campaign page for a
marketing lead, one FastAPI app (`nba api serve`).

- `keys.py`: API keys, hashed at rest, with scopes (read, decide); `nba api key` manages them;
- `errors.py`: the one JSON shape of every error, and the handlers that produce it;
- `gateway.py`: decisions (a request becomes a `decision_requested` trigger on the events
  topic, decided by the workers) and lookups of decisions and features;
- `campaign.py`: what the campaign page shows (the log of decisions and outcomes, the budget
  curve of the current model on the current base);
- `app.py`: the routes, authentication, the request-size limit, the page (`page.html`).

Why a POST goes through the workers and not an engine of its own: the worker is where the
features, model, policy, ledger reservation, contact rules and arms already run, in a Kafka
transaction per batch. A request is one more trigger event whose event_id comes from the
caller's Idempotency-Key, so its action_id is fixed by the key: a retry finds the stored
decision (or, if the first try is still in flight, the engine's own de-duplication answers it
with the same decision) and never spends twice. The price is the worker's batch cycle in the
latency of a POST (benchmarks/api_latency.py measures it).
"""
