"""The model spec: one YAML file per model (``include/models/<name>.yaml``), validated here.

This module is the single definition of the spec's schema. Every field carries a
description; ``docs/model-spec.md`` explains them with an example. Loading is cheap
(pydantic + PyYAML only) because DAG files call it at parse time.
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from include.modelops.settings import PROJECT_ROOT, get_settings

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
# libyaml's safe loader parses specs ~5x faster than the pure-Python one (DAG parse time).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ModelSpecError(ValueError):
    """A spec file is missing, unreadable or invalid; the message names the file and field."""


class SpecFieldError(ValueError):
    """A rule across fields failed; ``field`` is the dotted path of the field to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskType(str, Enum):
    binary_classification = "binary_classification"
    multiclass_classification = "multiclass_classification"
    regression = "regression"


class FeatureType(str, Enum):
    numeric = "numeric"
    integer = "integer"
    categorical = "categorical"
    boolean = "boolean"


class RiskTier(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"


class Owner(_Strict):
    """Who is accountable for the model."""

    team: str = Field(description="Team accountable for the model.")
    email: str = Field(description="Contact address for incidents and reviews.")


class DataSource(_Strict):
    """Where the training data lives and how much of it is required."""

    path: str = Field(
        description="A file or a folder of files (searched recursively, e.g. daily partitions). "
        "Relative paths are resolved against the project root; ${VAR} is expanded here (never in a run's "
        "conf data_path); the value of a secret-like variable (name with TOKEN, SECRET, PASSWORD, KEY...) is "
        "masked in task logs and tags."
    )
    format: Literal["parquet", "csv"] = Field(default="parquet", description="File format.")
    min_rows: int = Field(default=1000, ge=1, description="Fewer rows than this fails validation.")
    max_duplicate_row_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Largest share of rows that are exact duplicates of another row in every column the spec "
        "names (features, target, time_column, entity_id); every copy counts, the first one included. "
        "A higher share fails validation (duplicates over-weight rows and leak between train and holdout).",
    )
    max_duplicate_key_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="With both entity_id and time_column: largest share of rows whose (entity_id, time_column) "
        "pair occurs more than once (every copy counts). A higher share fails validation.",
    )

    def resolved_path(self) -> Path:
        """The data location with environment variables expanded, made absolute.

        Only a spec file's path is expanded: a run's conf ``data_path`` is checked to hold no
        variable first (``steps.run_data_path``). The value of a variable whose name looks like
        a secret (``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*KEY*`` ...) is masked in task logs.
        """
        return self._expand(redact=False)

    def display_path(self) -> str:
        """:meth:`resolved_path` for logs and tags: the value of a secret-like variable shown as ``***``."""
        return str(self._expand(redact=True))

    def _expand(self, *, redact: bool) -> Path:
        env = {"MODELOPS_STATE_DIR": str(get_settings().state_dir), **os.environ}
        missing = [v for v in re.findall(r"\$\{(\w+)\}", self.path) if v not in env]
        if missing:
            raise ModelSpecError(f"data.path {self.path!r}: environment variable(s) {missing} are not set")

        def value(match: re.Match) -> str:
            name = match.group(1)
            if not SECRET_LIKE_NAME.search(name):
                return env[name]
            _mask_in_task_logs(env[name])
            return "***" if redact else env[name]

        expanded = re.sub(r"\$\{(\w+)\}", value, self.path)
        p = Path(expanded).expanduser()
        return p if p.is_absolute() else (PROJECT_ROOT / p).resolve()


#: Environment variable names whose values are secrets: masked in logs and tags.
SECRET_LIKE_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|PRIVATE", re.IGNORECASE)


def _mask_in_task_logs(value: str) -> None:
    """Register a secret with Airflow's log masker (a no-op outside Airflow)."""
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:
        return
    try:
        mask_secret(value)
    except Exception:  # noqa: BLE001 - masking is best effort; the path must still resolve
        pass


class Feature(_Strict):
    """An input column and the constraints data validation enforces on it."""

    name: str = Field(description="Column name in the data.")
    type: FeatureType = Field(description="numeric | integer | categorical | boolean.")
    min: float | None = Field(default=None, description="Smallest allowed value (numeric/integer).")
    max: float | None = Field(default=None, description="Largest allowed value (numeric/integer).")
    categories: list[str] | None = Field(
        default=None, description="Allowed values (categorical); unseen values fail validation."
    )
    max_null_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Largest fraction of nulls that passes validation."
    )
    description: str = Field(default="", description="What the feature means (goes into the model card).")

    @model_validator(mode="after")
    def _check_constraints(self) -> Feature:
        if self.type == FeatureType.categorical and not self.categories:
            raise ValueError("a categorical feature needs 'categories' (the allowed values)")
        if self.type != FeatureType.categorical and self.categories:
            raise ValueError("'categories' is only for categorical features")
        if self.type in (FeatureType.categorical, FeatureType.boolean) and (
            self.min is not None or self.max is not None
        ):
            raise ValueError("'min'/'max' are only for numeric and integer features")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Target(_Strict):
    """The label column."""

    name: str = Field(description="Label column.")
    classes: list[int | str] | None = Field(
        default=None, description="Label values for classification (binary: [0, 1], positive last)."
    )


