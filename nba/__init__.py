"""The operator shell: the `nba` command line and the work behind each sub-command, the end-to-end
demo, event replay, readers of the engine's topics for reports and the DLQ, and the local servers
(Kafka, Redis, Prometheus) in `nba.local_servers`. Nothing in the project imports this package."""
