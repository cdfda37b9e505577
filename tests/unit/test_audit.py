"""The audit trail, read from a small registry in a temporary SQLite MLflow store (no server, no Airflow).

The registry holds what the training DAG leaves behind: v1 auto-approved and promoted, then
replaced by v2 (approved by a person, with a comment), v3 whose approval timed out, and a
DAG run that stopped at data validation (a FAILED MLflow run, no version).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.modelops.governance import audit

MODEL = "fraud_audit"
DAG_ID = f"{MODEL}_training"
T0 = datetime.now(UTC)  # reset once the store exists, so version creation times fall between the tag times


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def ms(seconds: int) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


def dag_run_id(n: int) -> str:
    return f"manual__run{n}"


def make_run(
    c,
    exp_id: str,
    n: int,
    *,
    start: int,
    validation: str = "passed",
    gate: str | None = "passed",
    gate_summary: str = "PASSED: 7/7 checks passed",
    status: str = "FINISHED",
) -> str:
    tags = {
        "modelops.dag_run_id": dag_run_id(n),
        "modelops.dag_id": DAG_ID,
        "modelops.risk_tier": "low",
        "mlflow.source.git.commit": f"c0ffee{n}",
        "modelops.validation.status": validation,
        "modelops.validation.summary": f"{47 if validation == 'passed' else 43}/47 expectations passed",
        "modelops.validation.at": at(start + 5),
        "modelops.data_path": f"/data/batch{n}",
    }
    if validation == "passed":
        tags |= {
            "modelops.data_fingerprint": f"{n}" * 64,
            "modelops.split": "time-based",
            "modelops.model_uri": f"models:/m-{n}",
        }
    if gate:
        tags |= {
            "modelops.gate.status": gate,
            "modelops.gate.summary": gate_summary,
            "modelops.gate.at": at(start + 20),
        }
    run = c.create_run(exp_id, start_time=ms(start), tags=tags)
    if validation == "passed":
        c.log_param(run.info.run_id, "framework", "sklearn")
        c.log_param(run.info.run_id, "backend", "local")
    c.set_terminated(run.info.run_id, status=status, end_time=ms(start + 40))
    return run.info.run_id


def approve(
    c,
    version: str,
    *,
    by: str,
    comment: str,
    when: int,
    policy: str = "manual",
    decision: str = "approved",
    timed_out: bool = False,
) -> None:
    for k, v in {
        "decision": decision,
        "by": by,
        "at": at(when),
        "comment": comment,
        "policy": policy,
        "timed_out": timed_out,
    }.items():
        c.set_model_version_tag(MODEL, version, f"modelops.approval.1.{k}", str(v))


def version_tags(c, version: str, n: int, **extra: str) -> None:
    tags = {
        "modelops.dag_run_id": dag_run_id(n),
        "modelops.dag_id": DAG_ID,
        "modelops.data_fingerprint": f"{n}" * 64,
        "modelops.git_commit": f"c0ffee{n}",
        "modelops.spec_hash": "abc123",
        "modelops.risk_tier": "low",
        "modelops.model_card": f"runs:/r{n}/model_card/model_card.html",
        "modelops.model_card.generated_at": at(9),
        **extra,
    }
    for k, v in tags.items():
        c.set_model_version_tag(MODEL, version, k, v)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The lifecycle of three versions and one broken dataset, as the DAG's tags record it."""
    import mlflow

    tmp = tmp_path_factory.mktemp("audit")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MODELOPS_MLFLOW_UI_URL", "http://mlflow.test")
        mp.setenv("MODELOPS_AIRFLOW_UI_URL", "http://airflow.test")
        c = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = c.create_experiment(
            MODEL, artifact_location=str(tmp / "artifacts"), tags={"modelops.model": MODEL}
        )
        c.create_registered_model(MODEL)
        global T0
        T0 = datetime.now(UTC).replace(microsecond=0)
        runs = {
            1: make_run(
                c, exp, 1, start=-600, gate_summary="PASSED: first model, roc_auc 0.84; 7/7 checks passed"
            ),
            2: make_run(
                c,
                exp,
                2,
                start=-300,
                gate_summary="PASSED: roc_auc 0.86 vs champion 0.84 (+0.02, "
                "95% CI [+0.01, +0.03]); 14/14 checks passed",
            ),
            3: make_run(c, exp, 3, start=-200),
        }
        make_run(c, exp, 4, start=-100, validation="failed", gate=None, status="FAILED")
        for n in (1, 2, 3):
            c.create_model_version(MODEL, source=str(tmp / f"model{n}"), run_id=runs[n])
        # v1: auto-approved, champion, later previous
        version_tags(
            c,
            "1",
            1,
            **{
                "modelops.gate.status": "passed",
                "modelops.gate.summary": "PASSED: first model",
                "modelops.alias.challenger.set_at": at(10),
                "modelops.bento_tag": "svc:v1",
                "modelops.deployable": "true",
                "modelops.smoke.at": at(12),
                "modelops.smoke.max_abs_diff": "0.0",
                "modelops.alias.champion.set_at": at(13),
                "modelops.promoted_at": at(13),
                "modelops.alias.previous.set_at": at(32),
            },
        )
        approve(
            c, "1", by="policy:auto", comment="risk tier low, every gate check passed", when=11, policy="auto"
        )
        # v2: a person approved it; champion now
        version_tags(
            c,
            "2",
            2,
            **{
                "modelops.gate.status": "passed",
                "modelops.alias.challenger.set_at": at(20),
                "modelops.bento_tag": "svc:v2",
                "modelops.deployable": "true",
                "modelops.smoke.at": at(31),
                "modelops.alias.champion.set_at": at(33),
                "modelops.promoted_at": at(33),
                "modelops.model_card.generated_at": at(34),
            },
        )
        approve(c, "2", by="alice", comment="slices hold up; ship it", when=30)
        # v3: nobody answered in time
        version_tags(
            c, "3", 3, **{"modelops.gate.status": "passed", "modelops.alias.challenger.set_at": at(40)}
        )
        approve(
            c,
            "3",
            by="timeout",
            comment="no answer within 1 day (fail closed)",
            when=50,
            decision="rejected",
            timed_out=True,
        )
        c.set_registered_model_alias(MODEL, "champion", "2")
        c.set_registered_model_alias(MODEL, "previous", "1")
        yield {"uri": uri, "runs": runs}


