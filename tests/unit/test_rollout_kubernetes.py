"""The kubernetes rollout backend, without a cluster: valid manifests, calls in a safe order, Prometheus.

Every manifest is validated against the Kubernetes OpenAPI schemas (``kubernetes-validate``,
strict: an unknown field fails) and the HTTPRoute against the Gateway API's own schema (vendored
under ``tests/unit/schemas``). A whole rollout runs through the real stage functions with the real
MLflow registry on a temporary store and a :class:`RecordingClient` as the cluster; the order of
the recorded calls is the specification. Prometheus is a real HTTP server answering its API's JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jsonschema
import kubernetes_validate
import pandas as pd
import pytest
import yaml

from include.modelops.platform import tracking
from include.modelops.rollout import analysis, backend_for, stages
from include.modelops.rollout.backend import CANARY, STABLE, StateFile
from include.modelops.rollout.kubernetes import KubernetesBackend
from include.modelops.rollout.kubernetes_client import KubernetesApiClient, RecordingClient
from include.modelops.rollout.kubernetes_manifests import (
    DEPLOYMENT,
    HTTPROUTE,
    SECRET,
    SERVICE,
    PodResources,
    render_deployment,
    render_route,
    render_service,
    render_shadow_secret,
    workload_name,
)
from include.modelops.rollout.prometheus import PrometheusQuery
from include.modelops.rollout.record import read_record
from include.modelops.settings import KubernetesSettingsError, ServingClusterSettings
from tests.conftest import REFERENCE_SPEC

MODEL = "fraud_detection"
ROUTE = "fraud-detection"
SHADOW_SECRET = "fraud-detection-shadow"
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")  # the oldest and newest schemas kubernetes-validate 1.37 ships
HTTPROUTE_SCHEMA = Path(__file__).parent / "schemas" / "gateway-api-v1.6.1-httproute-v1.json"


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected, as the API server's strict field validation does
    (a structural schema alone would silently prune a misspelt field)."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


HTTPROUTE_VALIDATOR = jsonschema.Draft7Validator(strict(json.loads(HTTPROUTE_SCHEMA.read_text())))


def validate(manifest: dict) -> None:
    """Raise unless the manifest is valid for its kind."""
    if manifest["kind"] == HTTPROUTE:
        assert manifest["apiVersion"] == "gateway.networking.k8s.io/v1"
        HTTPROUTE_VALIDATOR.validate(manifest)
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


@pytest.fixture
def settings() -> ServingClusterSettings:
    return ServingClusterSettings(
        namespace="models",
        image_registry="registry.example.com/ml",
        gateway="public",
        gateway_namespace="gateways",
        gateway_url="http://gateway.example.com",
        serving_secret="inference-log-s3",
        drain_s=5,
        ready_timeout_s=60,
        inference_log_url="s3://logs/inference",
    )


@pytest.fixture
def client() -> RecordingClient:
    return RecordingClient()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def backend(tmp_path, settings, client, sleeps) -> KubernetesBackend:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    return KubernetesBackend(
        MODEL,
        client=client,
        settings=settings,
        resources=PodResources(2, "1500m", "1Gi"),
        state_file=StateFile(MODEL, tmp_path / "deployment.json"),
        sleep=sleep,
        clock=lambda: clock[0],
    )


def weights(client: RecordingClient) -> dict[str, int]:
    """The route as the cluster has it now: Service -> weight."""
    route = client.objects[(HTTPROUTE, ROUTE)]
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def changes_since(client: RecordingClient, mark: int) -> list[tuple[str, str, str]]:
    return [(c.verb, c.kind, c.name) for c in client.calls[mark:] if c.verb != "get"]


def assert_route_only_names_existing_versions(client: RecordingClient) -> None:
    """Replay the calls: whenever the route changes, every Service it names exists with a Deployment."""
    live: set[tuple[str, str]] = set()
    for call in client.calls:
        if call.verb == "apply":
            live.add((call.kind, call.name))
        elif call.verb == "delete":
            live.discard((call.kind, call.name))
        if call.kind == HTTPROUTE and call.verb == "apply":
            for ref in call.body["spec"]["rules"][0]["backendRefs"]:
                assert {(DEPLOYMENT, ref["name"]), (SERVICE, ref["name"])} <= live, (call, live)
        if call.kind in (DEPLOYMENT, SERVICE) and call.verb == "delete":
            route = next(
                (
                    c.body
                    for c in reversed(client.calls[: client.calls.index(call)])
                    if c.kind == HTTPROUTE and c.verb == "apply"
                ),
                None,
            )
            named = {b["name"] for b in route["spec"]["rules"][0]["backendRefs"]} if route else set()
            assert call.name not in named, f"{call.name} deleted while the route still sends it requests"


# --- manifests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [STABLE, CANARY])
def test_each_version_runs_the_containerized_bento_with_probes_variant_and_scrape_annotations(
    settings, variant
):
    deployment = render_deployment(
        MODEL,
        "3",
        variant,
        "fraud_detection_service:v3",
        settings=settings,
        resources=PodResources(2, "1500m", "1Gi"),
    )
    service = render_service(MODEL, "3", variant, settings=settings)
    validate(deployment)
    validate(service)

    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "fraud-detection-v3"
    assert deployment["metadata"]["namespace"] == "models"
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    # The tag `bentoml containerize fraud_detection_service:v3` gives the image, under the registry.
    assert container["image"] == "registry.example.com/ml/fraud_detection_service:v3"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["MODELOPS_SERVE_VARIANT"] == variant
    assert env["MODELOPS_SERVE_WORKERS"] == "1"  # one per whole CPU of the limit, not the node's cores
    assert env["MODELOPS_INFERENCE_LOG_URL"] == "s3://logs/inference"
    # The inference log's spool outlives a killed container: the restarted one writes what it left.
    assert {"name": "inference-log-spool", "mountPath": env["MODELOPS_INFERENCE_LOG_SPOOL"]} in container[
        "volumeMounts"
    ]
    assert {"name": "inference-log-spool", "emptyDir": {"sizeLimit": "1Gi"}} in pod["spec"]["volumes"]
    assert container["envFrom"] == [{"secretRef": {"name": "inference-log-s3"}}]
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": "1Gi"}
    assert deployment["spec"]["replicas"] == 2
    for labels in (
        deployment["metadata"]["labels"],
        pod["metadata"]["labels"],
        service["metadata"]["labels"],
    ):
        assert (
            labels["modelops.io/model"],
            labels["modelops.io/version"],
            labels["modelops.io/variant"],
        ) == (MODEL, "3", variant)
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    # The Service reaches exactly this version's pods, whatever their variant label says.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert "modelops.io/variant" not in selector


def test_the_route_splits_requests_by_weight_and_is_valid_gateway_api_v1(settings):
    route = render_route(MODEL, [("2", 75), ("3", 25)], settings=settings)
    validate(route)
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateways"}
    ]
    rule = route["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/fraud-detection"}}]
    assert [(b["name"], b["port"], b["weight"]) for b in rule["backendRefs"]] == [
        ("fraud-detection-v2", 80, 75),
        ("fraud-detection-v3", 80, 25),
    ]
    # A client cannot mark its own requests as the shadow stage's copies (kept out of canary windows).
    assert {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"remove": ["X-ModelOps-Shadow"]},
    } in rule["filters"]


def test_the_schema_checks_can_fail(settings):
    route = render_route(MODEL, [("2", 100)], settings=settings)
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    with pytest.raises(jsonschema.ValidationError, match="-1"):
        validate(route)
    route = render_route(MODEL, [("2", 100)], settings=settings)
    route["spec"]["rules"][0]["backendRef"] = route["spec"]["rules"][0].pop("backendRefs")
    with pytest.raises(jsonschema.ValidationError, match="backendRef"):
        validate(route)
    deployment = render_deployment(
        MODEL, "3", STABLE, "fraud_detection_service:v3", settings=settings, resources=PodResources()
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        validate(deployment)


def test_a_bad_pod_size_in_the_spec_names_the_field(tmp_path):
    from include.modelops.spec import ModelSpecError, load_spec

    raw = yaml.safe_load(REFERENCE_SPEC.read_text())
    raw["rollout"]["kubernetes"] = {"cpu": "two cores"}
    path = tmp_path / f"{MODEL}.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ModelSpecError, match=r"rollout\.kubernetes\.cpu"):
        load_spec(path)


# --- the backend on the recording client --------------------------------------------------------


def test_every_version_reads_the_shadow_token_from_the_models_secret(settings):
    secret = render_shadow_secret(MODEL, "s3cr3t-token", settings=settings)
    validate(secret)
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"], secret["type"]) == (
        SHADOW_SECRET,
        "models",
        "Opaque",
    )
    assert base64.b64decode(secret["data"]["token"]).decode() == "s3cr3t-token"
    for variant in (STABLE, CANARY):
        deployment = render_deployment(
            MODEL, "3", variant, "fraud_detection_service:v3", settings=settings, resources=PodResources()
        )
        validate(deployment)
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MODELOPS_SHADOW_TOKEN"] == {
            "name": "MODELOPS_SHADOW_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": SHADOW_SECRET, "key": "token"}},
        }


def test_the_shadow_secret_exists_before_the_first_pod_and_an_existing_one_is_kept(
    backend, client, monkeypatch
):
    monkeypatch.delenv("MODELOPS_SHADOW_TOKEN", raising=False)
    backend.deploy(STABLE, "1", "fraud_detection_service:v1")
    assert client.changes()[:2] == [
        ("apply", SECRET, SHADOW_SECRET),
        ("apply", DEPLOYMENT, "fraud-detection-v1"),
    ]
    token = backend.shadow_token()
    assert len(token) >= 32
    # Another worker (its own state folder, its own MODELOPS_SHADOW_TOKEN) sends what the pods read.
    monkeypatch.setenv("MODELOPS_SHADOW_TOKEN", "another-workers-token")
    other = KubernetesBackend(
        MODEL, client=client, settings=backend.settings, resources=backend.resources, state_file=backend.file
    )
    mark = len(client.calls)
    other.deploy(CANARY, "2", "fraud_detection_service:v2")
    assert other.shadow_token() == token
    assert (("apply", SECRET, SHADOW_SECRET)) not in changes_since(client, mark)


def test_the_shadow_replayer_sends_the_token_of_the_kubernetes_secret(backend, client, monkeypatch):
    """The k8s path: a shadow copy carries the Secret's token, not this worker's own."""
    from include.modelops.rollout import shadow
    from include.modelops.serving.contract import SHADOW_HEADER, example_row
    from include.modelops.serving.inference_log import request_records
    from include.modelops.spec import load_spec

    monkeypatch.setenv("MODELOPS_SHADOW_TOKEN", "this-workers-own-token")
    spec = load_spec(REFERENCE_SPEC)
    client.apply(
        SECRET, SHADOW_SECRET, render_shadow_secret(MODEL, "the-pods-token", settings=backend.settings)
    )
    backend.deploy(STABLE, "1", "fraud_detection_service:v1")
    backend.deploy(CANARY, "2", "fraud_detection_service:v2")
    seen: list[str | None] = []

    class Canary(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.headers.get(SHADOW_HEADER))
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Canary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with backend.file.locked() as state:  # the canary's Service, reached here on localhost
            state.variants[CANARY] = dataclasses.replace(
                state.variants[CANARY], url=f"http://127.0.0.1:{server.server_port}"
            )
        rows = pd.DataFrame(
            request_records(
                spec,
                request_id="r1",
                model_version="1",
                variant=STABLE,
                rows=[example_row(spec)],
                predictions=[{"score": 0.1, "label": 0}],
                latency_ms=1.0,
            )
        )
        copies: dict = {}
        assert shadow._send(spec, backend, rows, ["r1"], copies) == 1
    finally:
        server.shutdown()
    assert copies["r1"]["status"] == 200
    assert seen == ["the-pods-token"]


def test_weights_move_on_the_route_alone_and_an_applied_share_makes_no_call(backend, client):
    backend.deploy(STABLE, "1", "fraud_detection_service:v1")
    backend.deploy(CANARY, "2", "fraud_detection_service:v2")
    assert weights(client) == {"fraud-detection-v1": 100}  # a canary gets no request before its first step
    before = len(client.calls)

    backend.set_canary_percent(25)
    assert client.calls[before:] and all(
        c.kind == HTTPROUTE and c.verb == "apply" for c in client.calls[before:]
    )
    assert weights(client) == {"fraud-detection-v1": 75, "fraud-detection-v2": 25}

    after = len(client.calls)
    backend.set_canary_percent(25)  # a retried task
    assert client.calls[after:] == []
    assert backend.state().canary_percent == 25
    # Another backend object (a new task process) reads the same state file: still no call.
    KubernetesBackend(
        MODEL, client=client, settings=backend.settings, resources=backend.resources, state_file=backend.file
    ).set_canary_percent(25)
    assert client.calls[after:] == []


def test_a_canary_that_is_not_ready_is_never_routed_and_is_cleaned_up(backend, client, sleeps):
    backend.deploy(STABLE, "1", "fraud_detection_service:v1")
    client.unready.add("fraud-detection-v2")
    with pytest.raises(RuntimeError, match="fraud-detection-v2: 0/2 ready"):
        backend.deploy(CANARY, "2", "fraud_detection_service:v2")
    assert sum(sleeps) >= backend.settings.ready_timeout_s
    assert [c for c in client.changes() if c[2] == "fraud-detection-v2"][-2:] == [
        ("delete", DEPLOYMENT, "fraud-detection-v2"),
        ("delete", SERVICE, "fraud-detection-v2"),
    ]
    assert weights(client) == {"fraud-detection-v1": 100}
    assert CANARY not in backend.state().variants
    with pytest.raises(RuntimeError, match="no canary"):
        backend.set_canary_percent(5)


def test_stopping_the_only_version_removes_the_route_before_the_version(backend, client):
    backend.deploy(STABLE, "1", "fraud_detection_service:v1")  # a first deployment, then rolled back
    mark = len(client.calls)
    backend.stop(STABLE)
    assert changes_since(client, mark) == [
        ("delete", HTTPROUTE, ROUTE),
        ("delete", DEPLOYMENT, "fraud-detection-v1"),
        ("delete", SERVICE, "fraud-detection-v1"),
    ]
    assert set(client.objects) == {(SECRET, SHADOW_SECRET)} and backend.state().variants == {}
    backend.stop(STABLE)  # a retried task
    assert changes_since(client, mark)[3:] == []


def test_health_comes_from_the_deployment_status(backend, client):
    backend.deploy(STABLE, "1", "fraud_detection_service:v1")
    assert backend.health(STABLE).ok
    assert backend.health(CANARY).detail == "no canary is deployed"
    client.unready.add("fraud-detection-v1")
    health = backend.health(STABLE)
    assert (health.alive, health.ready) == (False, False)
    assert "0/2 ready" in health.detail
    client.objects.pop((DEPLOYMENT, "fraud-detection-v1"))
    assert "does not exist" in backend.health(STABLE).detail


def test_backend_for_kubernetes_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("MODELOPS_K8S_NAMESPACE", "serving")
    monkeypatch.setenv("MODELOPS_IMAGE_REGISTRY", "ghcr.io/acme/")
    monkeypatch.setenv("MODELOPS_K8S_GATEWAY", "edge")
    monkeypatch.delenv("MODELOPS_K8S_GATEWAY_URL", raising=False)
    monkeypatch.delenv("MODELOPS_PROMETHEUS_URL", raising=False)
    backend = backend_for(MODEL, "kubernetes")
    assert isinstance(backend, KubernetesBackend)
    assert isinstance(backend.client, KubernetesApiClient) and backend.client.namespace == "serving"
    assert backend.settings.image_registry == "ghcr.io/acme"
    assert backend.endpoint() == "http://edge.serving.svc.cluster.local/fraud-detection"
    # The reference spec has no rollout.kubernetes: the defaults.
    assert backend.resources == PodResources(1, "1", "2Gi")
    with pytest.raises(KubernetesSettingsError, match="MODELOPS_PROMETHEUS_URL"):
        backend.prometheus()


# --- Prometheus: a real HTTP server answering the query API -----------------------------------------


class FakePrometheus:
    """Answers ``/api/v1/query`` from ``series`` ({metric name: [(labels, value)]}), summing as PromQL's
    ``sum by (...)`` over the selector's labels would; records each query."""

    def __init__(self) -> None:
        self.series: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self.queries: list[str] = []
        self.error: str | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                query = parse_qs(url.query).get("query", [""])[0]
                fake.queries.append(query)
                status, body = fake.answer(url.path, query)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the OS picks a free one
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, query: str) -> tuple[int, dict]:
        import re

        if path != "/api/v1/query":
            return 404, {"status": "error", "errorType": "not_found", "error": path}
        if self.error:
            return 400, {"status": "error", "errorType": "bad_data", "error": self.error}
        m = re.fullmatch(r"sum by \((\w+)\) \((\w+)\{(.*)\}\)", query)
        if not m:
            return 400, {"status": "error", "errorType": "bad_data", "error": f"unexpected query {query}"}
        by, metric, selector = m.groups()
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', selector))
        sums: dict[str, float] = {}
        for key, value in self.series.get(metric, {}).items():
            labels = dict(key)
            if all(labels.get(k) == v for k, v in wanted.items()):
                sums[labels[by]] = sums.get(labels[by], 0.0) + value
        result = [{"metric": {by: k}, "value": [1700000000.0, str(v)]} for k, v in sums.items()]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    def add_pod(
        self,
        *,
        model: str,
        version: str,
        variant: str,
        pod: str,
        ok: float,
        errors: float,
        buckets: dict[str, float],
    ) -> None:
        """Add to the counters one pod of the variant exposes (as if it answered more requests)."""
        base = {"model": model, "version": version, "variant": variant, "pod": pod, "namespace": "models"}

        def add(metric: str, labels: dict[str, str], value: float) -> None:
            key = tuple(sorted(labels.items()))
            self.series.setdefault(metric, {})[key] = self.series.get(metric, {}).get(key, 0.0) + value

        add("modelops_requests_total", {**base, "status": "200"}, ok)
        add("modelops_requests_total", {**base, "status": "503"}, errors)
        for le, count in buckets.items():
            add("modelops_request_latency_seconds_bucket", {**base, "le": le}, count)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def prometheus():
    fake = FakePrometheus()
    yield fake
    fake.close()