class Split(_Strict):
    """How the holdout set is carved (time-based when ``time_column`` is set)."""

    holdout_fraction: float = Field(
        default=0.2, gt=0.0, lt=0.9, description="Share of rows held out for evaluation."
    )
    seed: int = Field(default=42, description="Seed for random splits and training.")
    min_class_count: int = Field(
        default=5,
        ge=1,
        description="Classification: every class (target.classes, else every label in the data) needs at "
        "least this many rows in the training split and in the holdout; checked at validation.",
    )
    on_missing_class: Literal["fail", "warn"] = Field(
        default="fail",
        description="What a class below min_class_count does: fail validation, or warn (in the log, the "
        "validation report and the model card) and go on.",
    )


class Training(_Strict):
    """Which trainer runs where, with which resources."""

    backend: Literal["local", "kubernetes"] = Field(
        default="local", description="local: a process on the Airflow worker; kubernetes: a pod."
    )
    framework: Literal["sklearn", "torch"] = Field(default="sklearn", description="Trainer to use.")
    params: dict[str, Any] = Field(default_factory=dict, description="Hyper-parameters for the trainer.")
    gpus: int = Field(default=0, ge=0, description="GPUs for the pod (kubernetes backend).")
    cpu: str = Field(default="2", description="CPU request/limit for the pod.")
    memory: str = Field(default="8Gi", description="Memory request/limit for the pod.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod node selector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(default=None, description="Pod affinity (Kubernetes schema).")
    kueue_queue: str | None = Field(default=None, description="Kueue LocalQueue name, if any.")


class MetricBound(_Strict):
    """Absolute bounds for one metric (at least one of ``min`` and ``max``)."""

    min: float | None = Field(default=None, description="The metric must be at least this.")
    max: float | None = Field(default=None, description="The metric must be at most this.")

    @model_validator(mode="after")
    def _one_bound(self) -> MetricBound:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs 'min' or 'max' (an empty bound checks nothing)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max}): no model can pass")
        return self


class SliceRules(_Strict):
    """Gate rules over the slices of ``segment_columns``."""

    max_drop_vs_champion: float | None = Field(
        default=None,
        ge=0.0,
        description="Largest allowed drop of the primary metric in any slice vs the champion (≥ 0).",
    )
    max_gap: float | None = Field(
        default=None,
        ge=0.0,
        description="Largest allowed gap of the primary metric between best and worst slice (≥ 0).",
    )
    min_rows: int = Field(default=50, ge=1, description="Slices smaller than this are reported, not gated.")


class Gate(_Strict):
    """Promotion rules: absolute thresholds, the champion, the baseline, slices and latency."""

    thresholds: dict[str, MetricBound] = Field(
        default_factory=dict,
        description="Absolute bounds per metric, e.g. {roc_auc: {min: 0.8}}. A bound must be able to fail and "
        "to pass: strictly inside the metric's range (0 to 1 for roc_auc, pr_auc, f1, precision, recall, "
        "brier, calibration_error, accuracy and macro_f1; above 0 for rmse, mae and log_loss; below 1 for r2). "
        "A bound on the better side must also be better than chance, what a model that learned nothing "
        "scores: roc_auc min above 0.5, r2 min above 0, brier max below 0.25 and, with target.classes "
        "(k classes), accuracy and macro_f1 min above 1/k, log_loss max below ln(k).",
    )
    max_drop_vs_champion: float | None = Field(
        default=0.0,
        ge=0.0,
        description="Largest allowed drop of the primary metric vs the champion, in the metric's units (≥ 0); a "
        "drop is a change for the worse (a fall for roc_auc, a rise for rmse).",
    )
    max_relative_drop_vs_champion: float | None = Field(
        default=None,
        ge=0.0,
        description="Largest allowed relative drop (0.02 = 2%) vs the champion: the drop divided by the "
        "champion's value (≥ 0).",
    )
    require_significant_improvement: bool = Field(
        default=False,
        description="Replace the champion only if the bootstrap CI of the difference is above 0.",
    )
    min_margin_over_baseline: float | None = Field(
        default=0.05,
        ge=0.0,
        description="The primary metric must beat the naive baseline by at least this, in the metric's units "
        "(for rmse, mae and log_loss: be this much lower than the baseline's); ≥ 0. Whatever the gate says, "
        "the candidate must also beat chance: its primary metric at least 3 standard deviations better than its "
        "own scores shuffled over the holdout rows (the check '<metric> better than chance', always on).",
    )
    max_latency_ratio_vs_champion: float | None = Field(
        default=None, description="Largest allowed p95 single-row latency, as a ratio of the champion's."
    )
    slices: SliceRules = Field(default_factory=SliceRules, description="Rules over segment slices.")