def kinds(events: list[dict]) -> list[str]:
    return [e["kind"] for e in events]


def test_version_timeline_follows_the_lifecycle(registry):
    events = audit.collect_events(MODEL, "2")

    ats = [e["at"] for e in events]
    assert ats == sorted(ats)
    order = [k for k in kinds(events) if k != "alias"]
    assert order == [
        "validation",
        "training",
        "gate",
        "registration",
        "approval",
        "packaging",
        "promotion",
        "model_card",
    ]
    aliases = [e["details"]["alias"] for e in events if e["kind"] == "alias"]
    assert aliases == ["challenger", "champion"]
    champion = next(e for e in events if e["kind"] == "alias" and e["details"]["alias"] == "champion")
    assert champion["details"]["replaced"] == "1" and "replacing v1" in champion["summary"]
    assert all(e["link"] for e in events)
    assert events[0]["link"].startswith("http://mlflow.test/#/experiments/")


def test_version_audit_names_the_approver_comment_and_gate_summary(registry):
    text = audit.report(MODEL, "2")

    assert "APPROVED by alice" in text and '"slices hold up; ship it"' in text
    assert "95% CI [+0.01, +0.03]" in text  # the gate summary, word for word
    assert "v2 is in production: alias champion" in text
    assert "Evidence          complete" in text
    assert "c0ffee2" in text and "2" * 64 in text and "manual__run2" in text
    assert "http://airflow.test/dags/fraud_audit_training/runs/manual__run2" in text
    v = audit.verdict(MODEL, "2")
    assert v["aliases"] == ["champion"] and v["approvers"] == ["alice"] and v["evidence_complete"]


def test_replaced_champion_says_when_and_by_whom(registry):
    events = audit.collect_events(MODEL, "1")
    assert any(
        e["kind"] == "alias" and e["version"] == "2" and e["details"]["replaced"] == "1" for e in events
    )
    v = audit.verdict(MODEL, "1")
    assert v["aliases"] == ["previous"]
    assert "rollback target" in v["status"] and "until v2 replaced it" in v["status"]
    assert v["approvals"][0]["by"] == "policy:auto"


