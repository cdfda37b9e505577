"""The ``kubernetes`` rollout backend: Deployments, Services and one Gateway API HTTPRoute.

What it creates in ``MODELOPS_K8S_NAMESPACE`` for a model (``fraud_detection`` becomes the DNS
name ``fraud-detection``):

* per version, a ``Deployment`` and a ``Service`` named ``<model>-v<version>``, from the image
  ``bentoml containerize <bento tag>`` builds (``<MODELOPS_IMAGE_REGISTRY>/<bento tag>``). The pods
  carry the labels ``modelops.io/model``, ``modelops.io/version``, ``modelops.io/variant``
  (``stable`` or ``canary``), ``MODELOPS_SERVE_VARIANT`` (so the inference log and the metrics say
  who answered), readiness/liveness/startup probes on BentoML's ``/readyz`` and ``/livez``, and the
  ``prometheus.io/*`` scrape annotations. Resources come from the spec's ``rollout.kubernetes``.
  Naming by version (not by variant) keeps a version's pods where they are when it is promoted;
* one ``Secret`` named ``<model>-shadow`` (key ``token``): the deployment's shadow secret. Every
  version's pods read it as ``MODELOPS_SHADOW_TOKEN`` (``secretKeyRef``), and the shadow stage's
  replayer sends it in ``X-ModelOps-Shadow`` (:meth:`KubernetesBackend.shadow_token`), so a pod
  logs a request as shadow traffic only when the replayer sent it; the route also strips the
  header from client requests. The backend creates it before the first Deployment (from
  ``MODELOPS_SHADOW_TOKEN`` when set, else a random token) and reuses the one the cluster holds,
  so every Airflow worker sends the token the pods have;
* one ``HTTPRoute`` named ``<model>`` on the Gateway ``MODELOPS_K8S_GATEWAY``: requests to
  ``<gateway>/<model>/...`` go to the stable and canary Services with weights ``100 - p`` and
  ``p`` (``p`` the canary share); a Service without weight is left out of the route.

The order of changes is what keeps requests answered: a route names a Service only once its
Deployment is ready; a version is deleted only after the route stopped sending it requests (and
``MODELOPS_K8S_DRAIN_S`` later); a canary share already applied makes no call at all. Promotion
relabels the canary's Deployment ``stable`` (a rolling restart that never takes a pod away
before its successor is ready, while the route already sends it every request), moves the route
to it alone, then deletes the old stable version.

Every change is a server-side apply (field manager ``modelops``) of the whole object, so a
retried task re-applies the same objects without error, and the deployment state
(``<state>/rollout/<model>/deployment.json``, the same :class:`StateFile` as the local backend)
says which version runs as what and which route was applied last.

Metrics for the canary analysis come from a Prometheus server (``MODELOPS_PROMETHEUS_URL``) that
scrapes the pods: :class:`PrometheusQuery` sums ``modelops_requests_total`` by status and
``modelops_request_latency_seconds_bucket`` by ``le`` over the variant's pods and hands back the
same :class:`~include.modelops.rollout.analysis.MetricsWindow` a service's ``/metrics`` gives.

Talking to the cluster goes through a :class:`KubeClient` (get, apply, delete):
:class:`KubernetesApiClient` uses the ``kubernetes`` package with the credentials of the Airflow
connection ``MODELOPS_K8S_CONN_ID`` (the cncf.kubernetes provider's ``KubernetesHook``, as training
pods are started); :class:`RecordingClient` keeps objects in memory and records every call, for tests.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from include.modelops.platform import http
from include.modelops.rollout.analysis import MetricsWindow
from include.modelops.rollout.backend import (
    CANARY,
    STABLE,
    Deployed,
    DeploymentState,
    Health,
    RouterHealth,
    StateFile,
    check_canary_share,
)
from include.modelops.serving.contract import SHADOW_HEADER
from include.modelops.settings import KubernetesSettingsError, ServingClusterSettings

log = logging.getLogger(__name__)

DEPLOYMENT, SERVICE, HTTPROUTE, SECRET = "Deployment", "Service", "HTTPRoute", "Secret"
SHADOW_TOKEN_KEY = "token"  # the key of the shadow Secret that holds the token
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
FIELD_MANAGER = "modelops"
LABEL_PREFIX = "modelops.io"
CONTAINER_PORT = 3000  # BentoML's port in the image `bentoml containerize` builds
SERVICE_PORT = 80
BENTO_UID = 1034  # the user BentoML's image runs as
# The inference log's write-ahead spool: an emptyDir outlives a killed container (not its pod), so a
# restarted container writes the rows its predecessor answered and had not logged yet.
SPOOL_VOLUME, SPOOL_PATH = "inference-log-spool", "/var/lib/modelops/inference-log-spool"


# --- names --------------------------------------------------------------------------------


def dns_name(model: str) -> str:
    """The model's name as a Kubernetes object name (DNS-1035 label): ``fraud_detection`` -> ``fraud-detection``."""
    return model.replace("_", "-")[:63].rstrip("-")


