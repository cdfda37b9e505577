"""Settings read from the environment: the one place a knob is defined and documented.

Every setting has a default for the embedded, one-laptop mode, with all state under
``MODELOPS_STATE_DIR``. At scale the same names point at shared services.

| variable | default | meaning |
| --- | --- | --- |
| ``MODELOPS_STATE_DIR`` | ``<project>/.state`` | root of all local state (git-ignored) |
| ``MODELOPS_SPECS_DIR`` | ``<project>/include/models`` | folder of model specs (``<name>.yaml``) |
| ``MLFLOW_TRACKING_URI`` | unset | MLflow tracking server. Unset, the ``make`` commands start this checkout's own server on its store (``<state>/mlflow``) on a free port, so two checkouts never share a registry by accident; Airflow workers at scale must set it |
| ``MODELOPS_MLFLOW_UI_URL`` | the tracking URI | base URL for links in reports and cards |
| ``MODELOPS_RUNS_DIR`` | ``<state>/runs`` | per-DAG-run working files (splits, reports) |
| ``BENTOML_HOME`` | ``<state>/bentoml`` | BentoML store (models and bentos) |
| ``MODELOPS_SERVE_HOST`` | ``127.0.0.1`` | host that smoke-serve binds to |
| ``MODELOPS_BIND_HOST`` | ``127.0.0.1`` | address ``make up`` binds Airflow's API server (UI, REST API) and its worker and triggerer log servers to; ``0.0.0.0`` opens them to the network (put authentication and TLS in front first) |
| ``MODELOPS_DATA_ROOTS`` | ``<state>/data`` and the folder of the spec's own data | folders (separated by ``:``) a run's conf ``data_path`` (REST trigger, ``make run DATA=``) must lie under; anything else is refused before it is opened |
| ``MODELOPS_SHADOW_TOKEN`` | generated once into ``<state>/secrets/shadow_token`` (0600) | secret the shadow replayer sends in ``X-ModelOps-Shadow``; a service logs a request as shadow traffic only when the header matches it (set it in the serving pods' secret on Kubernetes) |
| ``MODELOPS_SERVE_TIMEOUT_S`` | ``120`` | how long smoke-serve waits for the service to be ready |
| ``MODELOPS_TRAINING_RUN_STALE_AFTER_S`` | ``43200`` (12 h) | the monitoring DAG's "training queued or running" guard ignores a training run started (or queued) longer ago than this, and logs it as stale: a run whose process was killed (kill -9, a lost machine) never ends by itself. Keep it above your longest training run, approvals included |
| ``MODELOPS_GIT_COMMIT`` | ``git rev-parse HEAD`` | commit recorded on model versions (set it in images without .git) |
| ``MODELOPS_AIRFLOW_UI_URL`` | ``http://127.0.0.1:8080`` | base URL for links to DAG runs |
| ``MODELOPS_SERVE_VARIANT`` | ``stable`` | the variant a service reports in its log and metrics: ``stable``, ``canary``, ``shadow`` (``smoke`` for the packaging smoke test) |
| ``MODELOPS_SERVE_WORKERS`` | ``cpu_count`` | worker processes of a served bento (a number, or ``cpu_count``: one per core) |
| ``MODELOPS_SERVE_MAX_BATCH_ROWS`` | ``100`` | adaptive batching: most rows scored in one model call across concurrent requests (``1``: off) |
| ``MODELOPS_INFERENCE_LOG`` | ``on`` | ``off`` stops a service from writing the inference log (e.g. to measure its cost) |
| ``MODELOPS_ROLLOUT_PORT`` | a free port, then kept | port of a model's endpoint behind the local rollout splitter (Caddy); the deployment state (``<state>/rollout/<model>/deployment.json``) keeps the one chosen |
| ``MODELOPS_INFERENCE_LOG_SPOOL`` | ``<state>/inference_log_spool`` | the inference log's write-ahead spool, a folder on local disk: each answered request's rows are appended there before the answer goes out, and rows a killed worker left are written by the next one to start (``off``: no spool; see ``include/modelops/serving/inference_log.py``) |
| ``MODELOPS_INFERENCE_LOG_URL`` | ``<state>/inference_log`` | inference log and label feed: a folder, or an fsspec URL such as ``s3://bucket/prefix`` (needs ``s3fs``) |

Training pods (``training.backend: kubernetes``; see ``include/modelops/training/pod.py``):

| variable | default | meaning |
| --- | --- | --- |
| ``MODELOPS_TRAINING_IMAGE`` | ``modelops-trainer:latest`` | training image (``docker build --target trainer``) |
| ``MODELOPS_TRAINING_IMAGE_PULL_POLICY`` | ``IfNotPresent`` | image pull policy |
| ``MODELOPS_K8S_CONN_ID`` | ``kubernetes_default`` | Airflow connection to the cluster |
| ``MODELOPS_K8S_NAMESPACE`` | unset: the connection's namespace, else ``default`` | namespace of the pod, PVC and secret |
| ``MODELOPS_K8S_SERVICE_ACCOUNT`` | unset: the namespace's default | service account (its token is not mounted) |
| ``MODELOPS_CHECKPOINT_PVC`` | ``modelops-checkpoints`` | claim for ``/checkpoints``; empty: an emptyDir (no resume) |
| ``MODELOPS_MLFLOW_SECRET`` | ``mlflow-credentials`` | secret holding ``MLFLOW_TRACKING_URI`` and credentials |
| ``MODELOPS_K8S_DATA_PVC`` | unset | claim holding ``MODELOPS_RUNS_DIR``, mounted read-only at that path |
| ``MODELOPS_K8S_KUEUE_QUEUE`` | unset | Kueue LocalQueue when the spec names none |
| ``MODELOPS_K8S_NODE_SELECTOR`` | ``{}`` | JSON object merged under the spec's node selector |
| ``MODELOPS_K8S_TOLERATIONS`` | ``[]`` | JSON list added to the spec's tolerations |
| ``MODELOPS_K8S_AFFINITY`` | unset | JSON affinity object for every training pod |
| ``MODELOPS_K8S_SCRATCH_SIZE`` | ``10Gi`` | size limit of the ``/tmp`` emptyDir |
| ``MODELOPS_K8S_SCHEDULE_TIMEOUT_S`` | ``3600`` | how long the pod may wait for a node (GPU autoscaling, Kueue admission) |
| ``MODELOPS_K8S_STARTUP_TIMEOUT_S`` | ``900`` | how long the pod may take to start once scheduled (large CUDA image pull) |

Serving on Kubernetes (``rollout.backend: kubernetes``; see ``include/modelops/rollout/kubernetes.py``
and ``docs/rollout.md``). The cluster is reached from the Airflow worker with the pod's service
account when it runs in a pod, else with ``KUBECONFIG`` (or ``~/.kube/config``):

| variable | default | meaning |
| --- | --- | --- |
| ``MODELOPS_K8S_NAMESPACE`` | ``default`` | namespace of the model's Deployments, Services and HTTPRoute (shared with training pods) |
| ``MODELOPS_K8S_CONTEXT`` | the kubeconfig's current context | kubeconfig context, outside a cluster |
| ``MODELOPS_IMAGE_REGISTRY`` | unset | prefix of the bento images: ``<registry>/<bento tag>``, the image ``bentoml containerize <bento tag>`` builds, pushed there |
| ``MODELOPS_K8S_IMAGE_PULL_POLICY`` | ``IfNotPresent`` | pull policy of the bento images (their tags are versions, never moved) |
| ``MODELOPS_K8S_GATEWAY`` | ``modelops`` | the Gateway (Gateway API) the model's HTTPRoute attaches to |
| ``MODELOPS_K8S_GATEWAY_NAMESPACE`` | the namespace | the Gateway's namespace |
| ``MODELOPS_K8S_GATEWAY_URL`` | ``http://<gateway>.<gateway namespace>.svc.cluster.local`` | the Gateway's address as the Airflow workers reach it; a model answers under ``<url>/<model-name>`` |
| ``MODELOPS_K8S_HOSTNAME`` | unset | host name the HTTPRoute matches (unset: every host of the Gateway's listener) |
| ``MODELOPS_K8S_SERVING_SECRET`` | unset | secret whose keys become the serving pods' environment (e.g. object-store keys for the inference log) |
| ``MODELOPS_K8S_READY_TIMEOUT_S`` | ``600`` | how long a new Deployment may take until every replica is ready (image pull, model load) |
| ``MODELOPS_K8S_DRAIN_S`` | ``10`` | wait between moving the route away from a version and deleting it (the Gateway applies routes asynchronously) |
| ``MODELOPS_PROMETHEUS_URL`` | unset (required for canary analysis) | Prometheus server whose HTTP API (``/api/v1/query``) has the serving pods' metrics |
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment's settings (see the module docstring for each)."""

    project_root: Path
    state_dir: Path
    specs_dir: Path
    runs_dir: Path
    bentoml_home: Path
    mlflow_tracking_uri: str
    mlflow_ui_url: str
    airflow_ui_url: str
    serve_host: str
    serve_timeout_s: float
    inference_log_url: str
    serve_variant: str = "stable"
    inference_log_enabled: bool = True
    inference_log_spool: Path | None = None
    serve_workers: int | str = "cpu_count"
    serve_max_batch_rows: int = 100
    rollout_port: int | None = None
    bind_host: str = "127.0.0.1"
    data_roots: tuple[Path, ...] = ()
    training_run_stale_after_s: float = 43200.0

    @property
    def bentos_dir(self) -> Path:
        """Source folder of the BentoML service."""
        return self.project_root / "bentos"


