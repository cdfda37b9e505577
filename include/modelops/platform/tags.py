"""Tag names this project writes on MLflow runs and model versions that more than one module reads.

Writers and readers take the name from here, so a rename cannot leave a reader behind.
"""

from __future__ import annotations

MONITORING = "modelops.monitoring."  # prefix of a monitoring run's tags (one run per drift window)
KIND_MONITORING = "monitoring"  # TAG_KIND of a monitoring run (never mistaken for a training run)

# Run and model-version tags read or written by more than one module.
TAG_BENTO_TAG = "modelops.bento_tag"
TAG_DAG_ID = "modelops.dag_id"
TAG_DAG_RUN_ID = "modelops.dag_run_id"
TAG_DATA_FINGERPRINT = "modelops.data_fingerprint"
TAG_DATA_PATH = "modelops.data_path"
TAG_DEPLOYABLE = "modelops.deployable"
TAG_DRIFT_REPORT = "modelops.drift_report"
TAG_FAULT = "modelops.fault"
TAG_FAULT_WRAPS = "modelops.fault.wraps"
TAG_GATE_AT = "modelops.gate.at"
TAG_GATE_STATUS = "modelops.gate.status"
TAG_GATE_SUMMARY = "modelops.gate.summary"
TAG_GIT_COMMIT = "modelops.git_commit"
TAG_KIND = "modelops.kind"
TAG_MODEL = "modelops.model"
TAG_MODEL_CARD = "modelops.model_card"
TAG_MODEL_CARD_GENERATED_AT = "modelops.model_card.generated_at"
TAG_MODEL_URI = "modelops.model_uri"
TAG_PROMOTED_AT = "modelops.promoted_at"
TAG_REGISTERED_BY = "modelops.registered_by"
TAG_RISK_TIER = "modelops.risk_tier"
TAG_ROLLED_BACK = "modelops.rolled_back"
TAG_ROLLED_BACK_AT = "modelops.rolled_back_at"
TAG_ROLLOUT_STATUS = "modelops.rollout.status"
TAG_ROLLOUT_SUMMARY = "modelops.rollout.summary"
TAG_SMOKE_AT = "modelops.smoke.at"
TAG_SMOKE_MAX_ABS_DIFF = "modelops.smoke.max_abs_diff"
TAG_SPEC_HASH = "modelops.spec_hash"
TAG_SPLIT = "modelops.split"
TAG_TRIGGER_REASON = "modelops.trigger_reason"
TAG_VALIDATION_AT = "modelops.validation.at"
TAG_VALIDATION_FAILED = "modelops.validation.failed"
TAG_VALIDATION_STATUS = "modelops.validation.status"
TAG_VALIDATION_SUMMARY = "modelops.validation.summary"
TAG_VALIDATION_WARNINGS = "modelops.validation.warnings"
TAG_BENTO_BUILT_AT = "modelops.bento.built_at"

# Prefixes: one tag per stage, pause or deployment event, each a compact JSON record.
TAG_ROLLOUT_STAGE = "modelops.rollout.stage."  # + the stage's two-digit index (or "shadow")
TAG_ROLLOUT_PAUSE = "modelops.rollout.pause."  # + the paused stage's two-digit index
TAG_DEPLOYMENT = "modelops.deployment."  # + a three-digit sequence number: the deployment history


TAG_ALIAS = "modelops.alias."  # + <alias>.set_at: when the alias last moved to the version


def alias_set_at(alias: str) -> str:
    """The tag recording when ``alias`` last moved to the version (``modelops.alias.<alias>.set_at``)."""
    return f"{TAG_ALIAS}{alias}.set_at"