def test_timed_out_approval_fails_closed_in_the_record(registry):
    approval = next(e for e in audit.collect_events(MODEL, "3") if e["kind"] == "approval")
    assert approval["summary"].startswith("Approval 1: REJECTED, timed out: nobody answered")
    assert approval["details"]["timed_out"] is True and "(fail closed)" in approval["summary"]
    v = audit.verdict(MODEL, "3")
    assert "nobody answered before the deadline" in v["status"] and v["status"].endswith(
        "The champion is v2."
    )
    assert not v["evidence_complete"] and not v["in_production"]


def test_failed_validation_appears_in_the_model_audit(registry):
    events = audit.collect_events(MODEL)

    failed = [e for e in events if e["kind"] == "validation" and e["details"]["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["version"] is None and failed[0]["details"]["run_status"] == "FAILED"
    assert "the run stopped here" in failed[0]["summary"] and "/data/batch4" in failed[0]["summary"]
    assert failed[0] not in audit.collect_events(MODEL, "3")
    ats = [e["at"] for e in events]
    assert ats == sorted(ats)
    assert {e["version"] for e in events} == {"1", "2", "3", None}
    text = audit.report(MODEL)
    assert "4, of which 1 stopped at data validation" in text
    assert "v1 previous; v2 champion; v3 timed out" in text


def test_airflow_runs_add_the_trigger_reason(registry):
    dag_runs = {
        "manual__run2": {
            "dag_id": DAG_ID,
            "run_id": "manual__run2",
            "state": "success",
            "start_date": at(-301),
            "end_date": at(34),
            "conf": {"reason": "new week of data", "data_path": "/data/batch2"},
        }
    }
    events = audit.collect_events(MODEL, "2", dag_runs=dag_runs)

    assert events[0]["kind"] == "dag_run" and 'reason "new week of data"' in events[0]["summary"]
    assert events[-1]["kind"] == "dag_run" and "ended success" in events[-1]["summary"]
    assert audit.verdict(MODEL, "2", dag_runs=dag_runs)["dag_run_reason"] == "new week of data"


def test_unknown_version_names_the_versions_that_exist(registry):
    with pytest.raises(audit.AuditError, match=r"fraud_audit has no version 9\. Versions: 1, 2, 3\."):
        audit.collect_events(MODEL, "9")
    with pytest.raises(audit.AuditError, match="No model named 'nope'.*Models there: fraud_audit"):
        audit.collect_events("nope")


def test_cli_prints_one_line_and_exits_1_for_an_unknown_version(registry, capsys):
    from include.modelops import cli

    assert cli.main(["audit", "--model", MODEL, "--version", "9", "--no-airflow"]) == 1
    assert capsys.readouterr().out.strip() == "fraud_audit has no version 9. Versions: 1, 2, 3."


def test_missing_airflow_db_is_one_note_not_an_error(tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path / "airflow")}
    runs, notes = audit.read_dag_runs([DAG_ID], env)
    assert runs == {} and notes == [
        f"Airflow: no metadata DB at {tmp_path / 'airflow' / 'airflow.db'}; showing MLflow records only."
    ]
    assert not (tmp_path / "airflow").exists()  # nothing was created by looking


def test_rollout_stages_and_the_rollback_are_in_the_version_audit(registry):
    import json

    import mlflow

    c = mlflow.MlflowClient(tracking_uri=registry["uri"], registry_uri=registry["uri"])
    c.create_model_version(MODEL, source="model4", run_id=registry["runs"][3])
    passed = {
        "at": at(60),
        "stage": "canary_5",
        "traffic_percent": 5,
        "outcome": "passed",
        "reason": "every check passed",
    }
    failed = {
        "at": at(70),
        "stage": "canary_25",
        "traffic_percent": 25,
        "outcome": "failed",
        "reason": "error_rate fail: 12 of 40 canary answers were 5xx (30.00%)",
    }
    version_tags(
        c,
        "4",
        3,
        **{
            "modelops.gate.status": "passed",
            "modelops.bento_tag": "svc:v4",
            "modelops.deployable": "true",
            "modelops.smoke.at": at(55),
            "modelops.rollout.stage.00": json.dumps(passed),
            "modelops.rollout.stage.01": json.dumps(failed),
            "modelops.rollout.status": "rolled_back",
            "modelops.rolled_back_at": at(71),
            "modelops.rolled_back": "canary_25: error_rate fail: 12 of 40 canary answers were 5xx",
        },
    )
    events = [e for e in audit.collect_events(MODEL, "4") if e["kind"] in ("rollout", "rollback")]
    assert [(e["kind"], e["details"].get("stage")) for e in events] == [
        ("rollout", "canary_5"),
        ("rollout", "canary_25"),
        ("rollback", None),
    ]
    assert "FAILED: error_rate fail: 12 of 40" in events[1]["summary"]
    v = audit.verdict(MODEL, "4")
    assert "rolled back during its rollout" in v["status"] and "The champion is v2" in v["status"]


def test_a_shadow_stage_is_in_the_version_audit_before_the_canary_steps(registry):
    import json

    import mlflow

    c = mlflow.MlflowClient(tracking_uri=registry["uri"], registry_uri=registry["uri"])
    version = c.create_model_version(MODEL, source="model5", run_id=registry["runs"][3]).version
    shadow = {
        "at": at(80),
        "stage": "shadow",
        "traffic_percent": 0,
        "outcome": "failed",
        "reason": "paired_disagreement_rate fail: the versions disagree on 96.00% of 240 paired rows",
    }
    version_tags(
        c,
        version,
        3,
        **{
            "modelops.rollout.stage.shadow": json.dumps(shadow),
            "modelops.rollout.status": "rolled_back",
            "modelops.rolled_back_at": at(81),
            "modelops.rolled_back": "shadow: paired_disagreement_rate fail",
        },
    )
    events = [e for e in audit.collect_events(MODEL, version) if e["kind"] in ("rollout", "rollback")]
    assert [(e["kind"], e["details"].get("stage")) for e in events] == [
        ("rollout", "shadow"),
        ("rollback", None),
    ]
    assert events[0]["summary"] == (
        "Rollout stage shadow (copies of live requests, no traffic): FAILED: "
        "paired_disagreement_rate fail: the versions disagree on 96.00% of 240 paired rows"
    )


def test_a_pause_answered_by_a_person_is_in_the_version_audit(registry):
    import json

    import mlflow

    c = mlflow.MlflowClient(tracking_uri=registry["uri"], registry_uri=registry["uri"])
    v = str(c.create_model_version(MODEL, source="model5", run_id=registry["runs"][3]).version)
    passed = {
        "at": at(80),
        "stage": "canary_25",
        "traffic_percent": 25,
        "outcome": "passed",
        "reason": "every check passed",
    }
    aborted = {
        "at": at(85),
        "stage": "canary_25",
        "traffic_percent": 25,
        "decision": "abort",
        "by": "risk_lead",
        "comment": "scores look off",
        "timed_out": False,
    }
    version_tags(
        c,
        v,
        3,
        **{
            "modelops.rollout.stage.00": json.dumps(passed),
            "modelops.rollout.pause.00": json.dumps(aborted),
            "modelops.rollout.status": "rolled_back",
            "modelops.rolled_back_at": at(86),
            "modelops.rolled_back": "canary_25: aborted by risk_lead: scores look off",
        },
    )
    events = [e for e in audit.collect_events(MODEL, v) if e["kind"] in ("rollout", "rollback")]
    assert [(e["kind"], e["details"].get("stage")) for e in events] == [
        ("rollout", "canary_25"),
        ("rollout", "canary_25"),
        ("rollback", None),
    ]
    assert events[1]["summary"] == (
        "Rollout paused after canary_25 (25% of traffic): ABORT by risk_lead: scores look off"
    )
    assert "aborted by risk_lead" in events[2]["summary"]


def test_a_fault_injected_version_says_where_it_came_from_and_what_it_skipped(
    registry, tmp_path, monkeypatch
):
    """What `make demo-bad-canary` leaves: no "?" anywhere, and the reasons for what is missing."""
    import json

    import mlflow

    from include.modelops.demo.faults import TAG_REGISTERED_BY, TAG_WRAPS

    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path))
    c = mlflow.MlflowClient(tracking_uri=registry["uri"], registry_uri=registry["uri"])
    exp = c.get_experiment_by_name(MODEL).experiment_id
    # The run and version register_faulty_candidate makes, then the tags cmd_demo_bad_canary and the rollout add.
    run = c.create_run(
        exp, start_time=ms(90), tags={"modelops.model": MODEL, "modelops.fault": "error", TAG_WRAPS: "2"}
    )
    c.set_terminated(run.info.run_id, end_time=ms(91))
    v = str(
        c.create_model_version(
            MODEL,
            source="faulty",
            run_id=run.info.run_id,
            tags={"modelops.fault": "error", TAG_WRAPS: "2", TAG_REGISTERED_BY: "make demo-bad-canary"},
        ).version
    )
    failed = {
        "at": at(95),
        "stage": "canary_5",
        "traffic_percent": 5,
        "outcome": "failed",
        "reason": "error_rate fail: 40 of 40 canary answers were 5xx",
    }
    event = {
        "at": at(96),
        "event": "rolled back (automatic)",
        "reason": "canary_5: error_rate fail",
        "stages": [["canary_5", 5, "failed"]],
        "dag_run_id": "manual__bad",
    }
    for k, value in {
        "modelops.deployable": "true",
        "modelops.bento_tag": f"svc:v{v}",
        "modelops.alias.challenger.set_at": at(92),
        "modelops.rollout.stage.00": json.dumps(failed),
        "modelops.rollout.status": "rolled_back",
        "modelops.rolled_back_at": at(96),
        "modelops.rolled_back": "canary_5: error_rate fail",
        "modelops.deployment.000": json.dumps(event),
    }.items():
        c.set_model_version_tag(MODEL, v, k, value)
    folder = tmp_path / "rollout" / MODEL
    folder.mkdir(parents=True)
    (folder / f"v{v}.json").write_text(
        json.dumps(
            {
                "model": MODEL,
                "version": v,
                "stable_version": "2",
                "first_deployment": False,
                "dag_run_id": "manual__bad",
                "status": "rolled_back",
                "started_at": at(93),
                "ended_at": at(96),
                "reason": "error_rate fail",
                "failure": {"stage": "canary_5", "reason": "error_rate fail"},
                "stages": [{"name": "canary_5"}],
            }
        )
    )

    text = audit.report(MODEL, v)

    assert "?" not in text, [line for line in text.splitlines() if "?" in line]
    assert "max |diff|" not in text  # it was never smoke-served
    assert (
        f"Registered as {MODEL} v{v} by make demo-bad-canary as a fault-injected copy of v2 (fault 'error'), "
        "not by the training DAG"
    ) in " ".join(text.split())
    flat = " ".join(text.split())
    assert (
        "not smoke-served: registered by make demo-bad-canary as a fault-injected copy of v2 (fault 'error'); "
        "marked deployable without it"
    ) in flat
    assert (
        "Gate and approval skipped: registered by make demo-bad-canary as a fault-injected copy of v2" in flat
    )
    assert f"Rollout run manual__bad started: canary v{v} against stable v2" in flat
    assert "Deployment history: rolled back (automatic) [canary_5 failed]: canary_5: error_rate fail" in flat
    assert f"Rollout v{v} rolled back at canary_5: error_rate fail (DAG run manual__bad)" in flat
    assert "DAG run none: no training DAG run registered it" in flat
    assert "no data fingerprint recorded (registered by make demo-bad-canary" in flat
    verdict = audit.verdict(MODEL, v)
    assert not verdict["evidence_complete"] and "a passed smoke-serve" in verdict["evidence_missing"]

    model_text = audit.report(MODEL)
    assert "?" not in model_text, [line for line in model_text.splitlines() if "?" in line]
    flat = " ".join(model_text.split())
    assert "1 fault-injected candidate run(s) (make demo-bad-canary)" in flat
    rollouts = flat.split("Rollout runs ", 1)[1].split(" Ask about one", 1)[0]
    assert f"v{v} rolled back at canary_5: error_rate fail (DAG run manual__bad)" in rollouts
    assert f"v{v} rolled back (fault-injected copy)" in flat


def test_a_version_registered_without_its_lineage_tags_names_what_is_missing(registry):
    import mlflow

    c = mlflow.MlflowClient(tracking_uri=registry["uri"], registry_uri=registry["uri"])
    run = c.create_run(c.get_experiment_by_name(MODEL).experiment_id, start_time=ms(100))
    v = str(c.create_model_version(MODEL, source="by-hand", run_id=run.info.run_id).version)

    registration = next(e for e in audit.collect_events(MODEL, v) if e["kind"] == "registration")
    assert registration["summary"] == (
        f"Registered as {MODEL} v{v} (no risk tier recorded, no spec recorded, "
        f"no commit recorded), by hand or another tool (no training DAG run is "
        f"recorded on it)"
    )
    text = audit.report(MODEL, v)
    assert "?" not in text
    flat = " ".join(text.split())
    assert "Gate skipped: registered by hand or another tool" in flat
    assert "Smoke-serve not smoke-served: registered by hand" in flat and "Rollout never rolled out" in flat
