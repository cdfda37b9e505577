"""The retraining policy: from one window's figures and the model's recent history to one
decision with its reason. Plain, typed Python with no I/O, so every rule is unit-tested.

Triggers (any of them, from ``monitoring:`` in the spec):

* ``drift``: the share of drifted features is at least ``drift_share_threshold``;
* ``performance``: the primary metric on labelled live rows dropped by at least
  ``metric_drop_threshold`` from the version's offline holdout value;
* ``data_quality``: a data-quality failure, when ``retrain_on_quality_failure`` is on;

and a trigger must have held in ``consecutive_windows`` consecutive windows (hysteresis).
Guards, checked in this order, suppress a triggered retrain and are named in the reason:

1. ``same_window``: this window already requested a retrain (a re-run or a retry);
2. ``training_in_progress``: a training run of the model is queued or running;
3. ``cooldown``: the last retrain request is younger than ``retrain_cooldown_hours``;
4. ``budget``: ``max_retrains_per_week`` requests in the last 7 days, or the GPU-hours of the
   last 7 days' training runs reached ``max_gpu_hours_per_week``;
5. ``labels``: fewer than ``min_new_labelled_rows`` labelled rows since the last request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from include.modelops.spec import Monitoring

Outcome = Literal["retrain", "suppressed", "no_action", "no_traffic"]
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class WindowFigures:
    """What one window's report found (the inputs of a decision)."""

    window: str  # the window's key, "start/end" in ISO
    window_end: datetime
    rows: int
    drift_share: float | None = None
    drifted_features: Sequence[str] = ()  # most drifted first
    quality_failures: Sequence[str] = ()
    metric: str | None = None
    live_metric: float | None = None
    offline_metric: float | None = None
    metric_drop: float | None = None
    labelled_rows: int = 0
    enough_rows: bool = True  # False: too little traffic for a verdict

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window_end"] = self.window_end.isoformat()
        d["drifted_features"], d["quality_failures"] = list(self.drifted_features), list(self.quality_failures)
        return d


@dataclass(frozen=True)
class PastDecision:
    """A decision recorded earlier for the same model (read back from MLflow)."""

    window: str
    window_end: datetime
    at: datetime
    outcome: Outcome
    triggered: bool  # whether a trigger held in that window, retrain or not
    labelled_rows: int = 0


@dataclass(frozen=True)
class PolicyContext:
    """The world around the decision: the clock, the history, Airflow and the GPU budget."""

    now: datetime
    history: Sequence[PastDecision] = ()
    training_runs_active: int = 0  # queued or running training DAG runs
    gpu_hours_last_week: float = 0.0