def get_settings() -> Settings:
    """Read the settings from the environment now (cheap; not cached so tests can change env)."""
    state = _path("MODELOPS_STATE_DIR", PROJECT_ROOT / ".state")
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    return Settings(
        project_root=PROJECT_ROOT,
        state_dir=state,
        specs_dir=_path("MODELOPS_SPECS_DIR", PROJECT_ROOT / "include" / "models"),
        runs_dir=_path("MODELOPS_RUNS_DIR", state / "runs"),
        bentoml_home=_path("BENTOML_HOME", state / "bentoml"),
        mlflow_tracking_uri=tracking,
        mlflow_ui_url=os.environ.get("MODELOPS_MLFLOW_UI_URL", tracking).rstrip("/"),
        airflow_ui_url=os.environ.get("MODELOPS_AIRFLOW_UI_URL", "http://127.0.0.1:8080").rstrip("/"),
        serve_host=os.environ.get("MODELOPS_SERVE_HOST", "127.0.0.1"),
        serve_timeout_s=float(os.environ.get("MODELOPS_SERVE_TIMEOUT_S", "120")),
        training_run_stale_after_s=float(os.environ.get("MODELOPS_TRAINING_RUN_STALE_AFTER_S") or 43200),
        inference_log_url=os.environ.get("MODELOPS_INFERENCE_LOG_URL") or str(state / "inference_log"),
        serve_variant=os.environ.get("MODELOPS_SERVE_VARIANT") or "stable",
        inference_log_enabled=os.environ.get("MODELOPS_INFERENCE_LOG", "on").strip().lower()
        not in ("off", "0", "false", "no"),
        inference_log_spool=_spool(os.environ.get("MODELOPS_INFERENCE_LOG_SPOOL"), state),
        serve_workers=_workers(os.environ.get("MODELOPS_SERVE_WORKERS")),
        serve_max_batch_rows=int(os.environ.get("MODELOPS_SERVE_MAX_BATCH_ROWS") or 100),
        rollout_port=int(os.environ.get("MODELOPS_ROLLOUT_PORT") or 0) or None,
        bind_host=os.environ.get("MODELOPS_BIND_HOST", "").strip() or "127.0.0.1",
        data_roots=tuple(
            Path(p).expanduser().resolve()
            for p in os.environ.get("MODELOPS_DATA_ROOTS", "").split(os.pathsep)
            if p.strip()
        ),
    )


