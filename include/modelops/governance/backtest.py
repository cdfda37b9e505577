"""What a changed spec would have decided: the gate and the retrain policy replayed over the history.

Before a team changes its gate (a threshold, the allowed drop against the champion, a slice rule),
it wants to know which past decisions the change would have flipped. Every training run leaves
its gate's whole input in MLflow (``evaluation/evaluation.json``: the candidate's, the champion's
and the baseline's metrics with their intervals, the slices, the latency), so the gate
(``evaluation.gate.decide``) runs again on it under the changed spec, run by run, and the result
sits next to what was recorded. Every monitoring run leaves its window's figures
(``drift/drift_summary.json``: drift share, the live metric and its interval, labelled rows), so
the retraining policy (``monitoring.policy.decide``) runs again on them in time order, each window
remembering the replay's own earlier decisions (cooldown, budget, consecutive windows), as it
would have.

Read-only: nothing is written to the registry, to traffic or to any record; downloads go to a
scratch folder that is removed afterwards.

What it does not replay: each past candidate is judged against the champion of its time, as
recorded; if the changed gate would have promoted another version earlier, later candidates would
have met another champion, which this does not simulate. Rules whose inputs are computed during
evaluation (the bootstrap's resamples and level, which slices are evaluated) keep the values of
the recorded run; the backtest says so when the changed spec moves one of them. A window the
monitoring DAG found too small for a verdict stays so (``min_window_rows`` is applied when the
window is read); the live state a guard read then (a training run already queued) is taken as
recorded; the GPU-hours budget is not replayed (the hours at the time are not recorded).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.modelops.evaluation.gate import decide
from include.modelops.monitoring.policy import PastDecision, PolicyContext, WindowFigures
from include.modelops.monitoring.policy import decide as decide_retraining
from include.modelops.platform import reports, tracking
from include.modelops.platform.tags import (
    KIND_MONITORING,
    MONITORING,
    TAG_DAG_RUN_ID,
    TAG_GATE_STATUS,
    TAG_KIND,
)
from include.modelops.spec import ModelSpec

EVALUATION_ARTIFACT = "evaluation/evaluation.json"
SUMMARY_ARTIFACT = "drift/drift_summary.json"

# Evaluation settings the recorded evidence was computed with: changing them cannot be replayed.
COMPUTED_AT_EVALUATION = ("bootstrap", "threshold.", "primary_metric")


class BacktestError(LookupError):
    """Nothing to replay: no such model, or no run with recorded evaluation evidence."""


@dataclass
class Replayed:
    """One past candidate: what the gate said then, what the changed spec's gate says now."""

    run_id: str
    dag_run_id: str | None
    version: str | None
    started_at: str | None
    recorded: str  # "passed" or "rejected", as the run's gate tag says
    replayed: str
    recorded_failed: list[str] = field(default_factory=list)
    replayed_failed: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def flipped(self) -> bool:
        return self.recorded != self.replayed


@dataclass
class ReplayedWindow:
    """One monitoring window: the retrain decision recorded then, the changed policy's now."""

    window: str
    decided_at: str
    recorded: str  # retrain, suppressed, no_action, no_traffic
    replayed: str
    recorded_reason: str = ""
    replayed_reason: str = ""

    @property
    def flipped(self) -> bool:
        return self.recorded != self.replayed


@dataclass
class Backtest:
    model: str
    spec_path: str
    changes: list[tuple[str, Any, Any]]  # (dotted field, current value, changed value)
    candidates: list[Replayed]
    notes: list[str]
    windows: list[ReplayedWindow] = field(default_factory=list)

    @property
    def flips(self) -> list[Replayed]:
        return [c for c in self.candidates if c.flipped]

    @property
    def window_flips(self) -> list[ReplayedWindow]:
        return [w for w in self.windows if w.flipped]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): d}


def spec_changes(current: ModelSpec, changed: ModelSpec) -> list[tuple[str, Any, Any]]:
    """The ``evaluation`` and ``monitoring`` fields the changed spec sets differently: (field, current, changed)."""
    a = _flat(
        {
            "evaluation": current.evaluation.model_dump(mode="json"),
            "monitoring": current.monitoring.model_dump(mode="json"),
        }
    )
    b = _flat(
        {
            "evaluation": changed.evaluation.model_dump(mode="json"),
            "monitoring": changed.monitoring.model_dump(mode="json"),
        }
    )
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _monitoring_runs(model: str) -> list[Any]:
    c = tracking.client()
    exp = c.get_experiment_by_name(model)
    if exp is None:
        return []
    decided = [
        r
        for r in tracking.all_runs(exp.experiment_id, f"tags.`{TAG_KIND}` = '{KIND_MONITORING}'")
        if r.data.tags.get(f"{MONITORING}outcome") and r.data.tags.get(f"{MONITORING}decided_at")
    ]
    return sorted(decided, key=lambda r: r.data.tags[f"{MONITORING}decided_at"])


