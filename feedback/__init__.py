"""The feedback loop: experiment design and readout, off-policy evaluation, drift, champion /
challenger, and the decision report. Reads the engine's logged decisions and outcomes as frames;
the shell (`nba`) reads them from the topics."""
