"""One monitoring window of the inference log, joined with the labels that have arrived.

Reads the serving records with the serving package's own readers
(``include.modelops.serving.inference_log.read_window`` for predictions,
``label_feed.read_labels``/``join_labels`` for the delayed ground truth; unreadable files are
skipped and counted, never fatal) and returns the rows of ``[start, end)`` with the
``feature.`` prefix stripped, so they line up with the reference sample's columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from include.modelops.serving import inference_log, label_feed, log_store

if TYPE_CHECKING:
    import pandas as pd

    from include.modelops.spec import ModelSpec

FEATURE_PREFIX = "feature."
LABEL_COLUMN = (
    "true_label"  # the joined ground truth (label_feed.join_labels); the prediction's ``label`` stays
)


@dataclass
class Window:
    """The rows of one window and what reading them found."""

    start: datetime
    end: datetime
    rows: pd.DataFrame  # features (unprefixed), prediction columns, model_version, variant, true_label
    versions: dict[str, int] = field(
        default_factory=dict
    )  # rows per model_version of the variant, before filtering by version
    skipped_files: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def key(self) -> str:
        """A stable name for the window (dedupe: one decision per model and window)."""
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    @property
    def labelled_rows(self) -> int:
        return int(self.rows[LABEL_COLUMN].notna().sum()) if LABEL_COLUMN in self.rows else 0


def load_window(
    model: str,
    start: datetime,
    end: datetime,
    *,
    version: str | None = None,
    variant: str | None = "stable",
    root: str | None = None,
) -> Window:
    """Predictions of ``model`` answered in ``[start, end)``, with their labels when they arrived.

    Args:
        model: the model.
        start, end: the window (timezone-aware; naive means UTC).
        version: keep only rows scored by this model version (the production one); None keeps all.
        variant: keep only this serving variant (``stable`` is the production traffic; canary and
            shadow rows belong to the rollout's analysis); None keeps all.
        root: the inference log location (default: the ``inference_log_url`` setting).
    """
    preds = inference_log.read_window(model, start=start, end=end, variant=variant, root=root)
    skipped, files = list(preds.attrs.get("skipped", [])), int(preds.attrs.get("files", 0))
    versions = (
        {str(k): int(v) for k, v in preds["model_version"].astype(str).value_counts().items()}
        if "model_version" in preds
        else {}
    )
    if version is not None and not preds.empty:
        preds = preds[preds["model_version"].astype(str) == str(version)]
    if preds.empty:
        import pandas as pd

        return Window(start, end, pd.DataFrame(), versions=versions, skipped_files=skipped, files=files)
    preds = preds.rename(
        columns={c: c[len(FEATURE_PREFIX) :] for c in preds.columns if c.startswith(FEATURE_PREFIX)}
    )
    # Labels arrive after the prediction: any label written since the window opened may belong to it.
    stats = log_store.ReadStats()
    labels = label_feed.read_labels(model, start=start, root=root, stats=stats)
    rows = label_feed.join_labels(preds, labels, how="left")
    return Window(
        start,
        end,
        rows.reset_index(drop=True),
        versions=versions,
        skipped_files=[*skipped, *stats.skipped],
        files=files + stats.files,
    )


# --- the labelled window as training data --------------------------------------------------------

LABELLED_FILE = "labelled_window.parquet"


def labelled_training_rows(spec: ModelSpec, rows: pd.DataFrame) -> pd.DataFrame:
    """The window's labelled rows in the training data's shape: the spec's features, the target
    (the label that arrived) and, when the spec has a time column, the time the row was scored."""
    import pandas as pd

    if rows.empty or LABEL_COLUMN not in rows:
        return pd.DataFrame(columns=[*spec.feature_names, spec.target.name])
    labelled = rows[rows[LABEL_COLUMN].notna()]
    out = pd.DataFrame(
        {f: labelled[f] if f in labelled else None for f in spec.feature_names}, index=labelled.index
    )
    out[spec.target.name] = labelled[LABEL_COLUMN]
    if spec.time_column:
        out[spec.time_column] = pd.to_datetime(labelled["timestamp"], utc=True).dt.tz_localize(None)
    return out.reset_index(drop=True)


def read_labelled_window(spec: ModelSpec, location: str, dst: Path, like: pd.DataFrame) -> pd.DataFrame:
    """A labelled window written by :func:`labelled_training_rows` (a path or an MLflow ``runs:/`` URI),
    with the dtypes of ``like`` (the spec's data) so the two concatenate cleanly.

    Raises:
        FileNotFoundError: nothing at ``location``.
    """
    import pandas as pd

    if location.startswith("runs:/"):
        import mlflow.artifacts

        from include.modelops.platform import tracking

        tracking.client()
        dst.mkdir(parents=True, exist_ok=True)
        location = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(dst))
    if not Path(location).exists():
        raise FileNotFoundError(f"labelled window {location} does not exist")
    extra = pd.read_parquet(location)
    cols = [c for c in like.columns if c in extra.columns]
    extra = extra[cols]
    for c in cols:
        try:
            extra[c] = extra[c].astype(like[c].dtype)
        except (TypeError, ValueError):
            pass  # keep as read: pandas concat upcasts
    return extra
