"""Team policy over the whole DagBag: DAGs import cleanly, carry tags and retries, and parse cheaply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "plugins")])
DAG_FILES = sorted((PROJECT_ROOT / "dags").glob("*.py"))
HEAVY = ["torch", "sklearn", "mlflow", "evidently", "great_expectations", "bentoml", "pandas"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())


def test_every_reference_spec_has_a_training_dag(dagbag):
    from include.modelops.spec import load_all_specs

    for spec in load_all_specs():
        assert spec.dag_id in dagbag.dags


def test_every_dag_has_tags_owner_docs_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"
            if t.task_id != "summarize":
                assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_training_dag_runs_the_lifecycle_in_order(dagbag):
    dag = dagbag.dags["fraud_detection_training"]
    # fraud_detection has a rollout section: training ends with a deployable challenger, not a champion.
    assert "promote_to_champion" not in dag.task_ids
    order = [
        "validate_dataset",
        "split_dataset",
        "train_candidate",
        "evaluate_candidate",
        "register_candidate",
        "generate_model_card",
        "approve",
        "package_bento",
        "smoke_serve_bento",
        "update_model_card",
        "summarize",
    ]
    for up, down in zip(order, order[1:]):
        assert down in {t.task_id for t in dag.get_task(up).get_flat_relatives(upstream=False)}, (
            f"{up} !-> {down}"
        )
    assert dag.get_task("summarize").trigger_rule == "all_done"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_dag_file_parses_without_heavy_imports(dag_file):
    code = (
        "import sys, json, runpy\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{dag_file.name} imports {loaded} at parse time"


def _good_and_bad_specs(folder: Path) -> None:
    """The reference spec, and a copy of it as model ``fraud_typo`` with an unknown primary metric."""
    good = (PROJECT_ROOT / "include/models/fraud_detection.yaml").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fraud_detection.yaml").write_text(good)
    bad = good.replace("name: fraud_detection", "name: fraud_typo", 1).replace(
        "primary_metric: roc_auc", "primary_metric: accuracy_score"
    )
    assert bad.count("fraud_typo") == 1 and "accuracy_score" in bad
    (folder / "fraud_typo.yaml").write_text(bad)


def _dagbag_of(specs_dir: Path) -> dict:
    """A real DagBag over dags/ with MODELOPS_SPECS_DIR=specs_dir: its DAG ids and import errors."""
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(PROJECT_ROOT / 'dags')!r})\n"
        "print(json.dumps({'dags': sorted(bag.dags), 'import_errors': bag.import_errors}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": PYTHONPATH, "MODELOPS_SPECS_DIR": str(specs_dir)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_bad_spec_breaks_only_its_own_models_dags(tmp_path):
    _good_and_bad_specs(tmp_path / "specs")

    bag = _dagbag_of(tmp_path / "specs")

    # the good model keeps every DAG; the bad one has none
    for dag_id in (
        "fraud_detection_training",
        "fraud_detection_rollout",
        "fraud_detection_monitoring",
        "fraud_detection_rollback",
    ):
        assert dag_id in bag["dags"], bag
    assert not [d for d in bag["dags"] if d.startswith("fraud_typo")], bag["dags"]
    # one import error, in the UI's "DAG Import Errors", naming the spec file and the field
    assert [Path(f).name for f in bag["import_errors"]] == ["model_specs.py"], bag["import_errors"]
    error = next(iter(bag["import_errors"].values()))
    assert "fraud_typo.yaml" in error and "field 'evaluation.primary_metric'" in error, error
    assert "accuracy_score" in error and "fraud_detection.yaml" not in error, error


def test_valid_specs_give_no_import_error_and_no_dag_from_the_spec_report_file(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fraud_detection.yaml").write_text(
        (PROJECT_ROOT / "include/models/fraud_detection.yaml").read_text()
    )

    bag = _dagbag_of(specs)

    assert bag["import_errors"] == {}
    assert "fraud_detection_training" in bag["dags"]


def test_kubernetes_backend_trains_in_a_deferrable_pod_and_parses_without_heavy_imports(tmp_path):
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "include/models/fraud_detection.yaml").read_text())
    raw["training"].update(backend="kubernetes", framework="torch", gpus=1)
    (tmp_path / "fraud_detection.yaml").write_text(yaml.safe_dump(raw))
    code = (
        "import sys, json, runpy\n"
        f"runpy.run_path({str(PROJECT_ROOT / 'dags' / 'model_training.py')!r})\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag({str(PROJECT_ROOT / 'dags')!r})\n"
        "t = bag.dags['fraud_detection_training'].get_task('train_candidate')\n"
        "print(json.dumps([type(t).__name__, t.deferrable, heavy]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": PYTHONPATH, "MODELOPS_SPECS_DIR": str(tmp_path)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    kind, deferrable, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert kind == "KubernetesPodOperator" and deferrable is True
    assert heavy == []


@pytest.mark.parametrize("task_id", ["validate_dataset", "split_dataset"])
def test_data_errors_fail_at_once_and_infrastructure_errors_retry(dagbag, task_id):
    from airflow.sdk.definitions.retry_policy import RetryAction

    from include.modelops.data.validation import DataSplitError, DataValidationError

    task = dagbag.dags["fraud_detection_training"].get_task(task_id)
    policy = task.retry_policy

    for user_error in (DataValidationError("bad data", {}), DataSplitError("holdout would be empty")):
        assert policy.evaluate(user_error, try_number=1, max_tries=3).action == RetryAction.FAIL
    assert (
        policy.evaluate(ConnectionError("mlflow down"), try_number=1, max_tries=3).action != RetryAction.FAIL
    )
    assert task.retries == 2


def test_rollout_dag_bakes_stages_without_holding_a_worker_and_rolls_back_on_any_failure(dagbag):
    from include.modelops import assets
    from include.modelops.spec import load_all_specs

    specs = [s for s in load_all_specs() if s.rollout is not None]
    assert specs, "the reference spec shows a rollout"
    for spec in specs:
        dag = dagbag.dags[spec.rollout_dag_id]
        stages = [f"canary_{s.traffic_percent}" for s in spec.rollout.steps]
        order = ["prepare_rollout", *stages, "promote", "rollback", "summarize"]
        for up, down in zip(order, order[1:]):
            assert down in {t.task_id for t in dag.get_task(up).get_flat_relatives(upstream=False)}, (
                f"{up} !-> {down}"
            )
        assert all(dag.get_task(s).mode == "reschedule" for s in stages)
        # A poke the scheduler wrongly marks failed under load is retried (it resumes from the record).
        assert all(dag.get_task(s).retries >= 3 for s in stages)
        assert dag.get_task("rollback").trigger_rule == "one_failed"
        assert dag.max_active_runs == 1  # a second trigger waits for the running rollout
        assert [a.name for a in dag.timetable.asset_condition.objects] == [
            assets.deployable_bento(spec.name).name
        ]


def test_a_shadow_stage_bakes_before_the_first_canary_step_and_can_roll_back(tmp_path):
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "include/models/fraud_detection.yaml").read_text())
    raw["rollout"]["shadow"] = {"requests": 50, "max_wait_s": 120}
    (tmp_path / "fraud_detection.yaml").write_text(yaml.safe_dump(raw))
    code = (
        "import sys, json, runpy\n"
        f"runpy.run_path({str(PROJECT_ROOT / 'dags' / 'model_rollout.py')!r})\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"dag = DagBag({str(PROJECT_ROOT / 'dags')!r}).dags['fraud_detection_rollout']\n"
        "shadow = dag.get_task('shadow')\n"
        "print(json.dumps([sorted(shadow.upstream_task_ids), sorted(shadow.downstream_task_ids), shadow.mode,\n"
        "                  sorted(dag.get_task('rollback').upstream_task_ids), heavy]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": PYTHONPATH, "MODELOPS_SPECS_DIR": str(tmp_path)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    upstream, downstream, mode, rollback_upstream, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    first_step = f"canary_{raw['rollout']['steps'][0]}"
    assert upstream == ["prepare_rollout"] and first_step in downstream and "rollback" in downstream
    assert mode == "reschedule"  # no worker slot is held while the shadow stage collects its pairs
    assert "shadow" in rollback_upstream
    assert heavy == []


def test_a_paused_step_asks_a_person_between_its_stage_and_the_next(monkeypatch):
    """`pause: true` on a step: its stage, then an approval request, then the next stage; an abort rolls back."""
    import importlib.util

    from include.modelops.spec import load_all_specs

    spec = next(s for s in load_all_specs() if s.rollout is not None)
    spec = spec.model_copy(
        update={
            "rollout": spec.rollout.model_copy(
                update={
                    "steps": [
                        s.model_copy(update={"pause": s.traffic_percent == 50}) for s in spec.rollout.steps
                    ]
                }
            )
        }
    )
    assert any(s.pause for s in spec.rollout.steps), "the reference spec has a 50% step"
    module = importlib.util.spec_from_file_location(
        "model_rollout_under_test", PROJECT_ROOT / "dags" / "model_rollout.py"
    )
    factory = importlib.util.module_from_spec(module)
    module.loader.exec_module(factory)
    dag = factory.rollout_dag(spec)

    pause = dag.get_task("pause_after_canary_50")
    assert pause.upstream_task_ids >= {"canary_50"} and pause.downstream_task_ids >= {
        "canary_100",
        "rollback",
    }
    assert "pause_after_canary_50" not in dag.get_task("canary_50").upstream_task_ids
    assert pause.defaults == ["Reject"]  # no answer aborts: fail closed
    assert pause.assigned_users == [{"id": a, "name": a} for a in spec.approval.approvers]
    assert pause.response_timeout.total_seconds() == spec.approval.timeout_hours * 3600
    assert list(pause.serialized_params) == ["comment"]
    assert not any(t.task_id.startswith("pause_after_") and t is not pause for t in dag.tasks)
