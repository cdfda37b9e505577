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