def test_prometheus_sums_a_variants_pods_into_the_window_analysis_reads(prometheus):
    for pod, ok in (("a", 60.0), ("b", 40.0)):
        prometheus.add_pod(
            model=MODEL,
            version="3",
            variant=CANARY,
            pod=pod,
            ok=ok,
            errors=1.0,
            buckets={"0.01": ok / 2, "0.05": ok, "+Inf": ok},
        )
    prometheus.add_pod(
        model=MODEL,
        version="2",
        variant=STABLE,
        pod="c",
        ok=500.0,
        errors=0.0,
        buckets={"0.01": 500.0, "0.05": 500.0, "+Inf": 500.0},
    )
    query = PrometheusQuery(prometheus.url)

    window = query.window(MODEL, "3", CANARY)
    assert window.requests_by_status == {"200": 100.0, "503": 2.0}
    assert window.latency_buckets == {0.01: 50.0, 0.05: 100.0, float("inf"): 100.0}
    assert (window.requests, window.errors) == (102, 2)
    assert prometheus.queries == [
        'sum by (status) (modelops_requests_total{model="fraud_detection",version="3",variant="canary"})',
        'sum by (le) (modelops_request_latency_seconds_bucket{model="fraud_detection",version="3",variant="canary"})',
    ]
    # The same numbers through the service's metrics text, as the stages read every backend.
    text = query.exposition(MODEL, "3", CANARY)
    assert analysis.parse_service_metrics(text, variant=CANARY, version="3") == window
    assert analysis.parse_service_metrics(text, variant=STABLE, version="3") == analysis.MetricsWindow()
    assert query.window(MODEL, "2", STABLE).requests == 500


