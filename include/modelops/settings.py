"""Settings read from the environment: the one place a knob is defined and documented.

Every setting has a default for the embedded, one-laptop mode, with all state under
``MODELOPS_STATE_DIR``. At scale the same names point at shared services.

| variable | default | meaning |
| --- | --- | --- |
| ``MODELOPS_STATE_DIR`` | ``<project>/.state`` | root of all local state (git-ignored) |
| ``MODELOPS_SPECS_DIR`` | ``<project>/include/models`` | folder of model specs (``<name>.yaml``) |
| ``MLFLOW_TRACKING_URI`` | ``http://127.0.0.1:5000`` | MLflow tracking server |
| ``MODELOPS_MLFLOW_UI_URL`` | the tracking URI | base URL for links in reports and cards |
| ``MODELOPS_RUNS_DIR`` | ``<state>/runs`` | per-DAG-run working files (splits, reports) |
| ``BENTOML_HOME`` | ``<state>/bentoml`` | BentoML store (models and bentos) |
| ``MODELOPS_SERVE_HOST`` | ``127.0.0.1`` | host that smoke-serve binds to |
| ``MODELOPS_SERVE_TIMEOUT_S`` | ``120`` | how long smoke-serve waits for the service to be ready |
| ``MODELOPS_GIT_COMMIT`` | ``git rev-parse HEAD`` | commit recorded on model versions (set it in images without .git) |
| ``MODELOPS_AIRFLOW_UI_URL`` | ``http://127.0.0.1:8080`` | base URL for links to DAG runs |
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment's settings (see the module docstring for each)."""

    project_root: Path
    state_dir: Path
    specs_dir: Path
    runs_dir: Path
    bentoml_home: Path
    mlflow_tracking_uri: str
    mlflow_ui_url: str
    airflow_ui_url: str
    serve_host: str
    serve_timeout_s: float

    @property
    def bentos_dir(self) -> Path:
        """Source folder of the BentoML service."""
        return self.project_root / "bentos"


def get_settings() -> Settings:
    """Read the settings from the environment now (cheap; not cached so tests can change env)."""
    state = _path("MODELOPS_STATE_DIR", PROJECT_ROOT / ".state")
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    return Settings(
        project_root=PROJECT_ROOT,
        state_dir=state,
        specs_dir=_path("MODELOPS_SPECS_DIR", PROJECT_ROOT / "include" / "models"),
        runs_dir=_path("MODELOPS_RUNS_DIR", state / "runs"),
        bentoml_home=_path("BENTOML_HOME", state / "bentoml"),
        mlflow_tracking_uri=tracking,
        mlflow_ui_url=os.environ.get("MODELOPS_MLFLOW_UI_URL", tracking).rstrip("/"),
        airflow_ui_url=os.environ.get("MODELOPS_AIRFLOW_UI_URL", "http://127.0.0.1:8080").rstrip("/"),
        serve_host=os.environ.get("MODELOPS_SERVE_HOST", "127.0.0.1"),
        serve_timeout_s=float(os.environ.get("MODELOPS_SERVE_TIMEOUT_S", "120")),
    )


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit the code runs from: ``MODELOPS_GIT_COMMIT``, else ``git rev-parse``, else ``unknown``."""
    if os.environ.get("MODELOPS_GIT_COMMIT"):
        return os.environ["MODELOPS_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
