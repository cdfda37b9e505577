"""The ``kubernetes`` training backend: one factory that builds the KubernetesPodOperator.

A spec with ``training.backend: kubernetes`` trains in a pod that runs the same entrypoint as
the local backend, in the training image (``Dockerfile`` target ``trainer``)::

    python -m include.modelops.training.entrypoint --model <name> --train-path <from split_dataset>
        --run-id <from validate_dataset> --checkpoint-dir /checkpoints --xcom-file /airflow/xcom/return.json

What the pod gets, and why:

* resources from the spec: ``training.gpus`` as ``nvidia.com/gpu`` limits (plus a toleration for
  the usual ``nvidia.com/gpu`` taint), ``training.cpu``/``training.memory`` as equal requests and
  limits (Guaranteed QoS: the scheduler never overcommits a training pod); node selector and
  tolerations from the spec on top of cluster-wide ones from settings; affinity from settings;
  the Kueue ``kueue.x-k8s.io/queue-name`` label when a queue is set;
* the "restricted" Pod Security Standard (non-root uid 50000, no privilege escalation, all
  capabilities dropped, seccomp ``RuntimeDefault``) and a read-only root filesystem; ``/tmp``
  is an emptyDir for scratch, ``/dev/shm`` a small memory-backed emptyDir (PyTorch uses it);
* ``/checkpoints`` on a PersistentVolumeClaim, sub-path ``<model>/<DAG run>``: a retried task
  (a preempted spot node, an evicted pod) resumes from the last finished epoch. Use a
  ReadWriteMany class if retries may land on another node while the old pod still detaches;
* the MLflow tracking URI (required key ``MLFLOW_TRACKING_URI``) and any credentials
  (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``, object-store keys) from a Kubernetes
  Secret: DAG code, the rendered pod and the task log only ever name the secret;
* labels ``modelops.io/model``, ``modelops.io/model-version`` (the spec hash) and
  ``modelops.io/dag-run`` (the run id made label-safe), besides the provider's own;
* deferrable (the worker slot is freed while the pod runs; the pod's log reaches the task log
  every 2 minutes), the pod deleted when it finishes, retries with exponential backoff, the
  result JSON (run id, model URI, GPU telemetry) pushed to XCom via ``/airflow/xcom/return.json``.

The training data must be reachable from the pod: put ``MODELOPS_RUNS_DIR`` on storage the pod
can read (set ``MODELOPS_K8S_DATA_PVC`` to mount that claim read-only at the same path) or on an
object store URI that pandas can read.

Settings: the ``MODELOPS_K8S_*``, ``MODELOPS_TRAINING_IMAGE*``, ``MODELOPS_CHECKPOINT_PVC`` and
``MODELOPS_MLFLOW_SECRET`` variables, documented with the others in ``include/modelops/settings.py``.

The ``kubernetes_default`` connection
-------------------------------------

The Airflow workers and the triggerer need it (the deferred pod is watched by the triggerer).
Inside the cluster, with a service account allowed to create, get, watch, delete and exec into
pods in the namespace::

    airflow connections add kubernetes_default --conn-type kubernetes \\
        --conn-extra '{"in_cluster": true, "namespace": "modelops"}'

From outside the cluster, point it at a kubeconfig file on the workers (never paste a
kubeconfig with credentials into code or ``airflow_settings.yaml``)::

    airflow connections add kubernetes_default --conn-type kubernetes \\
        --conn-extra '{"kube_config_path": "/usr/local/airflow/.kube/config", "namespace": "modelops"}'

or as an environment variable, e.g. from a secret manager:
``AIRFLOW_CONN_KUBERNETES_DEFAULT='{"conn_type": "kubernetes", "extra": {"in_cluster": true}}'``.
Run the xcom sidecar from a private registry with the extra ``xcom_sidecar_container_image``.

The secret, once per namespace::

    kubectl -n modelops create secret generic mlflow-credentials \\
        --from-literal=MLFLOW_TRACKING_URI=https://mlflow.example.com \\
        --from-literal=MLFLOW_TRACKING_TOKEN=...
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from include.modelops.settings import KubernetesSettingsError, PodSettings

__all__ = ["KubernetesSettingsError", "PodSettings", "training_pod_operator"]

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from include.modelops.spec import ModelSpec

TRAINER_UID = 50000  # the training image's user (and the Airflow image's)
CHECKPOINT_MOUNT = "/checkpoints"
XCOM_RESULT_FILE = "/airflow/xcom/return.json"
GPU_RESOURCE = "nvidia.com/gpu"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LABEL_PREFIX = "modelops.io"

RUN_ID_TEMPLATE = "{{ ti.xcom_pull(task_ids='validate_dataset')['run_id'] }}"
TRAIN_PATH_TEMPLATE = "{{ ti.xcom_pull(task_ids='split_dataset')['train_path'] }}"

# The DAG run id made a valid label value / path segment at render time: characters outside
# [A-Za-z0-9_.-] become '-', at most 63 characters, starting and ending alphanumeric.
_LABEL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
SAFE_RUN_ID_TEMPLATE = (
    "{%- set ns = namespace(v='') -%}"
    "{%- for c in run_id -%}"
    "{%- set ns.v = ns.v ~ (c if c in '" + _LABEL_CHARS + "' else '-') -%}"
    "{%- endfor -%}"
    "{{ ns.v[:63].strip('-_.') }}"
)


def restricted_container_security_context() -> dict[str, Any]:
    """The container half of the "restricted" Pod Security Standard, plus a read-only root filesystem."""
    return {
        "runAsNonRoot": True,
        "runAsUser": TRAINER_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def training_pod_operator(
    spec: ModelSpec,
    *,
    task_id: str = "train_candidate",
    run_id: str = RUN_ID_TEMPLATE,
    train_path: str = TRAIN_PATH_TEMPLATE,
    settings: PodSettings | None = None,
    retries: int = 3,
    retry_delay: timedelta = timedelta(minutes=1),
    max_retry_delay: timedelta = timedelta(minutes=30),
    execution_timeout: timedelta | None = timedelta(hours=12),
    **operator_kwargs: Any,
) -> KubernetesPodOperator:
    """The KubernetesPodOperator that trains ``spec`` in the training image (see the module docstring).

    The provider is imported here, not at module level: DAG files call this at parse time only
    for specs with ``training.backend: kubernetes``.

    Args:
        spec: The model spec; ``training`` gives resources, scheduling and the Kueue queue.
        task_id: The task's id in the DAG.
        run_id: MLflow run id, a Jinja template (default: ``validate_dataset``'s XCom ``run_id``).
        train_path: Training data location, a Jinja template (default: ``split_dataset``'s XCom
            ``train_path``).
        settings: Cluster settings; default: read from the environment (``PodSettings.from_env``).
        retries: Retries of the task; each retry resumes from the last checkpoint.
        retry_delay: Delay before the first retry; it doubles on each further retry.
        max_retry_delay: Longest delay between retries.
        execution_timeout: Longest a single try may run (the pod is deleted when it is exceeded).
        **operator_kwargs: Anything else for KubernetesPodOperator (they override the defaults here).

    Returns:
        The operator; its XCom ``return_value`` is the entrypoint's result
        (``run_id``, ``model_uri``, ``telemetry``).
    """
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    s = settings or PodSettings.from_env()
    t = spec.training

    limits = {"cpu": t.cpu, "memory": t.memory}
    tolerations = [*t.tolerations, *s.tolerations]
    if t.gpus > 0:
        limits[GPU_RESOURCE] = str(t.gpus)
        if not any(tol.get("key") == GPU_RESOURCE for tol in tolerations):
            # GPU node pools are usually tainted so that only pods asking for GPUs land there.
            tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    resources = k8s.V1ResourceRequirements(requests={"cpu": t.cpu, "memory": t.memory}, limits=limits)

    labels = {
        "app.kubernetes.io/name": "modelops-trainer",
        "app.kubernetes.io/part-of": "modelops",
        f"{LABEL_PREFIX}/model": spec.name,
        f"{LABEL_PREFIX}/model-version": spec.spec_hash(),
        f"{LABEL_PREFIX}/dag-run": SAFE_RUN_ID_TEMPLATE,
    }
    queue = t.kueue_queue or s.kueue_queue
    if queue:
        labels[KUEUE_QUEUE_LABEL] = queue

    volumes = [
        k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=s.scratch_size)),
        k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit="1Gi")),
        k8s.V1Volume(
            name="checkpoints",
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=s.checkpoint_pvc)
            if s.checkpoint_pvc
            else None,
            empty_dir=None if s.checkpoint_pvc else k8s.V1EmptyDirVolumeSource(),
        ),
    ]
    mounts = [
        k8s.V1VolumeMount(name="scratch", mount_path="/tmp"),
        k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
        k8s.V1VolumeMount(
            name="checkpoints",
            mount_path=CHECKPOINT_MOUNT,
            sub_path=f"{spec.name}/{SAFE_RUN_ID_TEMPLATE}" if s.checkpoint_pvc else None,
        ),
    ]
    if s.data_pvc and s.data_mount_path:
        volumes.append(
            k8s.V1Volume(
                name="training-data",
                persistent_volume_claim=(
                    k8s.V1PersistentVolumeClaimVolumeSource(claim_name=s.data_pvc, read_only=True)
                ),
            )
        )
        mounts.append(k8s.V1VolumeMount(name="training-data", mount_path=s.data_mount_path, read_only=True))

    def from_secret(key: str, *, optional: bool) -> k8s.V1EnvVar:
        return k8s.V1EnvVar(
            name=key,
            value_from=k8s.V1EnvVarSource(
                secret_key_ref=k8s.V1SecretKeySelector(name=s.mlflow_secret, key=key, optional=optional)
            ),
        )

    env_vars = [
        # Required: the pod fails to start (CreateContainerConfigError) if the secret lacks it.
        from_secret("MLFLOW_TRACKING_URI", optional=False),
        *(
            from_secret(k, optional=True)
            for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
        ),
        # The root filesystem is read-only: everything that writes a cache or state goes to /tmp.
        k8s.V1EnvVar(name="HOME", value="/tmp"),
        k8s.V1EnvVar(name="XDG_CACHE_HOME", value="/tmp/.cache"),
        k8s.V1EnvVar(name="MODELOPS_STATE_DIR", value="/tmp/modelops"),
        k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
        k8s.V1EnvVar(name="MODELOPS_SPEC_HASH", value=spec.spec_hash()),
    ]

    defaults: dict[str, Any] = dict(
        task_id=task_id,
        kubernetes_conn_id=s.conn_id,
        namespace=s.namespace,
        name=f"train-{spec.name.replace('_', '-')}",
        image=s.image,
        image_pull_policy=s.image_pull_policy,
        cmds=["python", "-m", "include.modelops.training.entrypoint"],
        arguments=[
            "--model",
            spec.name,
            "--train-path",
            train_path,
            "--run-id",
            run_id,
            "--checkpoint-dir",
            CHECKPOINT_MOUNT,
            "--xcom-file",
            XCOM_RESULT_FILE,
        ],
        labels=labels,
        # The rest of the secret (e.g. object-store keys for artifacts) arrives as environment too.
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=s.mlflow_secret))],
        env_vars=env_vars,
        container_resources=resources,
        node_selector={**s.node_selector, **t.node_selector},
        tolerations=tolerations,
        affinity=getattr(t, "affinity", None) or s.affinity,
        security_context={
            "runAsNonRoot": True,
            "runAsUser": TRAINER_UID,
            "runAsGroup": TRAINER_UID,
            "fsGroup": TRAINER_UID,  # the checkpoint volume is writable by the trainer
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        container_security_context=restricted_container_security_context(),
        xcom_sidecar_container_security_context=restricted_container_security_context(),
        volumes=volumes,
        volume_mounts=mounts,
        service_account_name=s.service_account,
        automount_service_account_token=False,  # the trainer never talks to the Kubernetes API
        annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
        schedule_timeout_seconds=s.schedule_timeout_s,
        startup_timeout_seconds=s.startup_timeout_s,
        get_logs=True,
        # Deferred, the task wakes this often to copy the pod's new log lines (epoch progress) into
        # the task log; None would show them only when the pod has finished.
        logging_interval=120,
        log_events_on_failure=True,
        do_xcom_push=True,
        on_finish_action="delete_pod",
        deferrable=True,
        retries=retries,
        retry_delay=retry_delay,
        retry_exponential_backoff=2.0,
        max_retry_delay=max_retry_delay,
        execution_timeout=execution_timeout,
        doc_md=f"Trains **{spec.name}** ({t.framework}, {t.gpus} GPU) in a Kubernetes pod; "
        "see `include/modelops/training/pod.py`.",
    )
    return KubernetesPodOperator(**{**defaults, **operator_kwargs})