def test_prometheus_errors_name_the_query_and_the_reason(prometheus):
    prometheus.error = "parse error at char 5"
    with pytest.raises(OSError, match="bad_data: parse error at char 5"):
        PrometheusQuery(prometheus.url).window(MODEL, "3", CANARY)
    with pytest.raises(OSError, match="HTTP 404"):
        PrometheusQuery(prometheus.url + "/nothing-here").query("up")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(OSError):
        PrometheusQuery(f"http://127.0.0.1:{port}", timeout_s=2).window(MODEL, "3", CANARY)


# --- a whole rollout through the real stage functions -------------------------------------------------


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A spec with a kubernetes rollout, an MLflow registry with champion v1 and deployable v2 and v3."""
    specs = tmp_path / "specs"
    specs.mkdir()
    raw = yaml.safe_load(REFERENCE_SPEC.read_text())
    raw["rollout"] = {
        "backend": "kubernetes",
        "steps": [5, 25, 50, 100],
        "min_requests": 50,
        "analysis": {"min_rows_for_distance": 40},
        "kubernetes": {"replicas": 2, "cpu": "1500m", "memory": "1Gi"},
    }
    (specs / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MODELOPS_SPECS_DIR", str(specs))
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MODELOPS_INFERENCE_LOG_URL", str(tmp_path / "inference_log"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow = tracking.client()
    mlflow.create_registered_model(MODEL)
    for version in ("1", "2", "3"):
        source = tmp_path / "models" / version
        source.mkdir(parents=True)
        mv = mlflow.create_model_version(
            MODEL,
            source=str(source),
            tags={"modelops.deployable": "true", "modelops.bento_tag": f"fraud_detection_service:v{version}"},
        )
        assert str(mv.version) == version
    tracking.set_alias(MODEL, tracking.CHAMPION, "1")
    return tmp_path


@pytest.fixture
def cluster(registry, client, prometheus, sleeps):
    """The backend the stages drive: the recording client, the fake Prometheus, the spec's resources."""
    prometheus.add_pod(
        model=MODEL,
        version="1",
        variant=STABLE,
        pod="s",
        ok=10.0,
        errors=0.0,
        buckets={"0.01": 10.0, "+Inf": 10.0},
    )
    settings = ServingClusterSettings(
        namespace="models",
        gateway="public",
        drain_s=5,
        prometheus_url=prometheus.url,
        inference_log_url=str(registry / "inference_log"),
    )
    return KubernetesBackend(MODEL, client=client, settings=settings, sleep=sleeps.append)


