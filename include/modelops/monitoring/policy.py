"""The retraining policy: from one window's figures and the model's recent history to one
decision with its reason. Plain, typed Python with no I/O, so every rule is unit-tested.

Triggers (any of them, from ``monitoring:`` in the spec):

* ``drift``: the share of drifted features is at least ``drift_share_threshold``, in a window of
  at least ``min_rows_for_drift`` rows (smaller windows report drift but cannot trigger: on them
  Evidently's distances flag clean traffic);
* ``performance``: the primary metric on labelled live rows dropped by at least
  ``metric_drop_threshold`` from the version's offline holdout value over its whole bootstrap
  interval (even the optimistic end is that much worse), with at least
  ``min_labelled_positives_for_metric`` labelled rows of the rarest class;
* ``data_quality``: a data-quality failure, when ``retrain_on_quality_failure`` is on;

and a trigger must have held in ``consecutive_windows`` consecutive windows (hysteresis).
Guards, checked in this order, suppress a triggered retrain and are named in the reason:

1. ``same_window``: this window already requested a retrain (a re-run or a retry);
2. ``training_in_progress``: a training run of the model is queued or running (a run started or
   queued more than ``MODELOPS_TRAINING_RUN_STALE_AFTER_S`` ago is ignored as stale, and logged:
   its process was killed and it will never end by itself; see :func:`live_training_runs`);
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
    live_ci_low: float | None = None  # the live metric's 95% bootstrap interval
    live_ci_high: float | None = None
    metric_drop_least: float | None = None  # the drop at the interval's optimistic end; None: no interval
    labelled_rarest_class: int | None = None  # labelled rows of the rarest class; None: regression

    @classmethod
    def from_figures(cls, window: str, window_end: datetime, fig: dict[str, Any]) -> WindowFigures:
        """The figures ``monitor_window`` returns (its ``figures``), as the policy reads them."""
        metric = fig.get("metric")
        return cls(
            window=window,
            window_end=window_end,
            rows=fig["rows"],
            drift_share=fig.get("drift_share"),
            drifted_features=fig.get("top_drifted", []),
            quality_failures=fig.get("quality_failed", []),
            metric=metric,
            live_metric=fig.get(f"live_{metric}"),
            offline_metric=fig.get(f"offline_{metric}"),
            metric_drop=fig.get("metric_drop"),
            labelled_rows=fig["labelled_rows"],
            enough_rows=fig["status"] == "checked",
            live_ci_low=fig.get(f"live_{metric}_ci_low"),
            live_ci_high=fig.get(f"live_{metric}_ci_high"),
            metric_drop_least=fig.get("metric_drop_least"),
            labelled_rarest_class=fig.get("labelled_rarest_class"),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window_end"] = self.window_end.isoformat()
        d["drifted_features"], d["quality_failures"] = (
            list(self.drifted_features),
            list(self.quality_failures),
        )
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
class TrainingRun:
    """A queued or running training DAG run, as Airflow reports it."""

    run_id: str
    state: str
    started_at: datetime | None  # when it started; for a queued run, when it was queued


def live_training_runs(
    runs: Sequence[TrainingRun], now: datetime, stale_after: timedelta
) -> tuple[list[TrainingRun], list[str]]:
    """The runs that may still finish, and one line per stale run ignored (started before ``stale_after``)."""
    live, ignored = [], []
    for run in runs:
        if run.started_at is not None and now - run.started_at > stale_after:
            ignored.append(
                f"ignoring stale training run {run.run_id} ({run.state}, started "
                f"{run.started_at.isoformat(timespec='seconds')}, {_hours(now - run.started_at)} ago; "
                f"MODELOPS_TRAINING_RUN_STALE_AFTER_S is {stale_after.total_seconds():g} s): its process "
                "is gone, mark it failed in the UI"
            )
        else:
            live.append(run)
    return live, ignored


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
    notes: list[str] = field(default_factory=list)  # signals reported but not allowed to trigger, and why

    @property
    def triggered(self) -> bool:
        return bool(self.triggers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def triggers(policy: Monitoring, fig: WindowFigures) -> dict[str, str]:
    """The triggers that hold in this window alone, each with its explanation."""
    held: dict[str, str] = {}
    if (
        fig.drift_share is not None
        and fig.drift_share >= policy.drift_share_threshold
        and fig.rows >= policy.min_rows_for_drift
    ):
        top = ", ".join(fig.drifted_features[:5]) or "none named"
        held["drift"] = (
            f"{fig.drift_share:.0%} of features drifted (threshold {policy.drift_share_threshold:.0%}); "
            f"most drifted: {top}"
        )
    if (
        policy.metric_drop_threshold is not None
        and fig.metric_drop is not None
        and fig.metric_drop >= policy.metric_drop_threshold
        and _metric_blocker(policy, fig) is None
    ):
        interval = ""
        if fig.metric_drop_least is not None:
            interval = (
                f", 95% interval [{fig.live_ci_low:.4f}, {fig.live_ci_high:.4f}]: at least "
                f"{fig.metric_drop_least:.4f} below"
            )
        held["performance"] = (
            f"live {fig.metric} {fig.live_metric:.4f} on {fig.labelled_rows} labelled rows is "
            f"{fig.metric_drop:.4f} below the offline {fig.offline_metric:.4f}{interval} "
            f"(threshold {policy.metric_drop_threshold})"
        )
    if policy.retrain_on_quality_failure and fig.quality_failures:
        held["data_quality"] = "data quality failed: " + "; ".join(fig.quality_failures[:5])
    return held


def _metric_blocker(policy: Monitoring, fig: WindowFigures) -> str | None:
    """Why this window's live metric may not trigger (too few labels of a class, or the interval)."""
    need = policy.min_labelled_positives_for_metric
    if fig.labelled_rarest_class is not None and fig.labelled_rarest_class < need:
        return (
            f"live {fig.metric} is reported but cannot trigger: {fig.labelled_rarest_class} labelled rows of "
            f"the rarest class, monitoring.min_labelled_positives_for_metric is {need}"
        )
    if (
        policy.metric_drop_threshold is not None
        and fig.metric_drop is not None
        and fig.metric_drop >= policy.metric_drop_threshold
        and fig.metric_drop_least is not None
        and fig.metric_drop_least < policy.metric_drop_threshold
    ):
        return (
            f"live {fig.metric} {fig.live_metric:.4f} is {fig.metric_drop:.4f} below the offline "
            f"{fig.offline_metric:.4f}, but its 95% interval [{fig.live_ci_low:.4f}, {fig.live_ci_high:.4f}] "
            f"on {fig.labelled_rows} labelled rows reaches within {policy.metric_drop_threshold} of it "
            f"(at least {fig.metric_drop_least:.4f} below): not a trigger"
        )
    return None