def replay_windows(model: str, changed: ModelSpec, scratch: Path, notes: list[str]) -> list[ReplayedWindow]:
    """Every recorded retrain decision, in time order, under the changed spec's policy."""
    out: list[ReplayedWindow] = []
    memory: list[PastDecision] = []  # the replay's own decisions: what its guards remember
    for run in _monitoring_runs(model):
        t = run.data.tags
        try:
            local = tracking.client().download_artifacts(
                run.info.run_id, SUMMARY_ARTIFACT, str(scratch / run.info.run_id)
            )
            figures = json.loads(Path(local).read_text())["figures"]
        except Exception as exc:  # noqa: BLE001 - an old run without its summary is said and skipped
            notes.append(
                f"monitoring run {run.info.run_id}: no readable {SUMMARY_ARTIFACT} ({exc}); not replayed"
            )
            continue
        window, end = t[f"{MONITORING}window"], datetime.fromisoformat(t[f"{MONITORING}window_end"])
        at = datetime.fromisoformat(t[f"{MONITORING}decided_at"])
        fig = WindowFigures.from_figures(window, end, figures)
        live_guard = t.get(f"{MONITORING}guard") == "training_in_progress"
        ctx = PolicyContext(now=at, history=list(memory), training_runs_active=1 if live_guard else 0)
        decision = decide_retraining(changed.monitoring, fig, ctx)
        memory.append(
            PastDecision(
                window=window,
                window_end=end,
                at=at,
                outcome=decision.outcome,
                triggered=bool(decision.triggers),
                labelled_rows=fig.labelled_rows,
            )
        )
        out.append(
            ReplayedWindow(
                window=window,
                decided_at=at.isoformat(timespec="seconds"),
                recorded=t[f"{MONITORING}outcome"],
                replayed=decision.outcome,
                recorded_reason=t.get(f"{MONITORING}reason", ""),
                replayed_reason=decision.reason,
            )
        )
    return out


def _training_runs(model: str) -> list[Any]:
    c = tracking.client()
    exp = c.get_experiment_by_name(model)
    if exp is None:
        raise BacktestError(f"{model} has no MLflow experiment: it was never trained here")
    runs = tracking.all_runs(
        exp.experiment_id, f"tags.`{TAG_GATE_STATUS}` != ''", ["attributes.start_time ASC"]
    )
    return [r for r in runs if r.data.tags.get(TAG_GATE_STATUS) in ("passed", "rejected")]