def serve_requests(
    prometheus: FakePrometheus, backend: KubernetesBackend, *, stable: int, canary: int
) -> None:
    """Requests answered by each variant since the last call: its pods' counters in Prometheus and its
    rows in the inference log (the same score distribution for both: a healthy candidate)."""
    from include.modelops.serving.contract import example_row
    from include.modelops.serving.inference_log import InferenceLogWriter, request_records
    from include.modelops.spec import load_spec_by_name

    spec = load_spec_by_name(MODEL)
    writer = InferenceLogWriter(spec, root=backend.settings.inference_log_url, flush_interval_s=60)
    state = backend.state()
    for variant, n in ((STABLE, stable), (CANARY, canary)):
        if not n:
            continue
        version = state.variants[variant].version
        prometheus.add_pod(
            model=MODEL,
            version=version,
            variant=variant,
            pod=f"{variant}-0",
            ok=float(n),
            errors=0.0,
            buckets={"0.005": n * 0.6, "0.01": float(n), "+Inf": float(n)},
        )
        for i in range(n):
            score = (i % 20) / 20
            writer.submit(
                request_records(
                    spec,
                    request_id=f"{variant}-{version}-{i}",
                    model_version=version,
                    variant=variant,
                    rows=[example_row(spec)],
                    predictions=[{"score": score, "label": int(score >= 0.5)}],
                    latency_ms=4.0,
                )
            )
    writer.close()


