"""The evaluation report (:func:`evaluate`, a JSON-serialisable dict) and its HTML page
(:func:`render_html`, the report and the gate's decision as one self-contained page).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from include.modelops.evaluation.gate import slice_label
from include.modelops.evaluation.metrics import (
    BASELINE_DESCRIPTION,
    FIRST_MODEL_REASON,
    as_scores,
    chance_level,
    compute_metrics,
    encode_labels,
    latency_summary,
    paired_bootstrap,
    round_metric,
    slice_metrics,
    task_name,
)
from include.modelops.metrics_catalog import METRICS, higher_is_better
from include.modelops.platform import reports

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import ModelSpec

# --------------------------------------------------------------------------------------
# The evaluation report
# --------------------------------------------------------------------------------------


def _rounded(metrics: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: round_metric(v) for k, v in metrics.items()}


def evaluate(
    spec: ModelSpec,
    holdout: pd.DataFrame,
    *,
    candidate_scores: Any,
    baseline_scores: Any,
    champion_scores: Any | None = None,
    champion_version: str | int | None = None,
    candidate_version: str | int | None = None,
    latency: Mapping[str, Any] | None = None,
    champion_recorded_metrics: Mapping[str, Any] | None = None,
    candidate_threshold: Mapping[str, Any] | None = None,
    champion_threshold: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The evaluation report of a candidate against the champion and the naive baseline.

    Args:
        spec: the model spec.
        holdout: the holdout rows, with the target column ``spec.target.name`` and the
            segment columns.
        candidate_scores: the candidate's scores on ``holdout``.
        baseline_scores: the naive baseline's scores (see :func:`baseline_scores`).
        champion_scores: the champion re-scored on the same rows, or None for a first model.
        champion_version: the champion's registry version.
        candidate_version: the candidate's registry version.
        latency: ``{"candidate": latency_profile(...), "champion": latency_profile(...)}``
            (either may be missing), or ``{"candidate_p95": ms, "champion_p95": ms}``.
        champion_recorded_metrics: the champion's holdout metrics recorded when it was evaluated
            (its run's ``holdout_<metric>``), for the gate's ``champion_consistent`` check.
        candidate_threshold, champion_threshold: binary: each model's own decision threshold as
            its training recorded it (``decision_threshold.threshold_info``); None: the spec's.
            Threshold metrics (f1, precision, recall) are each model's at its own threshold; the
            baseline's at the candidate's.

    Returns:
        A JSON-serialisable dict: ``task``, ``primary_metric``, ``higher_is_better``, ``rows``,
        ``decision_threshold`` (the candidate's), ``operating_point`` (binary: per model, the
        threshold, how it was chosen, and precision, recall and share flagged on the holdout at
        it; else None), ``models`` (candidate, champion or None, baseline), ``comparison``
        (paired bootstrap of the primary metric, or None), ``chance`` (:func:`chance_level` of the
        candidate and the champion), ``slices`` and ``latency_ms``.
    """
    task = task_name(spec)
    primary = spec.evaluation.primary_metric
    target = spec.target.name
    if target not in holdout.columns:
        raise ValueError(f"the holdout has no target column {target!r} (spec.target.name)")
    y = holdout[target].to_numpy()
    n = len(y)
    cand = as_scores(spec, candidate_scores, n, "candidate")
    base = as_scores(spec, baseline_scores, n, "baseline")
    champ = None if champion_scores is None else as_scores(spec, champion_scores, n, "champion")

    binary = task == "binary_classification"
    from include.modelops.evaluation.metrics import spec_threshold
    from include.modelops.evaluation.threshold import operating_point

    cand_info = dict(candidate_threshold or spec_threshold(spec)) if binary else None
    champ_info = dict(champion_threshold or spec_threshold(spec)) if binary and champ is not None else None
    t_cand = float(cand_info["value"]) if cand_info else None
    t_champ = float(champ_info["value"]) if champ_info else None
    cand_metrics = _rounded(compute_metrics(spec, y, cand, threshold=t_cand))
    report: dict[str, Any] = {
        "task": task,
        "primary_metric": primary,
        "higher_is_better": higher_is_better(task, primary),
        "rows": int(n),
    }
    if task == "binary_classification":
        report["positives"] = int(encode_labels(spec, y).sum())
    report["decision_threshold"] = t_cand
    report["operating_point"] = None
    if binary:
        y01 = encode_labels(spec, y)
        report["operating_point"] = {
            role: None
            if info is None
            else {**operating_point(y01, scores, float(info["value"])), "choice": info}
            for role, info, scores in (("candidate", cand_info, cand), ("champion", champ_info, champ))
        }
    report["models"] = {
        "candidate": {
            "metrics": cand_metrics,
            "version": None if candidate_version is None else str(candidate_version),
        },
        "champion": None
        if champ is None
        else {
            "metrics": _rounded(compute_metrics(spec, y, champ, threshold=t_champ)),
            "version": None if champion_version is None else str(champion_version),
            "recorded_metrics": None
            if champion_recorded_metrics is None
            else {k: round_metric(v) for k, v in champion_recorded_metrics.items()},
        },
        "baseline": {
            "metrics": _rounded(compute_metrics(spec, y, base, threshold=t_cand)),
            "description": BASELINE_DESCRIPTION[task],
        },
    }
    comparison = None
    if champ is not None:
        comparison = paired_bootstrap(
            spec,
            y,
            cand,
            champ,
            metric=primary,
            samples=spec.evaluation.bootstrap_samples,
            seed=spec.split.seed,
            candidate_threshold=t_cand,
            champion_threshold=t_champ,
        )
        comparison["candidate"] = cand_metrics[primary]
        comparison["champion"] = report["models"]["champion"]["metrics"][primary]
    report["comparison"] = comparison
    report["chance"] = {
        "candidate": chance_level(spec, y, cand, metric=primary, seed=spec.split.seed, threshold=t_cand),
        "champion": None
        if champ is None
        else chance_level(spec, y, champ, metric=primary, seed=spec.split.seed, threshold=t_champ),
    }
    slice_scores = {"candidate": cand, **({"champion": champ} if champ is not None else {}), "baseline": base}
    slice_thresholds = {"candidate": t_cand, "champion": t_champ, "baseline": t_cand}
    report["slices"] = slice_metrics(
        spec,
        holdout.reset_index(drop=True),
        y,
        slice_scores,
        {k: v for k, v in slice_thresholds.items() if v is not None},
    )
    report["latency_ms"] = latency_summary(latency)
    report["curves"] = _curves(spec, task, y, slice_scores)
    return report


