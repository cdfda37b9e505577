"""A paused rollout stage: the request a person reads, and what their answer records (no scheduler)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from include.modelops.rollout import pause
from include.modelops.rollout.record import read_record, write_record
from include.modelops.rollout.stages import RolloutFailed

MODEL = "fraud_detection"  # the reference spec: steps 10, 50, 100
HOUR = timedelta(hours=1)

ANALYSIS = {
    "verdict": "pass",
    "canary_requests": 41,
    "stable_requests": 370,
    "reason": "every check passed",
    "checks": [
        {
            "name": "error_rate",
            "canary": 0.0,
            "stable": 0.0,
            "threshold": "<= 0.01",
            "outcome": "pass",
            "reason": "0 of 41 canary answers were 5xx",
        },
        {
            "name": "score_jensen_shannon",
            "canary": 0.0612,
            "stable": 0.0,
            "threshold": "<= 0.3",
            "outcome": "pass",
            "reason": "mean score 0.0161 vs stable 0.0168, distance 0.0612",
        },
    ],
}


@pytest.fixture
def rollout(tmp_path, monkeypatch):
    """v2 rolling out against stable v1: stage canary_10 passed, canary_50 not entered yet."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MODELOPS_SPECS_DIR", raising=False)
    c = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    c.create_registered_model(MODEL)
    for n in (1, 2):
        c.create_model_version(MODEL, source=str(tmp_path / f"model{n}"))
    write_record(
        MODEL,
        "2",
        {  # noqa: SLF001 - set up as check_stage leaves it
            "model": MODEL,
            "version": "2",
            "stable_version": "1",
            "status": "running",
            "dag_run_id": "r1",
            "stages": [
                {
                    "name": "canary_10",
                    "traffic_percent": 10,
                    "outcome": "passed",
                    "analysis": ANALYSIS,
                    "started_at": "2026-11-23T10:00:00+00:00",
                    "ended_at": "2026-11-23T10:01:00+00:00",
                }
            ],
        },
    )
    return c


def test_the_request_shows_the_stage_analysis_and_what_each_answer_does(rollout):
    asked = pause.request(MODEL, "2", 0, timeout=HOUR)
    assert asked["subject"] == "Continue the rollout of fraud_detection v2 past canary_10 (10% of traffic)?"
    body = asked["body"]
    assert "| error_rate | 0 | 0 | <= 0.01 | PASS | 0 of 41 canary answers were 5xx |" in body
    assert "| score_jensen_shannon | 0.0612 | 0 | <= 0.3 | PASS |" in body
    assert "**Approve**: the next stage, **canary_50** (50% of requests to v2)" in body
    assert "100% of requests to stable v1" in body and "No answer within 1:00:00 rejects" in body


def test_a_reject_aborts_with_who_and_why_in_the_record_and_the_tags(rollout):
    with pytest.raises(RolloutFailed, match="^aborted by risk_lead: scores look off$"):
        pause.decide(MODEL, "2", 0, approved=False, by="risk_lead", comment="scores look off")
    record = read_record(MODEL, "2")
    assert record["failure"] == {"stage": "canary_10", "reason": "aborted by risk_lead: scores look off"}
    assert record["stages"][0]["pause"]["decision"] == pause.ABORT
    tag = json.loads(rollout.get_model_version(MODEL, "2").tags["modelops.rollout.pause.00"])
    assert (tag["stage"], tag["decision"], tag["by"], tag["comment"]) == (
        "canary_10",
        "abort",
        "risk_lead",
        "scores look off",
    )


def test_no_answer_aborts_fail_closed(rollout):
    with pytest.raises(RolloutFailed, match="no answer within 1:00:00 at the pause after canary_10"):
        pause.decide(MODEL, "2", 0, approved=False, by="timeout", timed_out=True, timeout=HOUR)
    assert read_record(MODEL, "2")["stages"][0]["pause"]["timed_out"] is True


def test_an_approval_continues_and_a_retried_task_finds_it_instead_of_asking_again(rollout):
    assert pause.earlier_decision(MODEL, "2", 0) is None
    entry = pause.decide(MODEL, "2", 0, approved=True, by="risk_lead", comment="looks fine")
    assert entry["decision"] == pause.CONTINUE and "failure" not in read_record(MODEL, "2")
    assert pause.earlier_decision(MODEL, "2", 0)["reason"] == "continued by risk_lead: looks fine"


def test_a_stage_that_has_not_passed_cannot_be_continued(rollout):
    with pytest.raises(RolloutFailed, match="stage 1 has not passed"):
        pause.request(MODEL, "2", 1, timeout=HOUR)


def test_a_stage_or_shadow_stage_stopped_from_outside_is_recorded_as_aborted_with_its_name():
    from include.modelops.rollout.stages import _note_abort_of_running_stage

    shadow_running = {"shadow": {"name": "shadow", "outcome": "running"}, "stages": []}
    _note_abort_of_running_stage(shadow_running)
    assert shadow_running["shadow"]["outcome"] == "aborted"
    assert (
        shadow_running["failure"]["stage"] == "shadow"
        and "marked failed" in shadow_running["failure"]["reason"]
    )

    canary_running = {
        "shadow": {"name": "shadow", "outcome": "passed"},
        "stages": [{"name": "canary_25", "outcome": "running"}],
    }
    _note_abort_of_running_stage(canary_running)
    assert (
        canary_running["failure"]["stage"] == "canary_25" and canary_running["shadow"]["outcome"] == "passed"
    )

    failed = {
        "stages": [{"name": "canary_25", "outcome": "running"}],
        "failure": {"stage": "canary_25", "reason": "error_rate fail"},
    }
    _note_abort_of_running_stage(failed)  # a verdict already recorded is kept
    assert failed["failure"]["reason"] == "error_rate fail" and failed["stages"][0]["outcome"] == "running"
