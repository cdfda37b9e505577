"""
### Progressive rollout: `<model>_rollout`, one DAG per spec in `include/models/` with a `rollout:` section

prepare (stable = champion, canary = the candidate with no traffic) → `shadow` when the spec
has `rollout.shadow` → one stage per `rollout.steps` entry (e.g. `canary_5` → `canary_25` → `canary_50` → `canary_100`) → promote
(`champion` → the candidate, `previous` → the old champion, `challenger` removed, Asset event
`<model>.production`). A first model, with no champion, is deployed at 100% after a health
check and promoted: there is nothing to compare against.

Each stage moves the canary's share once, then checks every `rollout.check_interval_s` (a
reschedule-mode sensor: no worker slot is held while it bakes) that the canary answers and
that the analysis (5xx share, p95 latency ratio, score distribution vs stable; the table is in
the task log and the version's MLflow run) passes with `min_requests` requests. A failed
analysis, a dead canary, or a stage still inconclusive at `max_wait_s` fails the stage;
`rollback` then sends 100% of traffic to stable, stops the canary, removes `challenger`, tags
the version `rolled_back` with the reason, and the run ends failed.

The `shadow` stage (optional) sends the candidate no traffic: every `check_interval_s` it
copies requests stable answered since the stage began (read from the inference log) to the
candidate's own port, marked as shadow copies; their answers are discarded (clients only ever
get stable's, and the copies are logged with the variant `shadow`, never counted in a canary
step). When `rollout.shadow.requests` requests are paired (same request id, both versions), it
judges the paired disagreement rate (labels, or predictions for regression) against
`max_disagreement_rate`, the score distance on the pairs and the share of copies the candidate
did not answer; the table goes to the task log, the MLflow run and the audit trail. A failed
check, or too few pairs by its `max_wait_s`, rolls back.

Promotion and rollback add an event to the version's deployment history (`modelops.deployment.*`
tags) and regenerate its model card with it (logged to the version's MLflow run).

A step with `pause: true` is followed by `pause_after_<stage>`: once its analysis passed, the
spec's `approval.approvers` get a request in the UI's "Required actions" (or the REST API's
`hitlDetails`) showing the stage's analysis table. Approve → the next stage (or the promotion);
Reject → the rollback runs with the reason "aborted by <user>: <comment>" (rollout record,
version tags, audit); no answer within `approval.timeout_hours` aborts (fail closed). The canary
keeps its share meanwhile.

A run started by the Asset event acts on it once: when the event's version is no longer the
`challenger`, is not newer than the `champion`, or its rollout already ended (e.g. `make demo`
rolled it out itself with `airflow dags test`, and `make up`'s scheduler starts the queued run
later), `prepare_rollout` is skipped with the reason in its log and the run ends with every task
skipped; traffic and registry are untouched. A version older than the champion is refused even
when asked for by hand, unless the param `allow_older` is true (a deliberate downgrade).

Abort a running rollout from the UI or REST API by marking the running stage task `failed`
(`PATCH /api/v2/dags/<dag>/dagRuns/<run>/taskInstances/<stage>` with `{"new_state": "failed"}`):
the rollback runs and says which stage was stopped. Scheduled on the Asset `<model>.deployable_bento` (the training DAG's last
step); trigger by hand with the param `version` (default: the `challenger`). One rollout per
model at a time: a second trigger waits (queued).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.bases.sensor import PokeReturnValue
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from modelops_operators import RolloutPauseOperator

from include.modelops import assets
from include.modelops.spec import ModelSpec, load_specs

# A failed stage is a decision, not an accident: it goes to the rollback at once, never retried.
NO_RETRY_ON_DECISIONS = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[
                "include.modelops.rollout.stages.RolloutFailed",
                "include.modelops.spec.ModelSpecError",
            ],
            action=RetryAction.FAIL,
            reason="the candidate failed a check, retrying cannot change that",
        ),
        RetryRule(
            exception=["include.modelops.settings.KubernetesSettingsError"],
            action=RetryAction.FAIL,
            reason="a Kubernetes setting is missing or wrong (the message names it); fix it, then trigger again",
        ),
    ]
)


# A stage sensor resumes from the rollout record, so a retry never moves traffic twice. Under load,
# Airflow 3.3's scheduler can mark a quickly rescheduled poke failed ("state changed externally")
# and retry it: a few retries keep that from rolling back a good candidate. A decision
# (RolloutFailed) is never retried (NO_RETRY_ON_DECISIONS).
SENSOR_RETRIES = 3


def _version_from_context() -> str | None:
    """The version asked for: the run's param, else the newest triggering Asset event's, else None (challenger)."""
    from include.modelops.pipelines.triggers import latest_event_extra

    ctx = get_current_context()
    version = (ctx["params"] or {}).get("version")
    if version:
        return str(version)
    extra = latest_event_extra(ctx.get("triggering_asset_events"), "version")
    return str(extra["version"]) if extra else None


def _skipped(task_id: str) -> bool:
    """Whether ``task_id`` of this run was skipped (a stale trigger or a refused version)."""
    ctx = get_current_context()
    run_id = ctx["dag_run"].run_id
    states = ctx["ti"].get_task_states(dag_id=ctx["dag"].dag_id, task_ids=[task_id], run_ids=[run_id])
    return (states.get(run_id) or {}).get(task_id) == "skipped"


def rollout_dag(spec: ModelSpec):
    """Build the rollout DAG of one model spec."""
    model = spec.name
    rollout = spec.rollout
    assert rollout is not None, f"{model} has no rollout section"

    @dag(
        dag_id=spec.rollout_dag_id,
        description=f"Progressive rollout of {model}: {', '.join(str(s.traffic_percent) for s in rollout.steps)}%",
        schedule=[assets.deployable_bento(model)],
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["modelops", "rollout", model, *spec.tags],
        default_args={
            "owner": spec.owner.team,
            "retries": 1,
            "retry_delay": timedelta(seconds=10),
            "retry_policy": NO_RETRY_ON_DECISIONS,
        },
        params={
            "version": Param(
                None,
                type=["null", "string", "integer"],
                description="Model version to roll out; default: the challenger.",
            ),
            "allow_older": Param(
                False,
                type="boolean",
                description="Roll out a version older than the champion (a deliberate downgrade).",
            ),
        },
    )
    def pipeline():
        from include.modelops.rollout import stages  # light: heavy libraries load inside each function

        @task
        def prepare_rollout() -> dict:
            from include.modelops.pipelines.triggers import stale_rollout_event

            ctx = get_current_context()
            params = ctx["params"] or {}
            version = _version_from_context()
            if not params.get("version") and version:  # started by a deployable_bento event: act on it once
                stale = stale_rollout_event(model, version)
                if stale:
                    raise AirflowSkipException(
                        f"{model}: skipping the deployable_bento event for v{version}: {stale}"
                    )
            return stages.prepare(
                model, version, dag_run_id=ctx["dag_run"].run_id, allow_older=bool(params.get("allow_older"))
            )

        def stage_sensor(index: int, name: str, max_wait_s: float):
            @task.sensor(
                task_id=name,
                mode="reschedule",
                poke_interval=rollout.check_interval_s,
                timeout=max_wait_s + 10 * rollout.check_interval_s + 60,
                retries=SENSOR_RETRIES,
            )
            def stage(prepared: dict) -> PokeReturnValue:
                result = stages.check_stage(model, prepared["version"], index)
                return PokeReturnValue(is_done=result["done"], xcom_value=result)

            return stage

        def shadow_sensor(max_wait_s: float):
            @task.sensor(
                task_id="shadow",
                mode="reschedule",
                poke_interval=rollout.check_interval_s,
                timeout=max_wait_s + 10 * rollout.check_interval_s + 60,
                retries=SENSOR_RETRIES,
            )
            def shadow_stage(prepared: dict) -> PokeReturnValue:
                from include.modelops.rollout import shadow

                result = shadow.check_shadow(model, prepared["version"])
                return PokeReturnValue(is_done=result["done"], xcom_value=result)

            return shadow_stage

        @task(outlets=[assets.production(model)])
        def promote(prepared: dict) -> dict:
            return stages.promote(model, prepared["version"])

        @task(trigger_rule="one_failed")
        def rollback() -> dict:
            from include.modelops.platform import tracking
            from include.modelops.rollout.record import older_than_champion

            ctx = get_current_context()
            prepared = ctx["ti"].xcom_pull(task_ids="prepare_rollout")
            version = (prepared or {}).get("version") or _version_from_context()
            if not version:
                version = tracking.alias_version(model, tracking.CHALLENGER)
            if (
                not prepared
                and version
                and not (ctx["params"] or {}).get("allow_older")
                and older_than_champion(version, tracking.alias_version(model, tracking.CHAMPION))
            ):
                # prepare refused it before touching traffic: nothing to take back, and the old version keeps its tags
                raise AirflowSkipException(
                    f"{model} v{version} was refused (older than the champion); nothing to roll back"
                )
            return stages.rollback(model, version)

        @task(trigger_rule="all_done", retries=0)
        def summarize() -> dict:
            """The run's leaf: green only when the candidate was promoted, so a rollback is never hidden."""
            if _skipped("prepare_rollout"):
                raise AirflowSkipException(
                    "nothing rolled out: prepare_rollout was skipped (see its log for why)"
                )
            prepared = get_current_context()["ti"].xcom_pull(task_ids="prepare_rollout")
            result = stages.outcome(model, (prepared or {}).get("version") or _version_from_context())
            if result["status"] != "promoted":
                raise AirflowFailException(result["message"])
            return result

        prepared = prepare_rollout()
        previous = prepared
        stage_tasks = []
        if rollout.shadow is not None:  # copies of live requests to the candidate, before any traffic
            previous = shadow_sensor(rollout.shadow.max_wait_s)(prepared)
            stage_tasks.append(previous)
        for i, (step, name) in enumerate(zip(rollout.steps, stages.stage_names(spec), strict=True)):
            current = stage_sensor(i, name, rollout.step_max_wait_s(step))(prepared)
            previous >> current
            previous = current
            stage_tasks.append(current)
            if step.pause:  # a person continues or aborts once the stage's analysis passed
                paused = RolloutPauseOperator(
                    task_id=f"pause_after_{name}",
                    model_name=model,
                    prepared=prepared,
                    stage_index=i,
                    approvers=spec.approval.approvers,
                    response_timeout=timedelta(hours=spec.approval.timeout_hours),
                )
                current >> paused
                previous = paused
                stage_tasks.append(paused)
        promoted = promote(prepared)
        previous >> promoted
        rolled_back = rollback()
        [prepared, *stage_tasks, promoted] >> rolled_back
        rolled_back >> summarize()

    return pipeline()


# An invalid spec gets no DAGs here and is reported by dags/model_specs.py; the others are unaffected.
for _spec in load_specs()[0]:
    if _spec.rollout is not None:
        rollout_dag(_spec)
