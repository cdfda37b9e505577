"""What `make demo` / `make run` say at the end, and their exit code: did the candidate reach production?"""

from __future__ import annotations

import pytest

from include.modelops.cli.report import EXIT_FAILED, EXIT_NOT_PROMOTED, EXIT_PROMOTED, outcome, print_summary


def run_summary(
    *,
    champion: str | None,
    version: str = "2",
    passed: bool = True,
    promoted: bool = False,
    failed_steps: tuple[str, ...] = (),
    approval: dict | None = None,
) -> dict:
    verdict = "PASSED: auc 0.91 vs champion 0.90" if passed else "REJECTED: auc 0.80 < min 0.85"
    steps = {
        "validate_dataset": {"state": "success", "result": {"summary": "12 expectations passed"}},
        "evaluate_candidate": {"state": "success", "result": {"passed": passed, "summary": verdict}},
        "register_candidate": {"state": "success", "result": {"version": version}},
        "approve": {"state": "success" if passed else "skipped", "result": approval},
        "package_bento": {"state": "success" if promoted else "skipped", "result": None},
    }
    if promoted:
        steps["promote_to_champion"] = {
            "state": "success",
            "result": {"champion": version, "previous": champion},
        }
    for step in failed_steps:
        steps[step] = {"state": "failed", "result": None}
    return {
        "model": "tiny",
        "dag_run_id": "manual__1",
        "steps": steps,
        "champion_version": champion,
        "failed_steps": list(failed_steps),
        "run_dir": "/tmp/run",
    }


def test_gate_rejection_without_a_champion_says_not_promoted_and_exits_3():
    code, line = outcome(run_summary(champion=None, version="1", passed=False))
    assert code == EXIT_NOT_PROMOTED == 3
    assert line == "Outcome: not promoted (no champion yet). REJECTED: auc 0.80 < min 0.85"


def test_gate_rejection_names_the_champion_that_was_kept():
    code, line = outcome(run_summary(champion="1", passed=False))
    assert code == EXIT_NOT_PROMOTED
    assert line.startswith("Outcome: not promoted (champion v1 kept). REJECTED:")


def test_promotion_without_rollout_exits_0():
    code, line = outcome(run_summary(champion="2", promoted=True))
    assert code == EXIT_PROMOTED == 0
    assert line.startswith("Outcome: v2 is the new champion. PASSED")


def test_rollback_names_version_stage_and_kept_champion_and_exits_3():
    rollout = {
        "version": "2",
        "status": "rolled_back",
        "failure": {"stage": "canary_10", "reason": "error_rate"},
        "reason": "error_rate 0.5 > 0.01",
    }
    code, line = outcome(run_summary(champion="1"), rollout)
    assert code == EXIT_NOT_PROMOTED
    assert (
        line
        == "Outcome: not promoted (champion v1 kept): v2 was rolled back at canary_10: error_rate 0.5 > 0.01"
    )


def test_rollback_of_a_first_version_before_any_stage_never_prints_none():
    rollout = {
        "version": "1",
        "status": "rolled_back",
        "failure": None,
        "reason": "the rollout could not start (see prepare_rollout's log)",
    }
    code, line = outcome(run_summary(champion=None, version="1"), rollout)
    assert code == EXIT_NOT_PROMOTED
    assert "None" not in line
    assert line == (
        "Outcome: not promoted (no champion yet): v1 was rolled back before its first stage: "
        "the rollout could not start (see prepare_rollout's log)"
    )


def test_rollout_that_promoted_exits_0():
    code, line = outcome(run_summary(champion="2"), {"version": "2", "status": "promoted"})
    assert code == EXIT_PROMOTED
    assert line.startswith("Outcome: v2 is the new champion.")


def test_rollout_that_did_not_complete_is_a_failed_run():
    code, line = outcome(
        run_summary(champion="1"), {"version": "2", "status": "running", "log_file": "/x.log"}
    )
    assert code == EXIT_FAILED == 1
    assert "the rollout of v2 did not complete (running); see /x.log" in line


def test_failed_step_exits_1_and_names_the_step():
    code, line = outcome(run_summary(champion="1", failed_steps=("train_candidate",)), failed=True)
    assert code == EXIT_FAILED
    assert line == "Outcome: not promoted (champion v1 kept): the run failed at train_candidate."


def test_rejecting_approver_is_named_and_exits_3():
    answer = {"chosen_options": ["Reject"], "responded_by_user": {"id": "alice"}}
    code, line = outcome(run_summary(champion="1", approval=answer))
    assert code == EXIT_NOT_PROMOTED
    assert line == "Outcome: not promoted (champion v1 kept): v2 passed the gate; approve: Reject by alice."


@pytest.mark.parametrize("passed, promoted, expected", [(False, False, 3), (True, True, 0)])
def test_summary_prints_the_outcome_and_returns_its_exit_code(capsys, tmp_path, passed, promoted, expected):
    summary = run_summary(champion=None if not promoted else "2", passed=passed, promoted=promoted)
    code = print_summary(summary, dag_s=1, total_s=2, log_file=tmp_path / "run.log")
    assert code == expected
    assert outcome(summary)[1] in capsys.readouterr().out
