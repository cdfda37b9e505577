"""The retraining policy: triggers decide whether a window calls for retraining, guards
make sure it is requested once, and every outcome carries its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from include.modelops.monitoring.policy import Decision, PastDecision, PolicyContext, WindowFigures, decide
from include.modelops.spec import Monitoring

T0 = datetime(2026, 3, 2, tzinfo=UTC)
POLICY = Monitoring(
    drift_share_threshold=0.3, metric_drop_threshold=0.05, retrain_cooldown_hours=24, max_retrains_per_week=3
)


def window(i: int, **kw) -> WindowFigures:
    start, end = T0 + timedelta(days=i), T0 + timedelta(days=i + 1)
    base = dict(
        window=f"{start.isoformat()}/{end.isoformat()}",
        window_end=end,
        rows=5000,
        drift_share=0.0,
        drifted_features=[],
        labelled_rows=0,
    )
    return WindowFigures(**{**base, **kw})


def drifted(i: int, **kw) -> WindowFigures:
    return window(i, drift_share=0.5, drifted_features=["amount", "distance_from_home_km", "channel"], **kw)


def record(fig: WindowFigures, d: Decision, at: datetime) -> PastDecision:
    return PastDecision(
        window=fig.window,
        window_end=fig.window_end,
        at=at,
        outcome=d.outcome,
        triggered=d.triggered,
        labelled_rows=fig.labelled_rows,
    )


def test_window_without_drift_triggers_nothing():
    d = decide(POLICY, window(0, drift_share=0.1, drifted_features=["amount"]), PolicyContext(now=T0))
    assert d.outcome == "no_action" and not d.triggered
    assert "10% of features drifted" in d.reason


def test_drifted_window_triggers_and_names_the_top_drifted_features():
    d = decide(POLICY, drifted(0), PolicyContext(now=T0))
    assert d.outcome == "retrain" and d.triggers == ["drift"]
    assert "50% of features drifted" in d.reason
    assert "amount, distance_from_home_km, channel" in d.reason


def test_burst_of_five_drifted_windows_requests_exactly_one_retrain():
    history: list[PastDecision] = []
    outcomes = []
    for i in range(5):
        now = T0 + timedelta(minutes=i)  # five runs back to back (catch-up or manual)
        fig = drifted(i)
        # After the first request the training run is queued, then running.
        d = decide(POLICY, fig, PolicyContext(now=now, history=history, training_runs_active=1 if i else 0))
        history.append(record(fig, d, now))
        outcomes.append(d.outcome)
    assert outcomes == ["retrain", "suppressed", "suppressed", "suppressed", "suppressed"]


def test_rerun_of_the_same_window_does_not_request_again():
    fig = drifted(0)
    first = decide(POLICY, fig, PolicyContext(now=T0))
    again = decide(POLICY, fig, PolicyContext(now=T0 + timedelta(days=3), history=[record(fig, first, T0)]))
    assert again.outcome == "suppressed" and again.guard == "same_window"


def test_cooldown_suppresses_with_its_reason():
    first = drifted(0)
    history = [record(first, decide(POLICY, first, PolicyContext(now=T0)), T0)]
    d = decide(POLICY, drifted(1), PolicyContext(now=T0 + timedelta(hours=5), history=history))
    assert d.outcome == "suppressed" and d.guard == "cooldown"
    assert "cooldown 24 h (19.0 h left)" in d.reason and "most drifted: amount" in d.reason
    later = decide(POLICY, drifted(1), PolicyContext(now=T0 + timedelta(hours=25), history=history))
    assert later.outcome == "retrain"


def test_weekly_budget_suppresses_with_its_reason():
    policy = POLICY.model_copy(update={"max_retrains_per_week": 2, "retrain_cooldown_hours": 1})
    history, now = [], T0
    for i in range(2):
        now = T0 + timedelta(days=i * 2)
        fig = drifted(i)
        history.append(record(fig, decide(policy, fig, PolicyContext(now=now, history=history)), now))
    assert [h.outcome for h in history] == ["retrain", "retrain"]
    d = decide(policy, drifted(5), PolicyContext(now=T0 + timedelta(days=5), history=history))
    assert d.outcome == "suppressed" and d.guard == "budget"
    assert "2 retrain(s) requested in the last 7 days, budget 2 per week" in d.reason
    # A week after the first request the budget has room again.
    d = decide(policy, drifted(8), PolicyContext(now=T0 + timedelta(days=7, hours=1), history=history))
    assert d.outcome == "retrain"


def test_gpu_hour_budget_suppresses():
    policy = POLICY.model_copy(update={"max_gpu_hours_per_week": 10})
    d = decide(policy, drifted(0), PolicyContext(now=T0, gpu_hours_last_week=12.5))
    assert d.guard == "budget" and "12.5 GPU-hours" in d.reason


def test_performance_drop_triggers_without_feature_drift():
    fig = window(
        0,
        drift_share=0.0,
        metric="roc_auc",
        live_metric=0.71,
        offline_metric=0.86,
        metric_drop=0.15,
        labelled_rows=800,
    )
    d = decide(POLICY, fig, PolicyContext(now=T0))
    assert d.outcome == "retrain" and d.triggers == ["performance"]
    assert "live roc_auc 0.7100 on 800 labelled rows is 0.1500 below the offline 0.8600" in d.reason


def test_small_metric_drop_does_not_trigger():
    fig = window(
        0, metric="roc_auc", live_metric=0.85, offline_metric=0.86, metric_drop=0.01, labelled_rows=800
    )
    assert decide(POLICY, fig, PolicyContext(now=T0)).outcome == "no_action"


def test_data_quality_failure_triggers_only_when_configured():
    fig = window(0, quality_failures=["channel: 40.0% of rows unseen categories 'kiosk'"])
    assert decide(POLICY, fig, PolicyContext(now=T0)).outcome == "no_action"
    on = POLICY.model_copy(update={"retrain_on_quality_failure": True})
    d = decide(on, fig, PolicyContext(now=T0))
    assert d.outcome == "retrain" and "unseen categories 'kiosk'" in d.reason


def test_consecutive_windows_hysteresis():
    policy = POLICY.model_copy(update={"consecutive_windows": 2})
    first = drifted(0)
    d1 = decide(policy, first, PolicyContext(now=T0))
    assert d1.outcome == "no_action" and d1.guard == "consecutive_windows" and d1.triggered
    calm = window(1)
    history = [record(first, d1, T0)]
    d2 = decide(policy, calm, PolicyContext(now=T0 + timedelta(days=1), history=history))
    history.append(record(calm, d2, T0 + timedelta(days=1)))
    d3 = decide(policy, drifted(2), PolicyContext(now=T0 + timedelta(days=2), history=history))
    assert d3.outcome == "no_action", "a calm window in between resets the count"
    history.append(record(drifted(2), d3, T0 + timedelta(days=2)))
    d4 = decide(policy, drifted(3), PolicyContext(now=T0 + timedelta(days=3), history=history))
    assert d4.outcome == "retrain"


def test_too_few_new_labels_suppresses():
    policy = POLICY.model_copy(update={"min_new_labelled_rows": 500})
    d = decide(policy, drifted(0, labelled_rows=120), PolicyContext(now=T0))
    assert d.guard == "labels" and "120 newly labelled rows since the last retrain, 500 needed" in d.reason
    calm = window(0, labelled_rows=300)
    history = [PastDecision(calm.window, calm.window_end, T0, "no_action", False, 300)]
    d = decide(
        policy, drifted(1, labelled_rows=250), PolicyContext(now=T0 + timedelta(days=1), history=history)
    )
    assert d.outcome == "retrain", "labels of earlier windows since the last request count"


def test_empty_window_is_an_outcome_not_a_failure():
    d = decide(POLICY, window(0, rows=0, drift_share=None), PolicyContext(now=T0))
    assert d.outcome == "no_traffic" and "no traffic" in d.reason
    d = decide(POLICY, window(0, rows=12, drift_share=None, enough_rows=False), PolicyContext(now=T0))
    assert d.outcome == "no_traffic" and "12 rows" in d.reason


def test_drift_on_a_window_below_min_rows_for_drift_is_reported_but_cannot_trigger():
    small = drifted(0, rows=400)
    d = decide(POLICY, small, PolicyContext(now=T0))
    assert d.outcome == "no_action" and not d.triggered
    assert "drift (50% of features) is reported but cannot trigger: 400 rows" in d.reason
    assert (
        decide(POLICY.model_copy(update={"min_rows_for_drift": 300}), small, PolicyContext(now=T0)).outcome
        == "retrain"
    )


def test_metric_drop_whose_interval_reaches_the_threshold_does_not_trigger():
    fig = window(
        0,
        metric="roc_auc",
        live_metric=0.80,
        offline_metric=0.86,
        metric_drop=0.06,
        labelled_rows=2000,
        live_ci_low=0.72,
        live_ci_high=0.87,
        metric_drop_least=-0.01,
        labelled_rarest_class=60,
    )
    d = decide(POLICY, fig, PolicyContext(now=T0))
    assert d.outcome == "no_action" and "95% interval [0.7200, 0.8700]" in d.reason
    sure = window(
        0,
        metric="roc_auc",
        live_metric=0.70,
        offline_metric=0.86,
        metric_drop=0.16,
        labelled_rows=2000,
        live_ci_low=0.66,
        live_ci_high=0.74,
        metric_drop_least=0.12,
        labelled_rarest_class=60,
    )
    assert decide(POLICY, sure, PolicyContext(now=T0)).outcome == "retrain"
