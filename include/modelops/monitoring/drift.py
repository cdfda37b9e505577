"""The drift report of one window: Evidently for drift, the spec for data quality, the
evaluation module for live performance; an HTML report and a JSON summary.

* data drift per feature with Evidently's ``DataDriftPreset`` (method and threshold from the
  spec: ``monitoring.drift_method``/``drift_threshold``, overridden per feature by
  ``monitoring.feature_drift``), and the share of drifted features;
* prediction drift with Evidently's ``ValueDrift`` on the prediction column, against the
  production version's predictions on the reference sample;
* data quality against the spec (nulls over ``max_null_fraction``, values outside
  ``min``/``max``, categories not in ``categories``), counted here because the spec, not the
  reference, says what is valid; Evidently's missing/out-of-range/out-of-list counts are in
  the HTML report beside them;
* once labels have arrived, the primary metric on the labelled rows with the same metric code
  the gate uses offline (``include.modelops.evaluation``), compared with the version's
  offline holdout value.

Evidently and pandas are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import math
import operator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.metrics_catalog import higher_is_better
from include.modelops.spec import DRIFT_RULES, FeatureType, ModelSpec

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Methods whose score is a p-value (drift when the score is low); the others are distances.
P_VALUE_METHODS = frozenset(m for m, rule in DRIFT_RULES.items() if rule in (operator.lt, operator.le))


def is_drifted(method: str, score: float | None, threshold: float) -> bool:
    """Evidently's verdict for one column: ``method`` (the registered name) scored ``score`` against ``threshold``.

    A NaN or missing score is not drift, as in Evidently (its comparisons are False on NaN).
    """
    if method not in DRIFT_RULES:
        raise ValueError(f"no drift rule for Evidently method {method!r}; use one of {sorted(DRIFT_RULES)}")
    return score is not None and bool(DRIFT_RULES[method](score, threshold))


def prediction_column(spec: ModelSpec) -> str:
    """The inference log's prediction column whose distribution is watched for drift."""
    return {"binary_classification": "score", "regression": "prediction"}.get(spec.task.value, "label")


def _method_names() -> dict[str, str]:
    """Evidently's display names (what an auto-chosen method reports) -> the method names the spec uses."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    names = {name: name for name in _registered_stat_tests}
    names |= {
        t.display_name: name for name, by_type in _registered_stat_tests.items() for t in by_type.values()
    }
    return names


def _as_text(col: pd.Series, boolean: bool) -> pd.Series:
    """Category labels as strings (booleans as 'True'/'False'); missing stays missing."""
    return col.map(
        lambda v: None
        if v is None or (isinstance(v, float) and math.isnan(v))
        else str(bool(v))
        if boolean
        else str(v)
    )


def _typed(
    spec: ModelSpec, reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The spec's features of both frames with one dtype per type, identical on reference and current.

    Categorical and boolean features become pandas ``category`` columns whose categories are the
    values seen in either frame: Evidently counts categories much faster than object strings, and
    with no category unseen on both sides its counts, scores and verdicts are those of the strings.
    """
    import pandas as pd

    def column(df: pd.DataFrame, name: str) -> pd.Series:
        return df[name] if name in df else pd.Series([None] * len(df), index=df.index, dtype=object)

    ref, cur = pd.DataFrame(index=reference.index), pd.DataFrame(index=current.index)
    for f in spec.features:
        if f.type in (FeatureType.numeric, FeatureType.integer):
            for out, df in ((ref, reference), (cur, current)):
                out[f.name] = pd.to_numeric(column(df, f.name), errors="coerce").astype("float64")
        else:
            r, c = (
                _as_text(column(df, f.name), f.type == FeatureType.boolean) for df in (reference, current)
            )
            ref[f.name], cur[f.name] = _as_categories(r, c)
    return ref, cur