def _curves(spec: ModelSpec, task: str, y: Any, scores: dict[str, Any]) -> dict[str, Any] | None:
    """Binary: ROC, precision-recall and calibration; regression: predicted vs actual (``curves.py``)."""
    import numpy as np

    from include.modelops.evaluation import curves

    if task == "binary_classification":
        y01 = encode_labels(spec, y)
        return curves.binary_curves(y01, {m: np.asarray(s, dtype=float).ravel() for m, s in scores.items()})
    if task == "regression":
        return curves.regression_curves(
            np.asarray(y, dtype=float),
            {m: np.asarray(s, dtype=float).ravel() for m, s in scores.items()},
            seed=spec.split.seed,
        )
    return None


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

# What only this report has; the rest is platform/reports.py's stylesheet.
_CSS = """
.summary{margin:.8rem 0;font-size:1.02rem}
tr.pass td.status{color:#1a7f37;font-weight:700}tr.fail td{background:#ffebe9}
tr.fail td.status{color:#cf222e;font-weight:700}tr.flag td{background:#ffebe9}tr.small td{color:#656d76}
.better{color:#1a7f37}.worse{color:#cf222e}
ul.notes{font-size:.9rem;color:#656d76}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts svg{border:1px solid #eaeef2;background:#fff}
"""


_h = reports.escape


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return _h(x)
    return f"{x:.{digits}f}"


def _delta_cell(cand: float | None, other: float | None, high_better: bool) -> str:
    if cand is None or other is None:
        return '<td class="num">—</td>'
    d = cand - other
    cls = "" if abs(d) < 1e-12 else ("better" if (d > 0) == high_better else "worse")
    return f'<td class="num {cls}">{d:+.4f}</td>'


