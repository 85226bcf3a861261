"""The deployment files a user runs without us: docker-compose.yml and the Prometheus config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture
def compose() -> list[str]:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "neither `docker compose` nor Debian's docker-compose is installed "
            "(make bootstrap installs it as root)"
        )
    return command


def test_compose_file_is_valid(compose: list[str]) -> None:
    result = subprocess.run([*compose, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_validation_catches_a_broken_file(compose: list[str], tmp_path: Path) -> None:
    broken = (
        (ROOT / "docker-compose.yml")
        .read_text()
        .replace("depends_on: [prometheus]", "depends_on: [nosuch]")
    )
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = subprocess.run(
        [*compose, "config", "-q"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "nosuch" in result.stderr


def test_prometheus_configs_pass_promtool(tmp_path: Path) -> None:
    from nba.local_servers.servers import prometheus_config

    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (make bootstrap)"
    local = tmp_path / "local.yml"
    local.write_text(
        prometheus_config(
            metrics_port=39100, rule_files=[str(ROOT / "deploy/prometheus/alerts.yml")]
        )
    )
    for config in (ROOT / "deploy/prometheus/prometheus.yml", local):
        result = subprocess.run(
            [promtool, "check", "config", str(config)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (make bootstrap)"
    folder = ROOT / "deploy/prometheus"
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=folder, capture_output=True, text=True
    )
    assert checked.returncode == 0 and "12 rules found" in checked.stdout, (
        checked.stdout + checked.stderr
    )
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=folder, capture_output=True, text=True
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_kubernetes_manifests_match_what_the_worker_serves() -> None:
    import yaml

    from stream_app.settings import Settings

    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/worker.yaml").read_text()))
    assert all(
        {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"].get("name")
        for doc in docs
    )
    kinds = {doc["kind"]: doc for doc in docs}
    assert {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"} <= set(kinds)
    known = {f"NBA_{name.upper()}" for name in Settings.model_fields}
    for source in ("ConfigMap", "Secret"):
        data = kinds[source].get("data") or kinds[source].get("stringData")
        assert set(data) <= known, (source, set(data) - known)
    assert not {"NBA_KAFKA_SASL_PASSWORD", "NBA_REDIS_URL"} & set(kinds["ConfigMap"]["data"]), (
        "secrets only in the Secret"
    )
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["worker"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = container["ports"][0]["containerPort"]
    assert (
        port
        == int(kinds["ConfigMap"]["data"]["NBA_METRICS_PORT"])
        == Settings.model_fields["metrics_port"].default
    )
    assert container["resources"]["requests"] and kinds["Deployment"]["spec"]["replicas"] >= 2


def test_the_image_copies_every_package_the_project_installs() -> None:
    """A package missing from the Dockerfile installs nothing and breaks `nba` in the image
    (`ingest/` was missing once); the list is pyproject's setuptools `include`."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]}
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    copied = {
        line.split()[1] for line in dockerfile if line.startswith("COPY ") and "--" not in line
    }
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
