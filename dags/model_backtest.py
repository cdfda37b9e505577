"""
### What would a changed spec have decided? `<model>_backtest`, one DAG per spec

Trigger it from the UI with the changed spec pasted into the `spec` param (the whole YAML file,
edited): the promotion gate is replayed over every recorded training run, and the retraining
policy over every recorded monitoring window, under that spec. The task log and an HTML report
(`<runs>/<model>/backtest/<run id>.html`, path in the task's XCom) list, side by side with what
happened, each decision that would flip and why. Nothing is written to the registry, to traffic
or to any record. The same as `make backtest MODEL=<model> SPEC=<file>`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from include.modelops.spec import ModelSpec, load_specs


def backtest_dag(spec: ModelSpec):
    """Build the backtest DAG of one model spec."""
    model = spec.name

    @dag(
        dag_id=f"{model}_backtest",
        description=f"Replay {model}'s recorded gate and retrain decisions under a changed spec (read-only)",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=2,
        doc_md=__doc__,
        tags=["modelops", "backtest", model, *spec.tags],
        default_args={"owner": spec.owner.team, "retries": 1, "retry_delay": timedelta(seconds=10)},
        params={
            "spec": Param(
                "",
                type="string",
                format="multiline",
                minLength=1,
                description=f"The changed spec: include/models/{model}.yaml as a whole, edited.",
            )
        },
    )
    def pipeline():
        @task
        def backtest() -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from include.modelops.pipelines import backtest as run_backtest
            from include.modelops.spec import ModelSpecError

            ctx = get_current_context()
            try:
                return run_backtest.run(
                    model, (ctx["params"] or {}).get("spec", ""), dag_run_id=ctx["dag_run"].run_id
                )
            except ModelSpecError as exc:  # the param is wrong: a retry would fail the same way
                raise AirflowFailException(str(exc)) from None

        backtest()

    return pipeline()


# An invalid spec gets no DAGs here and is reported by dags/model_specs.py; the others are unaffected.
for _spec in load_specs()[0]:
    backtest_dag(_spec)