def workload_name(model: str, version: str) -> str:
    """Name of a version's Deployment and Service: ``<model>-v<version>``, at most 63 characters."""
    suffix = f"-v{version}"
    return dns_name(model)[: 63 - len(suffix)].rstrip("-") + suffix


def shadow_secret_name(model: str) -> str:
    """Name of the model's shadow Secret: ``<model>-shadow``, at most 63 characters."""
    return dns_name(model)[:56].rstrip("-") + "-shadow"


def image_for(bento_tag: str, registry: str = "") -> str:
    """The image ``bentoml containerize <bento tag>`` builds (tagged with the bento tag), under ``registry``."""
    return f"{registry.rstrip('/')}/{bento_tag}" if registry else bento_tag


def service_url(model: str, version: str, namespace: str) -> str:
    return f"http://{workload_name(model, version)}.{namespace}.svc.cluster.local"


def _workers_for(cpu: str) -> int:
    """Whole CPUs of a quantity (``500m`` -> 1, ``2`` -> 2): BentoML's ``cpu_count`` would count the node's cores."""
    value = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.floor(value))


# --- manifests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodResources:
    """The spec's ``rollout.kubernetes``: replicas and resources of each version's pods."""

    replicas: int = 1
    cpu: str = "1"
    memory: str = "2Gi"


def selector_labels(model: str, version: str) -> dict[str, str]:
    """What selects a version's pods (immutable in a Deployment: no variant here, it changes on promotion)."""
    return {f"{LABEL_PREFIX}/model": model, f"{LABEL_PREFIX}/version": str(version)}


def object_labels(model: str, version: str, variant: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": dns_name(model),
        "app.kubernetes.io/instance": workload_name(model, version),
        "app.kubernetes.io/version": f"v{version}",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "modelops",
        "app.kubernetes.io/managed-by": "modelops",
        **selector_labels(model, version),
        f"{LABEL_PREFIX}/variant": variant,
    }


