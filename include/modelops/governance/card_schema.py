"""The model card's schema version, its sections, and the value helpers every part of the card
code shares (reading loose dicts from MLflow and Airflow, formatting numbers and timestamps).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

CARD_SCHEMA_VERSION = 1

# The card's sections in reading order (``compliance`` describes the others and is not listed).
SECTIONS: tuple[str, ...] = (
    "model_details",
    "intended_use",
    "data",
    "data_validation",
    "training",
    "evaluation",
    "gate_decision",
    "limitations",
    "ethical_considerations",
    "approvals",
    "lineage",
    "serving",
    "deployment_history",
    "monitoring",
)


# --------------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------------


def as_mapping(value: Any) -> dict:
    return dict(value) if isinstance(value, Mapping) else {}


def first_of(*values: Any) -> Any:
    for v in values:
        if has_evidence(v):
            return v
    return None


def plain_value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def as_number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def as_timestamp(value: Any) -> str | None:
    """ISO-8601 (UTC) for MLflow epoch milliseconds, epoch seconds or datetimes; strings unchanged."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).replace(microsecond=0).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = value / 1000 if value > 1e11 else value  # MLflow uses epoch milliseconds
        return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0).isoformat()
    return str(value)


def jsonable(value: Any) -> Any:
    """Plain JSON types only: enums/paths/dates to strings, numpy scalars unwrapped, NaN/inf to None.

    NaN and infinity become None so the card is strict JSON and survives a round trip unchanged.
    """
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return as_timestamp(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars, without importing them
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return jsonable(value.tolist())
    return str(value)


def fmt_value(value: Any) -> str:
    """A value as a reader wants to see it in a table."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if value == 0:
            return "0"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
        if abs(value) >= 10_000:
            return f"{value:,.1f}"
        if abs(value) >= 1e-3:
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return ", ".join(fmt_value(v) for v in value)
    return str(value)


def fmt_signed(value: Any) -> str:
    n = as_number(value)
    if n is None:
        return fmt_value(value)
    text = fmt_value(n)
    return "+" + text if n > 0 else re.sub(r"^-", "−", text)


def has_evidence(value: Any) -> bool:
    """Whether a value carries evidence (not None, not blank, not an empty container)."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping):
        return any(has_evidence(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_evidence(v) for v in value)
    return True