def shadow_token() -> str:
    """The deployment's shadow secret: ``MODELOPS_SHADOW_TOKEN``, else one generated once into the state folder.

    The file is created 0600 (its folder 0700), so only this user's processes (the rollout's
    replayer and the services it starts, which share the state folder) can read it.
    """
    if os.environ.get("MODELOPS_SHADOW_TOKEN"):
        return os.environ["MODELOPS_SHADOW_TOKEN"]
    import secrets

    folder = get_settings().state_dir / "secrets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / "shadow_token"
    if not path.exists():
        # Written whole under a temporary name, then linked: a concurrent reader never sees it half written,
        # and of two processes generating at once, the first link wins and both read the same token.
        tmp = folder / f".shadow_token.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _spool(raw: str | None, state: Path) -> Path | None:
    if raw is not None and raw.strip().lower() in ("off", "0", "false", "no"):
        return None
    return Path(raw).expanduser() if raw and raw.strip() else state / "inference_log_spool"


def _workers(raw: str | None) -> int | str:
    if not raw or raw.strip() == "cpu_count":
        return "cpu_count"
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"MODELOPS_SERVE_WORKERS must be a number or 'cpu_count', got {raw!r}") from None


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit the code runs from: ``MODELOPS_GIT_COMMIT``, else ``git rev-parse``, else ``unknown``."""
    if os.environ.get("MODELOPS_GIT_COMMIT"):
        return os.environ["MODELOPS_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


class KubernetesSettingsError(ValueError):
    """A ``MODELOPS_K8S_*`` setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class PodSettings:
    """Cluster-side settings of training pods (see the module docstring for each variable)."""

    image: str = "modelops-trainer:latest"
    image_pull_policy: str = "IfNotPresent"
    conn_id: str = "kubernetes_default"
    namespace: str | None = None
    service_account: str | None = None
    checkpoint_pvc: str | None = "modelops-checkpoints"
    mlflow_secret: str = "mlflow-credentials"
    data_pvc: str | None = None
    data_mount_path: str | None = None
    kueue_queue: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    affinity: dict[str, Any] | None = None
    scratch_size: str = "10Gi"
    schedule_timeout_s: int = 3600
    startup_timeout_s: int = 900

    @classmethod
    def from_env(cls) -> PodSettings:
        """Read the settings from the environment now."""
        env = os.environ
        d = cls()
        return cls(
            image=env.get("MODELOPS_TRAINING_IMAGE") or d.image,
            image_pull_policy=env.get("MODELOPS_TRAINING_IMAGE_PULL_POLICY") or d.image_pull_policy,
            conn_id=env.get("MODELOPS_K8S_CONN_ID") or d.conn_id,
            namespace=env.get("MODELOPS_K8S_NAMESPACE") or None,
            service_account=env.get("MODELOPS_K8S_SERVICE_ACCOUNT") or None,
            checkpoint_pvc=env.get("MODELOPS_CHECKPOINT_PVC", d.checkpoint_pvc) or None,
            mlflow_secret=env.get("MODELOPS_MLFLOW_SECRET") or d.mlflow_secret,
            data_pvc=env.get("MODELOPS_K8S_DATA_PVC") or None,
            data_mount_path=str(get_settings().runs_dir),
            kueue_queue=env.get("MODELOPS_K8S_KUEUE_QUEUE") or None,
            node_selector=_json_env("MODELOPS_K8S_NODE_SELECTOR", dict, {}),
            tolerations=_json_env("MODELOPS_K8S_TOLERATIONS", list, []),
            affinity=_json_env("MODELOPS_K8S_AFFINITY", dict, None),
            scratch_size=env.get("MODELOPS_K8S_SCRATCH_SIZE") or d.scratch_size,
            schedule_timeout_s=_int_env("MODELOPS_K8S_SCHEDULE_TIMEOUT_S", d.schedule_timeout_s),
            startup_timeout_s=_int_env("MODELOPS_K8S_STARTUP_TIMEOUT_S", d.startup_timeout_s),
        )