def test_a_rollout_moves_the_route_in_stages_then_promotes_and_deletes_the_old_stable(
    cluster, client, sleeps, prometheus
):
    assert cluster.resources == PodResources(2, "1500m", "1Gi")  # from the spec's rollout.kubernetes
    # The stable version was deployed before (the previous rollout).
    cluster.deploy(STABLE, "1", "fraud_detection_service:v1")
    mark = len(client.calls)

    prepared = stages.prepare(MODEL, "2", dag_run_id="manual__1", backend=cluster)
    assert prepared["endpoint"] == "http://public.models.svc.cluster.local/fraud-detection"
    assert changes_since(client, mark) == [
        ("apply", DEPLOYMENT, "fraud-detection-v2"),
        ("apply", SERVICE, "fraud-detection-v2"),
    ]

    seen = []
    for index in range(4):
        start = len(client.calls)
        entered = stages.check_stage(MODEL, "2", index, backend=cluster)
        assert entered["done"] is False  # nothing answered yet in this stage's window: it bakes
        assert [(c.verb, c.kind) for c in client.calls[start:] if c.verb != "get"] == [("apply", HTTPROUTE)]
        seen.append(weights(client))
        poke = len(client.calls)
        share = seen[-1].get("fraud-detection-v2", 0)
        serve_requests(prometheus, cluster, stable=(100 - share) and 60, canary=60)
        judged = stages.check_stage(MODEL, "2", index, backend=cluster)  # the sensor's next poke
        assert judged["done"] is True, read_record(MODEL, "2")["stages"][index]
        # The share is not moved twice: the poke only reads the canary's Deployment (health).
        assert [(c.verb, c.kind) for c in client.calls[poke:]] == [("get", DEPLOYMENT)]
    assert seen == [
        {"fraud-detection-v1": 95, "fraud-detection-v2": 5},
        {"fraud-detection-v1": 75, "fraud-detection-v2": 25},
        {"fraud-detection-v1": 50, "fraud-detection-v2": 50},
        {"fraud-detection-v2": 100},
    ]
    record = read_record(MODEL, "2")
    assert [s["outcome"] for s in record["stages"]] == ["passed"] * 4
    assert record["stages"][0]["analysis"]["canary_requests"] == 60  # counted from Prometheus

    mark = len(client.calls)
    sleeps.clear()
    promoted = stages.promote(MODEL, "2", backend=cluster)
    assert promoted["champion"] == "2" and promoted["previous"] == "1"
    assert changes_since(client, mark) == [
        ("apply", DEPLOYMENT, "fraud-detection-v2"),  # relabelled stable: a rolling restart, route unchanged
        ("apply", SERVICE, "fraud-detection-v2"),
        ("delete", DEPLOYMENT, "fraud-detection-v1"),  # the route left v1 at the 100% step
        ("delete", SERVICE, "fraud-detection-v1"),
    ]
    assert sleeps == [5]  # drained before the delete
    pod = client.objects[(DEPLOYMENT, "fraud-detection-v2")]["spec"]["template"]
    assert pod["metadata"]["labels"]["modelops.io/variant"] == STABLE
    assert {"name": "MODELOPS_SERVE_VARIANT", "value": STABLE} in pod["spec"]["containers"][0]["env"]
    assert weights(client) == {"fraud-detection-v2": 100}
    assert {name for kind, name in client.objects} == {"fraud-detection-v2", ROUTE, SHADOW_SECRET}
    state = cluster.state()
    assert (list(state.variants), state.variants[STABLE].version, state.canary_percent) == ([STABLE], "2", 0)
    assert tracking.alias_version(MODEL, tracking.CHAMPION) == "2"
    assert_route_only_names_existing_versions(client)


