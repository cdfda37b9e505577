"""The environment a user's `make demo` / `make run` process has, for a state folder of the test's own.

The CLI is run as a subprocess with what the Makefile exports and nothing the test session picked
up on the way: the shared stack's fixtures set ``MLFLOW_TRACKING_URI``, ``MODELOPS_STATE_DIR`` and
``MODELOPS_SPECS_DIR`` for the rest of their worker's session, in-process CLI calls set
``BENTOML_HOME`` and ``MODELOPS_MLFLOW_UI_URL``, and the suite's conftest points ``AIRFLOW_HOME`` and
``BENTOML_HOME`` at a folder every e2e test would share. An e2e file that runs after them on the
same pytest worker must not read any of that.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Everything this project, Airflow, MLflow or BentoML reads from the environment starts with one of these.
_SESSION_PREFIXES = ("MODELOPS_", "MLFLOW_", "AIRFLOW", "BENTOML_", "GX_")


def user_env(state: Path, specs: Path | None = None, **extra: str) -> dict[str, str]:
    """``os.environ`` without the session's settings, plus the Makefile's exports for ``state``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SESSION_PREFIXES)}
    env.update(
        PYTHONPATH=f"{PROJECT_ROOT}:{PROJECT_ROOT / 'plugins'}",
        MODELOPS_STATE_DIR=str(state),
        BENTOML_HOME=str(state / "bentoml"),
        AIRFLOW_HOME=str(state / "airflow"),
        GX_ANALYTICS_ENABLED="False",
        BENTOML_DO_NOT_TRACK="True",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    if specs is not None:
        env["MODELOPS_SPECS_DIR"] = str(specs)
    env.update(extra)
    return env
