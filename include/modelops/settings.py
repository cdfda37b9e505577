"""Settings read from the environment: the one place a knob is defined, typed and documented.

Every setting is a field below with its environment variable, its default and what it means;
``docs/settings.md`` is generated from them (``make spec-docs``; a test keeps it current).
Defaults are for the embedded, one-laptop mode, with all state under ``MODELOPS_STATE_DIR``; at
scale the same names point at shared services. A value that cannot be used (``MODELOPS_SERVE_WORKERS=many``,
``MODELOPS_K8S_TOLERATIONS`` that is not a JSON list) is refused with the variable's name, and an
empty variable counts as unset.

Three groups: :class:`Settings` (everything), :class:`PodSettings` (training pods, ``training.backend:
kubernetes``) and :class:`ServingClusterSettings` (``rollout.backend: kubernetes``).
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_OFF = ("off", "0", "false", "no")


def _env(name: str, default: Any = None, doc: str = "", *, shown: str | None = None, blank: Any = ...) -> Any:
    """A field read from the environment variable ``name``.

    ``shown`` is the default as ``docs/settings.md`` states it (when it is computed, e.g. under the
    state folder); ``blank`` is what an empty variable means when it is not "unset".
    """
    extra: dict[str, Any] = {"shown": shown}
    if blank is not ...:
        extra["blank"] = blank
    return Field(default, alias=name, description=doc, json_schema_extra=extra)


class _EnvSettings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=True, extra="ignore", populate_by_name=True, env_nested_delimiter=None
    )

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            field = cls.model_fields[info.field_name]
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            return extra["blank"] if "blank" in extra else field.get_default(call_default_factory=True)
        return value

    @classmethod
    def variables(cls) -> list[tuple[str, str, str]]:
        """``(variable, default as documented, meaning)`` of every field read from the environment."""
        rows = []
        for name, field in cls.model_fields.items():
            if not field.alias:
                continue
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            shown = extra.get("shown")
            if shown is None:
                default = field.get_default(call_default_factory=True)
                shown = "unset" if default in (None, "", (), [], {}) else f"``{default}``"
            rows.append((field.alias, shown, field.description or ""))
        return rows


class Settings(_EnvSettings):
    """Where state lives, which services to use, how to serve (``get_settings()`` reads them now)."""

    state_dir: Path = _env(
        "MODELOPS_STATE_DIR",
        PROJECT_ROOT / ".state",
        "root of all local state (git-ignored)",
        shown="``<project>/.state``",
    )
    specs_dir: Path = _env(
        "MODELOPS_SPECS_DIR",
        PROJECT_ROOT / "include" / "models",
        "folder of model specs (``<name>.yaml``)",
        shown="``<project>/include/models``",
    )
    mlflow_tracking_uri: str = _env(
        "MLFLOW_TRACKING_URI",
        "",
        "MLflow tracking server. Unset, the ``make`` commands start this checkout's own server on its "
        "store (``<state>/mlflow``) on a free port, so two checkouts never share a registry by accident; "
        "Airflow workers at scale must set it",
    )
    mlflow_ui_url_setting: str = _env(
        "MODELOPS_MLFLOW_UI_URL", "", "base URL for links in reports and cards", shown="the tracking URI"
    )
    runs_dir_setting: Path | None = _env(
        "MODELOPS_RUNS_DIR", None, "per-DAG-run working files (splits, reports)", shown="``<state>/runs``"
    )
    bentoml_home_setting: Path | None = _env(
        "BENTOML_HOME", None, "BentoML store (models and bentos)", shown="``<state>/bentoml``"
    )
    serve_host: str = _env("MODELOPS_SERVE_HOST", "127.0.0.1", "host that smoke-serve binds to")
    bind_host: str = _env(
        "MODELOPS_BIND_HOST",
        "127.0.0.1",
        "address ``make up`` binds Airflow's API server (UI, REST API) and its worker and triggerer log "
        "servers to; ``0.0.0.0`` opens them to the network (put authentication and TLS in front first)",
    )
    data_roots_setting: Annotated[tuple[Path, ...], NoDecode] = _env(
        "MODELOPS_DATA_ROOTS",
        (),
        "folders (separated by ``:``) a run's conf ``data_path`` (REST trigger, ``make run DATA=``) must lie "
        "under; anything else is refused before it is opened",
        shown="``<state>/data`` and the folder of the spec's own data",
    )
    shadow_token_setting: str = _env(
        "MODELOPS_SHADOW_TOKEN",
        "",
        "secret the shadow replayer sends in ``X-ModelOps-Shadow``; a service logs a request as shadow "
        "traffic only when the header matches it (set it in the serving pods' secret on Kubernetes)",
        shown="generated once into ``<state>/secrets/shadow_token`` (0600)",
    )
    serve_timeout_s: float = _env(
        "MODELOPS_SERVE_TIMEOUT_S",
        120.0,
        "how long smoke-serve waits for the service to be ready",
        shown="``120``",
    )
    training_run_stale_after_s: float = _env(
        "MODELOPS_TRAINING_RUN_STALE_AFTER_S",
        43200.0,
        'the monitoring DAG\'s "training queued or running" guard ignores a training run started (or '
        "queued) longer ago than this, and logs it as stale: a run whose process was killed (kill -9, a "
        "lost machine) never ends by itself. Keep it above your longest training run, approvals included",
        shown="``43200`` (12 h)",
    )
    git_commit_setting: str = _env(
        "MODELOPS_GIT_COMMIT",
        "",
        "commit recorded on model versions (set it in images without .git)",
        shown="``git rev-parse HEAD``",
    )
    airflow_ui_url_setting: str = _env(
        "MODELOPS_AIRFLOW_UI_URL", "http://127.0.0.1:8080", "base URL for links to DAG runs"
    )
    airflow_api_url: str = _env(
        "MODELOPS_AIRFLOW_API_URL",
        "",
        "Airflow's REST API (its base URL, e.g. ``https://airflow.example``) that ``make audit`` reads DAG runs "
        "from; unset, it reads this checkout's metadata DB through the ``airflow`` CLI",
    )
    airflow_api_token: SecretStr | None = _env(
        "MODELOPS_AIRFLOW_API_TOKEN", None, "bearer token for ``MODELOPS_AIRFLOW_API_URL``"
    )
    airflow_api_username: str = _env(
        "MODELOPS_AIRFLOW_API_USERNAME",
        "",
        "user whose token (``POST /auth/token``) the audit asks for, when no token is set",
    )
    airflow_api_password: SecretStr | None = _env(
        "MODELOPS_AIRFLOW_API_PASSWORD", None, "that user's password"
    )
    serve_variant: str = _env(
        "MODELOPS_SERVE_VARIANT",
        "stable",
        "the variant a service reports in its log and metrics: ``stable``, ``canary``, ``shadow`` "
        "(``smoke`` for the packaging smoke test)",
    )
    serve_workers: int | str = _env(
        "MODELOPS_SERVE_WORKERS",
        "cpu_count",
        "worker processes of a served bento (a number, or ``cpu_count``: one per core)",
    )
    serve_max_batch_rows: int = _env(
        "MODELOPS_SERVE_MAX_BATCH_ROWS",
        100,
        "adaptive batching: most rows scored in one model call across concurrent requests (``1``: off)",
    )
    inference_log_enabled: bool = _env(
        "MODELOPS_INFERENCE_LOG",
        True,
        "``off`` stops a service from writing the inference log (e.g. to measure its cost)",
        shown="``on``",
    )
    rollout_port: int | None = _env(
        "MODELOPS_ROLLOUT_PORT",
        None,
        "port of a model's endpoint behind the local rollout splitter (Caddy); the deployment state "
        "(``<state>/rollout/<model>/deployment.json``) keeps the one chosen",
        shown="a free port, then kept",
    )
    inference_log_spool_setting: str = _env(
        "MODELOPS_INFERENCE_LOG_SPOOL",
        "",
        "the inference log's write-ahead spool, a folder on local disk: each answered request's rows are "
        "appended there before the answer goes out, and rows a killed worker left are written by the next "
        "one to start (``off``: no spool; see ``include/modelops/serving/inference_log.py``)",
        shown="``<state>/inference_log_spool``",
    )
    inference_log_url_setting: str = _env(
        "MODELOPS_INFERENCE_LOG_URL",
        "",
        "inference log and label feed: a folder, or an fsspec URL such as ``s3://bucket/prefix`` (needs ``s3fs``)",
        shown="``<state>/inference_log``",
    )

    @field_validator("state_dir", "specs_dir", "runs_dir_setting", "bentoml_home_setting", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("data_roots_setting", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p.strip())
        return value

    @field_validator("bind_host", "serve_host", mode="after")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("inference_log_enabled", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        # Anything but off/0/false/no is on, as documented.
        return value.strip().lower() not in _OFF if isinstance(value, str) else value

    @field_validator("serve_workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> int | str:
        raw = str(value).strip()
        if raw == "cpu_count":
            return "cpu_count"
        try:
            return max(1, int(raw))
        except ValueError:
            raise ValueError(f"MODELOPS_SERVE_WORKERS must be a number or 'cpu_count', got {raw!r}") from None

    @field_validator("rollout_port", mode="after")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        return value or None

    # What the rest of the library reads: the computed defaults filled in.

    @property
    def project_root(self) -> Path:
        return PROJECT_ROOT

    @property
    def bentos_dir(self) -> Path:
        """Source folder of the BentoML service."""
        return PROJECT_ROOT / "bentos"

    @property
    def runs_dir(self) -> Path:
        return self.runs_dir_setting or self.state_dir / "runs"

    @property
    def bentoml_home(self) -> Path:
        return self.bentoml_home_setting or self.state_dir / "bentoml"

    @property
    def mlflow_ui_url(self) -> str:
        return (self.mlflow_ui_url_setting or self.mlflow_tracking_uri).rstrip("/")

    @property
    def airflow_ui_url(self) -> str:
        return self.airflow_ui_url_setting.rstrip("/")

    @property
    def data_roots(self) -> tuple[Path, ...]:
        return self.data_roots_setting

    @property
    def inference_log_url(self) -> str:
        return self.inference_log_url_setting or str(self.state_dir / "inference_log")

    @property
    def inference_log_spool(self) -> Path | None:
        raw = self.inference_log_spool_setting.strip()
        if raw.lower() in _OFF:
            return None
        return Path(raw).expanduser() if raw else self.state_dir / "inference_log_spool"


def _read(cls: type[_EnvSettings], error: type[Exception] = ValueError) -> Any:
    """``cls()`` from the environment, or ``error`` naming the variable that cannot be used."""
    try:
        return cls()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = cls.model_fields.get(str(first["loc"][0])) if first.get("loc") else None
        name = field.alias if field is not None and field.alias else str(first.get("loc", ["?"])[0])
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise error(msg if name in msg else f"{name}: {msg} (got {first.get('input')!r})") from None
    except SettingsError as exc:  # a JSON setting that is not JSON
        cause = exc.__cause__
        field_name = str(exc).split('"')[1] if '"' in str(exc) else ""
        field = cls.model_fields.get(field_name)
        name = field.alias if field is not None and field.alias else field_name
        raise error(f"{name} is not valid JSON ({cause or exc})") from None


def get_settings() -> Settings:
    """The settings in the environment now (cheap: read again only when a variable changed)."""
    return _settings_for(os.getcwd(), tuple(os.environ.get(f.alias) for f in Settings.model_fields.values()))


@lru_cache(maxsize=16)
def _settings_for(cwd: str, values: tuple[str | None, ...]) -> Settings:  # noqa: ARG001 - the cache key
    return _read(Settings)


def shadow_token() -> str:
    """The deployment's shadow secret: ``MODELOPS_SHADOW_TOKEN``, else one generated once into the state folder.

    The file is created 0600 (its folder 0700), so only this user's processes (the rollout's
    replayer and the services it starts, which share the state folder) can read it.
    """
    if get_settings().shadow_token_setting:
        return get_settings().shadow_token_setting
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


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit the code runs from: ``MODELOPS_GIT_COMMIT``, else ``git rev-parse``, else ``unknown``."""
    if get_settings().git_commit_setting:
        return get_settings().git_commit_setting
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


