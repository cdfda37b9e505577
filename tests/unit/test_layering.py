"""The library's import graph keeps its layers (see docs/architecture.md).

* no import cycle between modules of ``include.modelops`` (imports inside functions count; only
  ``if TYPE_CHECKING:`` imports do not);
* imports go downward only: a module imports modules of its own layer or of a lower one;
* no module uses another module's private (``_``-prefixed) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "include" / "modelops"

# Lowest first. A module's layer is that of the longest prefix listed for it.
LAYERS: list[tuple[str, ...]] = [
    ("settings", "spec", "assets", "metrics_catalog", "scoring"),  # the contract and the environment
    ("platform",),  # MLflow, processes, the local stack, tag names
    ("data",),  # reading, validation, spec drafts, the example data generator
    ("evaluation",),  # metrics, the gate, the report, the decision threshold
    ("training",),  # trainers, telemetry, the training pod
    ("serving",),  # packaging, the service's guards, the inference log, traffic
    (
        "governance.approvals",
        "governance.model_card",
        "governance.card_schema",
        "governance.compliance",
        "governance.card_render",
    ),  # what a rollout records about a version
    ("rollout",),  # stages, analysis, backends
    ("monitoring",),  # drift, the retraining policy, windows
    ("governance.audit", "governance.backtest"),  # reads everything a model went through
    ("pipelines",),  # the DAGs' task functions
    ("cli.report", "cli.runs"),  # a run's summary; running the DAGs from the command line
    ("demo",),  # the demo scripts and fault injection, on the product's own runs
    ("cli", "spec_docs"),  # commands
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name or "__init__"] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"include.modelops.{module} is in no layer: add it to LAYERS"
    return rank


def _imports(module: str) -> list[tuple[str, int, list[str]]]:
    """(imported module, line, names taken from it) for every runtime import of ours in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    out: list[tuple[str, int, list[str]]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("include.modelops"):
                base = child.module.removeprefix("include.modelops").lstrip(".")
                for alias in child.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    if sub in MODULES:
                        out.append((sub, child.lineno, []))
                    else:
                        out.append((base or "__init__", child.lineno, [alias.name]))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("include.modelops."):
                        out.append((alias.name.removeprefix("include.modelops."), child.lineno, []))
            visit(child)

    visit(tree)
    return [(m, line, names) for m, line, names in out if m != module]


GRAPH = {m: _imports(m) for m in MODULES}


def test_the_graph_is_read():
    assert len(MODULES) > 60
    assert ("platform.tracking",) == tuple(
        m for m, _, _ in GRAPH["pipelines.training"] if m == "platform.tracking"
    )[:1]


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            dfs(m)
    return cycles


def test_no_import_cycle():
    cycles = _cycles({m: sorted({t for t, _, _ in GRAPH[m] if t in MODULES}) for m in MODULES})
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_go_downward_only():
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)}) at line {line}"
        for m in sorted(MODULES)
        for t, line, _ in GRAPH[m]
        if t in MODULES and _layer(t) > _layer(m)
    ]
    assert not upward, "\n".join(upward)


def _private_uses(module: str) -> list[str]:
    tree = ast.parse(MODULES[module].read_text())
    found = [
        f"{module}:{line} imports {target}.{name}"
        for target, line, names in GRAPH[module]
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("include.modelops"):
            base = node.module.removeprefix("include.modelops").lstrip(".")
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                if sub in MODULES:
                    aliases[a.asname or a.name] = sub
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_of_another_module_is_used(module):
    assert not _private_uses(module)


def test_the_checks_catch_what_they_look_for(tmp_path, monkeypatch):
    """The rules above fail on a cycle, an upward import and a private name (else they prove nothing)."""
    fake = {"platform.a": tmp_path / "a.py", "cli": tmp_path / "cli.py"}
    fake["platform.a"].write_text("def f():\n    from include.modelops.cli import _main\n")
    fake["cli"].write_text("from include.modelops.platform import a\n")
    monkeypatch.setitem(globals(), "MODULES", fake)
    graph = {m: _imports(m) for m in fake}
    assert graph["platform.a"] == [("cli", 2, ["_main"])]
    assert _layer("cli") > _layer("platform.a")  # so platform.a -> cli is upward
    monkeypatch.setitem(globals(), "GRAPH", graph)
    assert _private_uses("platform.a") == ["platform.a:2 imports cli._main"]
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c", "a"]]


def _imports_of_ours_anywhere() -> list[tuple[str, int, str, str]]:
    """(file, line, module, name) for every ``from include.modelops... import name`` in the project,
    also those inside functions, which nothing checks until the function runs."""
    found = []
    for top in ("include", "dags", "plugins", "bentos", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "fixtures" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("include.modelops"):
                    for alias in node.names:
                        found.append((str(path.relative_to(ROOT)), node.lineno, node.module, alias.name))
    return found


def test_every_import_of_ours_resolves_also_inside_functions():
    import importlib

    broken = []
    for file, line, module, name in _imports_of_ours_anywhere():
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            broken.append(f"{file}:{line}: {module}: {exc}")
            continue
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                broken.append(f"{file}:{line}: {module} has no {name}")
    assert not broken, "\n".join(broken)
