"""A rollout driven through a running Airflow's REST API: a paused stage approved or aborted by a
person, a running stage aborted by hand, and a second trigger that waits for the first.

Uses the session's `airflow standalone` (scheduler, API server; see conftest.py) and its spec
`fraud_paused`: 25% (paused: a person continues or aborts) then 100%, 30 requests each, real
bentos behind Caddy, the traffic generator, the session's MLflow server. Tests run in file order
and share one deployment: v1 is deployed first, v2 approved at the pause and promoted, v3
aborted at the pause, then v3 aborted while its stage bakes while a rollout of v1 waits queued.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from include.modelops.rollout.record import read_record
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import ModelSpec
from tests.integration.airflow_rest import Api, dag_run, hitl_path, run_state, ti, trigger
from tests.integration.rollout_fixtures import traffic, variants_answering

pytestmark = pytest.mark.integration

MODEL = "fraud_paused"
DAG = f"{MODEL}_rollout"
PAUSE = "pause_after_canary_25"

# Trains three versions and builds their bentos in the standalone's environment (its BentoML
# store, its MLflow server), as the training DAG would leave them: deployable, smoke-tagged.
BUILD = """
import json, sys
import mlflow
from include.modelops.platform import tracking
from include.modelops.data.reading import read_dataset
from include.modelops.spec import load_spec_by_name
from tests.integration.rollout_fixtures import build, train_and_register
spec = load_spec_by_name(sys.argv[1])
frame = read_dataset(sys.argv[2])
experiment = mlflow.set_experiment("rollout-api").experiment_id
versions = []
for seed in (1, 2, 3):
    v = train_and_register(spec, frame, seed=seed, experiment_id=experiment)
    tracking.set_version_tags(spec.name, v, {"modelops.deployable": "true", "modelops.bento_tag": build(spec, v)})
    versions.append(v)
