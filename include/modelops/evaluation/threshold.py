"""A binary classifier's decision threshold: chosen on the training split, recorded on the version, served.

``evaluation.threshold`` in the spec says how the threshold is set (``spec.DecisionThreshold``):

* ``fixed``: the spec's ``value``; nothing is chosen.
* ``target_recall`` / ``target_precision``: chosen when the model is trained, on the TRAINING
  split only (the holdout stays unseen until evaluation). A slice of the training split
  (``slice_fraction``: its latest rows with a ``time_column``, else a seeded random share of
  each class) is scored by a second model fit on the rest of it, and the threshold is chosen
  on those out-of-sample scores (:func:`choose_threshold`). The served model is then fit on
  the whole training split as before.

  Why a second fit rather than the final model's own training scores: those are optimistic,
  a boosted model scores its own training positives far higher than new ones, so a threshold
  chosen on them for 60% recall gives much less on new data. One extra fit on 80% of the rows
  is the cheapest honest estimate (k-fold would cost k fits); the scores of a model fit on 80%
  of the rows are close to, not the same as, the final model's, which the evaluation on the
  holdout then measures.

The choice (:func:`threshold_info`: value, policy, target and the operating point on the
slice) is a tag of the training run and of the model version (:func:`to_tags`); the bento
carries it in ``bento_model.json`` and labels rows with it; the evaluation reports precision,
recall and the share flagged at each model's own threshold. A version trained before this
was recorded is read as the spec's fixed value (:func:`spec_threshold`).

Only numpy and the standard library at module level.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from include.modelops.evaluation.metrics import encode_labels, round_metric, spec_threshold

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import ModelSpec

log = logging.getLogger(__name__)

# Version and run tags: the value alone (easy to read in the MLflow UI) and the whole choice as JSON.
VALUE_TAG = "modelops.decision_threshold"
INFO_TAG = "modelops.threshold"
# Fewer positives than this in the slice make the chosen threshold noisy: the log and the report say so.
MIN_SLICE_POSITIVES = 20
_TOL = 1e-12


class ThresholdError(ValueError):
    """The training split cannot support the spec's threshold policy; the message names the field."""


def operating_point(y: Any, scores: Any, threshold: float) -> dict[str, Any]:
    """What labelling ``scores >= threshold`` positive does on rows with 0/1 labels ``y``.

    Returns:
        ``{"threshold", "rows", "positives", "flagged", "flagged_share", "precision", "recall"}``;
        precision is None when nothing is flagged, recall None without positives.
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    s = np.asarray(scores, dtype=float).reshape(-1)
    flagged = s >= threshold
    tp = float((y * flagged).sum())
    n_flagged, positives = int(flagged.sum()), int(y.sum())
    return {
        "threshold": round_metric(threshold),
        "rows": int(len(y)),
        "positives": positives,
        "flagged": n_flagged,
        "flagged_share": round_metric(n_flagged / len(y)) if len(y) else None,
        "precision": round_metric(tp / n_flagged) if n_flagged else None,
        "recall": round_metric(tp / positives) if positives else None,
    }


def choose_threshold(y: Any, scores: Any, *, policy: str, target: float) -> tuple[float, bool]:
    """The threshold meeting ``policy``'s ``target`` on these rows, and whether it meets it.

    target_recall: the highest threshold whose recall is at least ``target`` (always met: the
    lowest positive score flags every positive). target_precision: the lowest threshold whose
    precision is at least ``target``, i.e. the most recall at that precision; when no threshold
    reaches it, the most precise one (the lowest of equals) and ``False``.

    Args:
        y: 0/1 labels (1 = positive).
        scores: the positive class's scores, one per row.
        policy: ``target_recall`` or ``target_precision``.
        target: the recall or precision to reach, in (0, 1).

    Raises:
        ValueError: no positive or no negative row, or an unknown policy.
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    s = np.asarray(scores, dtype=float).reshape(-1)
    positives = int(y.sum())
    if positives == 0 or positives == len(y):
        raise ValueError(
            f"a threshold needs positive and negative rows; got {positives} of {len(y)} positive"
        )
    if policy == "target_recall":
        pos = np.sort(s[y == 1])[::-1]
        k = max(1, math.ceil(target * positives - 1e-9))  # positives to flag
        return float(pos[k - 1]), True
    if policy != "target_precision":
        raise ValueError(f"unknown threshold policy {policy!r}")
    order = np.argsort(-s, kind="stable")
    so, yo = s[order], y[order]
    # One candidate per distinct score: flag every row scoring at or above it (ties together).
    last_of_value = np.r_[so[1:] != so[:-1], True]
    tp = np.cumsum(yo)[last_of_value]
    flagged = (np.arange(len(so)) + 1)[last_of_value]
    values = so[last_of_value]
    precision = tp / flagged
    meets = precision >= target - _TOL
    if meets.any():
        return float(values[np.flatnonzero(meets)[-1]]), True
    best = np.flatnonzero(precision >= precision.max() - _TOL)[-1]
    return float(values[best]), False


