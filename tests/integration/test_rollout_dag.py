"""The `<model>_rollout` DAG end to end: real Airflow (`airflow dags test`), real bentos behind Caddy,
real HTTP from the traffic generator, the registry in a real MLflow store.

Tests run in file order and share one deployment: v1 is deployed first (nothing to compare
against), v2 (good) is promoted through every stage, then faulty candidates (5xx, shifted scores,
slow) are rolled back, a canary killed mid-stage is rolled back, and a stage poked again from a
new process (a task retry) resumes without moving traffic twice.
Stages are short (25% then 100%, 30 requests each) so the module stays fast.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from include.modelops.rollout.record import read_record
from include.modelops.settings import PROJECT_ROOT
from tests.conftest import mlflow_uris_restored
from tests.integration.conftest import write_test_spec
from tests.integration.rollout_fixtures import build, register_faulty, train_and_register, variants_answering
from tests.integration.rollout_fixtures import traffic as rollout_traffic

pytestmark = pytest.mark.integration

MODEL = "fraud_detection"
# Short stages; error and latency limits wide enough for a busy 2-core test machine, where an
# overloaded service answers the odd 503 (the faulty candidates answer 100% 5xx or shift every score).
ROLLOUT = {
    "steps": [25, 100],
    "min_requests": 30,
    "max_wait_s": 120,
    "check_interval_s": 2,
    "analysis": {
        "min_rows_for_distance": 100,
        "max_score_distance": 0.35,
        "latency_tolerance_ms": 200,
        "max_latency_p95_ratio": 3,
        "max_error_rate": 0.1,
        "max_error_rate_increase": 0.1,
    },
}


class Deployment:
    def __init__(self, root: Path, env: dict[str, str], frame, spec) -> None:
        self.root, self.env, self.frame, self.spec = root, env, frame, spec
        self.url = f"http://127.0.0.1:{env['MODELOPS_ROLLOUT_PORT']}"
        self.experiment: str | None = None
        self.last_version: str | None = None

    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.env["MLFLOW_TRACKING_URI"])

    def alias(self, alias: str) -> str | None:
        try:
            return str(self.client().get_model_version_by_alias(MODEL, alias).version)
        except Exception:
            return None

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client().get_model_version(MODEL, version).tags)

    def deployable(self, version: str, *, challenger: bool = True) -> str:
        """Build the version's bento and tag it as the training DAG's smoke test does."""
        from include.modelops.platform import tracking

        tag = build(self.spec, version)
        tracking.set_version_tags(MODEL, version, {"modelops.deployable": "true", "modelops.bento_tag": tag})
        if challenger:
            tracking.set_alias(MODEL, tracking.CHALLENGER, version)
        return version

    def rollout(self, conf: dict | None = None, *, traffic: bool = True) -> dict:
        """One run of the rollout DAG (while the traffic generator sends requests); its record and rc."""
        from include.modelops.platform import local_stack

        sending = (
            rollout_traffic(self.url, MODEL, self.root / "data", self.env)
            if traffic
            else contextlib.nullcontext()
        )
        with sending:
            args = ["dags", "test", f"{MODEL}_rollout"] + (["--conf", json.dumps(conf)] if conf else [])
            log_file = self.root / "logs" / f"rollout-{time.monotonic_ns()}.log"
            res = local_stack.airflow(args, self.env, log_file=log_file, timeout_s=600)
        version = (conf or {}).get("version") or self.last_version
        return {"rc": res.returncode, "log": res.stdout, "record": read_record(MODEL, str(version))}

    def variants_answering(self, n: int = 20) -> set[tuple[str, str]]:
        """Send n requests through the endpoint; (variant, version) of every row the log holds for them."""
        return variants_answering(self.url, self.spec, self.frame, n)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, bentoml_store):
    import mlflow

    from include.modelops.data.example import generate_transactions
    from include.modelops.data.reading import read_dataset
    from include.modelops.platform import local_stack
    from include.modelops.rollout.local import LocalBackend
    from include.modelops.spec import load_spec

    root = tmp_path_factory.mktemp("rollout_dag")
    specs = root / "specs"
    generate_transactions(root / "data", rows=2000, days=5, seed=5)
    write_test_spec(specs, root / "data", rollout=ROLLOUT)
    uri = f"sqlite:///{root}/mlflow.db"
    env = local_stack.stack_env(root / "state", uri, specs_dir=specs, api_port=local_stack.free_port())
    env["BENTOML_HOME"] = str(bentoml_store)  # one store per process (see conftest)
    env.update(
        MODELOPS_ROLLOUT_PORT=str(local_stack.free_port()),
        MODELOPS_SERVE_WORKERS="1",
        MODELOPS_GIT_COMMIT="test",
        MODELOPS_INFERENCE_LOG_URL=str(root / "state" / "inference_log"),
    )
    with mlflow_uris_restored(), pytest.MonkeyPatch.context() as mp:
        for key in (
            "MODELOPS_STATE_DIR",
            "MODELOPS_SPECS_DIR",
            "BENTOML_HOME",
            "MLFLOW_TRACKING_URI",
            "MODELOPS_ROLLOUT_PORT",
            "MODELOPS_GIT_COMMIT",
            "MODELOPS_INFERENCE_LOG_URL",
            "MODELOPS_SERVE_WORKERS",
        ):
            mp.setenv(key, env[key])
        spec = load_spec(specs / f"{MODEL}.yaml")
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        local_stack.migrate_airflow_db(env)
        d = Deployment(root, env, read_dataset(root / "data"), spec)
        d.experiment = mlflow.create_experiment(
            "rollout-dag", artifact_location=(root / "artifacts").as_uri()
        )
        try:
            yield d
        finally:
            LocalBackend(MODEL).shutdown()


def test_first_version_is_deployed_at_100_percent_with_nothing_to_compare(deployment):
    v1 = deployment.deployable(
        train_and_register(deployment.spec, deployment.frame, seed=1, experiment_id=deployment.experiment)
    )
    deployment.last_version = v1
    run = deployment.rollout({"version": v1}, traffic=False)
    assert run["rc"] == 0, run["log"][-3000:]
    assert run["record"]["status"] == "promoted" and run["record"]["first_deployment"] is True
    assert "nothing to compare against" in deployment.tags(v1)["modelops.rollout.summary"]
    assert deployment.alias("champion") == v1 and deployment.alias("challenger") is None
    assert deployment.variants_answering() == {("stable", v1)}


def test_good_candidate_is_promoted_through_every_stage(deployment):
    v1 = deployment.alias("champion")
    v2 = deployment.deployable(
        train_and_register(deployment.spec, deployment.frame, seed=2, experiment_id=deployment.experiment)
    )
    deployment.last_version = v2
    run = deployment.rollout()  # no version: the challenger
    record = run["record"]
    assert run["rc"] == 0, run["log"][-3000:]
    assert [(s["name"], s["outcome"]) for s in record["stages"]] == [
        ("canary_25", "passed"),
        ("canary_100", "passed"),
    ]
    assert all(s["analysis"]["verdict"] == "pass" for s in record["stages"])
    assert "verdict: PASS" in run["log"]  # each stage's analysis table is in the task log
    assert (deployment.alias("champion"), deployment.alias("previous"), deployment.alias("challenger")) == (
        v2,
        v1,
        None,
    )
    assert deployment.tags(v2)["modelops.rollout.status"] == "promoted"
    assert deployment.variants_answering() == {("stable", v2)}  # the old stable was drained and stopped


def test_the_promoted_versions_model_card_shows_its_deployment_history(deployment):
    import mlflow

    champion = deployment.alias("champion")
    record = read_record(MODEL, champion)
    run_id = deployment.client().get_model_version(MODEL, champion).run_id
    assert deployment.tags(champion)["modelops.model_card"] == f"runs:/{run_id}/model_card/model_card.html"
    card = mlflow.artifacts.load_dict(f"runs:/{run_id}/model_card/model_card.json")
    promoted = [e for e in card["deployment_history"] if e["event"] == "promoted"]
    assert promoted and promoted[-1]["reason"] == record["summary"]
    # Each stage it went through, with its traffic share and verdict (none for a first deployment).
    assert promoted[-1]["stages"] == [
        {"name": s["name"], "traffic_percent": s["traffic_percent"], "outcome": "passed"}
        for s in record["stages"]
    ]
    assert bool(record["stages"]) != bool(record["first_deployment"])
    markdown = mlflow.artifacts.load_text(f"runs:/{run_id}/model_card/model_card.md")
    history = markdown.split("## Deployment history", 2)[-1].split("\n## ", 1)[0]
    assert "| promoted |" in history


# A candidate answering 500s (error_rate) is rolled back through the same DAG by `make demo-bad-canary`,
# in tests/e2e/test_demo.py; here the two faults only the stage analysis can see.
@pytest.mark.parametrize(
    "fault, failed_check", [("shift", "score_jensen_shannon"), ("slow", "latency_p95_ratio")]
)
def test_faulty_candidate_is_rolled_back_and_stable_keeps_every_request(deployment, fault, failed_check):
    champion = deployment.alias("champion")
    bad = deployment.deployable(
        register_faulty(
            deployment.spec, champion, fault, experiment_id=deployment.experiment, workdir=deployment.root
        )
    )
    deployment.last_version = bad
    run = deployment.rollout({"version": bad})
    record = run["record"]
    assert run["rc"] != 0 and "rolled back at canary_25" in run["log"]  # the run is not green
    assert record["status"] == "rolled_back" and record["failure"]["stage"] == "canary_25"
    assert failed_check in record["reason"], record["reason"]
    tags = deployment.tags(bad)
    assert tags["modelops.rollout.status"] == "rolled_back" and failed_check in tags["modelops.rolled_back"]
    assert (deployment.alias("champion"), deployment.alias("challenger")) == (champion, None)
    assert deployment.variants_answering() == {("stable", champion)}


def test_a_canary_killed_mid_stage_is_rolled_back_within_a_couple_of_checks(deployment):
    """No traffic: canary_25 bakes (too few requests) until its process is killed; the next check sees it."""
    from include.modelops.platform import tracking
    from include.modelops.rollout.local import LocalBackend

    champion, previous = deployment.alias("champion"), deployment.alias("previous")
    candidate = previous  # a good model whose bento exists: the previous champion, rolled out again
    tracking.set_alias(MODEL, tracking.CHALLENGER, candidate)
    deployment.last_version = candidate
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(deployment.rollout, {"version": candidate, "allow_older": True}, traffic=False)
        deadline = time.monotonic() + 300
        while [s["outcome"] for s in read_record(MODEL, candidate).get("stages", [])] != ["running"]:
            assert time.monotonic() < deadline and not running.done(), "canary_25 never started baking"
            time.sleep(0.5)
        canary = LocalBackend(MODEL).state().variants["canary"]
        assert canary.version == candidate
        os.kill(canary.pid, signal.SIGKILL)
        killed = datetime.now(UTC)
        run = running.result(timeout=600)

    record = run["record"]
    assert run["rc"] != 0 and record["status"] == "rolled_back", run["log"][-3000:]
    assert record["failure"]["stage"] == "canary_25"
    assert (
        f"the canary process died or stopped answering (process {canary.pid} is not running"
        in record["reason"]
    )
    noticed_s = (datetime.fromisoformat(record["stages"][0]["ended_at"]) - killed).total_seconds()
    assert noticed_s <= 3 * ROLLOUT["check_interval_s"] + 2, (
        f"the dead canary was noticed after {noticed_s:.1f} s"
    )
    assert deployment.tags(candidate)["modelops.rolled_back"].startswith("canary_25: the canary process died")
    assert (deployment.alias("champion"), deployment.alias("previous"), deployment.alias("challenger")) == (
        champion,
        previous,
        None,
    )
    assert deployment.variants_answering() == {("stable", champion)}


# One poke of a stage in a process of its own, as a task retry runs it, with a backend that counts
# the share changes the stage asks for and the routing configs sent to Caddy (its /load calls).
POKE = """
import json, sys
from include.modelops.rollout import stages
from include.modelops.rollout.local import LocalBackend

