"""Mark the DAG runs an interrupted ``airflow dags test`` left behind as failed.

``make run`` / ``make demo`` run a DAG in-process with ``airflow dags test``. Stopped by Ctrl-C
or SIGTERM, that process dies with its run still ``running`` in the metadata DB, and nothing
would ever end it: the monitoring DAG's "a training run is queued or running" guard would then
suppress every retrain request. The command that was interrupted runs this module (in the
stack's environment, so it opens the same metadata DB) to set those runs failed, their running
task instances failed and their pending ones skipped, through the same call the REST API's
``PATCH dagRuns/<run> {"state": "failed"}`` makes.

    python -m include.modelops.platform.interrupted_runs <dag_id> <started_after_iso>
"""

from __future__ import annotations

import sys
from datetime import datetime


def fail_runs(dag_id: str, started_after: datetime) -> list[str]:
    """Set every queued or running run of ``dag_id`` that started after ``started_after`` failed; their ids."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import or_, select

    failed = []
    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(
                DagRun.dag_id == dag_id,
                DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]),
                or_(DagRun.start_date >= started_after, DagRun.run_after >= started_after),
            )
        ).all()
        bag = DBDagBag()
        for run in runs:
            dag = bag.get_dag_for_run(run, session=session)
            if dag is None:
                run.state = DagRunState.FAILED
            else:
                set_dag_run_state_to_failed(dag=dag, run_id=run.run_id, commit=True, session=session)
            failed.append(run.run_id)
    return failed


def main(argv: list[str]) -> int:
    dag_id, since = argv
    for run_id in fail_runs(dag_id, datetime.fromisoformat(since)):
        print(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
