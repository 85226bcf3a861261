"""The end-to-end benchmark's profile summary (benchmarks/profile_summary.py) on py-spy's raw
format: one line per distinct stack, root first, frames joined by ';', then its sample count."""

from __future__ import annotations

from pathlib import Path

from benchmarks.profile_summary import summarize

_LOOP = "thread (7): nba-decide;Thread.run (threading.py:975);DecisionLoop.run_once (x.py:1)"


def _raw(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "worker.pyspy"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_each_sample_goes_to_the_deepest_step_named_in_its_stack(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        [
            f"{_LOOP};next_batch (d.py:2) 30",
            f"{_LOOP};DecisionEngine.process (c.py:3);Decider.decide (d.py:4);"
            "decide_stream (p.py:5);_greedy (p.py:6) 10",
            f"{_LOOP};DecisionEngine.process (c.py:3);Decider.decide (d.py:4);"
            "FeatureScoreSource.scores (s.py:7);Session.run (o.py:8) 40",
            f"{_LOOP};DecisionLoop._settle (d.py:9);Publisher.committed (p.py:10);"
            "Pipeline.execute (r.py:11) 20",
            "thread (8): nba-readiness;Thread.run (threading.py:975);ping (r.py:1) 500",
        ],
    )
    summary = summarize(raw)
    assert summary["samples"] == 100  # the decide thread's only
    assert summary["share_by_step"] == {
        "score": 0.4,
        "wait for and fetch events": 0.3,
        "commit and after-commit writes": 0.2,
        "policy": 0.1,
    }
    assert summary["top_functions"]["Session.run"] == 0.4
    assert summary["top_functions"]["next_batch"] == 0.3


def test_a_recording_without_the_decide_thread_says_so(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["thread (8): MainThread;main (m.py:1) 12"])
    assert summarize(raw) == {"samples": 0}
