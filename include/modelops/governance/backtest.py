"""What a changed spec would have decided: the promotion gate replayed over the recorded history.

Before a team changes its gate (a threshold, the allowed drop against the champion, a slice rule),
it wants to know which past decisions the change would have flipped. Every training run leaves
its gate's whole input in MLflow (``evaluation/evaluation.json``: the candidate's, the champion's
and the baseline's metrics with their intervals, the slices, the latency), so the gate
(``evaluation.gate.decide``) runs again on it under the changed spec, run by run, and the result
sits next to what was recorded.

Read-only: nothing is written to the registry, to traffic or to any record; downloads go to a
scratch folder that is removed afterwards.

What it does not replay: each past candidate is judged against the champion of its time, as
recorded; if the changed gate would have promoted another version earlier, later candidates would
have met another champion, which this does not simulate. Rules whose inputs are computed during
evaluation (the bootstrap's resamples and level, which slices are evaluated) keep the values of
the recorded run; the backtest says so when the changed spec moves one of them.
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
from include.modelops.platform import reports, tracking
from include.modelops.platform.tags import TAG_DAG_RUN_ID, TAG_GATE_STATUS
from include.modelops.spec import ModelSpec

EVALUATION_ARTIFACT = "evaluation/evaluation.json"

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
class Backtest:
    model: str
    spec_path: str
    changes: list[tuple[str, Any, Any]]  # (dotted field, current value, changed value)
    candidates: list[Replayed]
    notes: list[str]

    @property
    def flips(self) -> list[Replayed]:
        return [c for c in self.candidates if c.flipped]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): d}


def spec_changes(current: ModelSpec, changed: ModelSpec) -> list[tuple[str, Any, Any]]:
    """The ``evaluation`` fields the changed spec sets differently, as (field, current, changed)."""
    a = _flat(current.evaluation.model_dump(mode="json"), "evaluation.")
    b = _flat(changed.evaluation.model_dump(mode="json"), "evaluation.")
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _training_runs(model: str) -> list[Any]:
    c = tracking.client()
    exp = c.get_experiment_by_name(model)
    if exp is None:
        raise BacktestError(f"{model} has no MLflow experiment: it was never trained here")
    runs, token = [], None
    while True:
        page = c.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{TAG_GATE_STATUS}` != ''",
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        runs += [r for r in page if r.data.tags.get(TAG_GATE_STATUS) in ("passed", "rejected")]
        token = page.token
        if not token:
            return runs


def run_backtest(model: str, changed: ModelSpec, *, current: ModelSpec, spec_path: str = "") -> Backtest:
    """Replay every recorded gate decision of ``model`` under ``changed``; nothing is written."""
    if changed.name != model:
        raise BacktestError(f"the changed spec is for {changed.name!r}, not {model!r}")
    runs = _training_runs(model)
    if not runs:
        raise BacktestError(f"{model} has no training run with a recorded gate decision to replay")
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
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Backtest(model, spec_path, changes, out, notes)


def render_text(bt: Backtest) -> str:
    """The backtest as ``make backtest`` prints it: the changes, each candidate then and now, the flips."""
    lines = [f"Backtest of {bt.model}'s promotion gate with {bt.spec_path or 'the changed spec'}"]
    if bt.changes:
        lines.append("Changed evaluation fields:")
        lines += [f"  {name}: {old!r} -> {new!r}" for name, old, new in bt.changes]
    else:
        lines.append("The changed spec's evaluation section is the same as the current one.")
    lines.append("")
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
    title = f"Backtest of {bt.model}'s promotion gate"
    body = (
        f'<h1>{e(title)}</h1><p class="muted">{e(bt.spec_path)}</p>'
        f"<h2>Changed evaluation fields</h2><ul>{changes or '<li>none</li>'}</ul>"
        f"<h2>Past candidates</h2><p>{len(bt.candidates)} replayed, {len(bt.flips)} flip.</p>"
        "<table><thead><tr><th>version</th><th>recorded</th><th>replayed</th><th></th>"
        f"<th>checks the changed gate fails</th><th>DAG run / MLflow run</th></tr></thead><tbody>{rows}</tbody></table>"
        f'{notes}<p class="muted">Nothing was written: the registry, the traffic and every record are as they were.</p>'
    )
    return reports.page(title, body, css="tr.flip td{background:#fff8c5}")
