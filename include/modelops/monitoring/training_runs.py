"""The training DAG's queued and running runs, as a monitoring task sees them through Airflow's Task SDK.

The retraining policy's ``training_in_progress`` guard needs to know which of them may still
finish. A task has no database access in Airflow 3, so the runs are found through the task
instance's execution-API calls: the task states of every run of the DAG (to find the unfinished
ones), then each of those runs' state and start date.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from include.modelops.monitoring.policy import TrainingRun, live_training_runs

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
FINISHED_TI = ("success", "failed", "skipped", "upstream_failed", "removed")


def active_training_runs(ti, dag_id: str) -> list[TrainingRun]:
    """Every queued or running run of ``dag_id`` with its start (or queue) time."""
    from airflow.sdk.execution_time.comms import GetDagRun
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    states = ti.get_task_states(dag_id=dag_id)
    unfinished = [
        run_id
        for run_id, tasks in states.items()
        if not tasks or any(s not in FINISHED_TI for s in tasks.values())
    ]
    runs = []
    for run_id in unfinished:
        dr = SUPERVISOR_COMMS.send(GetDagRun(dag_id=dag_id, run_id=run_id))
        state = str(getattr(dr.state, "value", dr.state))
        if state in ACTIVE:
            runs.append(TrainingRun(run_id=run_id, state=state, started_at=dr.start_date or dr.run_after))
    return runs


def live_training_run_count(ti, dag_id: str, *, now: datetime, stale_after_s: float) -> int:
    """How many queued or running runs of ``dag_id`` count for the guard; stale ones are logged and ignored."""
    active = ti.get_dr_count(dag_id=dag_id, states=list(ACTIVE))
    if not active:
        return 0
    try:
        runs = active_training_runs(ti, dag_id)
    except Exception as exc:  # an Airflow without these calls: count every run, as before
        log.warning("Could not list %s's runs to tell stale ones (%s); counting all %d", dag_id, exc, active)
        return active
    live, ignored = live_training_runs(runs, now, timedelta(seconds=stale_after_s))
    for line in ignored:
        log.warning("%s", line)
    return len(live)
