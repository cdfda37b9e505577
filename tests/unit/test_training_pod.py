"""The training pod, as the cncf.kubernetes provider would send it to the API server.

No cluster here: the operator built by ``training_pod_operator`` renders its templates against a
task context and builds the pod through the provider's own ``build_pod_request_obj``; the tests
read the serialised manifest field by field.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("airflow.providers.cncf.kubernetes")

from airflow.sdk import DAG  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402

from include.modelops.settings import PROJECT_ROOT  # noqa: E402
from include.modelops.spec import ModelSpec, Training, load_spec_by_name  # noqa: E402
from include.modelops.training.pod import (  # noqa: E402
    KubernetesSettingsError,
    PodSettings,
    training_pod_operator,
)

DAG_RUN_ID = "manual__2026-01-02T03:04:05.123456+00:00"
MLFLOW_RUN_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TRAIN_PATH = "/shared/runs/fraud_detection/run-1/train.parquet"
# Values that exist on the Airflow side only: none may leak into the pod.
SECRET_URI = "https://mlflow.internal.example.com:5000"
SECRET_PASSWORD = "s3cr3t-p4ssw0rd-never-in-a-pod"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class FakeTaskInstance:
    dag_id = "fraud_detection_training"
    task_id = "train_candidate"
    map_index = -1
    try_number = 2

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        results = {
            "validate_dataset": {"run_id": MLFLOW_RUN_ID, "data_path": "/data"},
            "split_dataset": {"train_path": TRAIN_PATH, "holdout_path": "/x"},
        }
        return results[task_ids]


def gpu_spec(**training) -> ModelSpec:
    spec = load_spec_by_name("fraud_detection")
    defaults = dict(
        backend="kubernetes",
        framework="torch",
        gpus=2,
        cpu="12",
        memory="48Gi",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        kueue_queue="gpu-training",
    )
    return spec.model_copy(update={"training": Training(**{**defaults, **training})})


def build_pod(spec: ModelSpec, settings: PodSettings | None = None, **kwargs) -> tuple[object, dict]:
    """Render the operator's templates and build its pod the way ``execute`` does."""
    with DAG("fraud_detection_training", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        op = training_pod_operator(spec, settings=settings or PodSettings(namespace="ml-training"), **kwargs)
    context = {"ti": FakeTaskInstance(), "run_id": DAG_RUN_ID, "dag": dag, "task": op}
    op.render_template_fields(context)
    pod = op.build_pod_request_obj(context, dry_run=True)
    return op, ApiClient().sanitize_for_serialization(pod)


@pytest.fixture(autouse=True)
def _airflow_side_secrets(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", SECRET_URI)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET_PASSWORD)
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))


@pytest.fixture(scope="module")
def gpu_pod() -> tuple[object, dict]:
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", SECRET_URI)
    mp.setenv("MLFLOW_TRACKING_PASSWORD", SECRET_PASSWORD)
    mp.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))
    try:
        yield build_pod(gpu_spec())
    finally:
        mp.undo()


