"""Each training task returns exactly the keys its XCom contract (pipelines/contracts.py) names.

Read from the source: every ``return {...}`` of a task function (and of the functions whose dict
a task passes on) must have the TypedDict's keys, no more, no fewer; a task reading a key
another task does not write is then a type error, not a KeyError in production.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from include.modelops.pipelines import contracts

ROOT = Path(__file__).parents[2]
TRAINING = ROOT / "include/modelops/pipelines/training.py"


def _returned_dicts(path: Path, function: str, variable: str | None = None) -> list[set[str]]:
    """Key sets of the dict literals ``function`` returns (or assigns to ``variable``)."""
    tree = ast.parse(path.read_text())
    [fn] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    found = []
    for node in ast.walk(fn):
        value = None
        if variable is None and isinstance(node, ast.Return):
            value = node.value
        elif variable is not None and isinstance(node, ast.Assign):
            if any(getattr(t, "id", None) == variable for t in node.targets):
                value = node.value
        if isinstance(value, ast.Dict):
            found.append({ast.literal_eval(k) for k in value.keys})
    return found


def _annotation(function: str) -> str:
    tree = ast.parse(TRAINING.read_text())
    [fn] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    return ast.unparse(fn.returns)


CASES = [
    ("validate_dataset", TRAINING, "validate_dataset", None),
    ("split_dataset", TRAINING, "split_dataset", None),
    ("train_candidate", ROOT / "include/modelops/training/entrypoint.py", "train", "result"),
    ("evaluate_candidate", TRAINING, "evaluate_candidate", None),
    ("register_candidate", TRAINING, "register_candidate", None),
    ("generate_model_card", TRAINING, "generate_model_card", None),
    ("package_bento", TRAINING, "package_bento", None),
    ("smoke_serve_bento", TRAINING, "smoke_serve_bento", None),
    ("promote", ROOT / "include/modelops/platform/tracking.py", "promote_to_champion", None),
]


@pytest.mark.parametrize(("task", "path", "function", "variable"), CASES, ids=[c[0] for c in CASES])
def test_a_task_returns_the_keys_its_contract_names(task, path, function, variable):
    contract = getattr(contracts, _annotation(task))
    keys = set(typing.get_type_hints(contract))
    returned = _returned_dicts(path, function, variable)
    assert returned, f"{function} returns no dict literal to check"
    for found in returned:
        assert found == keys, f"{task} returns {sorted(found)}; {contract.__name__} names {sorted(keys)}"


# --- the monitoring and rollout DAGs: each function's return annotation names its contract ------

MONITORING = ROOT / "include/modelops/pipelines/monitoring.py"
STAGES = ROOT / "include/modelops/rollout/stages.py"
SHADOW = ROOT / "include/modelops/rollout/shadow.py"
BACKTEST = ROOT / "include/modelops/pipelines/backtest.py"

TYPED = [
    (MONITORING, "monitor_window"),
    (MONITORING, "decide_retraining"),
    (MONITORING, "retrain_request"),
    (MONITORING, "recorded_decision"),
    (STAGES, "prepare"),
    (STAGES, "check_stage"),
    (STAGES, "promote"),
    (STAGES, "rollback"),
    (STAGES, "outcome"),
    (STAGES, "restore_previous"),
    (SHADOW, "check_shadow"),
    (BACKTEST, "run"),
]


def _contract_of(path: Path, function: str) -> type:
    from include.modelops.rollout import contracts as rollout_contracts

    tree = ast.parse(path.read_text())
    [fn] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    name = ast.unparse(fn.returns).removeprefix("contracts.").removesuffix(" | None")
    module = rollout_contracts if "/rollout/" in str(path) else contracts
    return getattr(module, name)


@pytest.mark.parametrize(("path", "function"), TYPED, ids=[f"{p.stem}.{f}" for p, f in TYPED])
def test_a_monitoring_or_rollout_result_has_its_contracts_keys(path, function):
    contract = _contract_of(path, function)
    keys = set(typing.get_type_hints(contract))
    required = set(contract.__required_keys__)
    returned = _returned_dicts(path, function)
    assert returned, f"{function} returns no dict literal to check"
    for found in returned:
        assert required <= found <= keys, (
            f"{function} returns {sorted(found)}; {contract.__name__} requires {sorted(required)} "
            f"and allows {sorted(keys - required)}"
        )


def test_every_stage_result_says_whether_the_stage_is_done():
    from include.modelops.rollout.contracts import StageResult

    assert StageResult.__required_keys__ == frozenset({"done"})
