"""
### Model training lifecycle: `<model>_training`, one DAG per spec in `include/models/`

validate (Great Expectations) → split → train → evaluate against the champion and a naive
baseline → register (alias `challenger` if the gate passed) → model card → gate → approve
(policy `auto`, or a reviewer in *Required actions*; two for high-risk models) → package
(BentoML) → smoke-serve (train/serve skew check) → Asset event `<model>.deployable_bento` → update
the card. A spec with a `rollout:` section stops there, at alias `challenger`: its `<model>_rollout`
DAG (scheduled on that Asset) moves traffic in stages and `champion` only at 100%. A spec without
one promotes the candidate to `champion` right after smoke-serving.

A rejected candidate skips the steps after the gate and never touches the champion; the
`summarize` task always runs and writes `summary.json` with what happened and where to look.

Trigger it from the UI, on the spec's `schedule`, on a retrain request from `<model>_monitoring`
(the `<model>.retrain_requested` asset: its reason and drift report are recorded on the version and
in the model card), or through the REST API with conf `{"data_path": "...", "reason": "..."}` to
retrain on new data. A run started by a retrain request acts on it once: when a version was
already trained for that request (e.g. `make demo-drift` ran the retrain itself with `airflow dags
test`, and `make up`'s scheduler starts the queued run later), `validate_dataset` is skipped with
the reason in its log and the run ends with every task skipped. Adding a spec file is all it
takes for its DAG to appear. This file only wires: the steps live in `include/modelops/pipelines/training.py`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import (
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    chain,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from modelops_operators import ModelApprovalOperator, ModelCardOperator

from include.modelops import assets
from include.modelops.governance.approvals import required_approvals
from include.modelops.spec import ModelSpec, load_specs

# A user's mistake (bad data, bad spec, missing evidence) fails at once; infrastructure errors retry.
NO_RETRY_ON_USER_ERRORS = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[
                "include.modelops.data.validation.DataValidationError",
                "include.modelops.data.validation.DataSplitError",
                "include.modelops.spec.ModelSpecError",
                "include.modelops.governance.compliance.MissingEvidenceError",
                "include.modelops.governance.approvals.ApprovalNotAllowed",
                "include.modelops.serving.smoke.TrainServeSkewError",
            ],
            action=RetryAction.FAIL,
            reason="the input is wrong, retrying cannot fix it",
        )
    ]
)


def _run() -> dict:
    ctx = get_current_context()
    return {"dag_id": ctx["dag"].dag_id, "dag_run_id": ctx["dag_run"].run_id}


def _conf() -> dict:
    """The run's conf; a run started by a retrain request takes its reason, drift report and labelled
    window from the event."""
    ctx = get_current_context()
    conf = {k: v for k, v in (ctx["params"] or {}).items() if v is not None}
    for events in (ctx.get("triggering_asset_events") or {}).values():
        for event in list(events)[-1:]:
            extra = event.extra or {}
            if extra.get("reason") and not conf.get("reason"):
                conf["reason"] = extra["reason"]
            for key in ("drift_report", "labelled_data"):
                if extra.get(key) and not conf.get(key):
                    conf[key] = extra[key]
    return conf


def _schedule(spec: ModelSpec):
    """The spec's cron (if any) or a retrain request from the monitoring DAG, whichever comes first."""
    requested = assets.retrain_requested(spec.name)
    if spec.schedule is None:
        return [requested]
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(spec.schedule, timezone="UTC"), assets=requested
    )