def slice_mask(spec: ModelSpec, train: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, str]:
    """The rows of ``train`` the threshold is chosen on, and how they were picked (for the report).

    With a ``time_column``: the latest ``slice_fraction`` of rows (the threshold then meets data
    that came after the data the model learned from, as it will in production). Without: a
    seeded random ``slice_fraction`` of the positives and of the negatives, so that a rare class
    keeps its share.
    """
    fraction = spec.evaluation.threshold.slice_fraction
    n = len(train)
    mask = np.zeros(n, dtype=bool)
    if spec.time_column and spec.time_column in train.columns:
        order = np.argsort(train[spec.time_column].to_numpy(), kind="stable")
        take = max(1, round(fraction * n))
        mask[order[n - take :]] = True
        return mask, f"the latest {fraction:.0%} of the training split by {spec.time_column}"
    rng = np.random.default_rng(spec.split.seed)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        take = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        mask[rng.permutation(idx)[:take]] = True
    return mask, f"a seeded random {fraction:.0%} of each class of the training split"


def threshold_info(
    spec: ModelSpec, train: pd.DataFrame, fit_and_score: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
) -> dict[str, Any]:
    """Choose the decision threshold of ``spec``'s policy on the training split ``train``.

    Args:
        spec: a binary classification spec.
        train: the training split (features and target; the time column if the spec has one).
        fit_and_score: fits a model on its first argument and returns the positive class's scores
            of the rows of its second (the trainer's ``fit`` then its predictions).

    Returns:
        ``{"value", "policy", "target", "target_met", "source": "training split", "slice":
        operating_point(...) + {"fraction", "how", "fit_rows"}}``; for ``policy: fixed``,
        :func:`spec_threshold` (nothing is fit).

    Raises:
        ThresholdError: the slice or the rest of the training split lacks a class (names the field).
    """
    policy = spec.evaluation.threshold
    if spec.task.value != "binary_classification" or policy.policy == "fixed":
        return spec_threshold(spec)
    y = encode_labels(spec, train[spec.target.name].to_numpy()).astype(int)
    mask, how = slice_mask(spec, train, y)
    for side, rows in (("slice", y[mask]), ("rest", y[~mask])):
        if rows.sum() == 0 or rows.sum() == len(rows):
            raise ThresholdError(
                f"evaluation.threshold: the training split's {side} ({how if side == 'slice' else 'the rows left'}"
                f", {len(rows)} rows) holds {int(rows.sum())} positives; a {policy.policy} threshold needs both "
                "classes there. Use more data, a larger evaluation.threshold.slice_fraction, or policy fixed"
            )
    if int(y[mask].sum()) < MIN_SLICE_POSITIVES:
        log.warning(
            "The threshold slice holds only %d positives (fewer than %d): the chosen threshold is noisy; "
            "use more data or a larger evaluation.threshold.slice_fraction",
            int(y[mask].sum()),
            MIN_SLICE_POSITIVES,
        )
    log.info(
        "Choosing the decision threshold (%s %g) on %s: fitting on %d rows, scoring %d",
        policy.policy,
        policy.target,
        how,
        int((~mask).sum()),
        int(mask.sum()),
    )
    train = train.reset_index(drop=True)
    scores = np.asarray(fit_and_score(train[~mask], train[mask]), dtype=float).reshape(-1)
    value, met = choose_threshold(y[mask], scores, policy=policy.policy, target=float(policy.target))
    point = operating_point(y[mask], scores, value)
    info = {
        "value": round_metric(value),
        "policy": policy.policy,
        "target": policy.target,
        "target_met": bool(met),
        "source": "training split",
        "slice": {**point, "fraction": policy.slice_fraction, "how": how, "fit_rows": int((~mask).sum())},
    }
    log.info("Decision threshold %s", describe(info))
    return info