def test_promotion_from_a_partial_share_moves_the_route_before_deleting(cluster, client):
    cluster.deploy(STABLE, "1", "fraud_detection_service:v1")
    cluster.deploy(CANARY, "2", "fraud_detection_service:v2")
    cluster.set_canary_percent(50)
    mark = len(client.calls)
    cluster.promote_canary()
    assert changes_since(client, mark) == [
        ("apply", DEPLOYMENT, "fraud-detection-v2"),
        ("apply", SERVICE, "fraud-detection-v2"),
        ("apply", HTTPROUTE, ROUTE),
        ("delete", DEPLOYMENT, "fraud-detection-v1"),
        ("delete", SERVICE, "fraud-detection-v1"),
    ]
    assert_route_only_names_existing_versions(client)
    mark = len(client.calls)
    cluster.promote_canary()  # a retried task: nothing left to do
    assert changes_since(client, mark) == []


def test_a_canary_that_stops_answering_is_rolled_back_and_only_stable_is_left(cluster, client):
    cluster.deploy(STABLE, "1", "fraud_detection_service:v1")
    stages.prepare(MODEL, "3", dag_run_id="manual__2", backend=cluster)
    stages.check_stage(MODEL, "3", 0, backend=cluster)
    stages.check_stage(MODEL, "3", 1, backend=cluster)
    assert weights(client) == {"fraud-detection-v1": 75, "fraud-detection-v3": 25}

    client.unready.add("fraud-detection-v3")  # its pods fail their readiness probe
    with pytest.raises(stages.RolloutFailed, match="0/2 ready"):
        stages.check_stage(MODEL, "3", 1, backend=cluster)
    mark = len(client.calls)
    result = stages.rollback(MODEL, "3", backend=cluster)
    assert result["rolled_back"] and "0/2 ready" in result["reason"]
    assert changes_since(client, mark) == [
        ("apply", HTTPROUTE, ROUTE),  # 100% to stable at once
        ("delete", DEPLOYMENT, "fraud-detection-v3"),  # then the canary goes
        ("delete", SERVICE, "fraud-detection-v3"),
    ]
    assert weights(client) == {"fraud-detection-v1": 100}
    assert tracking.alias_version(MODEL, tracking.CHAMPION) == "1"
    assert tracking.version_info(MODEL, "3")["tags"][stages.TAG_STATUS] == "rolled_back"
    assert_route_only_names_existing_versions(client)


