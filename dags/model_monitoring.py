"""
### Production monitoring: `<model>_monitoring`, one DAG per spec in `include/models/`

On the spec's `monitoring.drift_schedule` (and by hand), for the window of
`monitoring.window_hours` before the run (or conf `{"window_start": ISO, "window_end": ISO}`):

1. `monitor_window` reads the production version's inference log and the labels that
   arrived, compares it with the reference sample stored at training time (Evidently: drift
   per feature, share of drifted features, prediction drift; data quality against the spec;
   live performance once labelled), writes the HTML report and a JSON summary to an MLflow
   run linked to the version, and emits `<model>.drift_report` with the figures. An empty
   window is an outcome ("no traffic"), not a failure.
2. `decide_retraining` applies the retraining policy (triggers, then guards: same window,
   training queued or running (a run started more than `MODELOPS_TRAINING_RUN_STALE_AFTER_S` ago is
   ignored as stale, with a line in the log), cooldown, weekly budget, new labels) and records the decision
   and its reason (listed by `make audit`).
3. `request_retraining` runs only on a decision to retrain and emits
   `<model>.retrain_requested` with {reason, window, figures}; the training DAG is scheduled
   on that asset. `max_active_runs=1` serialises decisions, so a burst of runs requests once.

This file only wires: the steps live in `include/modelops/pipelines/monitoring.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from include.modelops import assets
from include.modelops.spec import ModelSpec, load_specs

# A version without a reference sample or a bad spec fails at once (the message says
# what to do); reading the log or MLflow may retry.
NO_RETRY_ON_USER_ERRORS = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[
                "include.modelops.monitoring.reference.ReferenceMissingError",
                "include.modelops.spec.ModelSpecError",
            ],
            action=RetryAction.FAIL,
            reason="the input is wrong, retrying cannot fix it",
        )
    ]
)


def monitoring_dag(spec: ModelSpec):
    """Build the monitoring DAG of one model spec."""
    model = spec.name

    @dag(
        dag_id=f"{model}_monitoring",
        description=f"Drift and performance of {model} in production; retraining policy",
        schedule=spec.monitoring.drift_schedule,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["modelops", "monitoring", model, *spec.tags],
        default_args={
            "owner": spec.owner.team,
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            "retry_policy": NO_RETRY_ON_USER_ERRORS,
        },
        params={
            "window_start": Param(
                None, type=["null", "string"], description="ISO start of the window to examine."
            ),
            "window_end": Param(
                None, type=["null", "string"], description="ISO end (default: the run's time)."
            ),
        },
    )
    def pipeline():
        @task(outlets=[assets.drift_report(model)])
        def monitor_window() -> dict:
            from include.modelops.pipelines import monitoring as steps

            ctx = get_current_context()
            run_time = ctx.get("data_interval_end") or ctx["dag_run"].run_after
            start, end = steps.window_bounds(spec, end=run_time, conf=ctx["params"])
            result = steps.monitor_window(
                model, start=start, end=end, dag_id=ctx["dag"].dag_id, dag_run_id=ctx["dag_run"].run_id
            )
            ctx["outlet_events"][assets.drift_report(model)].extra = {
                "window": result["window"],
                "version": result["version"],
                "report": result["report"],
                **result["figures"],
            }
            return result

        @task
        def decide_retraining(monitored: dict) -> dict:
            from include.modelops.monitoring.training_runs import live_training_run_count
            from include.modelops.pipelines import monitoring as steps
            from include.modelops.settings import get_settings

            # A run whose process was killed stays "running" for good: past the stale limit it is ignored (logged).
            active = live_training_run_count(
                get_current_context()["ti"],
                spec.dag_id,
                now=datetime.now(UTC),
                stale_after_s=get_settings().training_run_stale_after_s,
            )
            return steps.decide_retraining(model, monitored, training_runs_active=active)

        @task.short_circuit
        def retrain_decided(decision: dict) -> bool:
            return bool(decision["retrain"])

        @task(outlets=[assets.retrain_requested(model)])
        def request_retraining(decision: dict) -> dict:
            from include.modelops.pipelines import monitoring as steps

            extra = steps.retrain_request(decision)
            get_current_context()["outlet_events"][assets.retrain_requested(model)].extra = extra
            return extra

        decision = decide_retraining(monitor_window())
        retrain_decided(decision) >> request_retraining(decision)

    return pipeline()


# An invalid spec gets no DAGs here and is reported by dags/model_specs.py; the others are unaffected.
for _spec in load_specs()[0]:
    monitoring_dag(_spec)
