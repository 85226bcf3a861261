"""The `nba` command line: one-line errors with exit 2, and help a newcomer can read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nba.cli import app

HILLSTROM = str(Path(__file__).resolve().parents[2] / "examples/hillstrom/nba.yaml")
UNREACHABLE = {"NBA_KAFKA_BOOTSTRAP": "127.0.0.1:1"}  # nothing listens on port 1


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["infra", "status"], {"NBA_REDIS_PORT": "99"}, "NBA_REDIS_PORT"),
        (["infra", "status", "--only", "zookeeper"], {}, "unknown service"),
        (["infra", "status"], {"NBA_TRIGGER_EVENT_TYPES": "login"}, "NBA_TRIGGER_EVENT_TYPES"),
        (["experiment", "report", "--alpha", "2"], {}, "--alpha"),
        (["ope", "--budget-factor", "0"], {}, "--budget-factor"),
        (["ope", "--data", "/nonexistent"], {}, "customers.parquet"),
        (
            ["retrain", "--data", "/nonexistent"],
            {"NBA_MODEL_REGISTRY": "/nonexistent/registry"},
            "no promoted model",
        ),
        # Refused before any topic is read, so no broker is needed to hear it.
        (["retrain", "--source", "bogus"], UNREACHABLE, "--source must be one of"),
        (["retrain", "--learner", "dr"], UNREACHABLE, "weights by one propensity per action"),
        (["simulate", "world", "--observation-noise", "-1"], {}, "observation_noise"),
        (["score", "--all", "--data", "/nonexistent"], {}, "customers.parquet not found"),
        (["score"], {}, "pass --all"),
        (["score", "--all", "--engine", "dask"], {}, "--engine must be local or spark"),
        (
            ["score", "--all", "--engine", "spark", "--spark-partitions", "0"],
            {},
            "--spark-partitions",
        ),
        (
            ["infra", "status"],
            {"NBA_REDIS_URL": "redis://:hunter2@127.0.0.1:abc/0"},
            "NBA_REDIS_URL: Value error, its port is not a number",
        ),
        (["infra", "status"], {"NBA_REDIS_URL": "http://127.0.0.1:6379"}, "NBA_REDIS_URL"),
        (["demo", "--budget", "-100"], {}, "--budget must be >= 0"),
        (["demo", "--rate", "0"], {}, "--rate must be > 0"),
        (["models", "list", "--demo"], {"NBA_STATE_DIR": "/nonexistent"}, "no demo run"),
        # An unreachable broker: one line, not librdkafka's connection retries and "0 records".
        (["dlq", "inspect"], UNREACHABLE, "cannot reach the Kafka broker at 127.0.0.1:1"),
        (["experiment", "report"], UNREACHABLE, "cannot reach the Kafka broker"),
        (["report", "--out", "never.html"], UNREACHABLE, "cannot reach the Kafka broker"),
        (["data", "validate"], {}, "no project file: pass --project or set NBA_PROJECT"),
        (["data", "import", "--project", "/nonexistent.yaml"], {}, "cannot be read"),
        (["features", "clv", "--calibration-end", "19970930"], {}, "is not YYYY-MM-DD"),
        (
            ["features", "clv", "--calibration-end", "1997-09-30", "--data", "/nonexistent"],
            {},
            "transactions.parquet not found",
        ),
        (["campaign", "--project", "/nonexistent.yaml"], {}, "cannot be read"),
        (["response"], {}, "no project file"),
        (["train", "--project", "/nonexistent.yaml"], {}, "cannot be read"),
        (["attribution", "--data", "/nonexistent"], {}, "touches.csv (or .parquet) not found"),
        (["attribution", "--rounds", "0"], {}, "--rounds must be > 0"),
        (["score", "--all", "--project", HILLSTROM, "--values", "/no.parquet"], {}, "--values"),
        (["ope", "--project", HILLSTROM, "--data", "/nonexistent"], {}, "/nonexistent"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    argv: list[str], env: dict[str, str], needle: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nba", *argv],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )
    assert result.returncode == 2, result
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "hunter2" not in result.stderr


def _commands(group: typer.Typer, prefix: list[str]) -> list[list[str]]:
    found = [prefix]
    for info in group.registered_commands:
        found.append([*prefix, info.name or ""])
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name is not None
        found += _commands(sub.typer_instance, [*prefix, sub.name])
    return found


@pytest.mark.parametrize("argv", _commands(app, []), ids=lambda a: " ".join(a) or "nba")
def test_help_lists_whole_summaries_and_no_type_noise(argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"], prog_name="nba")
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:")[1] if "Commands:" in result.output else ""
    assert "..." not in listed, f"a summary is cut in `nba {' '.join(argv)} --help`"
    assert "<bool>" not in result.output
    assert "(required)" not in result.output
