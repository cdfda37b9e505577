"""A bad spec, as Airflow's DAG processor reports it: an import error naming the file and the field,
while every other model's DAGs still parse."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import write_test_spec

pytestmark = pytest.mark.integration


def test_bad_spec_is_an_import_error_naming_file_and_field(stack, tmp_path):
    from include.modelops.platform import local_stack

    specs = tmp_path / "specs"
    write_test_spec(specs, stack.data_dir)  # a good spec next to the bad one: its DAGs must survive
    write_test_spec(
        specs,
        stack.data_dir,
        name="fraud_typo",
        evaluation={"primary_metric": "roc_auc", "gate": {"max_drop_vs_champion": "a lot"}},
    )
    env = local_stack.stack_env(tmp_path / "state", stack.mlflow_uri, specs_dir=specs)
    local_stack.migrate_airflow_db(env)

    local_stack.airflow(["dags", "reserialize"], env)
    res = local_stack.airflow(["dags", "list-import-errors", "-o", "json"], env)

    assert res.returncode == 1, res.stderr[-2000:]  # the command exits 1 when there are import errors
    errors = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("[{")))
    # One import error, from the file that reports invalid specs; the lifecycle DAG files parse.
    assert [e["filepath"].rsplit("/", 1)[-1] for e in errors] == ["model_specs.py"], errors
    assert "fraud_typo.yaml" in errors[0]["error"], errors
    assert "evaluation.gate.max_drop_vs_champion" in errors[0]["error"], errors
    listed = local_stack.airflow(["dags", "list", "-o", "json"], env)
    dag_ids = {
        d["dag_id"]
        for d in json.loads(next(line for line in listed.stdout.splitlines() if line.startswith("[{")))
    }
    assert {"fraud_detection_training", "fraud_detection_monitoring"} <= dag_ids, dag_ids
    assert not {d for d in dag_ids if d.startswith("fraud_typo")}, dag_ids