def training_dag(spec: ModelSpec):
    """Build the training DAG of one model spec."""
    model = spec.name

    @dag(
        dag_id=spec.dag_id,
        description=spec.description[:200],
        schedule=_schedule(spec),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["modelops", "training", model, *spec.tags],
        default_args={
            "owner": spec.owner.team,
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "retry_policy": NO_RETRY_ON_USER_ERRORS,
        },
        params={
            "data_path": Param(
                None,
                type=["null", "string"],
                description="Train on this file/folder instead of the spec's data.path.",
            ),
            "reason": Param(None, type=["null", "string"], description="Why this run was triggered."),
            "drift_report": Param(
                None,
                type=["null", "string"],
                description="The drift report behind a retrain (recorded on the version).",
            ),
            "labelled_data": Param(
                None,
                type=["null", "string"],
                description="Labelled live rows (Parquet; a path or runs:/ URI) added to the "
                "training split, as a monitoring retrain request sends them.",
            ),
        },
    )
    def pipeline():
        from include.modelops.pipelines import (
            training as steps,
        )  # light: heavy libraries load inside each step

        @task(outlets=[assets.validated_dataset(model)])
        def validate_dataset() -> dict:
            from include.modelops.pipelines.triggers import latest_event_extra, served_retrain_request

            ctx = get_current_context()
            request = latest_event_extra(
                ctx.get("triggering_asset_events"), "reason", asset_name=assets.retrain_requested(model).name
            )
            if request and not (ctx["params"] or {}).get(
                "reason"
            ):  # started by a retrain request: act on it once
                served = served_retrain_request(model, request)
                if served:
                    raise AirflowSkipException(f"{model}: skipping the retrain_requested event: {served}")
            return steps.validate_dataset(model, conf=_conf(), **_run())

        @task
        def split_dataset(validated: dict) -> dict:
            return steps.split_dataset(model, validated, conf=_conf(), dag_run_id=_run()["dag_run_id"])

        @task(execution_timeout=timedelta(hours=6))
        def train_candidate(validated: dict, split: dict) -> dict:
            return steps.train_candidate(model, validated, split, dag_run_id=_run()["dag_run_id"])

        @task
        def evaluate_candidate(validated: dict, split: dict, trained: dict) -> dict:
            return steps.evaluate_candidate(model, validated, split, trained, dag_run_id=_run()["dag_run_id"])

        @task(outlets=[assets.candidate(model)])
        def register_candidate(validated: dict, trained: dict, evaluated: dict) -> dict:
            return steps.register_candidate(model, validated, trained, evaluated, **_run())

        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def gate(evaluated: dict) -> bool:
            return steps.check_gate(evaluated)

        @task
        def package_bento(registered: dict, trained: dict) -> dict:
            return steps.package_bento(model, registered, trained)

        @task(outlets=[assets.deployable_bento(model)])
        def smoke_serve_bento(registered: dict, trained: dict, split: dict, packaged: dict) -> dict:
            result = steps.smoke_serve_bento(model, registered, trained, split, packaged)
            # The rollout DAG scheduled on this Asset reads which version to roll out from the event.
            get_current_context()["outlet_events"][assets.deployable_bento(model)].extra = {
                "version": registered["version"],
                "bento_tag": result["bento_tag"],
            }
            return result

        @task(outlets=[assets.production(model)])
        def promote_to_champion(registered: dict) -> dict:
            return steps.promote(model, registered)

        @task(trigger_rule="all_done", retries=0)
        def summarize() -> dict:
            ctx = get_current_context()
            run = _run()
            states = ctx["ti"].get_task_states(dag_id=run["dag_id"], run_ids=[run["dag_run_id"]])
            if (states.get(run["dag_run_id"]) or {}).get("validate_dataset") == "skipped":
                raise AirflowSkipException(
                    "nothing trained: validate_dataset was skipped (see its log for why)"
                )
            results = {
                t: {
                    "state": (states.get(run["dag_run_id"]) or {}).get(t),
                    "result": ctx["ti"].xcom_pull(task_ids=t),
                }
                for t in ctx["dag"].task_ids
                if t != "summarize"
            }
            summary = steps.summarize_run(model, results=results, **run)
            if summary["failed_steps"]:  # the summary is the leaf task: it carries the run's outcome
                raise AirflowFailException(
                    f"{model}: failed at {', '.join(summary['failed_steps'])}; see its log"
                )
            return summary

        validated = validate_dataset()
        split = split_dataset(validated)
        if spec.training.backend == "kubernetes":
            # The same entrypoint in the training image, as a deferrable pod; its result comes back via XCom.
            from include.modelops.training.pod import training_pod_operator

            pod = training_pod_operator(spec, task_id="train_candidate")
            [validated, split] >> pod
            trained = pod.output
        else:
            trained = train_candidate(validated, split)
        evaluated = evaluate_candidate(validated, split, trained)
        registered = register_candidate(validated, trained, evaluated)
        card = ModelCardOperator(
            task_id="generate_model_card",
            model_name=model,
            validated=validated,
            split=split,
            evaluated=evaluated,
            registered=registered,
        )
        approvals = [
            ModelApprovalOperator(
                task_id="approve" if i == 1 else f"approve_{i}",
                model_name=model,
                registered=registered,
                evaluated=evaluated,
                card=card.output,
                policy=spec.approval.policy,
                approvers=spec.approval.approvers,
                response_timeout=timedelta(hours=spec.approval.timeout_hours),
                approval_index=i,
            )
            for i in range(1, required_approvals(spec) + 1)
        ]
        chain(gate(evaluated), *approvals)
        packaged = package_bento(registered, trained)
        approvals[-1] >> packaged
        smoke = smoke_serve_bento(registered, trained, split, packaged)
        if spec.rollout is None:
            promoted = promote_to_champion(registered)
            smoke >> promoted
        else:  # the candidate stays challenger; <model>_rollout promotes it when every stage passed
            promoted = smoke
        # The card follows the version's state: regenerated after a promotion, a rejection or a timeout
        # (a rejecting approval skips its direct downstream, so this hangs after promote, not approve).
        final_card = ModelCardOperator(
            task_id="update_model_card",
            model_name=model,
            validated=validated,
            split=split,
            evaluated=evaluated,
            registered=registered,
            trigger_rule="none_failed",
        )
        promoted >> final_card
        [
            validated,
            split,
            trained,
            evaluated,
            registered,
            card,
            *approvals,
            packaged,
            smoke,
            *([promoted] if promoted is not smoke else []),
            final_card,
        ] >> summarize()

    return pipeline()


# An invalid spec gets no DAGs here and is reported by dags/model_specs.py; the others are unaffected.
for _spec in load_specs()[0]:
    training_dag(_spec)