print(json.dumps(versions))
"""


@dataclass
class Rollouts:
    api: Api
    env: dict[str, str]
    url: str
    spec: ModelSpec
    frame: pd.DataFrame
    data_dir: Path
    versions: list[str]
    stack: object

    def alias(self, alias: str) -> str | None:
        return self.stack.alias(alias, model=MODEL)

    def aliases(self) -> tuple[str | None, str | None, str | None]:
        return self.alias("champion"), self.alias("previous"), self.alias("challenger")

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.stack.client().get_model_version(MODEL, version).tags)

    def challenger(self, version: str) -> None:
        self.stack.client().set_registered_model_alias(MODEL, "challenger", version)

    def traffic(self):
        return traffic(self.url, MODEL, self.data_dir, self.env)

    def task_state(self, run_id: str, task_id: str) -> str | None:
        return ti(self.api, DAG, run_id, task_id).get("state")

    def wait_task(self, run_id: str, task_id: str, *states: str, timeout_s: float = 600) -> str:
        def reached() -> str | None:
            state = self.task_state(run_id, task_id)
            if state in ("failed", "upstream_failed") and state not in states:
                raise AssertionError(f"{task_id} of {run_id} is {state}, waiting for {states}")
            return state if state in states else None

        return self.api.wait(f"{task_id} of {run_id} to be {'/'.join(states)}", reached, timeout_s, every_s=2)

    def finished(self, run_id: str) -> str:
        return self.api.wait(f"{run_id} to finish", lambda: run_state(self.api, DAG, run_id), 600, every_s=2)

    def baking(self, version: str, run_id: str) -> dict:
        """Wait until ``run_id`` has entered stage canary_25 of ``version`` (its record says so)."""

        def entered() -> dict | None:
            record = read_record(MODEL, version)
            ok = record.get("dag_run_id") == run_id and [s["outcome"] for s in record.get("stages", [])] == [
                "running"
            ]
            return record if ok else None

        return self.api.wait(f"{run_id} to bake canary_25", entered, 600, every_s=1)

    def answer(self, run_id: str, option: str, comment: str, *, user: str = "risk_lead") -> tuple[int, dict]:
        return self.api.call(
            "PATCH",
            hitl_path(DAG, run_id, PAUSE),
            {"chosen_options": [option], "params_input": {"comment": comment}},
            user=user,
        )


@pytest.fixture(scope="module")
def rollouts(stack, standalone):
    from include.modelops.data.reading import read_dataset
    from include.modelops.rollout.local import LocalBackend
    from include.modelops.spec import load_spec

    env = standalone.env
    res = subprocess.run(
        [sys.executable, "-c", BUILD, MODEL, str(stack.data_dir)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    versions = json.loads(res.stdout.strip().splitlines()[-1])
    with pytest.MonkeyPatch.context() as mp:
        # This process reads what the standalone's tasks write: the rollout record, the deployment
        # state and the inference log under its state folder.
        for key in ("MODELOPS_STATE_DIR", "MODELOPS_SPECS_DIR", "MODELOPS_ROLLOUT_PORT"):
            mp.setenv(key, env[key])
        mp.delenv("MODELOPS_INFERENCE_LOG_URL", raising=False)
        try:
            yield Rollouts(
                api=standalone.api,
                env=env,
                url=f"http://127.0.0.1:{env['MODELOPS_ROLLOUT_PORT']}",
                spec=load_spec(standalone.specs_dir / f"{MODEL}.yaml"),
                frame=read_dataset(stack.data_dir),
                data_dir=stack.data_dir,
                versions=versions,
                stack=stack,
            )
        finally:
            LocalBackend(MODEL).shutdown()


def test_first_version_is_deployed_through_the_rest_api_without_a_pause(rollouts):
    v1 = rollouts.versions[0]
    run_id = trigger(rollouts.api, DAG, {"version": v1})
    assert rollouts.finished(run_id) == "success"
    assert rollouts.task_state(run_id, PAUSE) == "success"  # nothing was compared: nobody is asked
    assert rollouts.aliases() == (v1, None, None)
    assert variants_answering(rollouts.url, rollouts.spec, rollouts.frame) == {("stable", v1)}


def test_a_paused_stage_approved_through_the_rest_api_is_promoted(rollouts):
    from include.modelops.rollout.local import LocalBackend

    api, (v1, v2, _) = rollouts.api, rollouts.versions
    rollouts.challenger(v2)
    with rollouts.traffic():
        run_id = trigger(api, DAG, {})  # no version: the challenger
        rollouts.wait_task(run_id, PAUSE, "awaiting_input")
        assert rollouts.task_state(run_id, "canary_100") is None  # the next stage waits for the answer
        assert LocalBackend(MODEL).state().canary_percent == 25  # the canary keeps its share meanwhile

        status, detail = api.call("GET", hitl_path(DAG, run_id, PAUSE))
        assert status == 200, detail
        assert detail["subject"] == f"Continue the rollout of {MODEL} v{v2} past canary_25 (25% of traffic)?"
        for row in ("| error_rate |", "| latency_p95_ratio |", "| score_jensen_shannon |"):
            assert row in detail["body"], detail["body"]  # the stage's analysis table
        assert "**Verdict:** PASS" in detail["body"] and "canary_100" in detail["body"]

        status, _ = rollouts.answer(run_id, "Approve", "x", user="admin")
        assert status == 403  # admin is not one of the spec's approvers
        status, resp = rollouts.answer(run_id, "Approve", "analysis reviewed")
        assert status == 200, resp
        assert rollouts.finished(run_id) == "success"

    assert rollouts.aliases() == (v2, v1, None)
    pause = json.loads(rollouts.tags(v2)["modelops.rollout.pause.00"])
    assert (pause["decision"], pause["by"], pause["comment"]) == (
        "continue",
        "risk_lead",
        "analysis reviewed",
    )
    assert variants_answering(rollouts.url, rollouts.spec, rollouts.frame) == {("stable", v2)}


def test_a_paused_stage_aborted_through_the_rest_api_is_rolled_back(rollouts):
    from include.modelops.governance import audit

    api, (v1, v2, v3) = rollouts.api, rollouts.versions
    rollouts.challenger(v3)
    with rollouts.traffic():
        run_id = trigger(api, DAG, {})
        rollouts.wait_task(run_id, PAUSE, "awaiting_input")
        status, resp = rollouts.answer(run_id, "Reject", "scores look off on the fraud desk's cases")
        assert status == 200, resp
        assert rollouts.finished(run_id) == "failed"  # the run shows the rollback, it is not green

    assert (
        rollouts.task_state(run_id, PAUSE) == "failed"
        and rollouts.task_state(run_id, "rollback") == "success"
    )
    assert rollouts.task_state(run_id, "canary_100") == "upstream_failed"
    reason = "aborted by risk_lead: scores look off on the fraud desk's cases"
    record = read_record(MODEL, v3)
    assert (record["status"], record["reason"], record["failure"]["stage"]) == (
        "rolled_back",
        reason,
        "canary_25",
    )
    tags = rollouts.tags(v3)
    assert (
        tags["modelops.rollout.status"] == "rolled_back"
        and tags["modelops.rolled_back"] == f"canary_25: {reason}"
    )
    summaries = [e["summary"] for e in audit.collect_events(MODEL, v3)]
    assert any("ABORT by risk_lead: scores look off" in s for s in summaries), summaries
    assert any(s.startswith("Rolled back") and reason in s for s in summaries), summaries
    assert rollouts.aliases() == (v2, v1, None)
    assert variants_answering(rollouts.url, rollouts.spec, rollouts.frame) == {("stable", v2)}


def test_a_running_stage_marked_failed_is_rolled_back_and_a_second_trigger_waits(rollouts):
    """No traffic: canary_25 bakes (too few requests) until someone marks it failed through the REST API."""

    api, (v1, v2, v3) = rollouts.api, rollouts.versions
    first = trigger(api, DAG, {"version": v3})
    rollouts.baking(v3, first)
    second = trigger(
        api, DAG, {"version": v1, "allow_older": True}
    )  # v1 is older than champion v2: on purpose
    for _ in range(4):  # max_active_runs=1: the second run stays queued while the first runs
        assert (dag_run(api, DAG, first)["state"], dag_run(api, DAG, second)["state"]) == (
            "running",
            "queued",
        )
        time.sleep(2)

    def abort(run_id: str) -> None:
        status, resp = api.call(
            "PATCH", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/canary_25", {"new_state": "failed"}
        )
        assert status == 200, resp

    abort(first)
    assert rollouts.finished(first) == "failed"
    assert rollouts.task_state(first, "rollback") == "success"
    record = read_record(MODEL, v3)
    assert record["status"] == "rolled_back" and record["failure"]["stage"] == "canary_25"
    assert "aborted while canary_25 baked: its task was marked failed" in record["reason"]
    assert rollouts.tags(v3)["modelops.rolled_back"].startswith("canary_25: aborted while canary_25 baked")

    # The second run starts only now, and is aborted the same way.
    rollouts.baking(v1, second)
    assert dag_run(api, DAG, second)["start_date"] >= dag_run(api, DAG, first)["end_date"]
    abort(second)
    assert rollouts.finished(second) == "failed"
    assert read_record(MODEL, v1)["status"] == "rolled_back"
    assert rollouts.aliases() == (v2, v1, None)
    assert variants_answering(rollouts.url, rollouts.spec, rollouts.frame) == {("stable", v2)}