class DecisionThreshold(_Strict):
    """Binary classification: the score at or above which a row is labelled positive, and how it is set.

    A target policy chooses the threshold on the training split when the model is trained (never on
    the holdout): a second model is fit on the rest of the training split and scores the slice
    ``slice_fraction``; the chosen value is recorded on the model version, the service labels with it
    and the evaluation reports precision and recall at it.
    """

    policy: Literal["fixed", "target_precision", "target_recall"] = Field(
        default="fixed",
        description="fixed: `value`. target_recall: the highest threshold whose recall on the training slice "
        "is at least `target`. target_precision: the lowest threshold whose precision on the training slice "
        "is at least `target` (the most recall at that precision); if none reaches it, the most precise one, "
        "and the evaluation report and model card say the target was missed.",
    )
    value: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="policy fixed: the threshold, from 0 to 1 (default 0.5). Not set with a target policy.",
    )
    target: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="policy target_precision or target_recall: the precision or recall to reach, strictly "
        "between 0 and 1. Not set with policy fixed.",
    )
    slice_fraction: float = Field(
        default=0.2,
        ge=0.05,
        le=0.5,
        description="Target policies: share of the training split the threshold is chosen on (the latest rows "
        "when the spec has a time_column, else a seeded random share of each class); the rest trains the "
        "model that scores it. Costs one extra fit on the rest; the served model is still fit on all of it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _fixed_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("policy", "fixed") == "fixed" and data.get("value") is None:
            data = {**data, "value": 0.5}
        return data

    @model_validator(mode="after")
    def _fields_of_policy(self) -> DecisionThreshold:
        if self.policy == "fixed":
            if self.target is not None:
                raise SpecFieldError(
                    "target",
                    "target is only for policy target_precision or target_recall; "
                    "with policy fixed set value",
                )
            # The default is allowed back: a spec dumped and validated again (the bento's copy) carries it.
            if self.slice_fraction != type(self).model_fields["slice_fraction"].default:
                raise SpecFieldError("slice_fraction", "slice_fraction is only for the target policies")
        else:
            if self.target is None:
                raise SpecFieldError(
                    "target",
                    f"policy {self.policy} needs a target strictly between 0 and 1, e.g. target: 0.6",
                )
            if self.value is not None:
                raise SpecFieldError(
                    "value",
                    f"value is only for policy fixed; policy {self.policy} chooses "
                    "the threshold on the training split",
                )
        return self


class Evaluation(_Strict):
    """How candidates are evaluated and gated."""

    primary_metric: str = Field(
        description="Metric the gate compares on; see 'Metrics per task' above for the names allowed."
    )
    threshold: DecisionThreshold = Field(
        default_factory=lambda: DecisionThreshold(),
        description="Binary classification only: the decision threshold and how it is set, e.g. "
        "`{policy: fixed, value: 0.5}` or `{policy: target_recall, target: 0.6}`. The older spelling "
        "`decision_threshold: 0.5` is still read, as `{policy: fixed, value: 0.5}`.",
    )
    bootstrap_samples: int = Field(default=200, ge=0, description="Paired bootstrap resamples for the CI.")
    gate: Gate = Field(default_factory=Gate, description="Promotion rules.")

    @model_validator(mode="before")
    @classmethod
    def _legacy_decision_threshold(cls, data: Any) -> Any:
        # `decision_threshold: x` was the only way to set the threshold before threshold policies.
        if not isinstance(data, dict) or "decision_threshold" not in data:
            return data
        data = dict(data)
        value = data.pop("decision_threshold")
        if "threshold" in data:
            raise SpecFieldError(
                "decision_threshold",
                "set either decision_threshold or threshold, not both; "
                "write threshold: {policy: fixed, value: ...}",
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise SpecFieldError(
                "decision_threshold", f"decision_threshold must be a number from 0 to 1, got {value!r}"
            )
        data["threshold"] = {"policy": "fixed", "value": float(value)}
        return data


class Approval(_Strict):
    """Who approves promotion, and how long they have."""

    policy: Literal["auto", "manual"] = Field(
        default="manual",
        description="auto: promote when every check passes (low risk only); manual: a human.",
    )
    approvers: list[str] = Field(default_factory=list, description="Airflow users allowed to answer.")
    timeout_hours: float = Field(default=72, gt=0, description="No answer by then rejects (fail closed).")


# How Evidently 0.7.23 turns a method's score and threshold into its drift verdict: the return line
# of each stat test in evidently/legacy/calculations/stattests/. P-values drift BELOW the threshold
# (ks and cramer_von_mises also AT it); distances drift AT or above it (energy distance only
# strictly above). The drift step (``monitoring.drift``) runs the report without Evidently's tests
# and reads the verdict from here; a spec may name exactly these methods.
# Evidently's text-only methods have no such rule and cannot apply to the spec's feature types.
DRIFT_RULES: dict[str, Callable[[float, float], bool]] = {
    **dict.fromkeys(
        ["anderson", "chisquare", "empirical_mmd", "es", "mannw", "t_test", "TVD", "z"], operator.lt
    ),
    **dict.fromkeys(["cramer_von_mises", "ks"], operator.le),
    **dict.fromkeys(["hellinger", "jensenshannon", "kl_div", "psi", "wasserstein"], operator.ge),
    "ed": operator.gt,
}
DRIFT_METHODS = frozenset(DRIFT_RULES)
# Methods Evidently registers that the spec refuses, and why.
REFUSED_DRIFT_METHODS = {
    "g_test": "Evidently 0.7.23's g_test compares the raw category counts of both windows and fails unless they "
    "hold exactly as many rows, which a day of traffic and the reference sample never do; use "
    "chisquare (the same question, on counts scaled to the window) or jensenshannon",
    "fisher_exact": "Evidently 0.7.23's fisher_exact builds its 2x2 table only from windows of exactly as many rows "
    "and fails otherwise; use z (the two-proportion test for a boolean feature) or chisquare",
}


def _check_drift_method(method: str | None) -> str | None:
    if method is None or method in DRIFT_METHODS:
        return method
    if method in REFUSED_DRIFT_METHODS:
        raise ValueError(f"drift method {method!r} is not supported: {REFUSED_DRIFT_METHODS[method]}")
    raise ValueError(f"unknown drift method {method!r}; use one of {sorted(DRIFT_METHODS, key=str.lower)}")


class FeatureDrift(_Strict):
    """How drift is tested on one feature (overrides ``monitoring.drift_method``/``drift_threshold``)."""

    method: str | None = Field(
        default=None,
        description="Evidently drift method for this feature, e.g. ks, psi, wasserstein, "
        "jensenshannon, chisquare; null: the monitoring default.",
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        description="Drift threshold for this feature (a p-value for tests, a distance "
        "otherwise); null: the method's default.",
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str | None) -> str | None:
        return _check_drift_method(v)


class Monitoring(_Strict):
    """Drift detection on the inference log, and the retraining policy (triggers, then guards)."""

    # Each run of <model>_monitoring reads one window of the production version's inference log,
    # compares it with the reference sample of its training data and decides: a trigger (drift share,
    # metric drop, data quality) that held for consecutive_windows windows requests one retraining run
    # unless a guard (same window, training queued or running, cooldown, budget, too few new labels)
    # suppresses it. include/modelops/monitoring/policy.py holds the rules.

    drift_schedule: str | None = Field(
        default="@daily",
        description="When drift detection runs (cron or preset); null: only when triggered by hand.",
    )
    window_hours: float = Field(
        default=24,
        gt=0,
        description="Length of the inference-log window a run "
        "examines: the hours before the run's time (or conf window_start/window_end).",
    )
    min_window_rows: int = Field(
        default=100,
        ge=1,
        description="Fewer logged rows than this is reported as "
        "too little traffic: no drift verdict, no retrain decision (empty: no traffic).",
    )
    min_rows_for_drift: int = Field(
        default=1000,
        ge=1,
        description="A window with fewer rows gets its drift report, but its drift cannot "
        "trigger a retrain (the decision says so). Evidently's default distances (Wasserstein, Jensen-Shannon) "
        "have no notion of sample size: replaying clean samples of the training distribution (8 features, one "
        "with 40 categories) was judged drifted on 41% of features at 100 rows, 30% at 200, 14% at 300, 9% at "
        "500 and 0% from 1000 rows up. Lower it only with p-value methods (drift_method: ks, chisquare) or "
        "features with few categories.",
    )
    reference_sample_rows: int = Field(
        default=20000,
        ge=100,
        description="Rows of the training split kept as "
        "the drift reference (an MLflow artifact of the training run), so "
        "monitoring never re-reads the training data.",
    )
    drift_sample_rows: int | None = Field(
        default=200_000,
        ge=1000,
        description="A window with more rows is compared on a seeded uniform sample of "
        "this many (data quality and live metrics still use every row). The sample's empirical distribution is "
        "within sqrt(ln(2/0.05)/(2n)) of the window's (DKW, 95%): 0.003 at 200,000; only features scored that "
        "close to their threshold can change verdict. null: always every row.",
    )
    drift_method: str | None = Field(
        default=None,
        description="Evidently drift method for every feature, one of "
        + ", ".join(sorted(DRIFT_METHODS, key=str.lower))
        + " (not g_test or fisher_exact: "
        "Evidently 0.7.23's fail on windows of unequal size); null: Evidently's choice by type "
        "and size (K-S/chi-square up to 1000 rows, Wasserstein/Jensen-Shannon above).",
    )
    drift_threshold: float | None = Field(
        default=None, gt=0, description="Drift threshold for every feature; null: the method's default."
    )
    feature_drift: dict[str, FeatureDrift] = Field(
        default_factory=dict, description="Per-feature method and threshold overrides, keyed by feature name."
    )
    drift_share_threshold: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Trigger: share of drifted features at or above this, in a window "
        "of at least min_rows_for_drift rows.",
    )
    metric_drop_threshold: float | None = Field(
        default=0.05,
        ge=0,
        description="Trigger: the primary metric on labelled live rows is worse than the "
        "champion's offline holdout value by at least this (absolute), over the live metric's whole 95% interval "
        "(metric_bootstrap_samples) and with min_labelled_positives_for_metric; null: never.",
    )
    min_labelled_rows_for_metric: int = Field(
        default=200,
        ge=1,
        description="Live metrics are computed (and the "
        "metric trigger considered) only with at least this many labels.",
    )
    min_labelled_positives_for_metric: int = Field(
        default=50,
        ge=1,
        description="Classification: the metric trigger needs at least this many labelled rows "
        "of the rarest class (of target.classes; the positives in a fraud-like binary task). Below it the live "
        "metric is reported but cannot trigger, and the decision says so: with about 30 positives in 2,000 rows "
        "a sound model's roc_auc ranged from 0.75 to 0.92 over 40 clean windows (sd 0.04), noise alone.",
    )
    metric_bootstrap_samples: int = Field(
        default=500,
        ge=0,
        description="Bootstrap resamples (seeded with split.seed) of the labelled rows for the "
        "live metric's 95% interval, as the gate's bootstrap does. The metric trigger fires only when the whole "
        "interval is at least metric_drop_threshold worse than the offline value (even its optimistic end); "
        "0: no interval, the point value decides.",
    )
    max_invalid_fraction: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Data quality: a feature fails when more than this share of rows "
        "is out of the spec's range or an unseen category, or when its nulls exceed max_null_fraction by more.",
    )
    retrain_on_quality_failure: bool = Field(
        default=False,
        description="Trigger: a data-quality failure. Off by "
        "default: bad input is usually a pipeline bug, not a reason to retrain.",
    )
    consecutive_windows: int = Field(
        default=1,
        ge=1,
        description="A trigger must hold in this many consecutive "
        "windows before retraining is requested (hysteresis).",
    )
    retrain_cooldown_hours: float = Field(
        default=24, ge=0, description="Guard: least time between two retrain requests."
    )
    max_retrains_per_week: int = Field(
        default=3, ge=0, description="Guard: most retrain requests in any 7 days."
    )
    max_gpu_hours_per_week: float | None = Field(
        default=None,
        ge=0,
        description="Guard (kubernetes backend with GPUs): GPU-hours of training runs in the "
        "last 7 days (train_seconds x gpus) at or above this suppress retraining; null: no GPU budget.",
    )
    min_new_labelled_rows: int = Field(
        default=0,
        ge=0,
        description="Guard: labelled rows that arrived since the "
        "last retrain request must reach this (0: drift alone may retrain).",
    )
    retrain_with_labelled_window: bool = Field(
        default=True,
        description="A retrain requested by monitoring trains on the spec's data plus the labelled "
        "rows of the window that triggered it (added to the training split, never to the holdout, so the gate "
        "compares candidate and champion on the same kind of data); false: the spec's data alone.",
    )

    @field_validator("drift_method")
    @classmethod
    def _known_method(cls, v: str | None) -> str | None:
        return _check_drift_method(v)