def render_deployment(
    model: str,
    version: str,
    variant: str,
    bento_tag: str,
    *,
    settings: ServingClusterSettings,
    resources: PodResources,
) -> dict[str, Any]:
    """A version's Deployment: the bento image, probes, variant, metrics annotations, restricted security."""
    labels = object_labels(model, version, variant)
    env = [
        {"name": "MODELOPS_SERVE_VARIANT", "value": variant},
        {"name": "MODELOPS_SERVE_WORKERS", "value": str(_workers_for(resources.cpu))},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        # Only the shadow replayer knows it: a request is logged as shadow only when its header matches.
        {
            "name": "MODELOPS_SHADOW_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": shadow_secret_name(model), "key": SHADOW_TOKEN_KEY}},
        },
        {"name": "MODELOPS_INFERENCE_LOG_SPOOL", "value": SPOOL_PATH},
    ]
    if settings.inference_log_url:
        env.append({"name": "MODELOPS_INFERENCE_LOG_URL", "value": settings.inference_log_url})
    container: dict[str, Any] = {
        "name": "model-server",
        "image": image_for(bento_tag, settings.image_registry),
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": env,
        "volumeMounts": [{"name": SPOOL_VOLUME, "mountPath": SPOOL_PATH}],
        "resources": {
            "requests": {"cpu": resources.cpu, "memory": resources.memory},
            "limits": {"cpu": resources.cpu, "memory": resources.memory},
        },
        # Loading a model can take minutes: the startup probe holds liveness off until /livez answers.
        "startupProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        # The "restricted" Pod Security Standard. The root filesystem stays writable: BentoML writes
        # its Prometheus multi-process files and temporary files under its home in the image.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": BENTO_UID,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if settings.serving_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.serving_secret}}]
    return {
        "apiVersion": "apps/v1",
        "kind": DEPLOYMENT,
        "metadata": {
            "name": workload_name(model, version),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {f"{LABEL_PREFIX}/bento-tag": bento_tag},
        },
        "spec": {
            "replicas": resources.replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": selector_labels(model, version)},
            # Never a pod less than asked for: promotion restarts the pods while they answer every request.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(CONTAINER_PORT),
                        "prometheus.io/path": "/metrics",
                        f"{LABEL_PREFIX}/bento-tag": bento_tag,
                    },
                },
                "spec": {
                    "containers": [container],
                    "volumes": [{"name": SPOOL_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": BENTO_UID,
                        "runAsGroup": BENTO_UID,
                        "fsGroup": BENTO_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "automountServiceAccountToken": False,  # the model server never calls the Kubernetes API
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }


def render_shadow_secret(model: str, token: str, *, settings: ServingClusterSettings) -> dict[str, Any]:
    """The model's shadow Secret (Opaque, key ``token``), read by every version's pods."""
    import base64

    return {
        "apiVersion": "v1",
        "kind": SECRET,
        "type": "Opaque",
        "metadata": {
            "name": shadow_secret_name(model),
            "namespace": settings.namespace,
            "labels": {
                "app.kubernetes.io/name": dns_name(model),
                "app.kubernetes.io/part-of": "modelops",
                "app.kubernetes.io/managed-by": "modelops",
                f"{LABEL_PREFIX}/model": model,
            },
        },
        "data": {SHADOW_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def render_service(
    model: str, version: str, variant: str, *, settings: ServingClusterSettings
) -> dict[str, Any]:
    """A version's ClusterIP Service (port 80 to the pods' ``http`` port); the route's backend."""
    return {
        "apiVersion": "v1",
        "kind": SERVICE,
        "metadata": {
            "name": workload_name(model, version),
            "namespace": settings.namespace,
            "labels": object_labels(model, version, variant),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(model, version),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def route_backends(state: DeploymentState) -> list[tuple[str, int]]:
    """(version, weight) of each variant that receives requests: stable ``100 - p``, canary ``p``."""
    stable, canary = state.variants.get(STABLE), state.variants.get(CANARY)
    if stable is None and canary is not None:
        return [(canary.version, 100)]
    pairs = []
    if stable is not None:
        pairs.append((stable.version, 100 - state.canary_percent))
    if canary is not None:
        pairs.append((canary.version, state.canary_percent))
    return [(v, w) for v, w in pairs if w > 0]


def render_route(
    model: str, backends: list[tuple[str, int]], *, settings: ServingClusterSettings
) -> dict[str, Any]:
    """The model's HTTPRoute: ``/<model>/...`` on the Gateway, prefix stripped, split over the versions' Services."""
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": settings.gateway}
    if settings.gateway_namespace and settings.gateway_namespace != settings.namespace:
        parent["namespace"] = settings.gateway_namespace
    spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": f"/{dns_name(model)}"}}],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
                    },
                    # Only the shadow stage marks its copies; a client cannot mark its own requests.
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": [SHADOW_HEADER]}},
                ],
                "backendRefs": [
                    {
                        "group": "",
                        "kind": "Service",
                        "name": workload_name(model, version),
                        "port": SERVICE_PORT,
                        "weight": weight,
                    }
                    for version, weight in backends
                ],
            }
        ],
    }
    if settings.hostname:
        spec["hostnames"] = [settings.hostname]
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": HTTPROUTE,
        "metadata": {
            "name": dns_name(model),
            "namespace": settings.namespace,
            "labels": {
                "app.kubernetes.io/name": dns_name(model),
                "app.kubernetes.io/part-of": "modelops",
                "app.kubernetes.io/managed-by": "modelops",
                f"{LABEL_PREFIX}/model": model,
            },
        },
        "spec": spec,
    }


def deployment_health(obj: dict[str, Any] | None, name: str) -> Health:
    """Alive: some pod of the Deployment is ready; ready: every replica of the current template is."""
    if obj is None:
        return Health(False, False, f"Deployment {name} does not exist")
    want = int((obj.get("spec") or {}).get("replicas", 1))
    status = obj.get("status") or {}
    ready, updated = int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0)
    current = int(status.get("observedGeneration") or 0) >= int(
        (obj.get("metadata") or {}).get("generation") or 0
    )
    detail = f"Deployment {name}: {ready}/{want} ready, {updated} updated"
    stuck = [c for c in status.get("conditions") or [] if c.get("reason") == "ProgressDeadlineExceeded"]
    if stuck:
        detail += f" ({stuck[0].get('message', 'progress deadline exceeded')})"
    return Health(ready > 0, current and ready >= want and updated >= want, detail)


