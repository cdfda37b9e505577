"""One monitoring window of the inference log, joined with the labels that have arrived.

Reads the serving records through ``include.modelops.serving.log_store`` (hourly Parquet
partitions; unreadable files are skipped and counted, never fatal) and returns the rows
of ``[start, end)`` with the ``feature.`` prefix stripped, so they line up with the
reference sample's columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from include.modelops.serving import log_store

if TYPE_CHECKING:
    import pandas as pd

FEATURE_PREFIX = "feature."
JOIN_KEYS = ["request_id", "row_index"]
LABEL_COLUMN = "label_true"  # the joined ground truth (the prediction's own ``label`` stays as it is)


@dataclass
class Window:
    """The rows of one window and what reading them found."""

    start: datetime
    end: datetime
    rows: pd.DataFrame  # features (unprefixed), prediction columns, model_version, variant, label_true
    versions: dict[str, int] = field(default_factory=dict)  # rows per model_version, before filtering
    skipped_files: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def key(self) -> str:
        """A stable name for the window (dedupe: one decision per model and window)."""
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    @property
    def labelled_rows(self) -> int:
        return int(self.rows[LABEL_COLUMN].notna().sum()) if LABEL_COLUMN in self.rows else 0


def read_window(model: str, start: datetime, end: datetime, *, version: str | None = None,
                variant: str | None = "stable", root: str | None = None) -> Window:
    """Predictions of ``model`` answered in ``[start, end)``, with their labels when they arrived.

    Args:
        model: the model.
        start, end: the window (timezone-aware; naive means UTC).
        version: keep only rows scored by this model version (the production one); None keeps all.
        variant: keep only this serving variant (``stable`` is the production traffic; canary and
            shadow rows belong to the rollout's analysis); None keeps all.
        root: the inference log location (default: the ``inference_log_url`` setting).
    """
    import pandas as pd

    stats = log_store.ReadStats()
    preds = log_store.read_records("predictions", model, start=start, end=end, root=root, stats=stats)
    label_stats = log_store.ReadStats()
    # Labels arrive after the prediction; any label written up to now may belong to this window.
    labels = log_store.read_records("labels", model, start=start, root=root, stats=label_stats)
    skipped = [*stats.skipped, *label_stats.skipped]
    files = stats.files + label_stats.files
    if preds.empty:
        return Window(start, end, pd.DataFrame(), skipped_files=skipped, files=files)
    ts = pd.to_datetime(preds["timestamp"], utc=True)
    preds = preds[(ts >= pd.Timestamp(start)) & (ts < pd.Timestamp(end))]
    versions = {str(k): int(v) for k, v in preds["model_version"].astype(str).value_counts().items()} \
        if "model_version" in preds else {}
    if variant is not None and "variant" in preds:
        preds = preds[preds["variant"] == variant]
    if version is not None and "model_version" in preds:
        preds = preds[preds["model_version"].astype(str) == str(version)]
    preds = preds.rename(columns={c: c[len(FEATURE_PREFIX):] for c in preds.columns if c.startswith(FEATURE_PREFIX)})
    if not labels.empty and set(JOIN_KEYS) <= set(labels.columns) and not preds.empty:
        truth = (labels[[*JOIN_KEYS, "label"]].rename(columns={"label": LABEL_COLUMN})
                 .drop_duplicates(JOIN_KEYS, keep="last"))
        preds = preds.merge(truth, on=JOIN_KEYS, how="left")
    else:
        preds = preds.assign(**{LABEL_COLUMN: pd.Series([None] * len(preds), index=preds.index, dtype=object)})
    return Window(start, end, preds.reset_index(drop=True), versions=versions, skipped_files=skipped, files=files)
