"""What a training or rollout run prints at its end: every step, the outcome, where to look.

``outcome`` decides the exit code of ``demo``, ``run`` and ``demo-drift`` (did the candidate reach
production); ``print_summary`` prints the step table, the rollout's stages and the paths to open.
"""

from __future__ import annotations

from pathlib import Path

from include.modelops.settings import get_settings

# Exit codes: did the candidate reach production? (documented in `make help` and the README)
EXIT_PROMOTED, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_PROMOTED = 0, 1, 2, 3


def say(msg: str = "") -> None:
    print(msg, flush=True)


def print_rollout(rollout: dict) -> None:
    from include.modelops.rollout.analysis import Analysis, Check, render_table

    say(f"\nRollout of v{rollout.get('version')}: {rollout.get('status', 'not started')}")
    if rollout.get("first_deployment"):
        say("  first version: deployed at 100% after a health check; there was nothing to compare against")
    for stage in rollout.get("stages", []):
        result = stage.get("analysis")
        if result:
            table = render_table(
                Analysis(
                    [Check(**c) for c in result["checks"]],
                    result["canary_requests"],
                    result["stable_requests"],
                ),
                title=f"  stage {stage['name']} ({stage['traffic_percent']}% canary): {stage['outcome']}",
            )
            say("\n".join(f"    {line}" if i else line for i, line in enumerate(table.splitlines())))
        else:
            say(f"  stage {stage['name']}: {stage['outcome']} {stage.get('reason') or ''}")
    say(f"  Airflow log       {rollout.get('log_file')}")


def _approval_note(r: dict) -> str:
    """One line for the approval: a policy decision, or a human's answer from the HITL operator."""
    if not r:
        return ""
    if "chosen_options" in r:  # answered by a person in the Airflow UI or through the REST API
        who = (r.get("responded_by_user") or {}).get("id", "timeout")
        return f"{r['chosen_options'][0]} by {who}"
    return f"{r.get('decision', '')} by {r.get('by', '')}"


def outcome(summary: dict, rollout: dict | None = None, *, failed: bool = False) -> tuple[int, str]:
    """The run's exit code and its ``Outcome:`` line: did the candidate reach production, and if not, why.

    Args:
        summary: the training DAG run's summary (``summarize_run``); ``champion_version`` is the
            champion after the run (and after its rollout, when there was one).
        rollout: the rollout record when the candidate was rolled out, else None.
        failed: the DAG run failed (its exit code, or a failed step).

    Returns:
        ``(EXIT_PROMOTED | EXIT_FAILED | EXIT_NOT_PROMOTED, "Outcome: ...")``.
    """
    steps = summary.get("steps") or {}

    def result(task: str) -> dict:
        return (steps.get(task) or {}).get("result") or {}

    champion = summary.get("champion_version")
    kept = f"champion v{champion} kept" if champion else "no champion yet"
    version = result("register_candidate").get("version")
    candidate = f"v{version}" if version else "the candidate"
    evaluated = result("evaluate_candidate")
    if failed:
        stopped = ", ".join(summary.get("failed_steps") or []) or "a step (see the Airflow log)"
        return EXIT_FAILED, f"Outcome: not promoted ({kept}): the run failed at {stopped}."
    if rollout is not None:
        status = rollout.get("status") or "not started"
        if status == "promoted":
            return (
                EXIT_PROMOTED,
                f"Outcome: {candidate} is the new champion. {evaluated.get('summary', '')}".rstrip(),
            )
        if status == "rolled_back":
            stage = (rollout.get("failure") or {}).get("stage")
            where = f"at {stage}" if stage else "before its first stage"
            return EXIT_NOT_PROMOTED, (
                f"Outcome: not promoted ({kept}): {candidate} was rolled back {where}: "
                f"{rollout.get('reason') or 'see the rollout log'}"
            )
        return EXIT_FAILED, (
            f"Outcome: not promoted ({kept}): the rollout of {candidate} did not complete "
            f"({status}); see {rollout.get('log_file')}"
        )
    if (steps.get("promote_to_champion") or {}).get("state") == "success":
        return (
            EXIT_PROMOTED,
            f"Outcome: {candidate} is the new champion. {evaluated.get('summary', '')}".rstrip(),
        )
    if evaluated and not evaluated.get("passed", True):
        return EXIT_NOT_PROMOTED, f"Outcome: not promoted ({kept}). {evaluated.get('summary', 'REJECTED')}"
    approvals = [t for t in steps if t == "approve" or t.startswith("approve_")]
    answers = [f"{t}: {_approval_note(result(t))}" for t in approvals if result(t)]
    skipped = next((t for t, r in steps.items() if (r or {}).get("state") == "skipped"), None)
    why = "; ".join(answers) or (f"{skipped} was skipped" if skipped else "it stopped before production")
    return EXIT_NOT_PROMOTED, f"Outcome: not promoted ({kept}): {candidate} passed the gate; {why}."