def _as_categories(reference: pd.Series, current: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Both series as ``category`` with the same categories: the values seen in either."""
    import pandas as pd

    categories = sorted(set(reference.dropna()) | set(current.dropna()))
    ref, cur = (
        pd.Series(pd.Categorical(s, categories=categories), index=s.index) for s in (reference, current)
    )
    return ref, cur


def data_quality(spec: ModelSpec, current: pd.DataFrame) -> dict[str, Any]:
    """Nulls, out-of-range values and unseen categories per feature, against the spec.

    A feature fails when its invalid share exceeds ``monitoring.max_invalid_fraction``, or its
    null share exceeds its ``max_null_fraction`` by more than that.
    """
    import pandas as pd

    tol = spec.monitoring.max_invalid_fraction
    n = len(current)
    columns, failures = {}, []
    for f in spec.features:
        col = current[f.name] if f.name in current else pd.Series([None] * n, dtype=object)
        nulls = int(col.isna().sum())
        present = col.dropna()
        invalid, what = 0, ""
        if f.type in (FeatureType.numeric, FeatureType.integer):
            num = pd.to_numeric(present, errors="coerce")
            bad = (
                num.isna()
                | ((num < f.min) if f.min is not None else False)
                | ((num > f.max) if f.max is not None else False)
            )
            invalid, what = int(bad.sum()), f"outside [{f.min}, {f.max}]"
        elif f.type == FeatureType.categorical:
            unseen = present.astype(str)[~present.astype(str).isin([str(c) for c in f.categories or []])]
            invalid = len(unseen)
            what = "unseen categories " + ", ".join(repr(v) for v in unseen.value_counts().index[:5])
        null_share, invalid_share = (nulls / n, invalid / n) if n else (0.0, 0.0)
        entry = {
            "nulls": nulls,
            "null_share": round(null_share, 6),
            "invalid": invalid,
            "invalid_share": round(invalid_share, 6),
            "failed": False,
        }
        if null_share > f.max_null_fraction + tol:
            entry["failed"] = True
            failures.append(f"{f.name}: {null_share:.1%} missing (allowed {f.max_null_fraction:.1%})")
        if invalid_share > tol:
            entry["failed"] = True
            failures.append(f"{f.name}: {invalid_share:.1%} of rows {what}")
        columns[f.name] = entry
    return {"passed": not failures, "failures": failures, "columns": columns}


def offline_metric(spec: ModelSpec, run_metrics: dict[str, float]) -> float | None:
    """The version's primary metric on its holdout, as the training run logged it."""
    return run_metrics.get(f"holdout_{spec.evaluation.primary_metric}")


def _scores_of(spec: ModelSpec, rows: pd.DataFrame) -> Any:
    import numpy as np

    if spec.task.value == "multiclass_classification":
        classes = [str(c) for c in spec.target.classes or []]
        probs = rows["probabilities"].map(lambda s: json.loads(s) if isinstance(s, str) else (s or {}))
        return np.array([[float(p.get(c, 0.0)) for c in classes] for p in probs])
    return rows[prediction_column(spec)].astype("float64").to_numpy()


def live_performance(
    spec: ModelSpec,
    rows: pd.DataFrame,
    *,
    label_column: str,
    offline: float | None,
    threshold: float | None = None,
) -> dict[str, Any] | None:
    """The primary metric on the labelled rows, its 95% bootstrap interval, and its drop from the offline value.

    ``threshold``: binary, the monitored version's own decision threshold (f1, precision and recall
    are measured at it, as its offline value was); None: the spec's fixed value.

    Returns None when fewer than ``monitoring.min_labelled_rows_for_metric`` rows are labelled.
    ``drop`` is positive when live is worse, whatever the metric's direction; ``drop_least`` is the
    drop at the interval's optimistic end (what the trigger compares, None without an interval);
    ``rarest_class`` the labelled rows of the rarest of ``target.classes`` (None for regression).
    """
    import numpy as np

    from include.modelops.evaluation.metrics import compute_metrics, paired_bootstrap

    labelled = rows[rows[label_column].notna()] if label_column in rows else rows.iloc[:0]
    if len(labelled) < spec.monitoring.min_labelled_rows_for_metric:
        return None
    metric = spec.evaluation.primary_metric
    y = labelled[label_column]
    if spec.task.value != "regression" and spec.target.classes and isinstance(spec.target.classes[0], int):
        y = y.astype("int64")
    scores = _scores_of(spec, labelled)
    live = compute_metrics(spec, y.to_numpy(), scores, threshold=threshold).get(metric)
    high = higher_is_better(spec.task.value, metric)

    def drop_of(value: float | None) -> float | None:
        if value is None or offline is None:
            return None
        return (offline - value) if high else (value - offline)

    rarest = None
    if spec.task.value != "regression":
        classes = list(spec.target.classes or [0, 1])
        rarest = int(min((y == c).sum() for c in classes))
    low_ci = high_ci = None
    samples = spec.monitoring.metric_bootstrap_samples
    if live is not None and samples:
        # The gate's paired bootstrap, paired with an oracle that scores every row by its own label: the
        # oracle's metric is the best value on every resample (roc_auc 1, rmse 0, ...), so the
        # interval of live - oracle, plus that constant, is the live metric's interval.
        oracle = _oracle_scores(spec, y)
        best = compute_metrics(spec, y.to_numpy(), oracle)[metric]
        boot = paired_bootstrap(
            spec,
            y.to_numpy(),
            scores,
            oracle,
            metric=metric,
            samples=samples,
            seed=spec.split.seed,
            candidate_threshold=threshold,
        )
        if best is not None and boot["ci_low"] is not None:
            low_ci, high_ci = boot["ci_low"] + best, boot["ci_high"] + best
    optimistic = high_ci if high else low_ci
    drop_least = drop_of(optimistic) if optimistic is not None else None
    if drop_least is not None:
        drop_least = float(np.round(drop_least, 6))
    return {
        "metric": metric,
        "live": live,
        "offline": offline,
        "drop": drop_of(live),
        "ci_low": low_ci,
        "ci_high": high_ci,
        "drop_least": drop_least,
        "bootstrap_samples": samples,
        "labelled_rows": len(labelled),
        "rarest_class": rarest,
    }


def _oracle_scores(spec: ModelSpec, y: pd.Series) -> Any:
    """Scores that know the answer: the label itself (regression), 1.0 on the true class (classification)."""
    import numpy as np

    if spec.task.value == "regression":
        return y.astype("float64").to_numpy()
    classes = list(spec.target.classes or [0, 1])
    if spec.task.value == "binary_classification":
        return (y == classes[1]).to_numpy(dtype="float64")
    return np.column_stack([(y == c).to_numpy(dtype="float64") for c in classes])


def _drift_options(spec: ModelSpec) -> dict[str, Any]:
    m = spec.monitoring
    return {
        "method": m.drift_method,
        "threshold": m.drift_threshold,
        "per_column_method": {f: o.method for f, o in m.feature_drift.items() if o.method} or None,
        "per_column_threshold": {f: o.threshold for f, o in m.feature_drift.items() if o.threshold} or None,
    }


def _parse_snapshot(snapshot: Any, features: list[str], pred_col: str | None) -> dict[str, dict[str, Any]]:
    """Per column: method (the spec's name for it), threshold, score and drifted, from the snapshot's metrics.

    Each ``ValueDrift`` metric carries its resolved method and threshold and its score; the verdict
    is Evidently's own rule for that method (``is_drifted``), so the report needs no tests.
    """
    names = _method_names()
    scores = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config") or {}
        if cfg.get("type", "").endswith(":ValueDrift"):
            method = names.get(cfg.get("method"), cfg.get("method"))
            scores[cfg["column"]] = {
                "method": method,
                "threshold": cfg.get("threshold"),
                "score": m.get("value"),
                "drifted": is_drifted(method, m.get("value"), cfg.get("threshold")),
            }
    return {c: scores[c] for c in [*features, *([pred_col] if pred_col else [])] if c in scores}


def _severity(entry: dict[str, Any]) -> float:
    """How far past its threshold a column is (> 1: drifted), comparable across methods."""
    score, thr = entry.get("score"), entry.get("threshold") or 0.0
    if score is None or thr <= 0:
        return 0.0
    if entry.get("method") in P_VALUE_METHODS:
        return thr / max(score, 1e-300)
    return score / thr


def drift_report(
    spec: ModelSpec,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    out_dir: Path,
    reference_predictions: pd.Series | None = None,
    title: str = "",
) -> dict[str, Any]:
    """Run Evidently over the window against the reference; write ``drift_report.html``.

    Args:
        spec: the model spec (features, drift options).
        reference: the reference sample (features, as at training).
        current: the window's rows (unprefixed features, the prediction column).
        out_dir: where the HTML report goes.
        reference_predictions: the production version's predictions on ``reference`` (same
            index); None leaves prediction drift out.
        title: unused by Evidently's renderer; kept in the summary.

    Returns:
        ``{"share", "count", "features", "columns": {feature: {method, threshold, score, drifted}},
        "top": [drifted features, most drifted first], "prediction": {...} | None, "report_html"}``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    rows = len(current)
    limit = spec.monitoring.drift_sample_rows
    if limit is not None and rows > limit:
        # Evidently's time and memory grow with the rows; a large sample keeps the verdicts (see the spec doc).
        current = current.sample(n=limit, random_state=spec.split.seed)
        log.info(
            "Drift on a seeded sample of %d of the window's %d rows (monitoring.drift_sample_rows)",
            limit,
            rows,
        )
    ref, cur = _typed(spec, reference, current)
    pred_col = prediction_column(spec)
    with_pred = reference_predictions is not None and pred_col in current
    numerical = [f.name for f in spec.features if f.type in (FeatureType.numeric, FeatureType.integer)]
    categorical = [f.name for f in spec.features if f.name not in numerical]
    if with_pred:
        ref[pred_col] = list(reference_predictions)
        cur[pred_col] = current[pred_col].to_numpy()
        (categorical if pred_col == "label" else numerical).append(pred_col)
        if pred_col == "label":
            ref[pred_col], cur[pred_col] = _as_categories(
                ref[pred_col].astype(str), cur[pred_col].astype(str)
            )
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    metrics: list[Any] = [
        DataDriftPreset(
            columns=spec.feature_names,
            drift_share=spec.monitoring.drift_share_threshold,
            **_drift_options(spec),
        )
    ]
    if with_pred:
        metrics.append(ValueDrift(column=pred_col))
    # Without Evidently's tests (about 10% of its time): the verdicts come from each ValueDrift's score.
    snapshot = Report(metrics).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / "drift_report.html"
    snapshot.save_html(str(html))
    cols = _parse_snapshot(snapshot, spec.feature_names, pred_col if with_pred else None)
    prediction = cols.pop(pred_col, None) if with_pred else None
    for entry in [*cols.values(), *([prediction] if prediction else [])]:
        entry["severity"] = round(_severity(entry), 4)
    drifted = sorted((c for c, e in cols.items() if e.get("drifted")), key=lambda c: -cols[c]["severity"])
    n = len(spec.feature_names)
    return {
        "share": len(drifted) / n if n else 0.0,
        "count": len(drifted),
        "features": n,
        "columns": cols,
        "top": drifted,
        "prediction": prediction and {"column": pred_col, **prediction},
        "report_html": str(html),
        "title": title,
        "rows": rows,
        "rows_compared": len(current),
    }
