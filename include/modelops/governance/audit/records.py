"""What the audit reads: a model's MLflow runs and versions, its rollout records, and the names of events."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from include.modelops.platform import tracking
from include.modelops.platform.tags import TAG_MODEL, TAG_ROLLOUT_STATUS
from include.modelops.settings import get_settings

log = logging.getLogger(__name__)


KINDS = (
    "dag_run",
    "validation",
    "training",
    "gate",
    "registration",
    "model_card",
    "approval",
    "alias",
    "packaging",
    "rollout_run",
    "rollout",
    "deployment",
    "rollback",
    "promotion",
    "drift",
    "retrain",
)


# Lifecycle order, for events that carry the same second.
RANK = {
    "dag_run:start": 0,
    "validation": 1,
    "training": 2,
    "gate": 3,
    "registration": 4,
    "alias:challenger": 5,
    "skipped": 4.5,
    "approval": 6,
    "packaging": 7,
    "rollout:start": 7.4,
    "rollout": 7.5,
    "rollout:end": 7.55,
    "rollback": 7.6,
    "alias:previous": 8,
    "alias:champion": 9,
    "promotion": 10,
    "alias": 11,
    # The tag holds the latest card, regenerated after promotion.
    "model_card": 12,
    "drift": 13,
    "retrain": 14,
    "dag_run:end": 15,
}


DISPLACING_ALIASES = (tracking.CHAMPION, tracking.PREVIOUS)  # setting these takes them from another version


class AuditError(LookupError):
    """The model or version asked for does not exist; the message names what does."""


def iso(value: Any) -> str | None:
    """A timestamp (epoch ms, ISO string, datetime) as an ISO UTC string to the second."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float):
        dt = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def dag_run_url(dag_id: str, dag_run_id: str) -> str:
    """Link to a DAG run in the Airflow UI."""
    return f"{get_settings().airflow_ui_url}/dags/{dag_id}/runs/{dag_run_id}"


def run_url(experiment_id: str, run_id: str) -> str:
    return f"{get_settings().mlflow_ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


class Records:
    """Everything MLflow holds about one model, read once."""

    def __init__(self, model: str) -> None:
        c = tracking.client()
        self.model = model
        exp = c.get_experiment_by_name(model)
        self.experiment_id = exp.experiment_id if exp is not None else None
        self.runs: dict[str, Any] = {}
        self.logged_model_at: dict[str, str] = {}
        if self.experiment_id is not None:
            self.runs.update({r.info.run_id: r for r in tracking.all_runs(self.experiment_id)})
            try:
                for lm in c.search_logged_models(experiment_ids=[self.experiment_id]):
                    self.logged_model_at[lm.model_id] = iso(lm.creation_timestamp) or ""
            except Exception as exc:  # an older server without logged models: fall back to tag times
                log.debug("No logged models: %s", exc)
        self.versions: dict[str, Any] = {}
        self.aliases: dict[str, str] = {}
        try:
            rm = c.get_registered_model(model)
        except Exception:
            rm = None
        if rm is not None:
            self.aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
            for mv in c.search_model_versions(f"name = '{model}'"):
                self.versions[str(mv.version)] = mv
        self.rollouts = _rollout_records(model)
        if self.experiment_id is None and rm is None:
            raise AuditError(
                f"No model named '{model}' in MLflow ({get_settings().mlflow_tracking_uri}). "
                f"Models there: {', '.join(_known_models(c)) or 'none yet (run `make demo`)'}."
            )

    def version(self, version: str) -> Any:
        mv = self.versions.get(str(version))
        if mv is None:
            known = (
                ", ".join(sorted(self.versions, key=int))
                or "none (no run has passed validation and training)"
            )
            raise AuditError(f"{self.model} has no version {version}. Versions: {known}.")
        return mv

    def version_of_run(self, run_id: str) -> str | None:
        found = [v for v, mv in self.versions.items() if mv.run_id == run_id]
        return found[0] if found else None

    def dag_ids(self) -> list[str]:
        ids = {r.data.tags.get(tracking.TAG_DAG_ID) for r in self.runs.values()}
        ids |= {mv.tags.get(tracking.TAG_DAG_ID) for mv in self.versions.values()}
        if self.rollouts or any((mv.tags or {}).get(TAG_ROLLOUT_STATUS) for mv in self.versions.values()):
            ids.add(
                f"{self.model}_rollout"
            )  # rollout runs are Airflow runs too, with no MLflow run of their own
        return sorted(i for i in ids if i) or [f"{self.model}_training"]


def _rollout_records(model: str) -> dict[str, dict]:
    """``{version: record}`` from the rollout records on this machine (``<state>/rollout/<model>/v*.json``)."""
    out: dict[str, dict] = {}
    for path in sorted((get_settings().state_dir / "rollout" / model).glob("v*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out[str(record.get("version") or path.stem[1:])] = record
    return out


def _known_models(c: Any) -> list[str]:
    names = {m.name for m in c.search_registered_models()}
    names |= {e.name for e in c.search_experiments() if e.tags.get(TAG_MODEL)}
    return sorted(names)
