"""Stale work is recognised: a training run whose process is gone does not block retraining, and an
Asset event is read for what it asks now (its newest version), never for an older one."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from include.modelops.monitoring.policy import PolicyContext, TrainingRun, decide, live_training_runs
from include.modelops.pipelines.triggers import latest_event_extra
from include.modelops.rollout.record import older_than_champion
from tests.unit.test_retraining_policy import POLICY, T0, drifted

STALE_AFTER = timedelta(hours=12)


def test_a_training_run_running_for_days_is_ignored_as_stale_and_logged():
    runs = [
        TrainingRun("manual__killed", "running", T0 - timedelta(days=3)),
        TrainingRun("asset_triggered__fresh", "queued", T0 - timedelta(minutes=5)),
    ]
    live, ignored = live_training_runs(runs, T0, STALE_AFTER)
    assert [r.run_id for r in live] == ["asset_triggered__fresh"]
    assert len(ignored) == 1
    assert (
        "ignoring stale training run manual__killed (running, started 2026-02-27T00:00:00+00:00" in ignored[0]
    )
    assert "MODELOPS_TRAINING_RUN_STALE_AFTER_S is 43200 s" in ignored[0]


def test_a_stale_run_no_longer_suppresses_a_retrain_but_a_live_one_does():
    killed = [TrainingRun("manual__killed", "running", T0 - timedelta(days=3))]
    live, _ = live_training_runs(killed, T0, STALE_AFTER)
    assert (
        decide(POLICY, drifted(0), PolicyContext(now=T0, training_runs_active=len(live))).outcome == "retrain"
    )
    recent = [TrainingRun("manual__busy", "running", T0 - timedelta(hours=1))]
    live, ignored = live_training_runs(recent, T0, STALE_AFTER)
    d = decide(POLICY, drifted(0), PolicyContext(now=T0, training_runs_active=len(live)))
    assert (d.outcome, d.guard, ignored) == ("suppressed", "training_in_progress", [])


def _event(version, minutes):
    return SimpleNamespace(
        extra={"version": version} if version else {}, timestamp=T0 + timedelta(minutes=minutes)
    )


def test_the_newest_triggering_event_is_the_one_asked_for():
    # what `make up`'s scheduler hands a rollout run after two `make demo`s: both deployable_bento events
    from airflow.sdk import Asset

    asset = Asset(name="fraud_detection.deployable_bento", uri="modelops://fraud_detection/deployable_bento")
    events = {asset: [_event("1", 0), _event("2", 30), _event(None, 40)]}
    assert latest_event_extra(events, "version") == {"version": "2"}
    assert latest_event_extra(events, "version", asset_name="fraud_detection.retrain_requested") is None
    assert latest_event_extra({}, "version") is None


def test_a_version_not_newer_than_the_champion_is_older():
    assert older_than_champion("1", "6") and older_than_champion("6", "6")
    assert not older_than_champion("7", "6") and not older_than_champion("1", None)