class ShadowStage(_Strict):
    """A stage before any canary traffic: the candidate answers copies of live requests, and its answers are
    discarded (clients only ever get stable's)."""

    requests: int = Field(
        default=200,
        ge=1,
        description="Paired requests to compare before the first canary "
        "step: requests stable answered that the rollout copied to the candidate's own port "
        "(same request id, logged as variant `shadow`) and the candidate answered.",
    )
    max_wait_s: float = Field(
        default=600,
        gt=0,
        description="Fewer paired requests by then is inconclusive, which fails closed (rollback).",
    )
    max_disagreement_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Largest share of paired rows whose label (classification) differs, or whose prediction "
        "differs by more than 10% of the stable prediction's spread (regression). The pairs' score "
        "distance (`analysis.max_score_distance`) and the share of copies the candidate did not "
        "answer (`analysis.max_error_rate`) are judged too; latency is left to the canary steps.",
    )


class CanaryStep(_Strict):
    """One traffic step; a bare number in YAML (``25``) is a step with the section's defaults."""

    traffic_percent: int = Field(ge=1, le=100, description="Share of requests the candidate answers.")
    min_requests: int | None = Field(
        default=None,
        ge=1,
        description="Requests the candidate must answer in this step before it is "
        "judged; default `rollout.min_requests`.",
    )
    max_wait_s: float | None = Field(
        default=None,
        gt=0,
        description="Fewer requests than `min_requests` by then is inconclusive, which fails "
        "closed (rollback); default `rollout.max_wait_s`.",
    )
    pause: bool = Field(
        default=False,
        description="After the analysis passes, wait for a person to continue or "
        "abort (the approval operator and `approval.approvers`, in the "
        "UI or the REST API); no answer within "
        "`approval.timeout_hours` aborts (rollback).",
    )


