"""deploy/: the Kubernetes manifests, validated offline against the Kubernetes schemas and read
for what an operator relies on, and the Grafana dashboard against the worker's real /metrics."""

from __future__ import annotations

import json
import re
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.ops.fake_worker import FakeWorkerView
from worker.ops.metrics import Metrics
from worker.ops.status import StatusServer
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
DASHBOARD = ROOT / "deploy" / "grafana" / "avatar-worker.json"
KUBERNETES_VERSIONS = ["1.29.0", "1.33.0"]  # an old supported release and a recent one
KEDA_API = "keda.sh/v1alpha1"
DRAIN_MARGIN_S = 30  # at least: the worker ends what is left after the drain


def manifests() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def one(kind: str) -> dict[str, Any]:
    found = [doc for doc in manifests() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def worker_container() -> dict[str, Any]:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return typing.cast(dict[str, Any], container)


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def secret_setting_names() -> set[str]:
    secret = {
        n.upper() for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
    }
    assert "TAVUS_API_KEY" in secret and "AMQP_URL" in secret
    return secret


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_kubernetes_manifests_validate_against_the_schemas(version: str) -> None:
    """Every core object in deploy/kubernetes passes kubernetes-validate's strict schema check
    (unknown fields are errors); the KEDA objects are the only others."""
    others = []
    for doc in manifests():
        if doc["apiVersion"] == KEDA_API:
            others.append(doc["kind"])
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    assert sorted(others) == ["ScaledObject", "TriggerAuthentication"]


def test_a_broken_manifest_is_caught() -> None:
    """The schema check rejects a misspelt field, so the validation above can fail."""
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 1860
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_probes_use_healthz_and_readyz_on_the_status_port() -> None:
    """Liveness asks /healthz and readiness /readyz, on the port the worker serves them on."""
    container = worker_container()
    port = container["ports"][0]
    assert port["name"] == "status"
    assert str(port["containerPort"]) == one("ConfigMap")["data"]["WORKER_STATUS_PORT"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "status"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "status"}


def test_the_grace_period_covers_the_drain() -> None:
    """terminationGracePeriodSeconds is at least WORKER_DRAIN_TIMEOUT_S plus a margin, and the
    preStop hook sends one SIGTERM and waits for the worker to exit (a second would end every
    session at once)."""
    pod = one("Deployment")["spec"]["template"]["spec"]
    drain_s = float(one("ConfigMap")["data"]["WORKER_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= drain_s + DRAIN_MARGIN_S
    script = worker_container()["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert script.count("kill -TERM 1") == 1 and "while kill -0 1" in script


def test_secrets_come_from_the_secret_and_settings_from_the_configmap() -> None:
    """Every secret setting is in the Secret (none in the ConfigMap), and every name in either
    is a setting the worker reads."""
    secret_keys = set(one("Secret")["stringData"])
    config_keys = set(one("ConfigMap")["data"])
    assert secret_keys <= secret_setting_names() and {"TAVUS_API_KEY", "AMQP_URL"} <= secret_keys
    assert config_keys <= setting_names() - secret_setting_names()
    env_from = worker_container()["envFrom"]
    assert {"secretRef": {"name": one("Secret")["metadata"]["name"]}} in env_from
    assert {"configMapRef": {"name": one("ConfigMap")["metadata"]["name"]}} in env_from


def test_the_pod_runs_as_the_image_user() -> None:
    """The pod runs as non-root uid 10001, the Dockerfile's user."""
    security = one("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert "USER 10001:10001" in (ROOT / "Dockerfile").read_text()


def test_the_disruption_budget_covers_the_workers() -> None:
    """The PodDisruptionBudget selects the Deployment's pods and lets one go at a time."""
    deployment, budget = one("Deployment"), one("PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


def test_keda_scales_the_workers_on_queue_depth_and_live_sessions() -> None:
    """The ScaledObject targets the Deployment, scales on the job queue's length (broker URL from
    the Secret) and on live sessions per worker below WORKER_MAX_SESSIONS."""
    scaled, auth = one("ScaledObject"), one("TriggerAuthentication")
    assert scaled["spec"]["scaleTargetRef"]["name"] == one("Deployment")["metadata"]["name"]
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    assert set(triggers) == {"rabbitmq", "prometheus"}
    queue = triggers["rabbitmq"]
    assert queue["metadata"]["queueName"] == Settings.model_fields["amqp_jobs_queue"].default
    assert queue["metadata"]["mode"] == "QueueLength"
    assert queue["authenticationRef"]["name"] == auth["metadata"]["name"]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "host" and ref["key"] in one("Secret")["stringData"]
    live = triggers["prometheus"]
    assert live["metricType"] == "AverageValue"
    assert "avatar_worker_sessions_live" in live["metadata"]["query"]
    max_sessions = int(one("ConfigMap")["data"]["WORKER_MAX_SESSIONS"])
    assert 0 < int(live["metadata"]["threshold"]) < max_sessions


# ---- the Grafana dashboard ---------------------------------------------------------------------


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture
async def scraped_names() -> AsyncIterator[set[str]]:
    """The series names on a worker's /metrics (its status server) after one of each thing the
    worker counts has happened."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    for status, extra in [
        ("accepted", {}),
        ("ready", {}),
        ("ended", {"reason": "stopped", "duration_s": 12.5}),
        ("failed", {"error": {"code": "tavus_auth"}}),
        ("retrying", {"error": {"code": "provider_unavailable"}}),
        ("expired", {}),
    ]:
        metrics.observe_event({"status": status, "mode": "phoenix_rest", **extra})
    metrics.observe_ready_latency("phoenix_rest", 0.4, cold_start=False)
    metrics.observe_provider("tavus", "conversations.create", 503, 0.2)
    metrics.dead_lettered("invalid_job")
    metrics.process_spawned(0.8)
    server = StatusServer(FakeWorkerView(), metrics, "127.0.0.1", 0, reconnect_budget_s=60)
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            page = (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text
    finally:
        await server.aclose()
    yield {s.name for family in text_string_to_metric_families(page) for s in family.samples}


async def test_every_metric_the_dashboard_queries_is_on_metrics(scraped_names: set[str]) -> None:
    """Each avatar_worker_* series a dashboard panel queries is one the worker's /metrics serves."""
    queried = {
        name for expr in dashboard_queries() for name in re.findall(r"avatar_worker_\w+", expr)
    }
    assert len(queried) >= 15
    assert sorted(queried - scraped_names) == []


def test_the_dashboard_panels_use_the_datasource_variable() -> None:
    """Every panel reads the dashboard's Prometheus data source variable, so it imports anywhere."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource"}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
