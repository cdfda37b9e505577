"""The promotion gate (:func:`decide`): every check of ``spec.evaluation.gate`` on the
evaluation report, each with a one-line reason a reviewer can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from include.modelops.evaluation.metrics import (
    CHAMPION_COLLAPSE_SHARE,
    CHAMPION_CONSISTENT,
    CHANCE_MIN_SIGMAS,
    FIRST_MODEL_REASON,
    round_metric,
    task_name,
)
from include.modelops.metrics_catalog import higher_is_better

if TYPE_CHECKING:
    from include.modelops.spec import ModelSpec

# Tolerance for gate comparisons, so that a value equal to its limit up to float noise passes.
_TOL = 1e-9


# --------------------------------------------------------------------------------------
# The gate
# --------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 3) -> str:
    return "undefined" if x is None else f"{x:.{digits}f}"


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two numbers with enough decimals that unequal values read as unequal."""
    for digits in (3, 4, 5, 6):
        sa, sb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if sa != sb or abs(a - b) <= _TOL:
            return sa, sb
    return sa, sb


def _signed(x: float | None, digits: int = 3) -> str:
    return "undefined" if x is None else f"{x:+.{digits}f}"


def _check(name: str, value: Any, threshold: Any, passed: bool, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "value": round_metric(value),
        "threshold": round_metric(threshold),
        "passed": bool(passed),
        "reason": reason,
    }


def slice_label(entry: Mapping[str, Any]) -> str:
    value = "(missing)" if entry["value"] is None else entry["value"]
    return f"{entry['column']}={value}"


def _drop(candidate: float, reference: float, high_better: bool) -> float:
    """How much worse the candidate is than the reference (positive = worse)."""
    return reference - candidate if high_better else candidate - reference


def _threshold_checks(
    spec: ModelSpec, metrics: Mapping[str, Any], decision_threshold: float | None = None
) -> list[dict[str, Any]]:
    checks = []
    for metric, bound in spec.evaluation.gate.thresholds.items():
        value = metrics.get(metric)
        # f1, precision and recall are the candidate's at its own operating threshold: say which.
        at = (
            f" at threshold {decision_threshold:.4g}"
            if decision_threshold is not None and metric in ("f1", "precision", "recall")
            else ""
        )
        for kind, limit, ok_sym, bad_sym in (("min", bound.min, "≥", "<"), ("max", bound.max, "≤", ">")):
            if limit is None:
                continue
            name = f"{metric} {kind}"
            if value is None:
                checks.append(
                    _check(
                        name, None, limit, False, f"{metric}{at} is undefined on the holdout, {kind} {limit}"
                    )
                )
                continue
            passed = value >= limit - _TOL if kind == "min" else value <= limit + _TOL
            sv, sl = _fmt_pair(value, limit)
            reason = (
                f"{metric}{at} {sv} {ok_sym} {sl}" if passed else f"{metric}{at} {sv} {bad_sym} {kind} {sl}"
            )
            checks.append(_check(name, value, limit, passed, reason))
    return checks


def _not_comparable(
    name: str, limit: Any, metric: str, first: bool, cand: float | None, champ: float | None
) -> dict[str, Any] | None:
    """The check's result when candidate and champion cannot be compared, else None."""
    if first:
        return _check(name, None, limit, True, FIRST_MODEL_REASON)
    if cand is None:
        return _check(name, None, limit, False, f"candidate {metric} is undefined on the holdout")
    if champ is None:
        return _check(name, None, limit, True, f"champion {metric} is undefined on the holdout; not compared")
    return None