class RolloutAnalysis(_Strict):
    """Checks that judge the candidate (canary) against the stable version over the same window."""

    max_error_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Largest share of 5xx answers of the canary. It fails when even the "
        "one-sided 95% lower bound (Wilson) of the share is above; above by chance so far, the stage keeps baking.",
    )
    max_error_rate_increase: float = Field(
        default=0.005, ge=0, le=1, description="Largest canary 5xx share minus the stable version's."
    )
    max_latency_p95_ratio: float = Field(
        default=1.5, gt=0, description="Largest canary p95 latency as a ratio of the stable version's."
    )
    latency_tolerance_ms: float = Field(
        default=5.0,
        ge=0,
        description="A p95 within this many ms of stable's passes whatever the ratio "
        "(millisecond noise on fast models is not a regression).",
    )
    score_distance: Literal["jensen_shannon", "psi"] = Field(
        default="jensen_shannon",
        description="How prediction distributions are compared: Jensen-Shannon "
        "distance (base 2, 0..1) or the population stability index, over quantile bins of stable's scores (one "
        "per 50 rows of the smaller side, 4 to 10). Judged on a stage's whole window (its `min_requests`).",
    )
    max_score_distance: float = Field(
        default=0.2,
        ge=0,
        description="Largest distance between canary and stable score distributions. "
        "Sampling noise alone gives a Jensen-Shannon distance of about 0.1 at 400 rows a side and 0.05 at 1,000; "
        "PSI reads 0.1 as a slight and 0.25 as a major shift.",
    )
    min_rows_for_distance: int = Field(
        default=200, ge=10, description="Fewer scored rows on either side leaves the distance inconclusive."
    )


