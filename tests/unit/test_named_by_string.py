"""Names the code refers to as strings (retry rules, the bento's service import) resolve.

A rename or a move of a module does not break these at import time; it silently turns a
"never retry a user's mistake" rule into "retry it", or a bento into one that cannot start.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _retry_rule_exceptions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "dags").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RetryRule":
                for kw in node.keywords:
                    if kw.arg == "exception":
                        for elt in getattr(kw.value, "elts", [kw.value]):
                            found.append((path.name, ast.literal_eval(elt)))
    return found


RULES = _retry_rule_exceptions()


def test_the_dags_have_retry_rules_to_check():
    assert len(RULES) >= 6, RULES


@pytest.mark.parametrize(("dag_file", "dotted"), RULES, ids=[f"{f}:{d}" for f, d in RULES])
def test_every_exception_a_retry_rule_names_imports(dag_file, dotted):
    module, _, name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    assert isinstance(cls, type) and issubclass(cls, BaseException), (
        f"{dag_file}: {dotted} is not an exception"
    )


def test_the_bento_service_import_names_a_class_of_the_service_file():
    from include.modelops.serving.bento import SERVICE_IMPORT

    module, _, name = SERVICE_IMPORT.partition(":")
    tree = ast.parse((ROOT / "bentos" / f"{module}.py").read_text())
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert name in classes, f"{SERVICE_IMPORT}: bentos/{module}.py defines {sorted(classes)}"