def trainer(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


def test_gpus_are_limits_and_cpu_memory_are_equal_requests_and_limits(gpu_pod):
    resources = trainer(gpu_pod[1])["resources"]
    assert resources["limits"] == {"cpu": "12", "memory": "48Gi", "nvidia.com/gpu": "2"}
    assert resources["requests"] == {"cpu": "12", "memory": "48Gi"}


def test_cpu_only_pod_asks_for_no_gpu_and_tolerates_no_gpu_taint():
    _, pod = build_pod(gpu_spec(gpus=0, tolerations=[]))
    assert "nvidia.com/gpu" not in trainer(pod)["resources"]["limits"]
    assert pod["spec"]["tolerations"] == []


def test_scheduling_follows_the_spec_plus_a_gpu_toleration(gpu_pod):
    spec = gpu_pod[1]["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]


def test_cluster_wide_scheduling_settings_merge_under_the_spec(monkeypatch):
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu-spot"]}]}
                ]
            }
        }
    }
    monkeypatch.setenv(
        "MODELOPS_K8S_NODE_SELECTOR",
        json.dumps({"pool": "gpu", "cloud.google.com/gke-accelerator": "overridden-by-spec"}),
    )
    monkeypatch.setenv("MODELOPS_K8S_TOLERATIONS", json.dumps([{"key": "spot", "operator": "Exists"}]))
    monkeypatch.setenv("MODELOPS_K8S_AFFINITY", json.dumps(affinity))
    monkeypatch.setenv("MODELOPS_K8S_NAMESPACE", "ml-training")
    _, pod = build_pod(gpu_spec(), settings=PodSettings.from_env())
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu", "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert {"key": "spot", "operator": "Exists"} in spec["tolerations"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["gpu-spot"]


def test_bad_json_setting_is_named(monkeypatch):
    monkeypatch.setenv("MODELOPS_K8S_TOLERATIONS", "{not json")
    with pytest.raises(KubernetesSettingsError, match="MODELOPS_K8S_TOLERATIONS"):
        PodSettings.from_env()


def test_pod_meets_the_restricted_profile(gpu_pod):
    pod = gpu_pod[1]
    pod_sc = pod["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] > 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert not pod["spec"].get("hostNetwork")
    # Every container, the xcom sidecar included, or the namespace's admission rejects the pod.
    assert len(pod["spec"]["containers"]) == 2
    for container in pod["spec"]["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True, container["name"]
        assert sc["runAsUser"] > 0
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc["readOnlyRootFilesystem"] is True
        assert "privileged" not in sc or sc["privileged"] is False


def test_writable_paths_are_volumes_and_checkpoints_resume_per_dag_run(gpu_pod):
    pod = gpu_pod[1]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in trainer(pod)["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/dev/shm", "/checkpoints", "/airflow/xcom"}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    ckpt = mounts["/checkpoints"]
    assert volumes[ckpt["name"]]["persistentVolumeClaim"] == {"claimName": "modelops-checkpoints"}
    # Same sub-path for every try of this DAG run: a retried task finds its checkpoint.
    assert ckpt["subPath"] == "fraud_detection/manual__2026-01-02T03-04-05.123456-00-00"
    assert all(":" not in m.get("subPath", "") for m in mounts.values())


def test_checkpoint_claim_and_data_claim_come_from_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOPS_CHECKPOINT_PVC", "")
    monkeypatch.setenv("MODELOPS_K8S_DATA_PVC", "modelops-runs")
    monkeypatch.setenv("MODELOPS_RUNS_DIR", str(tmp_path / "runs"))
    _, pod = build_pod(gpu_spec(), settings=PodSettings.from_env())
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in trainer(pod)["volumeMounts"]}
    assert "emptyDir" in volumes["checkpoints"] and "subPath" not in mounts["/checkpoints"]
    data = mounts[str(tmp_path / "runs")]
    assert data["readOnly"] is True
    assert volumes[data["name"]]["persistentVolumeClaim"] == {"claimName": "modelops-runs", "readOnly": True}


def test_mlflow_uri_and_credentials_come_from_the_secret_only(gpu_pod):
    op, pod = gpu_pod
    container = trainer(pod)
    env = {e["name"]: e for e in container["env"]}
    uri = env["MLFLOW_TRACKING_URI"]
    assert "value" not in uri
    assert uri["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-credentials",
        "key": "MLFLOW_TRACKING_URI",
        "optional": False,
    }
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert env[key]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    manifest = json.dumps(pod)
    operator_fields = json.dumps({f: str(getattr(op, f)) for f in op.template_fields})
    for leaked in (SECRET_URI, SECRET_PASSWORD, "mlflow.internal"):
        assert leaked not in manifest
        assert leaked not in operator_fields


def test_labels_identify_model_version_and_dag_run(gpu_pod):
    labels = gpu_pod[1]["metadata"]["labels"]
    spec = gpu_spec()
    assert labels["modelops.io/model"] == "fraud_detection"
    assert labels["modelops.io/model-version"] == spec.spec_hash()
    assert labels["modelops.io/dag-run"] == "manual__2026-01-02T03-04-05.123456-00-00"
    assert labels["kueue.x-k8s.io/queue-name"] == "gpu-training"
    assert labels["dag_id"] == "fraud_detection_training" and labels["task_id"] == "train_candidate"
    for key, value in labels.items():
        assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)


def test_long_odd_run_id_still_makes_a_valid_label():
    with DAG("fraud_detection_training", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        op = training_pod_operator(gpu_spec(), settings=PodSettings(namespace="ml"))
    run_id = "api: retrain after drift alert #42 / " + "x" * 80 + "+"
    op.render_template_fields({"ti": FakeTaskInstance(), "run_id": run_id, "dag": dag, "task": op})
    value = op.labels["modelops.io/dag-run"]
    assert len(value) <= 63 and LABEL_VALUE.match(value)
    assert value.startswith("api--retrain-after-drift-alert--42")


def test_no_kueue_label_without_a_queue():
    _, pod = build_pod(gpu_spec(kueue_queue=None))
    assert "kueue.x-k8s.io/queue-name" not in pod["metadata"]["labels"]


def test_command_runs_the_training_entrypoint_with_xcom_inputs(gpu_pod):
    op, pod = gpu_pod
    container = trainer(pod)
    assert container["image"] == "modelops-trainer:latest"
    assert container["command"] == ["python", "-m", "include.modelops.training.entrypoint"]
    assert container["args"] == [
        "--model",
        "fraud_detection",
        "--train-path",
        TRAIN_PATH,
        "--run-id",
        MLFLOW_RUN_ID,
        "--checkpoint-dir",
        "/checkpoints",
        "--xcom-file",
        "/airflow/xcom/return.json",
    ]
    assert pod["metadata"]["namespace"] == "ml-training"
    assert pod["metadata"]["name"].startswith("train-fraud-detection-")
    assert pod["spec"]["restartPolicy"] == "Never"


def test_operator_defers_deletes_the_pod_pushes_xcom_and_retries_with_backoff(gpu_pod):
    op, _ = gpu_pod
    assert op.deferrable is True
    assert op.on_finish_action.value == "delete_pod"
    assert op.do_xcom_push is True
    assert op.kubernetes_conn_id == "kubernetes_default"
    assert op.retries == 3
    assert op.retry_exponential_backoff == 2.0
    assert op.max_retry_delay == datetime.timedelta(minutes=30)
    assert op.schedule_timeout_seconds == 3600
    assert op.get_logs is True and op.logging_interval == 120  # epoch progress reaches the task log


def test_operator_serialises_with_the_dag():
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("fraud_detection_training", schedule=None, start_date=datetime.datetime(2026, 1, 1)) as dag:
        training_pod_operator(gpu_spec(), settings=PodSettings(namespace="ml"))
    data = DagSerialization.to_dict(dag)
    DagSerialization.validate_schema(data)
    assert "train_candidate" in DagSerialization.from_dict(data).task_dict


def test_importing_the_module_does_not_import_the_provider():
    code = (
        "import sys, include.modelops.training.pod; "
        "sys.exit('airflow.providers.cncf.kubernetes' in sys.modules or 'kubernetes' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