def describe(info: Mapping[str, Any] | None) -> str:
    """One line for people: the value, the policy and where it was chosen, e.g. for the gate summary."""
    if not info or info.get("value") is None:
        return "not recorded"
    value = f"{info['value']:.4g}"
    if info.get("policy") in (None, "fixed"):
        return f"{value} (fixed, from the {info.get('source') or 'spec'})"
    sl = info.get("slice") or {}
    what = info["policy"].removeprefix("target_")
    text = (
        f"{value} ({info['policy']} {info.get('target'):g}, chosen on {sl.get('how', 'the training split')}: "
        f"{sl.get('rows')} rows, {sl.get('positives')} positives, scored by a model fit on the other "
        f"{sl.get('fit_rows')} rows; there precision {_pct(sl.get('precision'))}, recall "
        f"{_pct(sl.get('recall'))}, {_pct(sl.get('flagged_share'))} flagged)"
    )
    if info.get("target_met") is False:
        text += f"; target {what} {info.get('target'):g} NOT reached on the training slice"
    return text


def _pct(x: Any) -> str:
    return "undefined" if x is None else f"{x:.1%}"


def to_tags(info: Mapping[str, Any]) -> dict[str, str]:
    """The MLflow tags (run and model version) that record a choice."""
    return {VALUE_TAG: repr(float(info["value"])), INFO_TAG: json.dumps(dict(info), sort_keys=True)[:5000]}


def from_tags(tags: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The choice recorded in ``tags`` (:func:`to_tags`), or None when none is."""
    tags = tags or {}
    if INFO_TAG in tags:
        try:
            info = json.loads(tags[INFO_TAG])
            if isinstance(info, dict) and info.get("value") is not None:
                return info
        except (TypeError, ValueError):
            log.warning("Unreadable %s tag %r; reading %s", INFO_TAG, tags[INFO_TAG], VALUE_TAG)
    if tags.get(VALUE_TAG) not in (None, ""):
        return {
            "value": float(tags[VALUE_TAG]),
            "policy": None,
            "target": None,
            "target_met": None,
            "slice": None,
            "source": "version tag",
        }
    return None


def version_threshold(
    spec: ModelSpec, version_tags: Mapping[str, Any] | None, run_tags: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A model version's threshold: its tags, else its training run's, else :func:`spec_threshold`."""
    return from_tags(version_tags) or from_tags(run_tags) or spec_threshold(spec)


def value_of(info: Mapping[str, Any] | None, spec: ModelSpec) -> float:
    """The threshold of ``info``, or the spec's (see :func:`spec_threshold`) when there is none."""
    if info and info.get("value") is not None:
        return float(info["value"])
    return float(spec_threshold(spec)["value"])


def registered_threshold(spec: ModelSpec, version: str) -> dict[str, Any]:
    """The decision threshold registered model ``version`` was trained with.

    Read from the version's tags, else its training run's; a version from before thresholds were
    recorded gets the spec's fixed value, as it was served then.
    """
    from include.modelops.platform.tracking import run_info, version_info

    info = version_info(spec.name, version)
    run_tags = run_info(info["run_id"])["tags"] if info.get("run_id") else None
    return version_threshold(spec, info["tags"], run_tags)
