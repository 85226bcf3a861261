"""What runs inside a decision worker: the Faust app and its agents, the decision engine and its
steps, the Kafka/Redis/Feast adapters, the budget ledger, messages and their schemas, metrics and
the HTTP endpoints, settings. Every decision is delegated to `policies`; this package only does
I/O and wiring. Operator tasks (the `nba` CLI, the demo, local servers) live in `nba`."""