def _champion_checks(
    spec: ModelSpec, evaluation: Mapping[str, Any], metric: str, high_better: bool
) -> list[dict[str, Any]]:
    gate = spec.evaluation.gate
    first = evaluation["models"].get("champion") is None
    cand = evaluation["models"]["candidate"]["metrics"].get(metric)
    champ = None if first else evaluation["models"]["champion"]["metrics"].get(metric)
    comparison = evaluation.get("comparison") or {}
    checks = []

    if gate.max_drop_vs_champion is not None:
        name, limit = f"{metric} drop vs champion", gate.max_drop_vs_champion
        if skip := _not_comparable(name, limit, metric, first, cand, champ):
            checks.append(skip)
        else:
            drop = _drop(cand, champ, high_better)
            passed = drop <= limit + _TOL
            sd, sl = _fmt_pair(drop, limit)
            if drop <= 0:
                reason = f"{metric} {_fmt(cand)} vs champion {_fmt(champ)}: no drop (limit {sl})"
            elif passed:
                reason = (
                    f"{metric} dropped {sd} vs champion ({_fmt(champ)} → {_fmt(cand)}), within limit {sl}"
                )
            else:
                reason = f"{metric} dropped {sd} vs champion ({_fmt(champ)} → {_fmt(cand)}), limit {sl}"
            checks.append(_check(name, drop, limit, passed, reason))

    if gate.max_relative_drop_vs_champion is not None:
        name, limit = f"{metric} relative drop vs champion", gate.max_relative_drop_vs_champion
        if skip := _not_comparable(name, limit, metric, first, cand, champ):
            checks.append(skip)
        else:
            drop = _drop(cand, champ, high_better)
            if champ != 0:
                rel = drop / abs(champ)
            else:
                rel = 0.0 if drop <= 0 else math.inf
            passed = rel <= limit + _TOL
            rel_txt = "∞" if math.isinf(rel) else f"{rel:.2%}"
            if rel <= 0:
                reason = f"{metric} {_fmt(cand)} vs champion {_fmt(champ)}: no drop (limit {limit:.2%})"
            else:
                verb = "within limit" if passed else "limit"
                reason = (
                    f"{metric} dropped {rel_txt} relative to champion ({_fmt(champ)} → {_fmt(cand)}), "
                    f"{verb} {limit:.2%}"
                )
            checks.append(_check(name, None if math.isinf(rel) else rel, limit, passed, reason))

    if gate.require_significant_improvement:
        name = f"{metric} significantly better than champion"
        if first:
            checks.append(_check(name, None, 0.0, True, FIRST_MODEL_REASON))
        else:
            low, high = comparison.get("ci_low"), comparison.get("ci_high")
            if low is None or high is None:
                why = (
                    "evaluation.bootstrap_samples is 0"
                    if not comparison.get("samples")
                    else "the metric was undefined on every resample"
                )
                checks.append(_check(name, None, 0.0, False, f"no confidence interval for {metric} ({why})"))
            else:
                # The CI is of candidate - champion; for lower-is-better metrics "better" is below 0.
                bound = low if high_better else -high
                passed = bound > 0
                ci = f"95% CI [{_signed(low)}, {_signed(high)}]"
                side = "above" if high_better else "below"
                if passed:
                    reason = f"{metric} difference {ci} is entirely {side} 0: significantly better"
                else:
                    reason = (
                        f"{metric} difference {ci} is not entirely {side} 0: "
                        "not significantly better than champion"
                    )
                checks.append(_check(name, bound, 0.0, passed, reason))
    return checks


def _baseline_check(spec: ModelSpec, evaluation: Mapping[str, Any], metric: str, high_better: bool) -> list:
    limit = spec.evaluation.gate.min_margin_over_baseline
    if limit is None:
        return []
    name = f"{metric} margin over baseline"
    cand = evaluation["models"]["candidate"]["metrics"].get(metric)
    base = evaluation["models"]["baseline"]["metrics"].get(metric)
    if cand is None:
        return [_check(name, None, limit, False, f"candidate {metric} is undefined on the holdout")]
    if base is None:
        return [
            _check(name, None, limit, True, f"baseline {metric} is undefined on the holdout; not compared")
        ]
    margin = -_drop(cand, base, high_better)
    passed = margin >= limit - _TOL
    sm, sl = _fmt_pair(margin, limit)
    if passed:
        reason = f"{metric} {_fmt(cand)} beats baseline {_fmt(base)} by {sm} ≥ {sl}"
    else:
        reason = f"{metric} {_fmt(cand)} beats baseline {_fmt(base)} by only {sm}, needs ≥ {sl}"
    return [_check(name, margin, limit, passed, reason)]