def print_summary(
    summary: dict,
    *,
    dag_s: float,
    total_s: float,
    log_file: Path,
    rollout: dict | None = None,
    failed: bool = False,
) -> int:
    """Print every step, the outcome and where to look; return the exit code (see ``outcome``)."""
    s = get_settings()
    steps = summary["steps"]

    def result(task: str) -> dict:
        return steps.get(task, {}).get("result") or {}

    say("\n" + "=" * 78)
    say(f"Training run of '{summary['model']}'  ({summary['dag_run_id']})")
    say("=" * 78)
    notes = {
        "validate_dataset": lambda r: r.get("summary", ""),
        "split_dataset": lambda r: f"{r.get('train_rows', 0):,} train / {r.get('holdout_rows', 0):,} holdout, "
        f"{r.get('split', '')}",
        "train_candidate": lambda r: f"MLflow run {r.get('run_id', '')}",
        "evaluate_candidate": lambda r: r.get("summary", ""),
        "register_candidate": lambda r: f"version {r.get('version', '')}",
        "generate_model_card": lambda r: r.get("card_html", ""),
        "approve": _approval_note,
        "package_bento": lambda r: r.get("bento_tag", ""),
        "smoke_serve_bento": lambda r: f"served predictions match offline (max |diff| {r.get('max_abs_diff')})"
        if r
        else "",
        "promote_to_champion": lambda r: f"champion -> v{r.get('champion')} (previous: {r.get('previous')})"
        if r
        else "",
        "update_model_card": lambda r: "regenerated with the approval and alias history" if r else "",
    }
    for task, fn in notes.items():
        state = steps.get(task, {}).get("state") or "not run"
        try:
            note = fn(result(task))
        except Exception:  # a summary line must never hide the rest
            note = ""
        if task == "promote_to_champion" and task not in steps and rollout is not None:
            state, note = "-", f"the {summary['model']}_rollout DAG moves champion (below)"
        say(f"  {task:<22} {state:<15} {note}")
    evaluated = result("evaluate_candidate")
    if rollout is not None:
        print_rollout(rollout)
    code, line = outcome(summary, rollout, failed=failed)
    say("")
    say(line)
    say("\nWhere to look:")
    say(
        f"  MLflow store      {s.state_dir / 'mlflow'}  (UI: `make up`, or `mlflow ui --backend-store-uri "
        f"sqlite:///{s.state_dir / 'mlflow' / 'mlflow.db'}`)"
    )
    say(f"  Airflow home      {s.state_dir / 'airflow'}  (UI: `make up`)")
    if result("package_bento"):
        say(
            f"  Bento             {result('package_bento').get('bento_tag')}  (BENTOML_HOME={s.state_dir / 'bentoml'}, the store the DAG runs use; "
            f"serve it: `make serve`)"
        )
    card = _current_card(
        summary["model"],
        result("register_candidate").get("version"),
        result("generate_model_card").get("card_html"),
    )
    if card:
        say(f"  Model card        {card}")
    if evaluated:
        say(f"  Evaluation report {evaluated.get('report_html')}")
    say(f"  Run folder        {summary.get('run_dir')}")
    say(f"  Airflow log       {log_file}")
    say(f"\nDAG run took {dag_s:.0f} s; the whole command {total_s:.0f} s.")
    return code


def _current_card(model: str, version: str | None, fallback: str | None) -> str | None:
    """The version's current card: the local copy every regeneration (training, rollout, rollback) rewrites."""
    from include.modelops.governance.model_card import card_dir

    current = card_dir(model, str(version)) / "model_card.html" if version else None
    return str(current) if current is not None and current.exists() else fallback