def test_every_manifest_of_a_rollout_and_a_rollback_is_valid(cluster, client, prometheus):
    cluster.deploy(STABLE, "1", "fraud_detection_service:v1")
    stages.prepare(MODEL, "2", dag_run_id="r", backend=cluster)
    for index in range(4):
        stages.check_stage(MODEL, "2", index, backend=cluster)
        serve_requests(prometheus, cluster, stable=60 if index < 3 else 0, canary=60)
        assert stages.check_stage(MODEL, "2", index, backend=cluster)["done"]
    stages.promote(MODEL, "2", backend=cluster)
    stages.prepare(MODEL, "3", dag_run_id="r2", backend=cluster)
    stages.check_stage(MODEL, "3", 0, backend=cluster)
    stages.rollback(MODEL, "3", reason="aborted", backend=cluster)
    stages.restore_previous(MODEL, backend=cluster)  # the rollback DAG: v1 serves again
    applied = [c.body for c in client.calls if c.verb == "apply"]
    assert {m["kind"] for m in applied} == {DEPLOYMENT, SERVICE, HTTPROUTE, SECRET}
    for manifest in applied:
        validate(manifest)
    assert_route_only_names_existing_versions(client)
    assert weights(client) == {"fraud-detection-v1": 100}
    assert {name for kind, name in client.objects} == {"fraud-detection-v1", ROUTE, SHADOW_SECRET}
    cluster.shutdown()
    assert client.changes()[-4:] == [
        ("delete", HTTPROUTE, ROUTE),
        ("delete", DEPLOYMENT, "fraud-detection-v1"),
        ("delete", SERVICE, "fraud-detection-v1"),
        ("delete", SECRET, SHADOW_SECRET),
    ]
    assert client.objects == {}


