"""Test-wide setup: every test writes its state under a temporary folder, never outside the project."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SPEC = PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml"
# Airflow puts plugins/ on sys.path at run time; tests import the operators the same way.
sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))

# Quiet third-party tools and keep their caches inside the project (set before they are imported).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MODELOPS_STATE_DIR", str(PROJECT_ROOT / ".state" / "test"))
_STATE = Path(os.environ["MODELOPS_STATE_DIR"])
os.environ.setdefault("AIRFLOW_HOME", str(_STATE / "airflow"))
os.environ.setdefault("BENTOML_HOME", str(_STATE / "bentoml"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))


@pytest.fixture
def reference_spec():
    from include.modelops.spec import load_spec

    return load_spec(REFERENCE_SPEC)


@contextlib.contextmanager
def mlflow_uris_restored():
    """Put MLflow's process-wide tracking and registry URIs back as they were when the block ends.

    ``mlflow.set_tracking_uri`` / ``set_registry_uri`` keep the URI in module globals, and both
    write ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` into ``os.environ`` (behind
    monkeypatch's back), so without this a later test would read an earlier test's store
    ("Registered Model ... not found").
    """
    env_names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env_before = {name: os.environ.get(name) for name in env_names}
    uris_before = (None, None)
    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        uris_before = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    try:
        yield
    finally:
        for name, value in env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if "mlflow" in sys.modules:
            from mlflow.tracking._model_registry import utils as registry_utils
            from mlflow.tracking._tracking_service import utils as tracking_utils

            tracking_utils._tracking_uri, registry_utils._registry_uri = uris_before


@pytest.fixture(autouse=True)
def _mlflow_uris_stay_with_their_test():
    """No test reads the MLflow store an earlier test pointed the process at."""
    with mlflow_uris_restored():
        yield


@pytest.fixture(scope="module")
def sqlite_mlflow_store(tmp_path_factory):
    """A module's own MLflow tracking store (SQLite in a temporary folder), active for the module's tests."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_uris_restored():
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        mlflow.set_experiment("shapes")
        yield


# ----------------------------------------------------------------------------------------
# Two workers (`make test` runs `pytest -n 2 --dist loadgroup`)
# ----------------------------------------------------------------------------------------

# Every test file that uses the session's shared Airflow + MLflow stack runs on one worker, in
# collection order, so the stack (and the `airflow standalone` some of them need) is started once;
# every other file is a group of its own (its module fixtures are built once) and runs on whichever
# worker is free. On the workers those stack files come first: they are the longest group (about
# 40 minutes), so one worker starts it at once while the other takes every other file. xdist gives
# a worker its next group only when two of its tests are left, so the stack worker takes another
# file only near the end, when what is left are e2e files, which set their own environment (the
# stack's MLFLOW_TRACKING_URI and state folder stay set for the rest of that worker's session).
SHARED_STACK_FIXTURES = {"stack", "standalone"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    def path(item) -> str:
        return item.nodeid.split("::", 1)[0]

    stack_files = {path(i) for i in items if SHARED_STACK_FIXTURES & set(getattr(i, "fixturenames", ()))}
    for item in items:
        item.add_marker(pytest.mark.xdist_group("shared-stack" if path(item) in stack_files else path(item)))
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the same order on every worker, as xdist requires
        items.sort(key=lambda i: path(i) not in stack_files)  # stable: collection order otherwise


# ----------------------------------------------------------------------------------------
# Where the suite's time goes, by file (printed last, so the tail of a CI log shows it)
# ----------------------------------------------------------------------------------------

_SECONDS_BY_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    _SECONDS_BY_FILE[path] = _SECONDS_BY_FILE.get(path, 0.0) + report.duration


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if not _SECONDS_BY_FILE:
        return
    total = sum(_SECONDS_BY_FILE.values())
    terminalreporter.write_sep("=", f"seconds by test file (setup + call + teardown), {total:.0f} s in all")
    for path, seconds in sorted(_SECONDS_BY_FILE.items(), key=lambda kv: -kv[1])[:25]:
        terminalreporter.write_line(f"{seconds:8.1f} s  {100 * seconds / total:5.1f}%  {path}")