def _json_env(var: str, kind: type, default: Any) -> Any:
    raw = os.environ.get(var)
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise KubernetesSettingsError(
            f"{var} is not valid JSON ({exc}); expected a JSON {kind.__name__}"
        ) from None
    if not isinstance(value, kind):
        raise KubernetesSettingsError(f"{var} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _int_env(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise KubernetesSettingsError(f"{var} must be a whole number of seconds, got {raw!r}") from None


@dataclass(frozen=True)
class ServingClusterSettings:
    """Cluster-side settings of the ``kubernetes`` rollout backend (see the module docstring)."""

    namespace: str = "default"
    context: str | None = None
    image_registry: str = ""
    image_pull_policy: str = "IfNotPresent"
    gateway: str = "modelops"
    gateway_namespace: str | None = None
    gateway_url: str | None = None
    hostname: str | None = None
    serving_secret: str | None = None
    ready_timeout_s: float = 600
    drain_s: float = 10
    prometheus_url: str | None = None
    inference_log_url: str = ""

    @property
    def endpoint_base(self) -> str:
        """The Gateway's URL (without a trailing slash)."""
        if self.gateway_url:
            return self.gateway_url.rstrip("/")
        return f"http://{self.gateway}.{self.gateway_namespace or self.namespace}.svc.cluster.local"

    @classmethod
    def from_env(cls) -> ServingClusterSettings:
        """Read the settings from the environment now."""
        env = os.environ
        d = cls()
        return cls(
            namespace=env.get("MODELOPS_K8S_NAMESPACE") or d.namespace,
            context=env.get("MODELOPS_K8S_CONTEXT") or None,
            image_registry=(env.get("MODELOPS_IMAGE_REGISTRY") or "").rstrip("/"),
            image_pull_policy=env.get("MODELOPS_K8S_IMAGE_PULL_POLICY") or d.image_pull_policy,
            gateway=env.get("MODELOPS_K8S_GATEWAY") or d.gateway,
            gateway_namespace=env.get("MODELOPS_K8S_GATEWAY_NAMESPACE") or None,
            gateway_url=env.get("MODELOPS_K8S_GATEWAY_URL") or None,
            hostname=env.get("MODELOPS_K8S_HOSTNAME") or None,
            serving_secret=env.get("MODELOPS_K8S_SERVING_SECRET") or None,
            ready_timeout_s=float(_int_env("MODELOPS_K8S_READY_TIMEOUT_S", int(d.ready_timeout_s))),
            drain_s=float(_int_env("MODELOPS_K8S_DRAIN_S", int(d.drain_s))),
            prometheus_url=(env.get("MODELOPS_PROMETHEUS_URL") or "").rstrip("/") or None,
            inference_log_url=get_settings().inference_log_url,
        )
