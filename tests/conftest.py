"""Test-wide setup: every test writes its state under a temporary folder, never outside the project."""

from __future__ import annotations

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
