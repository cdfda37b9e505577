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

import logging
import os
import time
from collections.abc import Callable

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
from include.modelops.rollout.kubernetes_client import KubeClient, KubernetesApiClient
from include.modelops.rollout.kubernetes_manifests import (
    DEPLOYMENT,
    HTTPROUTE,
    SECRET,
    SERVICE,
    SHADOW_TOKEN_KEY,
    PodResources,
    deployment_health,
    dns_name,
    render_deployment,
    render_route,
    render_service,
    render_shadow_secret,
    route_backends,
    service_url,
    shadow_secret_name,
    workload_name,
)
from include.modelops.rollout.prometheus import PrometheusQuery
from include.modelops.settings import KubernetesSettingsError, ServingClusterSettings

log = logging.getLogger(__name__)


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