def _operating_point_html(evaluation: Mapping[str, Any]) -> list[str]:
    points = {k: v for k, v in (evaluation.get("operating_point") or {}).items() if v}
    if not points:
        return []
    from include.modelops.evaluation.threshold import describe

    out = [
        "<h2>Operating threshold (rows scored at or above it are labelled positive)</h2>"
        "<table><tr><th>model</th><th>threshold</th><th>precision</th><th>recall</th><th>share flagged</th>"
        "<th>flagged / positives</th><th>how the threshold was set</th></tr>"
    ]
    for role, p in points.items():
        out.append(
            f'<tr><td>{_h(role)}</td><td class="num">{_num(p.get("threshold"))}</td>'
            f'<td class="num">{_num(p.get("precision"))}</td><td class="num">{_num(p.get("recall"))}</td>'
            f'<td class="num">{_num(p.get("flagged_share"))}</td>'
            f'<td class="num">{_h(p.get("flagged"))} / {_h(p.get("positives"))}</td>'
            f"<td>{_h(describe(p.get('choice')))}</td></tr>"
        )
    out.append("</table>")
    return out


def _curves_html(curves: Mapping[str, Any] | None) -> list[str]:
    """The holdout's curves as inline SVG charts (``evaluation/curves.py``), when the report has them."""
    if not curves:
        return []
    charts = []
    if curves.get("roc"):
        charts.append(
            reports.chart(
                "ROC curve",
                curves["roc"],
                x_label="false positive rate",
                y_label="true positive rate",
                diagonal=True,
            )
        )
    if curves.get("precision_recall"):
        charts.append(
            reports.chart(
                "Precision-recall", curves["precision_recall"], x_label="recall", y_label="precision"
            )
        )
    if curves.get("calibration"):
        charts.append(
            reports.chart(
                "Calibration (score deciles)",
                curves["calibration"],
                x_label="mean score",
                y_label="share positive",
                diagonal=True,
            )
        )
    if curves.get("predicted_vs_actual"):
        charts.append(
            reports.chart(
                "Predicted vs actual (sample of rows)",
                curves["predicted_vs_actual"],
                x_label="actual",
                y_label="predicted",
                domain=None,
                diagonal=True,
                points=True,
                width=420,
                height=360,
            )
        )
    return ["<h2>Curves (holdout)</h2>", '<div class="charts">' + "".join(charts) + "</div>"]