class KubernetesSettingsError(ValueError):
    """A ``MODELOPS_K8S_*`` setting has a value that cannot be used; the message names it."""


class PodSettings(_EnvSettings):
    """Cluster-side settings of training pods (``training.backend: kubernetes``; see ``training/pod.py``)."""

    image: str = _env(
        "MODELOPS_TRAINING_IMAGE",
        "modelops-trainer:latest",
        "training image (``docker build --target trainer``)",
    )
    image_pull_policy: str = _env("MODELOPS_TRAINING_IMAGE_PULL_POLICY", "IfNotPresent", "image pull policy")
    conn_id: str = _env("MODELOPS_K8S_CONN_ID", "kubernetes_default", "Airflow connection to the cluster")
    namespace: str | None = _env(
        "MODELOPS_K8S_NAMESPACE",
        None,
        "namespace of the pod, PVC and secret",
        shown="unset: the connection's namespace, else ``default``",
    )
    service_account: str | None = _env(
        "MODELOPS_K8S_SERVICE_ACCOUNT",
        None,
        "service account (its token is not mounted)",
        shown="unset: the namespace's default",
    )
    checkpoint_pvc: str | None = _env(
        "MODELOPS_CHECKPOINT_PVC",
        "modelops-checkpoints",
        "claim for ``/checkpoints``; empty: an emptyDir (no resume)",
        blank=None,
    )
    mlflow_secret: str = _env(
        "MODELOPS_MLFLOW_SECRET",
        "mlflow-credentials",
        "secret holding ``MLFLOW_TRACKING_URI`` and credentials",
    )
    data_pvc: str | None = _env(
        "MODELOPS_K8S_DATA_PVC", None, "claim holding ``MODELOPS_RUNS_DIR``, mounted read-only at that path"
    )
    data_mount_path: str | None = None  # where data_pvc is mounted: the runs folder (from_env)
    kueue_queue: str | None = _env(
        "MODELOPS_K8S_KUEUE_QUEUE", None, "Kueue LocalQueue when the spec names none"
    )
    node_selector: dict[str, str] = _env(
        "MODELOPS_K8S_NODE_SELECTOR", {}, "JSON object merged under the spec's node selector", shown="``{}``"
    )
    tolerations: list[dict[str, Any]] = _env(
        "MODELOPS_K8S_TOLERATIONS", [], "JSON list added to the spec's tolerations", shown="``[]``"
    )
    affinity: dict[str, Any] | None = _env(
        "MODELOPS_K8S_AFFINITY", None, "JSON affinity object for every training pod"
    )
    scratch_size: str = _env("MODELOPS_K8S_SCRATCH_SIZE", "10Gi", "size limit of the ``/tmp`` emptyDir")
    schedule_timeout_s: int = _env(
        "MODELOPS_K8S_SCHEDULE_TIMEOUT_S",
        3600,
        "how long the pod may wait for a node (GPU autoscaling, Kueue admission)",
    )
    startup_timeout_s: int = _env(
        "MODELOPS_K8S_STARTUP_TIMEOUT_S",
        900,
        "how long the pod may take to start once scheduled (large CUDA image pull)",
    )

    @classmethod
    def from_env(cls) -> PodSettings:
        """Read the settings from the environment now."""
        return _read(cls, KubernetesSettingsError).model_copy(
            update={"data_mount_path": str(get_settings().runs_dir)}
        )


