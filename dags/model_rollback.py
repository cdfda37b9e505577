"""
### Take back a promotion: `<model>_rollback`, one DAG per spec with a `rollout:` section

Trigger it from the UI or the REST API (param `reason`) when a promoted version must go: the
`previous` version serves 100% of traffic again (its `bentoml serve` starts as stable, then the
promoted one is stopped), `champion` moves back to it, the promoted version becomes `previous`
and is tagged `rolled_back` with the reason, and the Asset `<model>.production` gets an event.
Both versions' deployment history gets the event and their model cards are regenerated.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from include.modelops import assets
from include.modelops.spec import ModelSpec, load_specs


def rollback_dag(spec: ModelSpec):
    """Build the rollback DAG of one model spec."""
    model = spec.name

    @dag(
        dag_id=f"{model}_rollback",
        description=f"Put {model}'s previous version back into production",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["modelops", "rollout", model, *spec.tags],
        default_args={"owner": spec.owner.team, "retries": 1, "retry_delay": timedelta(seconds=10)},
        params={"reason": Param(None, type=["null", "string"], description="Why (kept in the audit trail).")},
    )
    def pipeline():
        from include.modelops.rollout import stages  # light: heavy libraries load inside

        @task(outlets=[assets.production(model)])
        def restore_previous() -> dict:
            ctx = get_current_context()
            return stages.restore_previous(
                model, reason=(ctx["params"] or {}).get("reason"), dag_run_id=ctx["dag_run"].run_id
            )

        restore_previous()

    return pipeline()


# An invalid spec gets no DAGs here and is reported by dags/model_specs.py; the others are unaffected.
for _spec in load_specs()[0]:
    if _spec.rollout is not None:
        rollback_dag(_spec)