def render_html(evaluation: Mapping[str, Any], decision: Mapping[str, Any], *, title: str = "") -> str:
    """The evaluation report and gate decision as one self-contained HTML page (inline CSS)."""
    task = evaluation.get("task", "")
    primary = evaluation.get("primary_metric", "")
    models = evaluation.get("models", {})
    cand_m = models.get("candidate", {}).get("metrics", {})
    champ = models.get("champion")
    champ_m = champ["metrics"] if champ else {}
    base = models.get("baseline", {})
    base_m = base.get("metrics", {})
    title = title or f"Model evaluation: candidate {decision.get('candidate_version') or ''}".strip()
    passed = bool(decision.get("passed"))
    direction = "higher" if evaluation.get("higher_is_better", True) else "lower"
    facts = [
        f"task {task}",
        f"primary metric {primary} ({direction} is better)",
        f"{evaluation.get('rows')} holdout rows",
    ]
    if evaluation.get("positives") is not None:
        facts.append(f"{evaluation['positives']} positives")
    if evaluation.get("decision_threshold") is not None:
        facts.append(f"decision threshold {evaluation['decision_threshold']}")
    facts.append(f"candidate version {decision.get('candidate_version') or '—'}")
    first = "none (first model)" if decision.get("first_model") else "—"
    facts.append(f"champion version {decision.get('champion_version') or first}")
    parts = [
        f"<h1>{_h(title)}</h1>",
        reports.badge("PASSED" if passed else "REJECTED", passed),
        f'<p class="summary">{_h(decision.get("summary"))}</p>',
        f'<p class="muted">{_h(" · ".join(facts))}</p>',
    ]

    failed = decision.get("failed_checks") or []
    if failed:
        parts.append("<p><strong>Failed checks:</strong> " + ", ".join(_h(n) for n in failed) + "</p>")

    parts.append(
        "<h2>Gate checks</h2><table><tr><th>check</th><th>value</th><th>threshold</th>"
        "<th>result</th><th>reason</th></tr>"
    )
    for c in decision.get("checks", []):
        ok = c.get("passed")
        parts.append(
            f'<tr class="{"pass" if ok else "fail"}"><td>{_h(c.get("name"))}</td>'
            f'<td class="num">{_num(c.get("value"))}</td><td class="num">{_num(c.get("threshold"))}</td>'
            f'<td class="status">{"pass" if ok else "FAIL"}</td><td>{_h(c.get("reason"))}</td></tr>'
        )
    parts.append("</table>")
    if decision.get("notes"):
        parts.append('<ul class="notes">' + "".join(f"<li>{_h(n)}</li>" for n in decision["notes"]) + "</ul>")

    parts.append(
        "<h2>Metrics</h2><table><tr><th>metric</th><th>candidate</th><th>champion</th>"
        "<th>Δ vs champion</th><th>baseline</th><th>Δ vs baseline</th></tr>"
    )
    for metric, value in cand_m.items():
        hb = METRICS.get(task, {}).get(metric, True)
        label = f"<strong>{_h(metric)}</strong>" if metric == primary else _h(metric)
        arrow = "↑" if hb else "↓"
        parts.append(
            f'<tr><td>{label} {arrow}</td><td class="num">{_num(value)}</td>'
            f'<td class="num">{_num(champ_m.get(metric)) if champ else "—"}</td>'
            f"{_delta_cell(value, champ_m.get(metric), hb)}"
            f'<td class="num">{_num(base_m.get(metric))}</td>'
            f"{_delta_cell(value, base_m.get(metric), hb)}</tr>"
        )
    parts.append("</table>")
    parts.append(f'<p class="muted">{_h(base.get("description"))}</p>')
    parts += _curves_html(evaluation.get("curves"))
    parts += _operating_point_html(evaluation)

    comp = evaluation.get("comparison")
    if comp:
        ci = (
            f"95% CI [{_num(comp.get('ci_low'))}, {_num(comp.get('ci_high'))}]"
            if comp.get("ci_low") is not None
            else "no confidence interval"
        )
        prob = comp.get("prob_candidate_better")
        parts.append(
            f"<h2>Candidate vs champion ({_h(comp.get('metric'))})</h2>"
            f"<p>Difference (candidate − champion): <strong>{_num(comp.get('diff'))}</strong>, {ci}; "
            f"paired bootstrap of {_h(comp.get('valid_samples'))} resamples"
            + (f" ({_h(comp.get('skipped'))} skipped: metric undefined)" if comp.get("skipped") else "")
            + (f"; candidate better in {prob:.0%} of resamples" if prob is not None else "")
            + ".</p>"
        )
    elif not champ:
        parts.append(f"<h2>Candidate vs champion</h2><p>{_h(FIRST_MODEL_REASON)}.</p>")

    slices = evaluation.get("slices") or []
    if slices:
        flagged = {(f["column"], f["value"]) for f in decision.get("flagged_slices", [])}
        failed_names = set(failed)
        names = list(slices[0]["metrics"].keys())
        has_pos = any("positives" in s for s in slices)
        parts.append(
            f"<h2>Slices ({_h(primary)})</h2><table><tr><th>slice</th><th>rows</th>"
            + ("<th>positives</th>" if has_pos else "")
            + "".join(f"<th>{_h(n)}</th>" for n in names)
            + ("<th>Δ vs champion</th>" if "champion" in names else "")
            + "</tr>"
        )
        hb = bool(evaluation.get("higher_is_better", True))
        for s in slices:
            label = slice_label(s)
            is_flagged = (s["column"], s["value"]) in flagged or f"slice {label} vs champion" in failed_names
            ungated = any(note.startswith(f"slice {label} ") for note in decision.get("notes", []))
            cls = "flag" if is_flagged else ("small" if ungated else "")
            mark = " ⚑" if is_flagged else (" (not gated)" if ungated else "")
            parts.append(
                f'<tr class="{cls}"><td>{_h(label)}{mark}</td>'
                f'<td class="num">{s["rows"]}</td>'
                + (f'<td class="num">{_h(s.get("positives", "—"))}</td>' if has_pos else "")
                + "".join(f'<td class="num">{_num(s["metrics"].get(n))}</td>' for n in names)
                + (
                    _delta_cell(s["metrics"].get("candidate"), s["metrics"].get("champion"), hb)
                    if "champion" in names
                    else ""
                )
                + "</tr>"
            )
        parts.append("</table>")

    lat = evaluation.get("latency_ms")
    parts.append("<h2>Latency (single-row predict, p95)</h2>")
    if lat:
        parts.append(
            f"<p>candidate {_num(lat.get('candidate_p95'), 2)} ms · "
            f"champion {_num(lat.get('champion_p95'), 2)} ms"
            + (f" · ratio {lat['ratio']:.2f}×" if lat.get("ratio") is not None else "")
            + "</p>"
        )
    else:
        parts.append('<p class="muted">not measured</p>')
    return reports.page(title, "\n".join(parts), css=_CSS)
