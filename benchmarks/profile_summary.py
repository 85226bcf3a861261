"""Where a worker's decide thread spends its wall time, from a py-spy recording.

py-spy samples the running worker from outside (``--nonblocking``: the worker is never paused,
so the recording does not slow what it measures), idle waits included (``--idle``: a batch
waiting on the broker's commit is part of its time). Each sample of the decide thread is put
in the engine step of the deepest frame that names one (``STEPS``); the summary gives each
step's share of the thread's wall time, and the functions that were on top of the stack most
often (where the time is really spent, whatever the step).

py-spy is a benchmark tool, not a dependency: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["STEPS", "record", "summarize"]

DECIDE_THREAD = "nba-decide"
# (a frame's function name, the step it stands for): the deepest match in a stack wins, so a
# Redis call inside the ledger counts as the ledger's.
STEPS = (
    ("next_batch", "wait for and fetch events"),
    ("Intake.accept", "parse and validate"),
    ("DecisionEngine.process", "engine, other"),
    ("ProjectScoreSource.observe", "live aggregates"),
    ("ActivityStore.apply", "live aggregates"),
    ("DecisionState.last_triggers", "trigger state"),
    ("DecisionState.remember_triggers", "trigger state"),
    ("DecisionState.lookup", "trigger state"),
    ("Decider.decide", "score"),
    ("Decider._contact_state", "contact history"),
    ("decide_stream", "policy"),
    ("Publisher.reserve_and_publish", "ledger, store and produce"),
    ("RenewableProducer.release", "ledger, store and produce"),  # the held records, produced
    ("DecisionLoop._start_commit", "the last batch's commit: hand-off and wait"),
    ("DecisionLoop._land", "the last batch's commit: hand-off and wait"),
    ("DecisionLoop._settle", "commit and after-commit writes"),  # a failed batch's, or none
    ("DecisionEngine.after_batch", "pacing and gauges"),
)


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return found


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start recording process ``pid`` for ``seconds`` into ``out`` (raw, collapsed stacks);
    wait on the returned process before ``summarize``."""
    command = [
        _py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(int(seconds), 1)),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--threads",
        "--idle",
        "--nonblocking",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603  # py-spy, found above


def _function(frame: str) -> str:
    """``Decider.decide (stream_app/engine/decider.py:61)`` -> ``Decider.decide``."""
    return frame.split(" (", 1)[0].strip()


def _step(functions: list[str]) -> str:
    for function in reversed(functions):
        for name, step in STEPS:
            if function == name:
                return step
    return "outside a batch"


def summarize(raw: Path, top: int = 12) -> dict[str, Any]:
    """Shares (0-1) of the decide thread's samples per step, and the ``top`` functions most
    often on top of its stack."""
    steps: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or DECIDE_THREAD not in frames[0]:
            continue
        functions = [_function(f) for f in frames[1:]]
        samples = int(count)
        total += samples
        steps[_step(functions)] += samples
        leaves[functions[-1] if functions else "?"] += samples
    if total == 0:
        return {"samples": 0}
    return {
        "samples": total,
        "share_by_step": {s: round(n / total, 3) for s, n in steps.most_common()},
        "top_functions": {f: round(n / total, 3) for f, n in leaves.most_common(top)},
    }