def run_backtest(model: str, changed: ModelSpec, *, current: ModelSpec, spec_path: str = "") -> Backtest:
    """Replay every recorded gate decision of ``model`` under ``changed``; nothing is written."""
    if changed.name != model:
        raise BacktestError(f"the changed spec is for {changed.name!r}, not {model!r}")
    runs = _training_runs(model)
    versions = {
        mv.run_id: str(mv.version) for mv in tracking.client().search_model_versions(f"name = '{model}'")
    }
    changes = spec_changes(current, changed)
    notes = [
        f"{name} changed ({old!r} -> {new!r}): the recorded evidence was computed with the old value, "
        "so the replay keeps it for that rule"
        for name, old, new in changes
        if any(name.startswith(f"evaluation.{c}") for c in COMPUTED_AT_EVALUATION)
    ]
    scratch = tracking.scratch_dir()
    out: list[Replayed] = []
    try:
        for run in runs:
            tags = run.data.tags
            try:
                local = tracking.client().download_artifacts(
                    run.info.run_id, EVALUATION_ARTIFACT, str(scratch)
                )
                evaluation = json.loads(Path(local).read_text())
            except Exception as exc:  # an old run without the artifact: said, and skipped
                notes.append(
                    f"run {run.info.run_id}: no readable {EVALUATION_ARTIFACT} ({exc}); not replayed"
                )
                continue
            decision = decide(changed, evaluation)
            recorded_failed = []
            try:
                recorded_local = tracking.client().download_artifacts(
                    run.info.run_id, "evaluation/decision.json", str(scratch)
                )
                recorded_failed = json.loads(Path(recorded_local).read_text()).get("failed_checks") or []
            except Exception:  # noqa: S110 - the recorded failed checks are a detail; the tag is the verdict
                pass
            out.append(
                Replayed(
                    run_id=run.info.run_id,
                    dag_run_id=tags.get(TAG_DAG_RUN_ID),
                    version=versions.get(run.info.run_id),
                    started_at=datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(
                        timespec="seconds"
                    )
                    if run.info.start_time
                    else None,
                    recorded=tags[TAG_GATE_STATUS],
                    replayed="passed" if decision["passed"] else "rejected",
                    recorded_failed=list(recorded_failed),
                    replayed_failed=list(decision["failed_checks"]),
                    summary=decision["summary"],
                )
            )
        windows = replay_windows(model, changed, scratch, notes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not out and not windows:
        raise BacktestError(f"{model} has no recorded gate or retrain decision to replay")
    return Backtest(model, spec_path, changes, out, notes, windows)


def render_text(bt: Backtest) -> str:
    """The backtest as ``make backtest`` prints it: the changes, each candidate then and now, the flips."""
    lines = [
        f"Backtest of {bt.model}'s promotion gate and retrain policy with {bt.spec_path or 'the changed spec'}"
    ]
    if bt.changes:
        lines.append("Changed fields:")
        lines += [f"  {name}: {old!r} -> {new!r}" for name, old, new in bt.changes]
    else:
        lines.append(
            "The changed spec's evaluation and monitoring sections are the same as the current ones."
        )
    lines.append("")
    if not bt.candidates:
        lines.append("No training run with a recorded gate decision.")
    lines.append(f"  {'version':<8} {'recorded':<9} {'replayed':<9} {'':<6} DAG run / MLflow run")
    for c in bt.candidates:
        mark = "FLIPS" if c.flipped else ""
        lines.append(
            f"  {('v' + c.version) if c.version else '-':<8} {c.recorded:<9} {c.replayed:<9} {mark:<6} "
            f"{c.dag_run_id or '-'} / {c.run_id}"
        )
        if c.flipped:
            why = c.replayed_failed if c.replayed == "rejected" else c.recorded_failed
            verb = "would fail" if c.replayed == "rejected" else "no longer fails"
            lines.append(f"  {'':<8} {verb}: {', '.join(why) or 'see the summary'}")
            lines.append(f"  {'':<8} {c.summary}")
    lines.append("")
    flips = bt.flips
    lines.append(
        f"{len(bt.candidates)} past candidate(s) replayed: {len(flips)} decision(s) flip"
        + (
            " ("
            + ", ".join(
                f"{'v' + c.version if c.version else c.run_id[:8]} {c.recorded} -> {c.replayed}"
                for c in flips
            )
            + ")"
            if flips
            else ""
        )
        + f", {len(bt.candidates) - len(flips)} stay the same."
    )
    if bt.windows:
        lines += ["", f"  {'monitoring window':<52} {'recorded':<11} {'replayed':<11}"]
        for w in bt.windows:
            lines.append(f"  {w.window:<52} {w.recorded:<11} {w.replayed:<11} {'FLIPS' if w.flipped else ''}")
            if w.flipped:
                lines.append(f"  {'':<4}now: {w.replayed_reason}")
        wf = bt.window_flips
        lines.append(
            f"{len(bt.windows)} monitoring window(s) replayed: {len(wf)} decision(s) flip"
            + (" (" + ", ".join(f"{w.window} {w.recorded} -> {w.replayed}" for w in wf) + ")" if wf else "")
            + f", {len(bt.windows) - len(wf)} stay the same."
        )
    lines += [f"Note: {n}" for n in bt.notes]
    lines.append("Nothing was written: the registry, the traffic and every record are as they were.")
    return "\n".join(lines) + "\n"


FLIP_CLASS = ' class="flip"'


def render_html(bt: Backtest) -> str:
    """The same as one self-contained page (``--html``)."""
    e = reports.escape
    rows = "\n".join(
        f"<tr{FLIP_CLASS if c.flipped else ''}><td>{e('v' + c.version if c.version else '-')}</td>"
        f"<td>{reports.badge(c.recorded, c.recorded == 'passed')}</td>"
        f"<td>{reports.badge(c.replayed, c.replayed == 'passed')}</td>"
        f"<td>{'flips' if c.flipped else ''}</td><td>{e(', '.join(c.replayed_failed))}</td>"
        f"<td><code>{e(c.dag_run_id or '-')}</code><br><code>{e(c.run_id)}</code></td></tr>"
        for c in bt.candidates
    )
    changes = "".join(f"<li><code>{e(n)}</code>: {e(repr(o))} → {e(repr(v))}</li>" for n, o, v in bt.changes)
    notes = "".join(f'<div class="note warn">{e(n)}</div>' for n in bt.notes)
    window_rows = "\n".join(
        f"<tr{FLIP_CLASS if w.flipped else ''}><td><code>{e(w.window)}</code></td><td>{e(w.recorded)}</td>"
        f"<td>{e(w.replayed)}</td><td>{'flips' if w.flipped else ''}</td><td>{e(w.replayed_reason)}</td></tr>"
        for w in bt.windows
    )
    title = f"Backtest of {bt.model}'s promotion gate and retrain policy"
    body = (
        f'<h1>{e(title)}</h1><p class="muted">{e(bt.spec_path)}</p>'
        f"<h2>Changed fields</h2><ul>{changes or '<li>none</li>'}</ul>"
        f"<h2>Past candidates</h2><p>{len(bt.candidates)} replayed, {len(bt.flips)} flip.</p>"
        "<table><thead><tr><th>version</th><th>recorded</th><th>replayed</th><th></th>"
        f"<th>checks the changed gate fails</th><th>DAG run / MLflow run</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<h2>Monitoring windows</h2><p>{len(bt.windows)} replayed, {len(bt.window_flips)} flip.</p>"
        "<table><thead><tr><th>window</th><th>recorded</th><th>replayed</th><th></th>"
        f"<th>the changed policy's reason</th></tr></thead><tbody>{window_rows}</tbody></table>"
        f'{notes}<p class="muted">Nothing was written: the registry, the traffic and every record are as they were.</p>'
    )
    return reports.page(title, body, css="tr.flip td{background:#fff8c5}")
