"""The streaming engine and its shell: Faust workers, Kafka I/O, Feast/Redis adapters, the ONNX
scorer, the budget ledger, Prometheus metrics, settings, the `nba` CLI and the local infrastructure
it runs on. Every decision is delegated to `policies`; this package only does I/O and wiring."""
