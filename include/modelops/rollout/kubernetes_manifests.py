"""What the Kubernetes rollout backend applies: names, the Deployment, Service, shadow Secret and HTTPRoute of a
model's versions, rendered from the spec and the settings (pure functions; validated against the API schemas in tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from include.modelops.rollout.backend import CANARY, STABLE, DeploymentState, Health
from include.modelops.serving.contract import SHADOW_HEADER
from include.modelops.settings import ServingClusterSettings

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