@dataclass(frozen=True)
class Decision:
    """The outcome for one window and the sentence that explains it."""

    outcome: Outcome
    reason: str
    triggers: list[str] = field(default_factory=list)  # trigger names that held: drift, performance, ...
    guard: str | None = None  # the guard that suppressed a triggered retrain

    @property
    def triggered(self) -> bool:
        return bool(self.triggers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def triggers(policy: Monitoring, fig: WindowFigures) -> dict[str, str]:
    """The triggers that hold in this window alone, each with its explanation."""
    held: dict[str, str] = {}
    if fig.drift_share is not None and fig.drift_share >= policy.drift_share_threshold:
        top = ", ".join(fig.drifted_features[:5]) or "none named"
        held["drift"] = (f"{fig.drift_share:.0%} of features drifted (threshold {policy.drift_share_threshold:.0%}); "
                         f"most drifted: {top}")
    if (policy.metric_drop_threshold is not None and fig.metric_drop is not None
            and fig.metric_drop >= policy.metric_drop_threshold):
        held["performance"] = (f"live {fig.metric} {fig.live_metric:.4f} on {fig.labelled_rows} labelled rows is "
                               f"{fig.metric_drop:.4f} below the offline {fig.offline_metric:.4f} "
                               f"(threshold {policy.metric_drop_threshold})")
    if policy.retrain_on_quality_failure and fig.quality_failures:
        held["data_quality"] = "data quality failed: " + "; ".join(fig.quality_failures[:5])
    return held


def _consecutive(policy: Monitoring, fig: WindowFigures, history: Sequence[PastDecision]) -> int:
    """How many consecutive windows, ending with this one, had a trigger (this one included)."""
    earlier = sorted({d.window: d for d in history if d.window_end < fig.window_end}.values(),
                     key=lambda d: d.window_end, reverse=True)
    n = 1
    for d in earlier[: policy.consecutive_windows - 1]:
        if not d.triggered:
            break
        n += 1
    return n


def decide(policy: Monitoring, fig: WindowFigures, ctx: PolicyContext) -> Decision:
    """The decision for one window: retrain, suppressed (by which guard), no action, or no traffic."""
    if fig.rows == 0:
        return Decision("no_traffic", f"no traffic: the window {fig.window} has no logged predictions")
    if not fig.enough_rows:
        return Decision("no_traffic", f"too little traffic for a verdict: {fig.rows} rows in {fig.window} "
                                      f"(monitoring.min_window_rows is {policy.min_window_rows})")
    held = triggers(policy, fig)
    if not held:
        share = "n/a" if fig.drift_share is None else f"{fig.drift_share:.0%}"
        perf = (f", live {fig.metric} drop {fig.metric_drop:.4f}" if fig.metric_drop is not None else
                ", no live metric yet")
        return Decision("no_action", f"no trigger: {share} of features drifted "
                                     f"(threshold {policy.drift_share_threshold:.0%}){perf}")
    names = list(held)
    why = "; ".join(held.values())
    n = _consecutive(policy, fig, ctx.history)
    if n < policy.consecutive_windows:
        return Decision("no_action", f"trigger held in {n} of {policy.consecutive_windows} consecutive windows "
                                     f"needed: {why}", names, guard="consecutive_windows")
    requests = [d for d in ctx.history if d.outcome == "retrain"]
    suppressed = _guard(policy, fig, ctx, requests)
    if suppressed:
        guard, because = suppressed
        return Decision("suppressed", f"retrain suppressed by {guard}: {because}. Trigger: {why}", names, guard)
    return Decision("retrain", f"retrain requested: {why}", names)


def _guard(policy: Monitoring, fig: WindowFigures, ctx: PolicyContext,
           requests: Sequence[PastDecision]) -> tuple[str, str] | None:
    if any(d.window == fig.window for d in requests):
        return "same_window", f"the window {fig.window} already requested a retrain"
    if ctx.training_runs_active:
        return "training_in_progress", f"{ctx.training_runs_active} training run(s) queued or running"
    last = max(requests, key=lambda d: d.at, default=None)
    if last is not None and ctx.now - last.at < timedelta(hours=policy.retrain_cooldown_hours):
        left = timedelta(hours=policy.retrain_cooldown_hours) - (ctx.now - last.at)
        return "cooldown", (f"the last retrain was requested at {last.at.isoformat(timespec='seconds')}, "
                            f"cooldown {policy.retrain_cooldown_hours:g} h ({_hours(left)} left)")
    week = [d for d in requests if ctx.now - d.at < WEEK]
    if len(week) >= policy.max_retrains_per_week:
        return "budget", (f"{len(week)} retrain(s) requested in the last 7 days, budget "
                          f"{policy.max_retrains_per_week} per week")
    if policy.max_gpu_hours_per_week is not None and ctx.gpu_hours_last_week >= policy.max_gpu_hours_per_week:
        return "budget", (f"{ctx.gpu_hours_last_week:.1f} GPU-hours of training in the last 7 days, budget "
                          f"{policy.max_gpu_hours_per_week:g} per week")
    since = [d for d in ctx.history if last is None or d.at > last.at]
    labelled = fig.labelled_rows + sum(d.labelled_rows for d in since if d.window != fig.window)
    if labelled < policy.min_new_labelled_rows:
        return "labels", (f"{labelled} newly labelled rows since the last retrain, "
                          f"{policy.min_new_labelled_rows} needed")
    return None


def _hours(td: timedelta) -> str:
    return f"{td.total_seconds() / 3600:.1f} h"