class RolloutKubernetes(_Strict):
    """What each version's Deployment gets on the ``kubernetes`` backend (cluster settings are environment
    variables, see ``include/modelops/settings.py``)."""

    replicas: int = Field(default=1, ge=1, description="Pods per version (stable and canary each).")
    cpu: str = Field(
        default="1",
        pattern=r"^[0-9]+(\.[0-9]+)?m?$",
        description="CPU request and limit of a pod (`2`, `1.5`, `500m`); the service runs one "
        "worker per whole CPU.",
    )
    memory: str = Field(
        default="2Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$",
        description="Memory request and limit of a pod (`2Gi`, `512Mi`).",
    )


class Rollout(_Strict):
    """Progressive rollout of a deployable candidate: shadow, canary steps, analysis, automatic rollback."""

    backend: Literal["local", "kubernetes"] = Field(
        default="local",
        description="local: `bentoml serve` processes behind a local Caddy splitter; "
        "kubernetes: Deployments, a Gateway API HTTPRoute and a Prometheus server.",
    )
    shadow: ShadowStage | None = Field(
        default=None,
        description="Optional shadow stage before the first step: the candidate gets copies of "
        "requests stable answered, replayed from the inference log, with no traffic of its own.",
    )
    steps: list[CanaryStep] = Field(
        default_factory=lambda: [CanaryStep(traffic_percent=p) for p in (5, 25, 50, 100)],
        description="Canary traffic steps in percent, rising, the last 100 (e.g. `[5, 25, 50, 100]`). "
        "At 100 the stable values of the previous step are the reference.",
    )
    min_requests: int = Field(default=200, ge=1, description="Default `min_requests` of a step.")
    max_wait_s: float = Field(default=900, gt=0, description="Default `max_wait_s` of a step.")
    check_interval_s: float = Field(
        default=10,
        gt=0,
        description="How often a stage's health is checked while it bakes; a dead or "
        "silent canary is rolled back at the next check.",
    )
    analysis: RolloutAnalysis = Field(default_factory=RolloutAnalysis, description="Analysis thresholds.")
    kubernetes: RolloutKubernetes = Field(
        default_factory=RolloutKubernetes, description="Pods of each version (kubernetes backend only)."
    )

    @field_validator("steps", mode="before")
    @classmethod
    def _bare_percentages(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [
                {"traffic_percent": s} if isinstance(s, int) and not isinstance(s, bool) else s for s in v
            ]
        return v

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, v: list[CanaryStep]) -> list[CanaryStep]:
        if not v:
            raise ValueError("at least one step is needed (the last must be 100)")
        percents = [s.traffic_percent for s in v]
        if any(b <= a for a, b in zip(percents, percents[1:], strict=False)):
            raise ValueError(f"steps must rise strictly, got {percents}")
        if percents[-1] != 100:
            raise ValueError(f"the last step must be 100 (the promotion), got {percents}")
        return v

    def step_min_requests(self, step: CanaryStep) -> int:
        return step.min_requests if step.min_requests is not None else self.min_requests

    def step_max_wait_s(self, step: CanaryStep) -> float:
        return step.max_wait_s if step.max_wait_s is not None else self.max_wait_s


