"""A bad spec, as Airflow's DAG processor reports it: an import error naming the file and the field."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import write_test_spec

pytestmark = pytest.mark.integration


def test_bad_spec_is_an_import_error_naming_file_and_field(stack, tmp_path):
    from include.modelops import local_stack

    specs = tmp_path / "specs"
    write_test_spec(specs, stack.data_dir, name="fraud_typo",
                    evaluation={"primary_metric": "roc_auc", "gate": {"max_drop_vs_champion": "a lot"}})
    env = local_stack.stack_env(tmp_path / "state", stack.mlflow_uri, specs_dir=specs)
    local_stack.migrate_airflow_db(env)

    local_stack.airflow(["dags", "reserialize"], env)
    res = local_stack.airflow(["dags", "list-import-errors", "-o", "json"], env)

    assert res.returncode == 1, res.stderr[-2000:]  # the command exits 1 when there are import errors
    errors = json.loads(next(line for line in res.stdout.splitlines() if line.startswith("[{")))
    # Every DAG file built from the specs (training, monitoring, ...) reports it, and only it.
    assert "model_training.py" in {e["filepath"].rsplit("/", 1)[-1] for e in errors}, errors
    for error in errors:
        assert "fraud_typo.yaml" in error["error"], error
        assert "evaluation.gate.max_drop_vs_champion" in error["error"], error