def _chance_check(evaluation: Mapping[str, Any], metric: str, high_better: bool) -> list[dict[str, Any]]:
    name = f"{metric} better than chance"
    cand = evaluation["models"]["candidate"]["metrics"].get(metric)
    chance = (evaluation.get("chance") or {}).get("candidate") or {}
    mean, sd = chance.get("mean"), chance.get("sd")
    if cand is None:
        return [
            _check(name, None, CHANCE_MIN_SIGMAS, False, f"candidate {metric} is undefined on the holdout")
        ]
    if mean is None or sd is None:
        return [
            _check(
                name,
                None,
                CHANCE_MIN_SIGMAS,
                False,
                f"the chance level of {metric} was not computed (undefined on every shuffle, or an "
                "evaluation report from an older version): evaluate again",
            )
        ]
    edge = -_drop(cand, mean, high_better)  # > 0: better than chance
    sigmas = edge / sd if sd > 0 else (math.inf if edge > _TOL else 0.0)
    passed = sigmas >= CHANCE_MIN_SIGMAS - _TOL
    level = f"{_fmt(mean)} ± {_fmt(sd)} with its scores shuffled over the holdout rows ({chance.get('valid')} shuffles)"
    better, worse = ("above", "below") if high_better else ("below", "above")
    how_far = "∞" if math.isinf(sigmas) else f"{abs(sigmas):.1f}"
    if passed:
        reason = f"{metric} {_fmt(cand)} is {how_far} sd {better} chance ({level})"
    else:
        where = f"only {how_far} sd {better}" if sigmas > 0 else f"{how_far} sd {worse}"
        reason = (
            f"{metric} {_fmt(cand)} is not better than chance: {level}; {where}, needs "
            f"≥ {CHANCE_MIN_SIGMAS:g} sd {better}; the candidate learned nothing usable (check the labels and "
            "features)"
        )
    return [_check(name, None if math.isinf(sigmas) else sigmas, CHANCE_MIN_SIGMAS, passed, reason)]


def _champion_consistency_check(
    evaluation: Mapping[str, Any], metric: str, high_better: bool
) -> list[dict[str, Any]]:
    """Is the champion about as good on this holdout as when it was evaluated? If not, the data moved."""
    champion = evaluation["models"].get("champion")
    name, limit = CHAMPION_CONSISTENT, CHAMPION_COLLAPSE_SHARE
    if champion is None:
        return [_check(name, None, limit, True, FIRST_MODEL_REASON)]
    who = f"champion v{champion.get('version')}" if champion.get("version") else "the champion"
    now = champion["metrics"].get(metric)
    recorded = (champion.get("recorded_metrics") or {}).get(metric)
    if recorded is None:
        return [_check(name, None, limit, True, f"{who} has no recorded holdout {metric}; not compared")]
    if now is None:
        return [
            _check(
                name,
                None,
                limit,
                False,
                f"{who} scored {_fmt(recorded)} {metric} when it was evaluated but its {metric} is "
                "undefined on this holdout: the data changed or broke; the candidate is not promoted",
            )
        ]
    # No skill on this holdout: the better of the naive baseline and the champion's own chance level.
    levels = [
        v
        for v in (
            evaluation["models"]["baseline"]["metrics"].get(metric),
            ((evaluation.get("chance") or {}).get("champion") or {}).get("mean"),
        )
        if v is not None
    ]
    if not levels:
        return [
            _check(name, None, limit, True, f"no no-skill level of {metric} on this holdout; not compared")
        ]
    no_skill = max(levels) if high_better else min(levels)
    edge_recorded = -_drop(recorded, no_skill, high_better)
    edge_now = -_drop(now, no_skill, high_better)
    if edge_recorded <= _TOL:
        return [
            _check(
                name,
                None,
                limit,
                True,
                f"{who}'s recorded {metric} {_fmt(recorded)} is not above the no-skill level "
                f"{_fmt(no_skill)} of this holdout; not compared",
            )
        ]
    lost = (edge_recorded - edge_now) / edge_recorded
    passed = lost <= limit + _TOL
    facts = (
        f"{who} scored {_fmt(now)} {metric} on this holdout but {_fmt(recorded)} when it was evaluated "
        f"(no skill: {_fmt(no_skill)})"
    )
    if passed:
        reason = f"{facts}: {max(lost, 0.0):.0%} of its edge lost, within {limit:.0%}"
    else:
        reason = (
            f"{facts}: it lost {lost:.0%} of its edge over no skill, more than {limit:.0%}; the data changed or "
            "broke, so the candidate is not promoted (check this run's validation report, the labels and the "
            "data fingerprint against the champion's; retrain once the data is right)"
        )
    return [_check(name, lost, limit, passed, reason)]