class ServingClusterSettings(_EnvSettings):
    """Cluster-side settings of the ``kubernetes`` rollout backend (see ``rollout/kubernetes.py``, ``docs/rollout.md``).

    The cluster is reached from the Airflow worker with the Airflow connection ``MODELOPS_K8S_CONN_ID``
    (``KubernetesHook``, as training pods are started).
    """

    namespace: str = _env(
        "MODELOPS_K8S_NAMESPACE",
        "default",
        "namespace of the model's Deployments, Services and HTTPRoute (shared with training pods)",
    )
    conn_id: str = _env(
        "MODELOPS_K8S_CONN_ID",
        "kubernetes_default",
        "Airflow connection to the cluster, as for training pods (the default one may be left undefined: "
        "in-cluster service account, else the kubeconfig)",
    )
    context: str | None = _env(
        "MODELOPS_K8S_CONTEXT",
        None,
        "kubeconfig context, outside a cluster",
        shown="the kubeconfig's current context",
    )
    image_registry: str = _env(
        "MODELOPS_IMAGE_REGISTRY",
        "",
        "prefix of the bento images: ``<registry>/<bento tag>``, the image ``bentoml containerize <bento tag>`` "
        "builds, pushed there",
    )
    image_pull_policy: str = _env(
        "MODELOPS_K8S_IMAGE_PULL_POLICY",
        "IfNotPresent",
        "pull policy of the bento images (their tags are versions, never moved)",
    )
    gateway: str = _env(
        "MODELOPS_K8S_GATEWAY", "modelops", "the Gateway (Gateway API) the model's HTTPRoute attaches to"
    )
    gateway_namespace: str | None = _env(
        "MODELOPS_K8S_GATEWAY_NAMESPACE", None, "the Gateway's namespace", shown="the namespace"
    )
    gateway_url: str | None = _env(
        "MODELOPS_K8S_GATEWAY_URL",
        None,
        "the Gateway's address as the Airflow workers reach it; a model answers under ``<url>/<model-name>``",
        shown="``http://<gateway>.<gateway namespace>.svc.cluster.local``",
    )
    hostname: str | None = _env(
        "MODELOPS_K8S_HOSTNAME",
        None,
        "host name the HTTPRoute matches",
        shown="unset: every host of the Gateway's listener",
    )
    serving_secret: str | None = _env(
        "MODELOPS_K8S_SERVING_SECRET",
        None,
        "secret whose keys become the serving pods' environment (e.g. object-store keys for the inference log)",
    )
    ready_timeout_s: float = _env(
        "MODELOPS_K8S_READY_TIMEOUT_S",
        600.0,
        "how long a new Deployment may take until every replica is ready (image pull, model load)",
        shown="``600``",
    )
    drain_s: float = _env(
        "MODELOPS_K8S_DRAIN_S",
        10.0,
        "wait between moving the route away from a version and deleting it (the Gateway applies routes asynchronously)",
        shown="``10``",
    )
    prometheus_url: str | None = _env(
        "MODELOPS_PROMETHEUS_URL",
        None,
        "Prometheus server whose HTTP API (``/api/v1/query``) has the serving pods' metrics",
        shown="unset (required for canary analysis)",
    )
    inference_log_url: str = ""  # the serving pods' inference log: Settings.inference_log_url (from_env)

    @field_validator("image_registry", mode="after")
    @classmethod
    def _registry(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("prometheus_url", mode="after")
    @classmethod
    def _prometheus(cls, value: str | None) -> str | None:
        return (value or "").rstrip("/") or None

    @property
    def endpoint_base(self) -> str:
        """The Gateway's URL (without a trailing slash)."""
        if self.gateway_url:
            return self.gateway_url.rstrip("/")
        return f"http://{self.gateway}.{self.gateway_namespace or self.namespace}.svc.cluster.local"

    @classmethod
    def from_env(cls) -> ServingClusterSettings:
        """Read the settings from the environment now."""
        return _read(cls, KubernetesSettingsError).model_copy(
            update={"inference_log_url": get_settings().inference_log_url}
        )
