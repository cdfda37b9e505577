"""What the training DAG's tasks hand each other through XCom, one TypedDict per task result.

Each task returns a small JSON-serialisable dict of ids, paths and figures (never a model or a
frame); these types name its keys, so a task reading another's result is checked against what
that task writes (``mypy``/``pyright``, and ``tests/unit/test_xcom_contracts.py`` at run time
on the functions' own ``return`` statements).
"""

from __future__ import annotations

from typing import Any, TypedDict


class Validated(TypedDict):
    """``validate_dataset``: the data that passed, with the MLflow run every later step logs to."""

    run_id: str
    data_path: str
    rows: int
    fingerprint: str | None
    report_html: str
    summary: str
    warnings: list[str]
    trigger_reason: str | None
    drift_report: str | None
    labelled_data: str | None


class Split(TypedDict):
    """``split_dataset``: train and holdout as Parquet files on the run's folder."""

    train_path: str
    holdout_path: str
    train_rows: int
    holdout_rows: int
    split: str


class Trained(TypedDict):
    """``train_candidate``: the training entrypoint's result (also the training pod's XCom file)."""

    run_id: str
    model_uri: str
    telemetry: dict[str, Any]


class Evaluated(TypedDict):
    """``evaluate_candidate``: the gate's verdict and where its evidence is."""

    passed: bool
    summary: str
    decision_path: str
    evaluation_path: str
    report_html: str
    champion_version: str | None


class Registered(TypedDict):
    """``register_candidate``: the new model version."""

    version: str
    model_uri: str
    url: str


class Card(TypedDict):
    """``generate_model_card``: the card's files and what evidence it lacks for the risk tier."""

    card_html: str | None
    card_md: str | None
    card_json: str | None
    missing_evidence: list[str]


class Packaged(TypedDict):
    """``package_bento``: the bento's tag."""

    bento_tag: str


class Smoked(TypedDict):
    """``smoke_serve_bento``: the skew check's verdict."""

    bento_tag: str
    ok: bool
    max_abs_diff: float | None


class Promoted(TypedDict):
    """``promote_to_champion``: the versions the aliases point at now."""

    champion: str
    previous: str | None


# --- the monitoring DAG ------------------------------------------------------------------------


class Monitored(TypedDict):
    """``monitor_window``: the window examined, its drift report and labelled rows, where they are."""

    run_id: str
    run_url: str | None
    status: str
    window: str
    window_end: str
    version: str | None
    report: str | None
    summary: str | None
    report_path: str | None
    labelled_data: str | None
    figures: dict[str, Any]


class _DecisionFields(TypedDict):
    """What every retrain decision says, decided now or read back."""

    outcome: str
    reason: str
    retrain: bool
    guard: str | None
    window: str
    figures: dict[str, Any]
    report: str | None
    run_url: str | None
    version: str | None
    labelled_data: str | None


class Decision(_DecisionFields):
    """``decide_retraining``: retrain or not, why, and what guard (if any) held it back."""

    triggers: list[str]


class RetrainRequest(TypedDict):
    """``request_retraining``: the ``<model>.retrain_requested`` event's extra (the training run's conf)."""

    reason: str
    window: str
    figures: dict[str, Any]
    drift_report: str | None
    monitoring_run: str | None
    labelled_data: str | None


class RecordedDecision(_DecisionFields):
    """A decision read back from MLflow for a window (``make demo-drift``, the audit)."""

    report_path: str | None
    rows: int
    labelled_rows: int


# --- the backtest DAG --------------------------------------------------------------------------


class Backtested(TypedDict):
    """``backtest``: where the HTML report is, how much was replayed, and every decision that flips."""

    report_html: str
    candidates: int
    windows: int
    gate_flips: list[str]
    window_flips: list[str]