# --- the client -------------------------------------------------------------------------------


class KubeClient(Protocol):
    """The three verbs the backend uses, on objects of one namespace."""

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object (with its status), or None when it does not exist."""

    def apply(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or update the object to ``body`` (server-side apply)."""

    def delete(self, kind: str, name: str) -> None:
        """Delete the object; one that does not exist is fine."""


@dataclass(frozen=True)
class Call:
    verb: str
    kind: str
    name: str
    body: dict[str, Any] | None = None


@dataclass
class RecordingClient:
    """An in-memory cluster for tests: keeps applied objects, records every call in order.

    A Deployment reports all its replicas ready once applied, unless its name is in ``unready``
    (a pod that never becomes ready, or one that stopped answering).
    """

    calls: list[Call] = field(default_factory=list)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    unready: set[str] = field(default_factory=set)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        self.calls.append(Call("get", kind, name))
        obj = self.objects.get((kind, name))
        if obj is None:
            return None
        obj = copy.deepcopy(obj)
        if kind == DEPLOYMENT:
            replicas = obj["spec"].get("replicas", 1)
            ready = 0 if name in self.unready else replicas
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": replicas,
                "readyReplicas": ready,
                "updatedReplicas": replicas,
                "availableReplicas": ready,
            }
        return obj

    def apply(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(Call("apply", kind, name, copy.deepcopy(body)))
        old = self.objects.get((kind, name))
        obj = copy.deepcopy(body)
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        changed = old is None or old.get("spec") != obj.get("spec")
        obj["metadata"]["generation"] = generation + 1 if changed else generation
        self.objects[(kind, name)] = obj
        return copy.deepcopy(obj)

    def delete(self, kind: str, name: str) -> None:
        self.calls.append(Call("delete", kind, name))
        self.objects.pop((kind, name), None)

    def changes(self) -> list[tuple[str, str, str]]:
        """(verb, kind, name) of every apply and delete, in order."""
        return [(c.verb, c.kind, c.name) for c in self.calls if c.verb != "get"]


class KubernetesApiClient:
    """The ``kubernetes`` package against a real cluster: server-side apply, strict field validation.

    Credentials: the Airflow connection ``conn_id`` through the cncf.kubernetes provider's
    ``KubernetesHook``, one credential path with the training pods (a kubeconfig file or JSON, in
    cluster, a context). The default connection may be left undefined: then the pod's service
    account when running in a cluster, else the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``),
    with ``context`` (``MODELOPS_K8S_CONTEXT``) either way. The service account needs get, patch
    and delete on deployments (apps), services, secrets (the shadow Secret) and httproutes
    (gateway.networking.k8s.io) in the namespace.
    """

    def __init__(
        self,
        namespace: str,
        *,
        conn_id: str = "kubernetes_default",
        context: str | None = None,
        api_client: Any = None,
    ) -> None:
        self.namespace = namespace
        self.conn_id = conn_id
        self.context = context
        self._given = api_client

    @cached_property
    def api_client(self) -> Any:
        if self._given is not None:
            return self._given
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.conn_id, cluster_context=self.context).get_conn()

    def _call(self, verb: str, kind: str, name: str, body: dict[str, Any] | None = None) -> Any:
        from kubernetes import client

        ns = self.namespace
        opts = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "field_validation": "Strict",
            "_content_type": "application/apply-patch+yaml",
        }  # server-side apply; JSON is YAML
        if kind == HTTPROUTE:
            api = client.CustomObjectsApi(self.api_client)
            args = (GATEWAY_GROUP, GATEWAY_VERSION, ns, "httproutes", name)
            if verb == "get":
                return api.get_namespaced_custom_object(*args)
            if verb == "apply":
                return api.patch_namespaced_custom_object(*args, body, **opts)
            return api.delete_namespaced_custom_object(*args)
        api = client.AppsV1Api(self.api_client) if kind == DEPLOYMENT else client.CoreV1Api(self.api_client)
        suffix = {DEPLOYMENT: "deployment", SECRET: "secret"}.get(kind, "service")
        if verb == "get":
            obj = getattr(api, f"read_namespaced_{suffix}")(name, ns)
        elif verb == "apply":
            obj = getattr(api, f"patch_namespaced_{suffix}")(name, ns, body, **opts)
        else:
            obj = getattr(api, f"delete_namespaced_{suffix}")(name, ns)
        return self.api_client.sanitize_for_serialization(obj)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call("get", kind, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("apply", kind, name, body)

    def delete(self, kind: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call("delete", kind, name)
        except ApiException as exc:
            if exc.status != 404:
                raise


# --- Prometheus -------------------------------------------------------------------------------


def _label(value: str) -> str:
    return json.dumps(
        str(value)
    )  # a double-quoted string with escapes, as PromQL and the text format read it


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class PrometheusQuery:
    """A variant's request counters and latency histogram from a Prometheus server's HTTP API."""

    def __init__(self, url: str, *, timeout_s: float = 10) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query (``/api/v1/query``); its vector of ``{"metric": labels, "value": [t, v]}``.

        Raises:
            OSError: Prometheus did not answer, or answered with an error (its message included).
        """
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        reply = http.get(url, timeout=self.timeout_s)  # Unreachable (an OSError) when it does not answer
        code = reply.status
        try:  # Prometheus explains a refused query in JSON too (400 bad_data, 422 execution, 503 timeout)
            answer = json.loads(reply.text)
        except ValueError as exc:
            if not reply.ok:
                raise OSError(f"Prometheus {self.url}: HTTP {code} for {promql!r}") from exc
            raise OSError(f"Prometheus {self.url} did not answer JSON for {promql!r}: {exc}") from exc
        if answer.get("status") != "success":
            raise OSError(
                f"Prometheus {self.url} refused {promql!r} (HTTP {code}): {answer.get('errorType')}: "
                f"{answer.get('error')}"
            )
        data = answer.get("data") or {}
        if data.get("resultType") != "vector":
            raise OSError(
                f"Prometheus {self.url}: expected a vector for {promql!r}, got {data.get('resultType')}"
            )
        return data.get("result") or []

    @staticmethod
    def selector(model: str, version: str, variant: str) -> str:
        return f"model={_label(model)},version={_label(version)},variant={_label(variant)}"

    def window(self, model: str, version: str, variant: str) -> MetricsWindow:
        """The cumulative counters of every pod of the variant (what one service's ``/metrics`` would say)."""
        sel = self.selector(model, version, variant)
        by_status = {
            r["metric"].get("status", ""): float(r["value"][1])
            for r in self.query(f"sum by (status) (modelops_requests_total{{{sel}}})")
        }
        buckets = {
            float(r["metric"]["le"]): float(r["value"][1])
            for r in self.query(f"sum by (le) (modelops_request_latency_seconds_bucket{{{sel}}})")
        }
        return MetricsWindow(by_status, buckets)

    def exposition(self, model: str, version: str, variant: str) -> str:
        """The window as Prometheus text, which :func:`analysis.parse_service_metrics` reads."""
        return render_exposition(
            self.window(model, version, variant), model=model, version=version, variant=variant
        )


def render_exposition(window: MetricsWindow, *, model: str, version: str, variant: str) -> str:
    """A :class:`MetricsWindow` as the service's own metrics text (``modelops_requests_total``, latency buckets)."""
    base = f"model={_label(model)},version={_label(version)},variant={_label(variant)}"
    lines = ["# TYPE modelops_requests_total counter"]  # as prometheus_client writes it
    lines += [
        f"modelops_requests_total{{{base},status={_label(status)}}} {value!r}"
        for status, value in sorted(window.requests_by_status.items())
    ]
    lines.append("# TYPE modelops_request_latency_seconds histogram")
    lines += [
        f'modelops_request_latency_seconds_bucket{{{base},le="{_le(le)}"}} {value!r}'
        for le, value in sorted(window.latency_buckets.items())
    ]
    return "\n".join(lines) + "\n"


# --- the backend ------------------------------------------------------------------------------


class KubernetesBackend:
    """Stable and canary versions of one model as Deployments behind one weighted HTTPRoute."""

    def __init__(
        self,
        model: str,
        *,
        client: KubeClient | None = None,
        settings: ServingClusterSettings | None = None,
        resources: PodResources | None = None,
        state_file: StateFile | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 2.0,
    ) -> None:
        self.model = model
        self.settings = settings or ServingClusterSettings.from_env()
        self.client: KubeClient = client or KubernetesApiClient(
            self.settings.namespace, conn_id=self.settings.conn_id, context=self.settings.context
        )
        self.resources = resources or _resources_of(model)
        self.file = state_file or StateFile(model)
        self._sleep, self._clock, self.poll_s = sleep, clock, poll_s
        self._shadow_token: str | None = None

    # --- helpers --------------------------------------------------------------------------

    def _deployed(self, version: str, bento_tag: str) -> Deployed:
        from include.modelops.platform.tracking import now_iso

        return Deployed(
            version=str(version),
            bento_tag=bento_tag,
            url=service_url(self.model, version, self.settings.namespace),
            started_at=now_iso(),
        )

    def _apply_version(self, version: str, variant: str, bento_tag: str) -> None:
        name = workload_name(self.model, version)
        self.shadow_token()  # the pods read it from the Secret: it exists before they start
        self.client.apply(
            DEPLOYMENT,
            name,
            render_deployment(
                self.model, version, variant, bento_tag, settings=self.settings, resources=self.resources
            ),
        )
        self.client.apply(SERVICE, name, render_service(self.model, version, variant, settings=self.settings))

    def _delete_version(self, version: str) -> None:
        name = workload_name(self.model, version)
        self.client.delete(DEPLOYMENT, name)
        self.client.delete(SERVICE, name)
        log.info("Deleted %s v%s (Deployment and Service %s)", self.model, version, name)

    def wait_ready(self, version: str) -> None:
        name = workload_name(self.model, version)
        deadline = self._clock() + self.settings.ready_timeout_s
        while True:
            health = deployment_health(self.client.get(DEPLOYMENT, name), name)
            if health.ok:
                return
            if self._clock() >= deadline:
                raise RuntimeError(
                    f"{health.detail} after {self.settings.ready_timeout_s:g} s "
                    f"(MODELOPS_K8S_READY_TIMEOUT_S); see `kubectl -n {self.settings.namespace} "
                    f"describe deployment {name}` and its pods' events"
                )
            log.info("Waiting for %s", health.detail)
            self._sleep(self.poll_s)

    def _sync_route(self, state: DeploymentState) -> bool:
        """Make the route say what the state says; no call when it already does. True if it changed."""
        backends = route_backends(state)
        applied = state.splitter.get("route")
        route = render_route(self.model, backends, settings=self.settings) if backends else None
        wanted = route["spec"] if route else None
        if wanted == applied:
            return False
        name = dns_name(self.model)
        if route is None:
            self.client.delete(HTTPROUTE, name)
        else:
            self.client.apply(HTTPROUTE, name, route)
        state.splitter.update(kind=HTTPROUTE, name=name, namespace=self.settings.namespace, route=wanted)
        log.info(
            "%s: route %s -> %s",
            self.model,
            name,
            ", ".join(f"v{v} {w}%" for v, w in backends) or "deleted (nothing deployed)",
        )
        return True

    def _drain(self) -> None:
        # The Gateway applies a route change asynchronously; requests it still sends finish first.
        if self.settings.drain_s > 0:
            self._sleep(self.settings.drain_s)

    def _retire(self) -> None:
        """Delete versions the route no longer names (recorded before deleting, so a retry finishes the job)."""
        with self.file.locked() as state:
            retiring = list(state.splitter.get("retiring") or [])
        if not retiring:
            return
        self._drain()
        for version in retiring:
            self._delete_version(version)
        with self.file.locked() as state:
            state.splitter["retiring"] = [
                v for v in state.splitter.get("retiring") or [] if v not in retiring
            ]

    # --- the interface ----------------------------------------------------------------------

    def shadow_token(self) -> str:
        """The deployment's shadow secret, as the pods read it: the cluster's Secret, created when absent.

        An existing Secret wins over this worker's settings, so every Airflow worker (each with its
        own state folder) sends the token the pods have. A new one holds ``MODELOPS_SHADOW_TOKEN``
        when set, else a random token.
        """
        import base64
        import secrets

        if self._shadow_token:
            return self._shadow_token
        name = shadow_secret_name(self.model)
        found = self.client.get(SECRET, name)
        encoded = ((found or {}).get("data") or {}).get(SHADOW_TOKEN_KEY)
        if encoded:
            token = base64.b64decode(encoded).decode()
        else:
            token = os.environ.get("MODELOPS_SHADOW_TOKEN") or secrets.token_urlsafe(32)
            self.client.apply(SECRET, name, render_shadow_secret(self.model, token, settings=self.settings))
            log.info("Created the shadow Secret %s for %s", name, self.model)
        self._shadow_token = token
        return token

    def endpoint(self) -> str:
        return f"{self.settings.endpoint_base}/{dns_name(self.model)}"

    def state(self) -> DeploymentState:
        return self.file.read()

    def deploy(self, variant: str, version: str, bento_tag: str) -> Deployed:
        version = str(version)
        with self.file.locked() as state:
            current = state.variants.get(variant)
            if current is not None and current.version == version and self._health(version).ok:
                log.info(
                    "%s v%s already runs as %s (%s)",
                    self.model,
                    version,
                    variant,
                    workload_name(self.model, version),
                )
                self._sync_route(state)
                return current
            other = state.variants.get(CANARY if variant == STABLE else STABLE)
            if other is not None and other.version == version:
                raise RuntimeError(
                    f"{self.model} v{version} already runs as "
                    f"{CANARY if variant == STABLE else STABLE}; stop it before deploying it "
                    f"as {variant}"
                )
            self._apply_version(version, variant, bento_tag)
            try:
                self.wait_ready(version)
            except Exception:
                if current is None or current.version != version:
                    self._delete_version(version)  # nothing routes to it yet
                raise
            deployed = self._deployed(version, bento_tag)
            state.variants[variant] = deployed
            if variant == CANARY:
                state.canary_percent = 0  # a new canary starts without traffic; the stages move it
            self._sync_route(state)  # only now that its pods are ready
            if current is not None and current.version != version:
                state.splitter["retiring"] = [*state.splitter.get("retiring", []), current.version]
        self._retire()
        return deployed

    def set_canary_percent(self, percent: int) -> None:
        with self.file.locked() as state:
            check_canary_share(state, percent)
            old = state.canary_percent
            state.canary_percent = percent
            if not self._sync_route(state):
                log.info("%s: canary already receives %d%% of requests", self.model, percent)
                return
        log.info("%s: canary share %d%% -> %d%%", self.model, old, percent)

    def _health(self, version: str) -> Health:
        name = workload_name(self.model, version)
        return deployment_health(self.client.get(DEPLOYMENT, name), name)

    def health(self, variant: str) -> Health:
        deployed = self.state().variants.get(variant)
        if deployed is None:
            return Health(False, False, f"no {variant} is deployed")
        return self._health(deployed.version)

    def router_health(self) -> RouterHealth:
        """The Gateway routes the endpoint; this checks only that the model's HTTPRoute was applied.

        The Gateway's data path is the cluster's to watch (its controller restarts it); probing it
        from an Airflow worker needs a route to the Gateway that a worker may not have.
        """
        route = self.state().splitter.get("route")
        if route is None:
            return RouterHealth(False, f"no HTTPRoute {dns_name(self.model)} was applied for {self.model}")
        return RouterHealth(
            True, f"HTTPRoute {dns_name(self.model)} applied (the Gateway itself is not probed)"
        )

    def prometheus(self) -> PrometheusQuery:
        if not self.settings.prometheus_url:
            raise KubernetesSettingsError(
                "MODELOPS_PROMETHEUS_URL is not set: the kubernetes rollout backend reads the canary's and "
                "stable's metrics from a Prometheus server that scrapes the model pods (e.g. "
                "http://prometheus-operated.monitoring.svc:9090)"
            )
        return PrometheusQuery(self.settings.prometheus_url)

    def metrics_window(self, variant: str) -> MetricsWindow:
        deployed = self.state().variants[variant]
        return self.prometheus().window(self.model, deployed.version, variant)

    def metrics_text(self, variant: str) -> str:
        deployed = self.state().variants[variant]
        return self.prometheus().exposition(self.model, deployed.version, variant)

    def promote_canary(self) -> Deployed:
        with self.file.locked() as state:
            canary, stable = state.variants.get(CANARY), state.variants.get(STABLE)
            if canary is None:
                if stable is None:
                    raise RuntimeError(f"{self.model} has neither a canary to promote nor a stable version")
                log.info("%s: nothing to promote, v%s is stable", self.model, stable.version)
                promoted = stable
            else:
                # The canary's pods become "stable" (their log and metrics say so) while they keep answering.
                self._apply_version(canary.version, STABLE, canary.bento_tag)
                self.wait_ready(canary.version)
                promoted = canary
                state.variants = {STABLE: promoted}
                state.canary_percent = 0
                self._sync_route(state)
                if stable is not None and stable.version != canary.version:
                    state.splitter["retiring"] = [*state.splitter.get("retiring", []), stable.version]
        self._retire()
        return promoted

    def stop(self, variant: str) -> None:
        with self.file.locked() as state:
            deployed = state.variants.pop(variant, None)
            if variant == CANARY:
                state.canary_percent = 0
            if deployed is None:
                return
            self._sync_route(state)
            state.splitter["retiring"] = [*state.splitter.get("retiring", []), deployed.version]
        self._retire()
        log.info("Stopped %s v%s (%s)", self.model, deployed.version, variant)

    def shutdown(self) -> None:
        with self.file.locked() as state:
            versions = [d.version for d in state.variants.values()] + list(
                state.splitter.get("retiring") or []
            )
            state.variants, state.canary_percent = {}, 0
            self._sync_route(state)
            state.splitter["retiring"] = versions
        self._retire()
        self.client.delete(SECRET, shadow_secret_name(self.model))  # no pod of the model is left to read it
        self._shadow_token = None


def _resources_of(model: str) -> PodResources:
    from include.modelops.spec import load_spec_by_name

    spec = load_spec_by_name(model)
    k = spec.rollout.kubernetes if spec.rollout is not None else None
    return PodResources(k.replicas, k.cpu, k.memory) if k is not None else PodResources()
