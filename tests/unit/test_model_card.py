"""Model cards: what a reviewer reads before promotion, and the evidence each risk tier demands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.modelops.governance.card_render import render_html, render_markdown
from include.modelops.governance.card_schema import SECTIONS
from include.modelops.governance.compliance import (
    ANNEX_IV_ITEMS,
    COMPLIANCE_MAP,
    REQUIRED_SECTIONS,
    MissingEvidenceError,
    check_evidence,
    missing_evidence,
)
from include.modelops.governance.model_card import build_card, write_card
from include.modelops.platform import reports
from include.modelops.spec import PROJECT_ROOT, RiskTier, load_spec

SPEC_FILE = PROJECT_ROOT / "include/models/fraud_detection.yaml"


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC_FILE)


def _high(spec, **update):
    # Auto approval is only valid for low risk, so a high-risk copy also switches to manual.
    approval = spec.approval.model_copy(update={"policy": "manual"})
    return spec.model_copy(update={"risk_tier": RiskTier.high, "approval": approval, **update})


RUN = {
    "run_id": "abc123run",
    "params": {"max_iter": "200", "learning_rate": "0.1", "max_leaf_nodes": "31"},
    "metrics": {"train_roc_auc": 0.97, "fit_seconds": 12.5},
    "tags": {"git_commit": "deadbeef"},
    "start_time": 1_735_689_600_000,  # MLflow epoch milliseconds: 2025-01-01T00:00:00Z
}
VALIDATION = {
    "success": True,
    "summary": "42 of 42 expectations passed",
    "rows": 50_000,
    "statistics": {"partitions": 30, "time_range": {"min": "2024-12-01", "max": "2024-12-30"}},
    "failed": [],
    "report_html": "/state/runs/r1/validation.html",
}
EVALUATION = {
    "task": "binary_classification",
    "primary_metric": "roc_auc",
    "rows": 10_000,
    "models": {
        "candidate": {"metrics": {"roc_auc": 0.912, "brier": 0.031, "f1": 0.55}, "version": "4"},
        "champion": {"metrics": {"roc_auc": 0.905, "brier": 0.033, "f1": 0.52}, "version": "3"},
        "baseline": {"metrics": {"roc_auc": 0.5, "brier": 0.05}, "description": "class prior"},
    },
    "comparison": {
        "metric": "roc_auc",
        "diff": 0.007,
        "ci_low": -0.002,
        "ci_high": 0.016,
        "candidate": 0.912,
        "champion": 0.905,
    },
    "slices": [
        {
            "column": "region",
            "value": "north",
            "rows": 2100,
            "positives": 40,
            "metrics": {"candidate": 0.93, "champion": 0.92, "baseline": 0.5},
        },
        {
            "column": "channel",
            "value": "atm",
            "rows": 120,
            "positives": 3,
            "metrics": {"candidate": 0.71, "champion": 0.80, "baseline": 0.5},
        },
    ],
    "latency_ms": {"candidate": {"p50": 1.2, "p95": 2.9}, "champion": {"p50": 1.1, "p95": 2.7}},
}
DECISION = {
    "passed": True,
    "first_model": False,
    "summary": "candidate beats champion on roc_auc; all checks passed",
    "checks": [
        {"name": "threshold_roc_auc", "value": 0.912, "threshold": 0.75, "passed": True, "reason": "≥ 0.75"},
        {"name": "slice_gap", "value": 0.22, "threshold": 0.25, "passed": True, "reason": "within gap"},
    ],
}
APPROVALS = [
    {
        "decision": "approved",
        "by": "maria.risk",
        "at": "2025-01-02T09:30:00Z",
        "comment": "Reviewed slices; ATM slice is small.",
        "policy": "manual",
    }
]
LINEAGE = {
    "git_commit": "deadbeef",
    "dag_id": "fraud_detection_training",
    "dag_run_id": "manual__2025-01-01T00:00:00",
    "mlflow_run_id": "abc123run",
    "data_fingerprint": "sha256:f00d",
    "spec_hash": "0123456789abcdef",
    "data_path": "/state/data/fraud_transactions",
}
TELEMETRY = {
    "devices": [{"name": "NVIDIA H100 80GB HBM3"}, {"name": "NVIDIA H100 80GB HBM3"}],
    "gpu_hours": 0.52,
    "energy_wh": 310.5,
    "peak_memory_mb": 12_345,
    "mean_utilization_pct": 71.0,
}
DEPLOYMENTS = [{"stage": "canary", "traffic_percent": 5, "at": "2025-01-03T10:00:00Z", "outcome": "healthy"}]
LINKS = {
    "mlflow_run": "http://mlflow.local/#/experiments/1/runs/abc123run",
    "airflow_dag_run": "http://airflow.local/dags/fraud_detection_training/runs/x",
    "evaluation_report": "http://mlflow.local/artifacts/evaluation.html",
}


def full_card(spec, **overrides):
    kwargs = dict(
        model_name="fraud_detection",
        version="4",
        run=RUN,
        validation=VALIDATION,
        evaluation=EVALUATION,
        decision=DECISION,
        approvals=APPROVALS,
        lineage=LINEAGE,
        telemetry=TELEMETRY,
        deployments=DEPLOYMENTS,
        links=LINKS,
        generated_at="2025-01-02T12:00:00+00:00",
    )
    kwargs.update(overrides)
    return build_card(spec, **kwargs)


def bare_card(spec, **overrides):
    """A card with only what the spec knows: no run evidence at all."""
    kwargs = dict(model_name=spec.name, version=None, run={}, validation=None, evaluation=None, decision=None)
    kwargs.update(overrides)
    return build_card(spec, **kwargs)


# ---- building -----------------------------------------------------------------------------------


def test_full_card_has_every_section_and_a_compliance_entry_for_each(spec):
    card = full_card(spec)

    for section in SECTIONS:
        assert section in card, section
    assert [e["section"] for e in card["compliance"]] == list(SECTIONS)
    for entry in card["compliance"]:
        assert set(entry) == {"section", "eu_ai_act_annex_iv", "nist_ai_rmf", "status"}
        assert entry["status"] == "present", entry
        assert entry["eu_ai_act_annex_iv"] and entry["nist_ai_rmf"]
    assert card["missing_evidence"] == []


def test_compliance_mapping_uses_only_real_annex_iv_items(spec):
    # Annex IV has nine items; only items 1 and 2 have lettered sub-points, (a) to (h).
    assert {k.split("(")[0] for k in ANNEX_IV_ITEMS} == {str(i) for i in range(1, 10)}
    assert {k for k in ANNEX_IV_ITEMS if "(" in k} == {f"{i}({c})" for i in (1, 2) for c in "abcdefgh"}
    for annex, nist in COMPLIANCE_MAP.values():
        assert set(annex) <= set(ANNEX_IV_ITEMS)
        assert all(n.startswith(("MEASURE ", "MAP ")) for n in nist)
    mapping = {e["section"]: e for e in full_card(spec)["compliance"]}
    assert "1(a)" in mapping["intended_use"]["eu_ai_act_annex_iv"]
    assert "2(d)" in mapping["data"]["eu_ai_act_annex_iv"]
    assert "2(g)" in mapping["evaluation"]["eu_ai_act_annex_iv"]
    assert "2(e)" in mapping["approvals"]["eu_ai_act_annex_iv"]
    assert "MEASURE 2.11" in mapping["evaluation"]["nist_ai_rmf"]
    assert "MEASURE 2.12" in mapping["training"]["nist_ai_rmf"]


def test_card_without_run_evidence_marks_those_sections_empty(spec):
    card = bare_card(spec)
    status = {e["section"]: e["status"] for e in card["compliance"]}

    for section in (
        "data_validation",
        "evaluation",
        "gate_decision",
        "approvals",
        "deployment_history",
        "lineage",
    ):
        assert status[section] == "empty", section
    for section in ("model_details", "intended_use", "data", "limitations", "monitoring"):
        assert status[section] == "present", section


def test_card_describes_model_data_and_lineage_from_spec_and_run(spec):
    card = full_card(spec)

    details = card["model_details"]
    assert details["owner"] == {"team": "risk-ml", "email": "risk-ml@example.com"}
    assert details["risk_tier"] == "low" and details["task"] == "binary_classification"
    assert details["created"] == "2025-01-01T00:00:00+00:00"
    features = {f["name"]: f for f in card["data"]["features"]}
    assert features["amount"]["constraints"].startswith("0 ≤ value ≤ 50,000")
    assert "nulls ≤ 5%" in features["distance_from_home_km"]["constraints"]
    assert features["channel"]["constraints"].startswith("one of: pos, online, atm")
    assert card["data"]["rows"] == 50_000 and card["data"]["partitions"] == 30
    assert card["data"]["time_range"] == {"min": "2024-12-01", "max": "2024-12-30"}
    assert card["data"]["fingerprint"] == "sha256:f00d"
    assert card["lineage"]["spec_hash"] == "0123456789abcdef"
    assert card["evaluation"]["comparison"]["ci_excludes_zero"] is False
    slices = {s["value"]: s for s in card["evaluation"]["slices"]}
    assert slices["north"]["gated"] and not slices["atm"]["gated"]  # 120 rows < slices.min_rows 200


def test_lineage_falls_back_to_spec_hash_and_dag_id_when_not_given(spec):
    card = bare_card(spec, run={"run_id": "r9"})

    assert card["lineage"]["spec_hash"] == spec.spec_hash()
    assert card["lineage"]["dag_id"] == "fraud_detection_training"
    assert card["lineage"]["mlflow_run_id"] == "r9"


# ---- training hardware --------------------------------------------------------------------------


def test_gpu_telemetry_appears_in_training_section_and_reports(spec):
    card = full_card(spec)
    hw = card["training"]["hardware"]

    assert hw["accelerator"] == "GPU"
    assert hw["devices"] == ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]
    assert hw["gpu_hours"] == 0.52 and hw["energy_wh"] == 310.5 and hw["peak_memory_mb"] == 12_345
    assert "2 × NVIDIA H100 80GB HBM3" in hw["summary"] and "310.5 Wh" in hw["summary"]
    for text in (render_markdown(card), render_html(card)):
        assert "NVIDIA H100 80GB HBM3" in text
        assert "GPU-hours" in text and "310.5" in text


def test_training_without_telemetry_says_cpu_only(spec):
    card = full_card(spec, telemetry=None)
    hw = card["training"]["hardware"]

    assert hw["accelerator"] == "CPU"
    assert hw["summary"].startswith("CPU only")
    assert hw["energy_wh"] is None and hw["devices"] == []
    assert "CPU only" in render_markdown(card)
    assert "CPU only" in render_html(card)


def test_requested_gpus_without_telemetry_are_reported_as_unknown_not_cpu(spec):
    training = spec.training.model_copy(update={"backend": "kubernetes", "gpus": 1})
    card = full_card(spec.model_copy(update={"training": training}), telemetry=None)

    assert "no GPU telemetry was recorded" in card["training"]["hardware"]["summary"]


# ---- rendering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("render", [render_markdown, render_html], ids=["markdown", "html"])
def test_reports_contain_gate_checks_slices_and_approval_record(spec, render):
    text = render(full_card(spec))

    assert "threshold_roc_auc" in text and "slice_gap" in text  # gate table
    assert "PASS" in text
    assert "north" in text and "atm" in text  # slices table
    assert "maria.risk" in text and "2025-01-02T09:30:00Z" in text and "approved" in text
    assert "roc_auc" in text and "0.912" in text and "0.905" in text  # metrics table
    assert "Annex IV" in text and "MEASURE 2.11" in text
    assert "-0.002" in text.replace("−", "-")  # CI lower bound


def test_html_is_self_contained(spec):
    html = render_html(full_card(spec))

    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert reports.STYLESHEET in html  # the one toolkit's page and stylesheet
    assert "<script" not in html
    assert "<link" not in html and "src=" not in html


def test_html_escapes_user_text(spec):
    evil = "<script>alert('x')</script>"
    card = full_card(
        spec.model_copy(update={"intended_use": evil, "limitations": [evil]}),
        approvals=[{"decision": "approved", "by": "<b>mallory</b>", "at": "now", "comment": evil}],
        links={"mlflow_run": "javascript:alert(1)"},
    )
    html = render_html(card)

    assert "<script>" not in html and "<b>mallory" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript:' not in html


def test_markdown_escapes_user_text_and_table_pipes(spec):
    card = full_card(spec.model_copy(update={"intended_use": "<script>x</script> | a"}))
    md = render_markdown(card)

    assert "<script>" not in md
    assert "&lt;script&gt;x&lt;/script&gt; \\| a" in md


def test_empty_sections_render_as_not_provided_instead_of_failing(spec):
    card = bare_card(spec.model_copy(update={"limitations": []}))

    for text in (render_markdown(card), render_html(card)):
        assert "Not provided: gate decision" in text
        assert (
            "Not provided: spec field &#39;limitations&#39;" in text
            or "Not provided: spec field 'limitations'" in text
        )
        assert "No approval recorded yet" in text


# ---- evidence required by risk tier --------------------------------------------------------------


def test_high_risk_card_with_empty_intended_use_is_refused_naming_the_field(spec):
    card = full_card(_high(spec, intended_use=""))

    with pytest.raises(MissingEvidenceError) as exc:
        check_evidence(card, "high")

    message = str(exc.value)
    assert "intended_use: spec field 'intended_use' is empty" in message
    assert "risk tier 'high'" in message
    assert exc.value.missing == card["missing_evidence"]


def test_low_risk_card_with_empty_intended_use_passes(spec):
    card = full_card(spec.model_copy(update={"intended_use": ""}))

    check_evidence(card, "low")
    assert card["missing_evidence"] == []


def test_high_risk_lists_every_missing_item_with_the_field_to_fill(spec):
    card = full_card(
        _high(spec, intended_use="", out_of_scope_uses=[], limitations=[], ethical_considerations=[]),
        evaluation={**EVALUATION, "slices": []},
    )

    missing = missing_evidence(card, "high")

    assert [m.split(":")[0] for m in missing] == [
        "intended_use",
        "intended_use.out_of_scope_uses",
        "limitations",
        "ethical_considerations",
        "evaluation.slices",
    ]
    assert "spec field 'out_of_scope_uses'" in missing[1]
    assert "spec field 'segment_columns'" in missing[4]


def test_medium_risk_needs_validation_and_lineage(spec):
    card = bare_card(spec, evaluation=EVALUATION, decision=DECISION)

    assert missing_evidence(card, "low") == []
    missing = missing_evidence(card, "medium")
    assert any(m.startswith("data_validation:") for m in missing)
    assert any("MLflow run id" in m for m in missing)
    assert any("data fingerprint" in m for m in missing)


def test_low_risk_still_needs_evaluation_and_gate_decision(spec):
    missing = missing_evidence(bare_card(spec), "low")

    assert [m.split(":")[0] for m in missing] == ["evaluation", "gate_decision"]


def test_required_sections_grow_with_risk_tier():
    assert set(REQUIRED_SECTIONS["low"]) < set(REQUIRED_SECTIONS["medium"]) < set(REQUIRED_SECTIONS["high"])
    assert "approvals" not in REQUIRED_SECTIONS["high"]  # the card is what the approver reads


def test_unknown_risk_tier_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="unknown risk tier 'extreme'"):
        missing_evidence(full_card(spec), "extreme")


# ---- serialisation ------------------------------------------------------------------------------


def test_write_card_writes_json_markdown_and_html(spec, tmp_path: Path):
    card = full_card(spec)

    paths = write_card(card, tmp_path / "card")

    assert set(paths) == {"json", "markdown", "html"}
    assert {Path(p).name for p in paths.values()} == {"model_card.json", "model_card.md", "model_card.html"}
    for p in paths.values():
        assert Path(p).is_file() and Path(p).stat().st_size > 0
    assert json.loads(Path(paths["json"]).read_text()) == card
    assert sorted(p.name for p in (tmp_path / "card").iterdir()) == [
        "model_card.html",
        "model_card.json",
        "model_card.md",
    ]


def test_card_survives_a_json_round_trip(spec):
    card = full_card(spec)

    assert json.loads(json.dumps(card, allow_nan=False)) == card
    assert render_html(json.loads(json.dumps(card))) == render_html(card)


def test_non_finite_metrics_become_null_so_the_card_stays_strict_json(spec):
    evaluation = {
        **EVALUATION,
        "models": {**EVALUATION["models"], "candidate": {"metrics": {"roc_auc": float("nan")}}},
    }
    card = full_card(spec, evaluation=evaluation)

    assert card["evaluation"]["models"]["candidate"]["metrics"]["roc_auc"] is None
    json.dumps(card, allow_nan=False)


def test_serving_section_states_the_endpoint_contract(spec):
    from include.modelops.governance.card_render import render_html, render_markdown
    from include.modelops.serving.contract import MAX_BODY_BYTES, MAX_ROWS

    card = bare_card(spec)
    serving = card["serving"]
    assert serving["endpoint"] == "POST /predict"
    assert serving["max_rows"] == MAX_ROWS and serving["max_body_bytes"] == MAX_BODY_BYTES
    assert [f["name"] for f in serving["fields"]] == spec.feature_names
    fields = {f["name"]: f for f in serving["fields"]}
    assert (
        fields["amount"]["allowed"].startswith("0 ≤ value ≤ 50000") and "NaN" in fields["amount"]["allowed"]
    )
    assert fields["channel"]["allowed"] == "one of: pos, online, atm"
    assert fields["distance_from_home_km"]["required"] is False and fields["amount"]["required"] is True
    assert "X-Request-ID" in serving["request_id_header"]
    assert "score" in serving["response"] and "0.5" in serving["response"]
    assert '"field"' in serving["errors"]["format"] and set(serving["errors"]) >= {"400", "413", "415"}
    status = {e["section"]: e for e in card["compliance"]}["serving"]
    assert status["status"] == "present" and "1(h)" in status["eu_ai_act_annex_iv"]
    markdown = render_markdown(card)
    assert "Serving: the endpoint contract" in markdown and "merchant_category" in markdown
    assert "Serving: the endpoint contract" in render_html(card)


@pytest.mark.parametrize("render", [render_markdown, render_html], ids=["markdown", "html"])
def test_validation_warnings_the_spec_allowed_are_shown_on_the_card(spec, render):
    warning = {
        "expectation": "train_and_holdout_hold_every_class",
        "column": "is_fraud",
        "success": False,
        "severity": "warning",
        "observed": "holdout: class 1 has 2 rows (need ≥ 5 of each class on both sides)",
    }
    card = full_card(spec, validation={**VALIDATION, "warnings": [warning]})

    text = render(card)

    assert card["data_validation"]["warnings"] == [
        {
            "expectation": "train_and_holdout_hold_every_class",
            "column": "is_fraud",
            "observed": warning["observed"],
        }
    ]
    assert "train_and_holdout_hold_every_class" in text and "holdout: class 1 has 2 rows" in text
    assert "train_and_holdout_hold_every_class" not in render(full_card(spec))


def test_card_says_why_a_retrained_model_was_trained(spec):
    from include.modelops.governance.card_render import render_markdown

    reason = (
        "drift monitoring: retrain requested: 50% of features drifted (threshold 30%); most drifted: amount"
    )
    card = full_card(
        spec,
        lineage={**LINEAGE, "trigger_reason": reason, "drift_report": "runs:/monrun/drift/drift_report.html"},
    )
    md = render_markdown(card)
    assert "Why this model was trained" in md and "most drifted: amount" in md
    assert "runs:/monrun/drift/drift_report.html" in md
    assert "not recorded (a manual or scheduled run)" in render_markdown(full_card(spec))


# ---- deployment history ----------------------------------------------------------------------------


def test_deployment_history_shows_each_event_with_its_stages_verdicts_and_reason(spec):
    from include.modelops.governance.model_card import with_deployment_history
    from include.modelops.rollout.history import deployment_history

    tags = {  # what promote and rollback record on a version, oldest first
        "modelops.deployment.000": json.dumps(
            {
                "at": "2026-03-01T10:00:00+00:00",
                "event": "promoted",
                "reason": "every stage passed",
                "stages": [
                    ["shadow", 0, "passed"],
                    ["canary_25", 25, "passed"],
                    ["canary_100", 100, "passed"],
                ],
            }
        ),
        "modelops.deployment.001": json.dumps(
            {
                "at": "2026-03-02T09:00:00+00:00",
                "event": "rolled back (rollback DAG)",
                "reason": "complaints from the fraud desk",
                "stages": [],
            }
        ),
        "modelops.alias.champion.set_at": "2026-03-01T10:00:00+00:00",
    }
    history = deployment_history(tags)
    assert [e["event"] for e in history] == ["promoted", "rolled back (rollback DAG)"]
    card = with_deployment_history(
        full_card(spec, deployments=[]), history, generated_at="2026-03-02T09:00:01+00:00"
    )
    assert card["deployment_history"][0]["stages"][1] == {
        "name": "canary_25",
        "traffic_percent": 25,
        "outcome": "passed",
    }
    assert card["generated_at"] == "2026-03-02T09:00:01+00:00"
    assert {e["section"]: e["status"] for e in card["compliance"]}["deployment_history"] == "present"
    md = render_markdown(card)
    section = md.split("## Deployment history", 1)[1].split("\n## ", 1)[0]
    assert "| Date | Event | Stages (traffic share: verdict) | Reason |" in section
    assert (
        "shadow (copies of live requests, no traffic): passed; canary_25 (25% of traffic): passed; "
        "canary_100 (100% of traffic): passed"
    ) in section
    assert "rolled back (rollback DAG)" in section and "complaints from the fraud desk" in section
    assert "complaints from the fraud desk" in render_html(card)


def test_a_version_promoted_without_a_rollout_has_its_alias_moves_as_history():
    from include.modelops.rollout.history import deployment_history

    history = deployment_history(
        {
            "modelops.alias.challenger.set_at": "2026-03-01T09:00:00+00:00",
            "modelops.alias.champion.set_at": "2026-03-01T10:00:00+00:00",
        }
    )
    assert [(e["event"], e["reason"]) for e in history] == [
        ("alias challenger set", ""),
        ("alias champion set", "promoted by the training DAG (no rollout section)"),
    ]


def test_the_card_make_demo_prints_is_the_one_the_last_deployment_event_wrote(
    spec, sqlite_mlflow_store, tmp_path, monkeypatch, capsys
):
    """After a promotion and then a rollback, the local card the run summary names is the MLflow artifact."""
    import mlflow

    from include.modelops.cli.report import print_summary
    from include.modelops.governance.model_card import publish_card
    from include.modelops.platform import tracking
    from include.modelops.rollout import history

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    monkeypatch.setenv("MODELOPS_STATE_DIR", str(tmp_path / "state"))
    c = tracking.client()
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    c.create_registered_model(spec.name)
    version = str(c.create_model_version(spec.name, source=str(tmp_path / "model"), run_id=run_id).version)
    tracking.set_version_tags(
        spec.name, version, {"modelops.alias.challenger.set_at": "2026-03-01T09:00:00+00:00"}
    )
    # What the training DAG's generate_model_card / update_model_card write.
    trained = publish_card(
        full_card(
            spec,
            version=version,
            deployments=history.deployment_history(tracking.version_info(spec.name, version)["tags"]),
        ),
        model=spec.name,
        version=version,
        run_id=run_id,
    )
    summary = {
        "model": spec.name,
        "dag_run_id": "manual__1",
        "run_dir": str(tmp_path / "run"),
        "failed_steps": [],
        "champion_version": None,
        "steps": {
            "register_candidate": {"state": "success", "result": {"version": version}},
            "generate_model_card": {"state": "success", "result": {"card_html": trained["html"]}},
        },
    }

    def printed_card() -> str:
        print_summary(
            summary, dag_s=1, total_s=1, log_file=tmp_path / "run.log", rollout={"version": version}
        )
        line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("Model card "))
        return Path(line.split("Model card", 1)[1].strip()).read_text()

    for event, reason in (
        (history.PROMOTED, "every stage passed (canary_25)"),
        (history.TAKEN_BACK, "complaints from the fraud desk"),
    ):
        history.record_event(spec.name, version, event, stages=[], reason=reason, dag_run_id=f"run-{event}")
        assert history.refresh_model_card(spec.name, version) == f"runs:/{run_id}/model_card/model_card.html"
        local = printed_card()
        assert local == mlflow.artifacts.load_text(f"runs:/{run_id}/model_card/model_card.html")
        assert event in local and reason in local
        assert "alias challenger set" not in local  # the events replaced the alias-only history
