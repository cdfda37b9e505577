"""The rollout record: ``<state>/rollout/<model>/v<version>.json``, one per rolled-out version.

It holds the rollout's progress (stages entered, their analyses, how it ended) so that a
retried or rescheduled task resumes without moving traffic twice. Written whole and
atomically (a temporary file replaced), so a reader never sees half a record.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.modelops.platform.storage import write_atomic
from include.modelops.rollout.backend import state_dir


def record_path(model: str, version: str) -> Path:
    return state_dir(model) / f"v{version}.json"


def read_record(model: str, version: str) -> dict[str, Any]:
    path = record_path(model, version)
    return json.loads(path.read_text()) if path.exists() else {}


def write_record(model: str, version: str, record: dict[str, Any]) -> None:
    path = record_path(model, version)
    write_atomic(path, json.dumps(record, indent=2, default=str))


def utc_now() -> datetime:
    return datetime.now(UTC)


def older_than_champion(version: str, champion: str | None) -> bool:
    """True when ``version`` is not newer than ``champion`` (registry versions count up)."""
    return champion is not None and int(version) <= int(champion)