def _slice_checks(
    spec: ModelSpec, evaluation: Mapping[str, Any], metric: str, high_better: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Slice checks, the flagged slices (for the report) and notes about ungated slices."""
    rules = spec.evaluation.gate.slices
    slices = evaluation.get("slices") or []
    first = evaluation["models"].get("champion") is None
    checks: list[dict[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    notes: list[str] = []
    if not slices or (rules.max_drop_vs_champion is None and rules.max_gap is None):
        return checks, flagged, notes

    gated = []
    for entry in slices:
        label = slice_label(entry)
        if entry["rows"] < rules.min_rows:
            notes.append(f"slice {label} has {entry['rows']} rows (< {rules.min_rows}): reported, not gated")
        elif all(v is None for v in entry["metrics"].values()):
            notes.append(f"slice {label}: {metric} is undefined on its rows (e.g. one class only): not gated")
        else:
            gated.append(entry)

    if rules.max_drop_vs_champion is not None:
        limit = rules.max_drop_vs_champion
        if first:
            checks.append(_check("slices vs champion", None, limit, True, FIRST_MODEL_REASON))
        elif not gated:
            checks.append(
                _check(
                    "slices vs champion",
                    None,
                    limit,
                    True,
                    f"no slice has ≥ {rules.min_rows} rows; not gated",
                )
            )
        for entry in [] if first else gated:
            label = slice_label(entry)
            name = f"slice {label} vs champion"
            cand, champ = entry["metrics"].get("candidate"), entry["metrics"].get("champion")
            if cand is None:
                reason = f"slice {label} candidate {metric} is undefined"
                checks.append(_check(name, None, limit, False, reason))
                flagged.append({"column": entry["column"], "value": entry["value"], "reason": reason})
                continue
            if champ is None:
                checks.append(
                    _check(
                        name, None, limit, True, f"slice {label} champion {metric} is undefined; not compared"
                    )
                )
                continue
            drop = _drop(cand, champ, high_better)
            passed = drop <= limit + _TOL
            sd, sl = _fmt_pair(drop, limit)
            if drop <= 0:
                reason = f"slice {label} {metric} {_fmt(cand)} vs champion {_fmt(champ)}: no drop"
            elif passed:
                reason = f"slice {label} {metric} dropped {sd} vs champion, within limit {sl}"
            else:
                reason = f"slice {label} {metric} dropped {sd} vs champion, limit {sl}"
                flagged.append({"column": entry["column"], "value": entry["value"], "reason": reason})
            checks.append(_check(name, drop, limit, passed, reason))

    if rules.max_gap is not None:
        limit = rules.max_gap
        for column in spec.segment_columns:
            name = f"slice gap {column}"
            scored = [(e, e["metrics"].get("candidate")) for e in gated if e["column"] == column]
            undefined = [e for e, v in scored if v is None]
            scored = [(e, v) for e, v in scored if v is not None]
            if len(scored) < 2:
                checks.append(
                    _check(
                        name,
                        None,
                        limit,
                        True,
                        f"{column}: fewer than 2 slices with ≥ {rules.min_rows} rows; not gated",
                    )
                )
                continue
            best = max(scored, key=lambda t: t[1] if high_better else -t[1])
            worst = min(scored, key=lambda t: t[1] if high_better else -t[1])
            gap = abs(best[1] - worst[1])
            passed = gap <= limit + _TOL and not undefined
            sg, sl = _fmt_pair(gap, limit)
            reason = (
                f"{column}: candidate {metric} gap {sg} between {slice_label(best[0])} ({_fmt(best[1])}) "
                f"and {slice_label(worst[0])} ({_fmt(worst[1])}), limit {sl}"
            )
            if undefined:
                reason += f"; undefined on {', '.join(slice_label(e) for e in undefined)}"
            if not passed:
                flagged.append({"column": column, "value": worst[0]["value"], "reason": reason})
            checks.append(_check(name, gap, limit, passed, reason))
    return checks, flagged, notes


def _latency_check(spec: ModelSpec, evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    limit = spec.evaluation.gate.max_latency_ratio_vs_champion
    if limit is None:
        return []
    name = "latency p95 vs champion"
    if evaluation["models"].get("champion") is None:
        return [_check(name, None, limit, True, FIRST_MODEL_REASON)]
    lat = evaluation.get("latency_ms") or {}
    cand, champ, ratio = lat.get("candidate_p95"), lat.get("champion_p95"), lat.get("ratio")
    if ratio is None:
        missing = [who for who, v in (("candidate", cand), ("champion", champ)) if v is None] or [
            "champion (0 ms)"
        ]
        return [
            _check(name, None, limit, True, f"latency not measured for {' and '.join(missing)}; not gated")
        ]
    passed = ratio <= limit + _TOL
    reason = (
        f"p95 latency {cand:.2f} ms is {ratio:.2f}× the champion's {champ:.2f} ms, "
        f"{'within limit' if passed else 'limit'} {limit:.2f}×"
    )
    return [_check(name, ratio, limit, passed, reason)]


def decide(spec: ModelSpec, evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The promotion gate: every rule of ``spec.evaluation.gate`` as a check on the report.

    Checks (each ``{"name", "value", "threshold", "passed", "reason"}``), in order: absolute
    thresholds per metric; the primary metric's absolute and relative drop vs the champion and,
    if required, a confidence interval of the difference entirely on the better side of 0;
    ``champion_consistent`` (the champion re-scored on this holdout kept more than half of its
    recorded edge over no skill, see ``CHAMPION_COLLAPSE_SHARE``; else the data changed or broke
    and the gate fails closed, leading the summary with why); the margin over the naive baseline;
    ``<metric> better than chance`` (always on: at least ``CHANCE_MIN_SIGMAS`` standard
    deviations better than the candidate's own scores shuffled over the rows); per slice (rows >= ``slices.min_rows``) the drop vs the
    champion; per segment column the gap between the candidate's best and worst slice; the p95
    latency ratio vs the champion when both were measured. Rules set to null are not checked.
    Without a champion the champion checks pass with the reason ``FIRST_MODEL_REASON``. An
    undefined candidate metric fails its check.

    Returns:
        ``{"passed", "first_model", "primary_metric", "candidate_version", "champion_version",
        "checks", "failed_checks", "flagged_slices", "notes", "operating_point", "summary"}``;
        binary: ``operating_point`` is the candidate's (its threshold, how it was chosen, holdout
        precision, recall and share flagged at it), also in the summary, and ``notes`` say how
        each model's threshold was set.
    """
    task = task_name(spec)
    metric = evaluation.get("primary_metric") or spec.evaluation.primary_metric
    high_better = higher_is_better(task, metric)
    models = evaluation["models"]
    first = models.get("champion") is None

    checks = _threshold_checks(spec, models["candidate"]["metrics"], evaluation.get("decision_threshold"))
    checks += _champion_checks(spec, evaluation, metric, high_better)
    checks += _champion_consistency_check(evaluation, metric, high_better)
    checks += _baseline_check(spec, evaluation, metric, high_better)
    checks += _chance_check(evaluation, metric, high_better)
    slice_checks, flagged, notes = _slice_checks(spec, evaluation, metric, high_better)
    checks += slice_checks
    checks += _latency_check(spec, evaluation)

    failed = [c for c in checks if not c["passed"]]
    passed = not failed
    cand = models["candidate"]["metrics"].get(metric)
    if first:
        base = models["baseline"]["metrics"].get(metric)
        headline = f"first model, candidate {metric} {_fmt(cand)} (baseline {_fmt(base)})"
    else:
        champ = models["champion"]["metrics"].get(metric)
        comp = evaluation.get("comparison") or {}
        headline = f"candidate {metric} {_fmt(cand)} vs champion {_fmt(champ)}"
        if comp.get("diff") is not None:
            ci = ""
            if comp.get("ci_low") is not None:
                ci = f", 95% CI [{_signed(comp['ci_low'])}, {_signed(comp['ci_high'])}]"
            headline += f" ({_signed(comp['diff'])}{ci})"
    point = (evaluation.get("operating_point") or {}).get("candidate")
    notes = [*notes, *_operating_point_notes(evaluation)]
    if point:
        headline += f"; {_operating_point_text(point)}"
    if passed:
        summary = f"PASSED: {headline}; {len(checks)}/{len(checks)} checks passed"
    else:
        # A collapsed champion says the data is at fault, not the candidate: lead with it.
        failed_first = sorted(failed, key=lambda c: c["name"] != CHAMPION_CONSISTENT)
        lead = f"{failed_first[0]['reason']}; " if failed_first[0]["name"] == CHAMPION_CONSISTENT else ""
        summary = f"REJECTED: {lead}{headline}; {len(failed)} of {len(checks)} checks failed: " + "; ".join(
            c["reason"] for c in failed_first[1 if lead else 0 :]
        )
    return {
        "passed": passed,
        "first_model": first,
        "primary_metric": metric,
        "candidate_version": models["candidate"].get("version"),
        "champion_version": None if first else models["champion"].get("version"),
        "checks": checks,
        "failed_checks": [c["name"] for c in failed],
        "flagged_slices": flagged,
        "notes": notes,
        "operating_point": point,
        "summary": summary,
    }


def _operating_point_text(point: Mapping[str, Any]) -> str:
    """E.g. "at threshold 0.031 (target_recall 0.6): holdout precision 21.0%, recall 58.0%, 3.9% flagged"."""
    info = point.get("choice") or {}
    how = "fixed" if info.get("policy") in (None, "fixed") else f"{info['policy']} {info.get('target'):g}"

    def pct(x: Any) -> str:
        return "undefined" if x is None else f"{x:.1%}"

    return (
        f"at threshold {point.get('threshold'):.4g} ({how}): holdout precision "
        f"{pct(point.get('precision'))}, recall {pct(point.get('recall'))}, {pct(point.get('flagged_share'))} "
        "flagged"
    )


def _operating_point_notes(evaluation: Mapping[str, Any]) -> list[str]:
    """How each model's threshold was set; a target missed on the training slice is said plainly."""
    from include.modelops.evaluation.threshold import describe

    notes = []
    for role, point in (evaluation.get("operating_point") or {}).items():
        if not point:
            continue
        info = point.get("choice") or {}
        notes.append(
            f"{role} decision threshold {describe(info)}; on the holdout: "
            f"{_operating_point_text(point).split(': ', 1)[1]}"
        )
    return notes