class ModelSpec(_Strict):
    """One model: data, features, training, evaluation gate, approval and documentation."""

    name: str = Field(pattern=NAME_PATTERN, description="Model name; must equal the file name's stem.")
    description: str = Field(description="One paragraph: what the model predicts and why.")
    owner: Owner
    task: TaskType = Field(description="binary_classification | multiclass_classification | regression.")
    data: DataSource
    target: Target
    features: list[Feature] = Field(min_length=1, description="Input columns with their constraints.")
    time_column: str | None = Field(
        default=None,
        description="Event time; enables a time-based holdout (the latest rows are held out). Parquet: store it "
        "as a timestamp or date (text fails validation). CSV: its text is parsed on read and must use one "
        "date format, ISO 8601 preferred (e.g. 2026-01-31 or 2026-01-31T14:05:00); unparseable values fail "
        "validation. No nulls.",
    )
    entity_id: str | None = Field(default=None, description="Entity key (e.g. card id); never a feature.")
    segment_columns: list[str] = Field(default_factory=list, description="Columns to slice metrics by.")
    split: Split = Field(default_factory=Split)
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation
    intended_use: str = Field(default="", description="Who uses the predictions, for what decision.")
    out_of_scope_uses: list[str] = Field(default_factory=list, description="Uses the model is not fit for.")
    limitations: list[str] = Field(default_factory=list, description="Known weaknesses.")
    ethical_considerations: list[str] = Field(default_factory=list, description="Fairness, privacy, harm.")
    risk_tier: RiskTier = Field(default=RiskTier.medium, description="low | medium | high.")
    approval: Approval = Field(default_factory=Approval)
    schedule: str | None = Field(default=None, description="Cron or preset for retraining; null: on demand.")
    monitoring: Monitoring = Field(default_factory=Monitoring)
    rollout: Rollout | None = Field(
        default=None,
        description="Progressive rollout (`<model>_rollout` DAG). With it, training ends at alias "
        "`challenger` and the rollout moves `champion`; without it (`null`), training promotes the candidate "
        "to `champion` right after smoke-serving. `rollout: {}` takes every default.",
    )
    tags: list[str] = Field(default_factory=list, description="Extra Airflow tags for the model's DAGs.")

    @field_validator("features")
    @classmethod
    def _unique_features(cls, v: list[Feature]) -> list[Feature]:
        names = [f.name for f in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature names must be unique; repeated: {dupes}")
        return v

    @model_validator(mode="after")
    def _check_monitoring(self) -> ModelSpec:
        unknown = sorted(set(self.monitoring.feature_drift) - set(self.feature_names))
        if unknown:
            raise ValueError(
                f"monitoring.feature_drift names unknown feature(s) {unknown}; use feature names"
            )
        return self

    @model_validator(mode="after")
    def _check_threshold_task(self) -> ModelSpec:
        # Only a binary classifier's label depends on a threshold (multiclass: the most likely class);
        # a fixed value elsewhere is ignored, as decision_threshold always was.
        policy = self.evaluation.threshold.policy
        if self.task != TaskType.binary_classification and policy != "fixed":
            raise SpecFieldError(
                "evaluation.threshold.policy",
                f"threshold policy {policy} is only for binary_classification; remove evaluation.threshold "
                f"for {self.task.value}",
            )
        return self

    @model_validator(mode="after")
    def _check_columns(self) -> ModelSpec:
        # Rules across fields raise SpecFieldError so that the message names the field at fault,
        # not "(top level)" (a model validator's errors have no location of their own).
        feats = set(self.feature_names)
        if self.target.name in feats:
            raise SpecFieldError("target.name", f"target {self.target.name!r} is also listed as a feature")
        for label, col in (("entity_id", self.entity_id), ("time_column", self.time_column)):
            if col and col in feats:
                raise SpecFieldError(label, f"{label} {col!r} must not be a feature")
        known = feats | {c for c in (self.entity_id, self.time_column) if c}
        for i, col in enumerate(self.segment_columns):
            if col not in known:
                raise SpecFieldError(
                    f"segment_columns.{i}",
                    f"segment column {col!r} is not a feature, entity_id or time_column",
                )
        if self.task == TaskType.binary_classification:
            if self.target.classes is not None and len(self.target.classes) != 2:
                raise SpecFieldError(
                    "target.classes", "target.classes must have exactly two values for binary_classification"
                )
        if self.approval.policy == "auto" and self.risk_tier != RiskTier.low:
            raise SpecFieldError(
                "approval.policy",
                f"approval.policy 'auto' is only allowed for risk_tier 'low' (this spec is "
                f"{self.risk_tier.value!r}); use 'manual'",
            )
        from include.modelops.metrics_catalog import describe_metrics, metric_names_for  # no heavy imports

        allowed = metric_names_for(self.task.value)
        located = [("evaluation.primary_metric", self.evaluation.primary_metric)]
        located += [(f"evaluation.gate.thresholds.{m}", m) for m in self.evaluation.gate.thresholds]
        for field, metric in located:
            if metric not in allowed:
                raise SpecFieldError(
                    field,
                    f"metric {metric!r} is not known for {self.task.value}; "
                    f"use one of {describe_metrics(self.task.value)}",
                )
        return self

    @model_validator(mode="after")
    def _check_thresholds(self) -> ModelSpec:
        # A bound that no model can fail (or none can pass) gates nothing: refuse it here, where the
        # author sees it, rather than let a useless model through the gate (issue 16).
        from include.modelops.metrics_catalog import chance_level, higher_is_better, natural_range

        task = self.task.value
        k = len(self.target.classes) if task != "regression" and self.target.classes else None
        for metric, bound in self.evaluation.gate.thresholds.items():
            lo, hi = natural_range(metric)
            span = (
                f"between {lo:g} and {hi:g}"
                if lo is not None and hi is not None
                else (f"above {lo:g}" if lo is not None else f"below {hi:g}")
            )
            high_better = higher_is_better(task, metric)
            chance = chance_level(metric, k if task == "multiclass_classification" else None)
            for kind, value in (("min", bound.min), ("max", bound.max)):
                if value is None:
                    continue
                field = f"evaluation.gate.thresholds.{metric}.{kind}"
                if (lo is not None and value <= lo) or (hi is not None and value >= hi):
                    below, above = lo is not None and value <= lo, hi is not None and value >= hi
                    if (kind == "min" and below) or (kind == "max" and above):
                        why = "no model can fail it"
                    elif value in (lo, hi):
                        why = "only a perfect model can pass it"
                    else:
                        why = "no model can pass it"
                    raise SpecFieldError(
                        field,
                        f"{metric} {kind} {value:g} is outside the range of {metric} ({span}): {why}; "
                        f"use a value strictly {span}",
                    )
                quality_side = (kind == "min") == high_better
                if (
                    chance is not None
                    and quality_side
                    and (value <= chance if high_better else value >= chance)
                ):
                    better = "above" if high_better else "below"
                    raise SpecFieldError(
                        field,
                        f"{metric} {kind} {value:g} cannot reject a model that learned nothing: chance "
                        f"scores {metric} {chance:.4g}; use a value {better} {chance:.4g}",
                    )
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == FeatureType.categorical]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.type in (FeatureType.numeric, FeatureType.integer)]

    @property
    def boolean_features(self) -> list[str]:
        return [f.name for f in self.features if f.type == FeatureType.boolean]

    @property
    def required_columns(self) -> list[str]:
        """Every column the data must have: features, target, time column and entity id."""
        cols = [*self.feature_names, self.target.name]
        cols += [c for c in (self.time_column, self.entity_id) if c]
        return cols

    @property
    def dag_id(self) -> str:
        return f"{self.name}_training"

    @property
    def rollout_dag_id(self) -> str:
        return f"{self.name}_rollout"

    def spec_hash(self) -> str:
        """A short hash of the normalised spec, recorded on every model version."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"Invalid model spec {path}:"]
    for e in err.errors():
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, SpecFieldError):
            loc = ".".join([*(str(p) for p in e["loc"]), cause.field])
        else:
            loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  - field '{loc}': {msg}")
    lines.append("Fix the field(s) above; every field is documented in docs/model-spec.md.")
    return "\n".join(lines)


def load_spec(path: str | Path, *, named_after_file: bool = True) -> ModelSpec:
    """Read and validate one spec file.

    ``named_after_file=False`` reads a spec that is not (yet) in the specs folder, e.g. a changed
    copy for ``make backtest``, whatever its file is called.

    Raises:
        ModelSpecError: naming the file and each invalid field.
    """
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except OSError as exc:
        raise ModelSpecError(f"Cannot read model spec {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ModelSpecError(f"Model spec {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelSpecError(f"Model spec {path} must be a YAML mapping of fields, got {type(raw).__name__}")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise ModelSpecError(_format_error(path, exc)) from None
    if named_after_file and spec.name != path.stem:
        raise ModelSpecError(
            f"Invalid model spec {path}:\n  - field 'name': {spec.name!r} must equal the file name "
            f"{path.stem!r} (one model per file, named after it)"
        )
    return spec


def spec_path(name: str, specs_dir: Path | None = None) -> Path:
    """Where the spec of model ``name`` lives."""
    if not re.match(NAME_PATTERN, name):
        raise ModelSpecError(f"{name!r} is not a valid model name (pattern {NAME_PATTERN})")
    return (specs_dir or get_settings().specs_dir) / f"{name}.yaml"


def load_spec_by_name(name: str, specs_dir: Path | None = None) -> ModelSpec:
    """Load the spec of model ``name`` from the specs folder."""
    return load_spec(spec_path(name, specs_dir))


def load_specs(specs_dir: Path | None = None) -> tuple[list[ModelSpec], list[ModelSpecError]]:
    """Load every ``*.yaml`` in the specs folder: the valid specs and the invalid ones' errors.

    The DAG files build DAGs for the valid specs only, so that one bad spec takes down its own
    model's DAGs and no other's; ``dags/model_specs.py`` reports the errors as its import error.

    Returns:
        ``(specs, errors)``: the valid specs sorted by file name, and one error per invalid file
        (naming the file and the field).
    """
    folder = specs_dir or get_settings().specs_dir
    specs, errors = [], []
    for path in sorted(folder.glob("*.yaml")):
        try:
            specs.append(load_spec(path))
        except ModelSpecError as exc:
            errors.append(exc)
    return specs, errors


def load_all_specs(specs_dir: Path | None = None) -> list[ModelSpec]:
    """Load every ``*.yaml`` in the specs folder, sorted by name.

    Raises:
        ModelSpecError: listing every invalid spec (file and field), so one parse error shows them all.
    """
    specs, errors = load_specs(specs_dir)
    if errors:
        raise ModelSpecError("\n".join(str(e) for e in errors))
    return specs
