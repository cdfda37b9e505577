"""Approval rules and records, without a scheduler (MLflow in a temporary SQLite store)."""

from __future__ import annotations

import json

import pytest

from include.modelops.governance import approvals


@pytest.fixture
def registry(tmp_path, monkeypatch):
    import mlflow
    from sklearn.dummy import DummyClassifier

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("m", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=exp) as run:
        info = mlflow.sklearn.log_model(
            DummyClassifier().fit([[0], [1]], [0, 1]), name="model", serialization_format="cloudpickle"
        )
    mlflow.register_model(info.model_uri, "m")
    return run.info.run_id


def evidence(tmp_path, passed=True):
    evaluation = {
        "primary_metric": "roc_auc",
        "models": {
            "candidate": {"metrics": {"roc_auc": 0.91}},
            "champion": {"metrics": {"roc_auc": 0.90}},
            "baseline": {"metrics": {"roc_auc": 0.5}},
        },
        "comparison": {"metric": "roc_auc", "diff": 0.01, "ci_low": -0.002, "ci_high": 0.021, "samples": 200},
        "slices": [
            {
                "column": "region",
                "value": "south",
                "rows": 700,
                "metrics": {"candidate": 0.8, "champion": 0.82},
            }
        ],
    }
    decision = {"summary": "PASSED: …" if passed else "REJECTED: …", "checks": [{"passed": passed}]}
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    (tmp_path / "decision.json").write_text(json.dumps(decision))
    return {
        "passed": passed,
        "summary": decision["summary"],
        "evaluation_path": str(tmp_path / "evaluation.json"),
        "decision_path": str(tmp_path / "decision.json"),
        "report_html": "/r/evaluation_report.html",
    }


def test_high_risk_needs_two_approvals(reference_spec):
    assert approvals.required_approvals(reference_spec) == 1
    high = reference_spec.model_copy(update={"risk_tier": "high"})
    from include.modelops.spec import RiskTier

    assert approvals.required_approvals(high.model_copy(update={"risk_tier": RiskTier.high})) == 2


def test_auto_policy_approves_low_risk_without_a_human(reference_spec, tmp_path):
    decision = approvals.policy_decision(reference_spec, evidence(tmp_path))
    assert decision["decision"] == "approved" and decision["by"] == "policy:auto"


def test_manual_policy_asks_a_human(reference_spec, tmp_path):
    manual = reference_spec.model_copy(
        update={"approval": reference_spec.approval.model_copy(update={"policy": "manual"})}
    )
    assert approvals.policy_decision(manual, evidence(tmp_path)) is None


def test_the_approval_task_policy_can_only_be_stricter_than_the_spec(reference_spec, tmp_path):
    """ModelApprovalOperator(policy=...) is read: manual asks a human even where the spec allows
    auto; auto never waives the human approval a manual spec requires."""
    assert reference_spec.approval.policy == "auto"
    assert approvals.policy_decision(reference_spec, evidence(tmp_path), "manual") is None
    assert approvals.policy_decision(reference_spec, evidence(tmp_path), "auto")["by"] == "policy:auto"
    manual = reference_spec.model_copy(
        update={"approval": reference_spec.approval.model_copy(update={"policy": "manual"})}
    )
    assert approvals.policy_decision(manual, evidence(tmp_path), "auto") is None


def test_missing_evidence_blocks_the_request_naming_the_section(reference_spec, tmp_path):
    from include.modelops.governance.compliance import MissingEvidenceError

    with pytest.raises(MissingEvidenceError, match="intended_use"):
        approvals.check_ready(
            reference_spec,
            "3",
            evidence(tmp_path),
            {"missing_evidence": ["intended_use: spec field 'intended_use' is empty"]},
        )


def test_rejected_candidate_cannot_be_put_to_approval(reference_spec, tmp_path):
    with pytest.raises(approvals.ApprovalNotAllowed, match="did not pass the gate"):
        approvals.check_ready(reference_spec, "3", evidence(tmp_path, passed=False), {"missing_evidence": []})


def test_request_shows_deltas_interval_slices_and_links(reference_spec, tmp_path):
    body = approvals.request_markdown(
        reference_spec,
        {"version": "3", "url": "http://mlflow/v3"},
        evidence(tmp_path),
        {"card_html": "/cards/model_card.html"},
    )
    assert "| roc_auc | 0.9100 | 0.9000 | +0.0100 | 0.5000 |" in body
    assert "95% CI [-0.0020, +0.0210]" in body
    assert "region=south" in body and "/cards/model_card.html" in body and "http://mlflow/v3" in body
    assert "fail closed" in body


def test_records_round_trip_through_version_tags(registry):
    approvals.record("m", "1", index=1, decision="approved", by="risk_lead", comment="ok")
    approvals.record(
        "m", "1", index=2, decision="rejected", by="timeout", comment="no answer", timed_out=True
    )
    got = approvals.records("m", "1")
    assert [(r["index"], r["decision"], r["by"], r["timed_out"]) for r in got] == [
        (1, "approved", "risk_lead", False),
        (2, "rejected", "timeout", True),
    ]


def test_second_approval_from_the_same_person_is_refused(registry):
    approvals.record("m", "1", index=1, decision="approved", by="risk_lead")
    with pytest.raises(approvals.ApprovalNotAllowed, match="2 different people"):
        approvals.check_distinct("m", "1", 2, "risk_lead")
    approvals.check_distinct("m", "1", 2, "cro")