class Counting(LocalBackend):
    def __init__(self, model):
        super().__init__(model)
        self.shares, self.caddy_loads = [], 0
    def set_canary_percent(self, percent):
        self.shares.append(percent)
        super().set_canary_percent(percent)
    def _apply(self, state):
        self.caddy_loads += 1
        super()._apply(state)

backend = Counting(sys.argv[1])
result = stages.check_stage(sys.argv[1], sys.argv[2], 0, backend=backend)
print(json.dumps({"done": result["done"], "shares": backend.shares, "caddy_loads": backend.caddy_loads}))
"""


def test_a_retried_stage_resumes_without_moving_traffic_twice(deployment):
    from include.modelops.platform import tracking
    from include.modelops.rollout import stages
    from include.modelops.rollout.local import LocalBackend

    champion, previous = deployment.alias("champion"), deployment.alias("previous")
    candidate = previous
    tracking.set_alias(MODEL, tracking.CHALLENGER, candidate)
    stages.prepare(
        MODEL, candidate, dag_run_id="retry-test", allow_older=True
    )  # the previous version, on purpose

    def poke() -> dict:
        res = subprocess.run(
            [sys.executable, "-c", POKE, MODEL, candidate],
            env=deployment.env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout.strip().splitlines()[-1])

    try:
        first = poke()
        entered = read_record(MODEL, candidate)["stages"]
        retried = poke()  # the task's retry, in a new process
        record = read_record(MODEL, candidate)
        assert (first["done"], retried["done"]) == (False, False)  # no traffic: still baking
        assert (first["shares"], first["caddy_loads"]) == ([25], 1)  # the stage moved the share once...
        assert (retried["shares"], retried["caddy_loads"]) == (
            [],
            0,
        )  # ...and the retry did not move it again
        assert [s["name"] for s in record["stages"]] == ["canary_25"]
        assert record["stages"] == entered  # same start, same baseline window: the retry resumed the stage
        assert LocalBackend(MODEL).state().canary_percent == 25
    finally:
        stages.rollback(MODEL, candidate, reason="end of the retry test")
    assert (deployment.alias("champion"), deployment.alias("previous"), deployment.alias("challenger")) == (
        champion,
        previous,
        None,
    )
    assert deployment.variants_answering() == {("stable", champion)}


def test_a_completed_promotion_is_taken_back_by_the_rollback_dag(deployment):
    champion, previous = deployment.alias("champion"), deployment.alias("previous")
    from include.modelops.platform import local_stack

    res = local_stack.airflow(
        [
            "dags",
            "test",
            f"{MODEL}_rollback",
            "--conf",
            json.dumps({"reason": "complaints from the fraud desk"}),
        ],
        deployment.env,
        log_file=deployment.root / "logs" / "rollback.log",
        timeout_s=600,
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert (deployment.alias("champion"), deployment.alias("previous")) == (previous, champion)
    tags = deployment.tags(champion)
    assert tags["modelops.rollout.status"] == "rolled_back" and "fraud desk" in tags["modelops.rolled_back"]
    assert deployment.variants_answering() == {("stable", previous)}


def test_the_rollback_dag_is_in_both_versions_deployment_history(deployment):
    """Follows the rollback DAG test: the restored champion and the version taken back."""
    import mlflow

    def history(version: str) -> list[dict]:
        run_id = deployment.client().get_model_version(MODEL, version).run_id
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/model_card/model_card.json")["deployment_history"]

    taken_back, restored = deployment.alias("previous"), deployment.alias("champion")
    assert deployment.tags(taken_back)["modelops.rollout.status"] == "rolled_back"
    last = history(taken_back)[-1]
    assert last["event"] == "rolled back (rollback DAG)" and "fraud desk" in last["reason"]
    assert [e["event"] for e in history(taken_back)][-2] == "promoted"
    last = history(restored)[-1]
    assert (
        last["event"] == "restored to champion (rollback DAG)"
        and f"v{taken_back} was taken back" in last["reason"]
    )


# --- the shadow stage (one case, kept short) -------------------------------------------------------

SHADOW = {"requests": 30, "max_wait_s": 90, "max_disagreement_rate": 0.1}


def test_shadow_stage_rolls_back_a_shifted_candidate_while_clients_get_only_stable_answers(deployment):
    import mlflow

    from include.modelops.governance import audit
    from include.modelops.serving.inference_log import read_window

    champion = deployment.alias("champion")
    if champion is None:  # run on its own: deploy a first version to shadow against
        champion = deployment.deployable(
            train_and_register(deployment.spec, deployment.frame, seed=1, experiment_id=deployment.experiment)
        )
        deployment.last_version = champion
        assert deployment.rollout({"version": champion}, traffic=False)["rc"] == 0
    bad = deployment.deployable(
        register_faulty(
            deployment.spec, champion, "shift", experiment_id=deployment.experiment, workdir=deployment.root
        )
    )
    deployment.last_version = bad
    spec_file = Path(deployment.env["MODELOPS_SPECS_DIR"]) / f"{MODEL}.yaml"
    shared_spec = spec_file.read_text()
    write_test_spec(spec_file.parent, deployment.root / "data", rollout={**ROLLOUT, "shadow": SHADOW})
    started = datetime.now(UTC)
    try:
        run = deployment.rollout({"version": bad})
    finally:
        spec_file.write_text(shared_spec)  # the module's other tests roll out without a shadow stage
    record = run["record"]
    assert run["rc"] != 0 and "rolled back at shadow" in run["log"], run["log"][-3000:]
    assert record["failure"]["stage"] == "shadow" and record["stages"] == []  # no canary step was entered
    assert "paired_disagreement_rate fail" in record["reason"], record["reason"]
    assert (
        "paired_disagreement_rate" in run["log"] and "verdict: FAIL" in run["log"]
    )  # the table, in the task log
    assert "paired_disagreement_rate" in deployment.tags(bad)["modelops.rolled_back"]
    assert (deployment.alias("champion"), deployment.alias("challenger")) == (champion, None)

    # Clients only ever got stable's answers: every row the candidate logged is a shadow copy of a
    # request stable answered, and none is a canary answer.
    logged = read_window(MODEL, start=started)
    candidate = logged[logged["model_version"] == bad]
    answered = logged[logged["variant"] == "stable"]
    assert set(candidate["variant"]) == {"shadow"}
    assert set(answered["model_version"]) == {champion}
    assert candidate["request_id"].nunique() >= SHADOW["requests"]
    assert set(candidate["request_id"]) <= set(answered["request_id"])

    # The table is in the version's MLflow run, the stage in the audit trail, the rollback on its card.
    run_id = deployment.client().get_model_version(MODEL, bad).run_id
    analysis = mlflow.artifacts.load_dict(f"runs:/{run_id}/rollout/shadow.json")
    assert analysis["verdict"] == "fail" and "paired_disagreement_rate" in analysis["table"]
    stage_events = [e for e in audit.collect_events(MODEL, bad) if e["kind"] == "rollout"]
    assert [e["details"]["stage"] for e in stage_events] == ["shadow"]
    card = mlflow.artifacts.load_dict(f"runs:/{run_id}/model_card/model_card.json")
    assert card["deployment_history"][-1]["event"] == "rolled back (automatic)"
    assert card["deployment_history"][-1]["stages"] == [
        {"name": "shadow", "traffic_percent": 0, "outcome": "failed"}
    ]

    # A client cannot mark its own request as a shadow copy: the endpoint strips the header.
    marked = urllib.request.Request(
        f"{deployment.url}/predict",
        method="POST",
        data=json.dumps({"rows": packaging_rows(deployment)}).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Request-ID": "marked-by-a-client",
            "X-ModelOps-Shadow": "1",
        },
    )
    with urllib.request.urlopen(marked, timeout=10) as r:
        assert r.status == 200
    assert deployment.variants_answering() == {("stable", champion)}
    marked_rows = read_window(MODEL, start=started)
    assert set(marked_rows[marked_rows["request_id"] == "marked-by-a-client"]["variant"]) == {"stable"}


def packaging_rows(deployment) -> list[dict]:
    from include.modelops.serving.contract import request_rows

    return request_rows(deployment.spec, deployment.frame.head(2))