def notes(policy: Monitoring, fig: WindowFigures) -> list[str]:
    """Signals this window reports that the policy does not let trigger, each with why."""
    out = []
    if fig.drift_share is not None and fig.rows < policy.min_rows_for_drift:
        out.append(
            f"drift ({fig.drift_share:.0%} of features) is reported but cannot trigger: {fig.rows} rows, "
            f"monitoring.min_rows_for_drift is {policy.min_rows_for_drift} (drift distances on smaller "
            "windows flag clean traffic)"
        )
    if fig.metric_drop is not None and (blocker := _metric_blocker(policy, fig)):
        out.append(blocker)
    return out


def _consecutive(policy: Monitoring, fig: WindowFigures, history: Sequence[PastDecision]) -> int:
    """How many consecutive windows, ending with this one, had a trigger (this one included)."""
    earlier = sorted(
        {d.window: d for d in history if d.window_end < fig.window_end}.values(),
        key=lambda d: d.window_end,
        reverse=True,
    )
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
        return Decision(
            "no_traffic",
            f"too little traffic for a verdict: {fig.rows} rows in {fig.window} "
            f"(monitoring.min_window_rows is {policy.min_window_rows})",
        )
    held = triggers(policy, fig)
    noted = notes(policy, fig)
    also = "".join(f"; {n}" for n in noted)
    if not held:
        share = "n/a" if fig.drift_share is None else f"{fig.drift_share:.0%}"
        perf = (
            f", live {fig.metric} drop {fig.metric_drop:.4f}"
            if fig.metric_drop is not None
            else ", no live metric yet"
        )
        return Decision(
            "no_action",
            f"no trigger: {share} of features drifted "
            f"(threshold {policy.drift_share_threshold:.0%}){perf}{also}",
            notes=noted,
        )
    names = list(held)
    why = "; ".join(held.values())
    n = _consecutive(policy, fig, ctx.history)
    if n < policy.consecutive_windows:
        return Decision(
            "no_action",
            f"trigger held in {n} of {policy.consecutive_windows} consecutive windows needed: {why}{also}",
            names,
            guard="consecutive_windows",
            notes=noted,
        )
    requests = [d for d in ctx.history if d.outcome == "retrain"]
    suppressed = _guard(policy, fig, ctx, requests)
    if suppressed:
        guard, because = suppressed
        return Decision(
            "suppressed",
            f"retrain suppressed by {guard}: {because}. Trigger: {why}{also}",
            names,
            guard,
            noted,
        )
    return Decision("retrain", f"retrain requested: {why}{also}", names, notes=noted)


def _guard(
    policy: Monitoring, fig: WindowFigures, ctx: PolicyContext, requests: Sequence[PastDecision]
) -> tuple[str, str] | None:
    if any(d.window == fig.window for d in requests):
        return "same_window", f"the window {fig.window} already requested a retrain"
    if ctx.training_runs_active:
        return "training_in_progress", f"{ctx.training_runs_active} training run(s) queued or running"
    last = max(requests, key=lambda d: d.at, default=None)
    if last is not None and ctx.now - last.at < timedelta(hours=policy.retrain_cooldown_hours):
        left = timedelta(hours=policy.retrain_cooldown_hours) - (ctx.now - last.at)
        return "cooldown", (
            f"the last retrain was requested at {last.at.isoformat(timespec='seconds')}, "
            f"cooldown {policy.retrain_cooldown_hours:g} h ({_hours(left)} left)"
        )
    week = [d for d in requests if ctx.now - d.at < WEEK]
    if len(week) >= policy.max_retrains_per_week:
        return "budget", (
            f"{len(week)} retrain(s) requested in the last 7 days, budget "
            f"{policy.max_retrains_per_week} per week"
        )
    if policy.max_gpu_hours_per_week is not None and ctx.gpu_hours_last_week >= policy.max_gpu_hours_per_week:
        return "budget", (
            f"{ctx.gpu_hours_last_week:.1f} GPU-hours of training in the last 7 days, budget "
            f"{policy.max_gpu_hours_per_week:g} per week"
        )
    since = [d for d in ctx.history if last is None or d.at > last.at]
    labelled = fig.labelled_rows + sum(d.labelled_rows for d in since if d.window != fig.window)
    if labelled < policy.min_new_labelled_rows:
        return "labels", (
            f"{labelled} newly labelled rows since the last retrain, {policy.min_new_labelled_rows} needed"
        )
    return None


def _hours(td: timedelta) -> str:
    return f"{td.total_seconds() / 3600:.1f} h"
