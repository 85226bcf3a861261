"""Pure decision logic: the action catalog, segments, expected value, eligibility and contact
rules, budget allocation and pacing, holdout and exploration arms, reasons. No I/O: numpy and
pydantic only, deterministic given its inputs and a seed, used alike by streaming and batch."""