# --- the real client against an HTTP server that answers like the API server ---------------------------


def test_the_real_client_server_side_applies_and_treats_missing_objects_as_absent(settings):
    from kubernetes import client as k8s

    requests: list[tuple[str, str, dict, str, dict | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> dict | None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            requests.append(
                (self.command, url.path, parse_qs(url.query), self.headers.get("Content-Type"), body)
            )
            return body

        def do_PATCH(self) -> None:  # noqa: N802
            self._answer(200, self._record())

        def do_GET(self) -> None:  # noqa: N802
            self._record()
            self._answer(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 404,
                    "reason": "NotFound",
                },
            )

        do_DELETE = do_GET  # noqa: N815

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = k8s.Configuration(host=f"http://127.0.0.1:{server.server_port}")
        real = KubernetesApiClient("models", api_client=k8s.ApiClient(config))
        deployment = render_deployment(
            MODEL, "3", CANARY, "fraud_detection_service:v3", settings=settings, resources=PodResources()
        )
        route = render_route(MODEL, [("3", 100)], settings=settings)
        applied = real.apply(DEPLOYMENT, workload_name(MODEL, "3"), deployment)
        real.apply(HTTPROUTE, ROUTE, route)
        assert real.get(SERVICE, "fraud-detection-v9") is None
        real.delete(DEPLOYMENT, "fraud-detection-v9")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

    assert applied["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        "fraud_detection_service:v3"
    )
    # The client writes Python's True; the API server reads any case of true.
    ssa = {"fieldManager": ["modelops"], "force": ["True"], "fieldValidation": ["Strict"]}
    assert requests[0][:4] == (
        "PATCH",
        "/apis/apps/v1/namespaces/models/deployments/fraud-detection-v3",
        ssa,
        "application/apply-patch+yaml",
    )
    assert requests[0][4] == deployment
    assert requests[1][:4] == (
        "PATCH",
        "/apis/gateway.networking.k8s.io/v1/namespaces/models/httproutes/fraud-detection",
        ssa,
        "application/apply-patch+yaml",
    )
    assert requests[1][4] == route
    assert [r[:2] for r in requests[2:]] == [
        ("GET", "/api/v1/namespaces/models/services/fraud-detection-v9"),
        ("DELETE", "/apis/apps/v1/namespaces/models/deployments/fraud-detection-v9"),
    ]


KUBECONFIG_TWO_CLUSTERS = """
apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}
- {name: b, cluster: {server: "https://10.0.0.9:6443", insecure-skip-tls-verify: true}}
contexts:
- {name: ctx-a, context: {cluster: a, user: u}}
- {name: ctx-b, context: {cluster: b, user: u}}
current-context: ctx-a
users:
- {name: u, user: {token: abc}}
"""


def test_the_cluster_is_reached_with_the_airflow_connection_as_training_pods_are(monkeypatch, tmp_path):
    """One credential path: the Airflow connection MODELOPS_K8S_CONN_ID, through KubernetesHook."""
    from include.modelops.rollout.kubernetes_client import KubernetesApiClient

    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(KUBECONFIG_TWO_CLUSTERS)
    monkeypatch.setenv(
        "AIRFLOW_CONN_SERVING_CLUSTER",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig)}}),
    )
    monkeypatch.setenv("MODELOPS_K8S_CONN_ID", "serving_cluster")
    monkeypatch.setenv("MODELOPS_K8S_CONTEXT", "ctx-b")
    settings = ServingClusterSettings.from_env()
    assert (settings.conn_id, settings.context) == ("serving_cluster", "ctx-b")

    via_context = KubernetesApiClient("ml", conn_id=settings.conn_id, context=settings.context)
    assert via_context.api_client.configuration.host == "https://10.0.0.9:6443"
    current = KubernetesApiClient("ml", conn_id="serving_cluster")
    assert current.api_client.configuration.host == "https://127.0.0.1:6443"
