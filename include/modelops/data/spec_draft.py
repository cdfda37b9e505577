"""Draft a model spec from a dataset, for a data engineer to review (``make draft-spec``).

``draft_spec`` reads a CSV or Parquet file (or a folder of them, as the pipeline does),
profiles it with pandas and returns the YAML text of a spec with a comment on every
inferred value: feature types, ranges with a margin, categories, null fractions, the
task guessed from the target, the time column and the entity id. ``write_spec_draft``
writes it to the specs folder without overwriting an existing spec (unless asked to).
Nothing is ever written next to the data.

Why pandas and not Great Expectations: GX 1.x removed its profilers (the Data Assistants
and the rule-based profiler) in 1.0, and its metric repository is experimental and meant
for GX Cloud. pandas already answers every question needed here (``infer_dtype``,
``convert_dtypes``, ``to_datetime``, ``describe``-style statistics).

Ranges, categories and null fractions come from every row (the pipeline's validation
reads every row too, so the drafted contract holds on the data it was drafted from);
the value-by-value work (inferring the type of text columns, trying to parse dates,
telling free text from categories) looks at a seeded random sample of at most
``DEFAULT_SAMPLE_ROWS`` rows.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.platform.storage import write_atomic

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_SAMPLE_ROWS = 100_000
MAX_CATEGORIES = 50  # more distinct text values than this is not a categorical feature
MAX_CLASSES = 20  # an integer target with more distinct values is treated as a quantity (regression)
RANGE_MARGIN = 0.10  # of the observed span, added on both sides of numeric ranges
NEAR_UNIQUE = 0.9  # text columns with this share of distinct values are free text or ids
MIN_ENTITY_VALUES = 20  # an *_id column needs more distinct values than this to be the entity id
# Drafted threshold: this share of the way from no skill (the better of chance and the naive
# baseline) to a perfect score: roc_auc 0.65, macro_f1 0.53 with 3 classes, r2 0.3.
GATE_SHARE = 0.3
HOLDOUT_FRACTION = 0.2
MIN_CLASS_COUNT = 5  # the spec's default for split.min_class_count
MAX_DUPLICATE_FRACTION = 0.01  # the spec's default for data.max_duplicate_row/key_fraction

_ID_NAME = re.compile(r"(^|[_\-\s.])(id|uuid|guid)$", re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID)$")
_TIME_NAME = re.compile(r"time|date|timestamp|(^|_)(ts|at|dt|day)$", re.IGNORECASE)


class SpecDraftError(ValueError):
    """The draft cannot be made (bad input from the user); the message says what to do."""


@dataclass(frozen=True)
class Column:
    """What the draft did with one column of the data."""

    name: str
    role: str  # feature | target | time_column | entity_id | left_out
    note: str  # what was inferred, or why the column was left out
    feature: dict[str, Any] | None = None  # the spec's feature entry, for role == "feature"


@dataclass
class SpecDraft:
    """A drafted spec: its YAML text and what was inferred, column by column."""

    name: str
    task: str
    text: str
    data_path: Path
    fmt: str
    rows: int
    sample_rows: int
    columns: list[Column] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)  # duplicates and class counts, see _data_checks

    def by_role(self, role: str) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    def summary_lines(self) -> list[str]:
        """A few lines for the terminal: what was inferred and what was left out."""
        feats = self.by_role("feature")
        kinds: dict[str, int] = {}
        for c in feats:
            kinds[c.feature["type"]] = kinds.get(c.feature["type"], 0) + 1
        kind_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        target = self.by_role("target")[0]
        lines = [
            f"task          {self.task}  (target {target.name}: {target.note})",
            f"features      {len(feats)} ({kind_text})",
        ]
        for role in ("time_column", "entity_id"):
            found = self.by_role(role)
            lines.append(f"{role:<13} {found[0].name if found else 'none found'}")
        for c in self.by_role("left_out"):
            lines.append(f"left out      {c.name}: {c.note}")
        sampled = (
            f"; types inferred from a sample of {self.sample_rows:,} rows"
            if self.sample_rows < self.rows
            else ""
        )
        lines.append(f"rows          {self.rows:,} ({self.fmt}){sampled}")
        lines += [f"warning       {w}" for w in self.warnings]
        return lines


# --------------------------------------------------------------------------- reading


def detect_format(path: Path) -> str:
    """``parquet`` or ``csv``, from a file's suffix or the files in a folder.

    Raises:
        SpecDraftError: unknown suffix, no data files, or both kinds in one folder.
    """
    from include.modelops.data.reading import DatasetNotFoundError, data_files

    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            return "parquet"
        if suffix in (".csv", ".txt"):
            return "csv"
        raise SpecDraftError(
            f"Cannot tell the format of {path} from its suffix; pass FORMAT=csv or FORMAT=parquet."
        )
    found = []
    for fmt in ("parquet", "csv"):
        try:
            data_files(path, fmt)
        except DatasetNotFoundError:
            continue
        found.append(fmt)
    if not found:
        raise SpecDraftError(f"No .parquet or .csv files under {path} (searched recursively).")
    if len(found) > 1:
        raise SpecDraftError(f"{path} holds both Parquet and CSV files; pass FORMAT=csv or FORMAT=parquet.")
    return found[0]


def _read(path: Path, fmt: str) -> pd.DataFrame:
    from include.modelops.data.reading import DataLoadError, DatasetNotFoundError, read_dataset

    try:
        return read_dataset(path, fmt)
    except DatasetNotFoundError as exc:  # FORMAT= names a kind of file the folder does not hold
        raise SpecDraftError(f"No {fmt} files at {path}; check DATA and FORMAT.") from exc
    except DataLoadError as exc:  # names the unreadable file
        raise SpecDraftError(str(exc)) from exc


# --------------------------------------------------------------------------- profiling


def _sample(df: pd.DataFrame, sample_rows: int) -> pd.DataFrame:
    return df if len(df) <= sample_rows else df.sample(n=sample_rows, random_state=0)


def _kind(series: pd.Series, sample: pd.Series) -> str:
    """pandas' own name for what a column holds: boolean, integer, floating, string, datetime, ..."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        values = series.dropna()
        if len(values) and bool(((values % 1) == 0).all()) and values.abs().max() < 2**53:
            return "integral_float"  # integers stored as floats, usually because of nulls
        return "floating"
    if pd.api.types.is_numeric_dtype(dtype):
        return "other"  # complex numbers and the like
    if isinstance(dtype, pd.CategoricalDtype):
        # Validation sees a category column's values, so only text categories are text.
        inner = pd.api.types.infer_dtype(dtype.categories, skipna=True)
        return "string" if inner == "string" else f"categorical of {inner}"
    kind = pd.api.types.infer_dtype(sample, skipna=True)
    if kind in ("string", "categorical"):
        return "string"
    if kind == "boolean":
        return "boolean"
    if kind in ("datetime", "datetime64", "date"):
        return "datetime_objects"
    return kind  # empty, mixed, bytes, decimal, ...


def _parse_dates(series: pd.Series, sample: pd.Series) -> pd.Series | None:
    """The column as datetimes if its text parses as dates the way the pipeline parses it, else None."""
    import pandas as pd

    values = sample.dropna().astype(str)
    if values.empty or pd.to_numeric(values, errors="coerce").notna().all():
        return None  # numbers as text are not dates, whatever dateutil thinks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": then it is not a date column
        try:
            pd.to_datetime(values)
            # The same call as include.modelops.data.example.read_dataset(parse_dates=...), on every row.
            return pd.to_datetime(series)
        except (ValueError, TypeError, OverflowError):
            return None


def _round_out(value: float, span: float, up: bool, integer: bool) -> float | int:
    """``value`` rounded outwards to a precision of about 1/100 of ``span``."""
    if integer:
        return int(math.ceil(value) if up else math.floor(value))
    decimals = max(0, 2 - int(math.floor(math.log10(span)))) if span > 0 else 2
    scaled = value * 10**decimals
    rounded = (math.ceil(scaled) if up else math.floor(scaled)) / 10**decimals
    return round(rounded, decimals)


def _null_limit(fraction: float) -> float:
    """``max_null_fraction`` with headroom: half as much again, at least one point more, rounded up."""
    if fraction == 0:
        return 0.0
    return min(1.0, math.ceil(max(fraction * 1.5, fraction + 0.01) * 100) / 100)


def _fmt(value: float) -> str:
    return f"{value:,.6g}" if isinstance(value, float) else f"{value:,}"


def _pct(fraction: float) -> str:
    return (
        "0%" if fraction == 0 else f"{100 * fraction:.2g}%" if fraction < 0.01 else f"{100 * fraction:.1f}%"
    )


def _is_id_name(name: str) -> bool:
    return bool(_ID_NAME.search(name) or _CAMEL_ID.search(name))


def _numeric_feature(name: str, values: pd.Series, integer: bool, rows: int, null_fraction: float) -> Column:
    import numpy as np

    finite = values[np.isfinite(values.to_numpy(dtype="float64"))]
    if finite.empty:
        return Column(name, "left_out", "no finite values (only infinities)")
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo
    margin = RANGE_MARGIN * span
    low = _round_out(lo - margin, span, up=False, integer=integer)
    high = _round_out(hi + margin, span, up=True, integer=integer)
    clamp = lo >= 0 and low < 0
    if clamp:
        low = 0
    feature: dict[str, Any] = {
        "name": name,
        "type": "integer" if integer else "numeric",
        "min": low,
        "max": high,
    }
    shown_lo, shown_hi = (int(lo), int(hi)) if integer else (lo, hi)
    note = (
        f"{rows:,} rows: min {_fmt(shown_lo)}, max {_fmt(shown_hi)} "
        f"(+{RANGE_MARGIN:.0%} margin{', not below 0' if clamp else ''})"
    )
    if len(finite) < len(values):
        note += f"; {len(values) - len(finite):,} infinite values fail this range: fix them or widen it"
    return _with_nulls(feature, note, null_fraction)


def _with_nulls(feature: dict[str, Any], note: str, null_fraction: float) -> Column:
    limit = _null_limit(null_fraction)
    if limit:
        feature["max_null_fraction"] = limit
        note += f"; {_pct(null_fraction)} null (allowed {_pct(limit)})"
    else:
        note += "; no nulls"
    feature["description"] = "TODO"
    return Column(feature["name"], "feature", note, feature)


def _profile_column(name: str, series: pd.Series, sample: pd.Series, kind: str, rows: int) -> Column:
    """A feature entry for one column, or the reason it is left out."""
    non_null = series.dropna()
    null_fraction = 1 - len(non_null) / rows
    if non_null.empty:
        return Column(name, "left_out", "every value is null")
    distinct = int(non_null.nunique())
    if distinct == 1:
        return Column(name, "left_out", f"a single value ({non_null.iloc[0]!r}): nothing to learn from")
    if kind == "boolean":
        return _with_nulls({"name": name, "type": "boolean"}, f"{rows:,} rows: true/false", null_fraction)
    if kind in ("integer", "integral_float"):
        note_kind = "integer" if kind == "integer" else "integer stored as float (nulls)"
        col = _numeric_feature(name, non_null.astype("float64"), True, rows, null_fraction)
        if _is_id_name(name):
            note = (
                f"{col.note}; named like an id ({distinct:,} values): ids are codes, not quantities, check it"
            )
            return Column(name, "feature", note, col.feature)
        if set(non_null.unique()) <= {0, 1}:
            note = f"{col.note}; only 0/1: if it is a flag, store it as true/false to make it boolean"
            return Column(name, "feature", note, col.feature)
        if distinct <= 10:
            note = f"{col.note}; only {distinct} distinct {note_kind} values: if codes, store them as text"
            return Column(name, "feature", note, col.feature)
        return col
    if kind == "floating":
        return _numeric_feature(name, non_null, False, rows, null_fraction)
    if kind == "string":
        sample_values = sample.dropna()
        unique_share = sample_values.nunique() / max(1, len(sample_values))
        if unique_share >= NEAR_UNIQUE and distinct > MAX_CATEGORIES:
            return Column(
                name,
                "left_out",
                f"near-unique text ({unique_share:.0%} distinct): free text or an identifier",
            )
        if distinct > MAX_CATEGORIES:
            return Column(
                name,
                "left_out",
                f"{distinct:,} distinct text values, too many for a categorical (at most {MAX_CATEGORIES})",
            )
        cats = sorted(str(v) for v in non_null.unique())
        note = f"{rows:,} rows: {distinct} categories"
        return _with_nulls({"name": name, "type": "categorical", "categories": cats}, note, null_fraction)
    if kind == "mixed-integer" or kind == "mixed":
        return Column(name, "left_out", "mixed value types (numbers and text): clean the column first")
    return Column(name, "left_out", f"values of kind {kind!r} (dtype {series.dtype}) are not a feature type")


# --------------------------------------------------------------------------- target and gate


def _guess_task(series: pd.Series, kind: str) -> tuple[str, list[Any] | None, str]:
    """(task, classes, note) from the target column."""
    values = series.dropna()
    counts = values.value_counts()
    distinct = len(counts)
    if distinct < 2:
        raise SpecDraftError(
            f"The target column {series.name!r} has {distinct} distinct value(s): there is nothing to learn. "
            "Check TARGET."
        )
    if kind == "floating":
        return (
            "regression",
            None,
            f"continuous values ({_fmt(float(values.min()))} to {_fmt(float(values.max()))})",
        )
    if kind in ("integer", "integral_float") and distinct > MAX_CLASSES:
        return (
            "regression",
            None,
            f"{distinct:,} distinct integers (more than {MAX_CLASSES}): treated as a quantity",
        )
    if kind in ("integer", "integral_float", "boolean"):
        convert: Any = int
    elif kind == "string":
        convert = str
    else:
        raise SpecDraftError(
            f"Cannot guess the task from the target column {series.name!r} (dtype {series.dtype}, values of "
            f"kind {kind!r}): use numbers for regression, integers or text labels for classification."
        )
    shares = {convert(label): float(n) / len(values) for label, n in counts.items()}
    labels: list[Any] = sorted(shares)
    if distinct == 2:
        if set(labels) == {0, 1}:
            note = f"two classes, positive 1 ({_pct(shares[1])} of rows)"
        else:
            # The rarer class is usually the one a model is asked to find.
            labels = sorted(labels, key=lambda v: (-shares[v], str(v)))
            note = (
                f"two classes; the positive class (listed last) is guessed as the rarer one, "
                f"{labels[-1]!r} ({_pct(shares[labels[-1]])} of rows): check it"
            )
        return "binary_classification", labels, note
    spread = ", ".join(f"{label!r} {_pct(shares[label])}" for label in labels)
    return "multiclass_classification", labels, f"{distinct} classes: {spread}"


def _gate(task: str, target: pd.Series, classes: list[Any] | None) -> tuple[str, str, float, str]:
    """(primary metric, threshold bound, threshold, comment) from the task, chance and the naive baseline.

    The threshold sits ``GATE_SHARE`` of the way from no skill to a perfect 1, so that a model
    that learned nothing always fails it, and the spec's validation accepts it.
    """
    from include.modelops.metrics_catalog import chance_level

    values = target.dropna()
    if task == "binary_classification":
        # The baseline scores every row with the training prevalence: ROC AUC 0.5, as chance does.
        metric, no_skill = "roc_auc", 0.5
        why = "chance and the naive baseline score roc_auc 0.5"
    elif task == "multiclass_classification":
        # The baseline predicts the training frequencies, so always the majority class: F1 2p/(1+p)
        # for that class, 0 for the others. Guessing in proportion to the class frequencies scores
        # 1/k, which is never lower: no skill is 1/k.
        k = len(classes or []) or int(values.nunique())
        p = float(values.value_counts(normalize=True).iloc[0])
        baseline = 2 * p / (1 + p) / k
        metric, no_skill = "macro_f1", max(chance_level("macro_f1", k) or 0.0, baseline)
        why = (
            f"chance (guessing the {k} classes) scores macro_f1 about {no_skill:.2f}, the naive baseline "
            f"(majority class) about {baseline:.2f}"
        )
    else:
        # r2 is free of the target's units (the mean-predicting baseline scores about 0), unlike rmse or mae.
        metric, no_skill = "r2", 0.0
        why = "chance and the naive baseline (training mean) score r2 about 0"
    threshold = math.ceil((no_skill + GATE_SHARE * (1.0 - no_skill)) * 100) / 100
    return metric, "min", threshold, why


# --------------------------------------------------------------------------- drafting


def draft_spec(
    data: str | Path,
    target: str,
    name: str,
    *,
    fmt: str | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> SpecDraft:
    """Profile the data and draft a spec for model ``name`` predicting ``target``.

    Reads only; writes nothing (see :func:`write_spec_draft`).

    Args:
        data: A CSV or Parquet file, or a folder of them (searched recursively).
        target: The label column.
        name: The model name (also the spec's file name).
        fmt: ``csv`` or ``parquet``; default: from the file suffix or the folder's files.
        sample_rows: Most rows looked at value by value (types, dates, free text).

    Returns:
        The draft: YAML text and, column by column, what was inferred.

    Raises:
        SpecDraftError: the data is missing, unreadable or empty, the target is unknown or
            cannot be learned, the name is invalid, or no column can be a feature.
    """
    from include.modelops.spec import NAME_PATTERN

    if not re.match(NAME_PATTERN, name):
        raise SpecDraftError(
            f"NAME={name!r} is not a valid model name: lower-case letters, digits and '_', starting with a "
            f"letter, 2 to 63 characters (e.g. churn_model)."
        )
    if sample_rows < 1:
        raise SpecDraftError(f"The sample size must be at least 1 row, got {sample_rows}.")
    path = Path(data).expanduser().resolve()
    if not path.exists():
        raise SpecDraftError(f"DATA={data}: no such file or folder.")
    fmt = fmt or detect_format(path)
    if fmt not in ("csv", "parquet"):
        raise SpecDraftError(f"FORMAT={fmt!r}: use csv or parquet.")
    df = _read(path, fmt)
    rows = len(df)
    if rows == 0:
        raise SpecDraftError(
            f"The data at {path} has no rows ({len(df.columns)} columns): nothing to infer from."
        )
    columns = [str(c) for c in df.columns]
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise SpecDraftError(f"The data at {path} has repeated column names {dupes}; rename them first.")
    df.columns = columns
    if target not in columns:
        raise SpecDraftError(_unknown_target(target, columns))

    sample = _sample(df, sample_rows)
    kinds = {c: _kind(df[c], sample[c]) for c in columns}
    draft_warnings: list[str] = []

    task, classes, target_note = _guess_task(df[target], kinds[target])
    target_nulls = int(df[target].isna().sum())
    if target_nulls:
        draft_warnings.append(
            f"the target {target!r} has {target_nulls:,} null rows; validation fails on them: drop those rows"
        )
    if classes is not None and len(classes) > MAX_CATEGORIES:
        draft_warnings.append(
            f"the target {target!r} has {len(classes):,} classes: check that TARGET is the label"
        )
    result: list[Column] = [Column(target, "target", target_note)]

    time_column, time_notes = _find_time_column(df, sample, kinds, fmt, exclude={target})
    if time_column:
        result.append(Column(time_column, "time_column", time_notes.pop(time_column)))
    entity_id, entity_note = _find_entity_id(df, kinds, exclude={target, time_column})
    if entity_id:
        result.append(Column(entity_id, "entity_id", entity_note))

    for col in columns:
        if col in (target, time_column, entity_id):
            continue
        if col in time_notes:
            result.append(Column(col, "left_out", time_notes[col]))
        elif col.startswith("Unnamed: "):
            result.append(Column(col, "left_out", "an unnamed column, most likely a saved row index"))
        elif (
            _is_id_name(col)
            and kinds[col] in ("string", "integer", "integral_float")
            and df[col].nunique() > MAX_CATEGORIES
        ):
            result.append(Column(col, "left_out", f"an identifier ({df[col].nunique():,} distinct values)"))
        else:
            result.append(_profile_column(col, df[col], sample[col], kinds[col], rows))

    features = [c for c in result if c.role == "feature"]
    if not features:
        reasons = (
            "; ".join(f"{c.name}: {c.note}" for c in result if c.role == "left_out") or "only the target"
        )
        raise SpecDraftError(f"No column of {path} can be a feature ({reasons}).")

    draft = SpecDraft(
        name=name,
        task=task,
        text="",
        data_path=path,
        fmt=fmt,
        rows=rows,
        sample_rows=len(sample),
        columns=result,
        warnings=draft_warnings,
    )
    draft.checks = _data_checks(df, draft, classes, holdout=HOLDOUT_FRACTION)
    draft.text = _render(draft, df[target], classes)
    _check_schema(draft.text, name)
    return draft


def _unknown_target(target: str, columns: list[str]) -> str:
    lowered = {c.lower(): c for c in columns}
    close = difflib.get_close_matches(target.lower(), list(lowered), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(lowered[c]) for c in close)}?" if close else ""
    shown = ", ".join(columns[:40]) + (f", ... ({len(columns)} in all)" if len(columns) > 40 else "")
    return f"TARGET={target!r} is not a column of the data.{hint} Columns: {shown}."


def _find_time_column(
    df: pd.DataFrame, sample: pd.DataFrame, kinds: dict[str, str], fmt: str, exclude: set[str]
) -> tuple[str | None, dict[str, str]]:
    """The event-time column, and a note for every date-like column (chosen or left out)."""
    candidates: dict[str, pd.Series] = {}
    notes: dict[str, str] = {}
    for col, kind in kinds.items():
        if col in exclude:
            continue
        if kind == "datetime":
            candidates[col] = df[col]
        elif kind in ("string", "datetime_objects"):
            parsed = _parse_dates(df[col], sample[col])
            if parsed is None:
                continue
            if fmt == "csv":
                candidates[col] = parsed
            else:
                notes[col] = (
                    "text that parses as dates; the pipeline reads Parquet columns as they are stored, "
                    "so store it as a timestamp to use it as time_column"
                )
    usable = {c: s for c, s in candidates.items() if not s.isna().any()}
    for col, series in candidates.items():
        if col not in usable:
            notes[col] = (
                f"dates with {_pct(float(series.isna().mean()))} nulls; time_column must have no nulls"
            )
    if not usable:
        return None, notes
    # Prefer a name that says time; then the column with the most distinct instants.
    chosen = max(usable, key=lambda c: (bool(_TIME_NAME.search(c)), usable[c].nunique()))
    for col, series in usable.items():
        how = "datetime column" if kinds[col] == "datetime" else "text parsed as dates"
        span = f"{series.min()} to {series.max()}"
        if col == chosen:
            notes[col] = f"{how}, {span}: the holdout is the latest {{holdout}} of rows"
        else:
            notes[col] = f"another date column ({how}, {span}); dates are not a feature type"
    return chosen, notes


def _find_entity_id(
    df: pd.DataFrame, kinds: dict[str, str], exclude: set[str | None]
) -> tuple[str | None, str]:
    """An obvious entity key: named like an id, text or integers, many distinct values, no nulls."""
    found = []
    for col, kind in kinds.items():
        if col in exclude or not _is_id_name(col) or kind not in ("string", "integer"):
            continue
        distinct = int(df[col].nunique())
        if distinct > MIN_ENTITY_VALUES and not df[col].isna().any():
            found.append((distinct, col))
    if not found:
        return None, ""
    # With several, the one that repeats (an entity, not a row id) is the better key.
    rows = len(df)
    found.sort(key=lambda dc: (dc[0] < rows, dc[0]), reverse=True)
    distinct, col = found[0]
    if distinct == rows:
        return (
            col,
            f"{distinct:,} distinct values, one per row: a row id rather than an entity (e.g. a customer)",
        )
    return col, f"{distinct:,} distinct values ({rows / distinct:.1f} rows each on average)"


# --------------------------------------------------------------------------- rendering


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_YAML_WORDS = {
    "y",
    "n",
    "yes",
    "no",
    "on",
    "off",
    "true",
    "false",
    "null",
}  # YAML 1.1 reads these as bool/null


def _yaml_value(value: Any) -> str:
    """A YAML flow scalar or list: plain where that reads back as the same text, else JSON (valid YAML)."""
    if isinstance(value, str) and _PLAIN.match(value) and value.lower() not in _YAML_WORDS:
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _flow(mapping: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in mapping.items()) + "}"


def _spec_data_path(path: Path) -> str:
    """The data path as the spec should hold it: portable when it is inside the project."""
    from include.modelops.settings import PROJECT_ROOT, get_settings

    state = get_settings().state_dir
    for root, prefix in ((state, "${MODELOPS_STATE_DIR}/"), (PROJECT_ROOT, "")):
        try:
            return prefix + path.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def _data_checks(
    df: pd.DataFrame, draft: SpecDraft, classes: list[Any] | None, holdout: float
) -> dict[str, Any]:
    """What validation's duplicate and class-count checks will find on this data, the limits that
    let the drafted spec pass on it, and a warning wherever the data needs a look first."""
    from include.modelops.data.reading import split_holdout

    target = draft.by_role("target")[0].name
    time_col = next((c.name for c in draft.by_role("time_column")), None)
    entity = next((c.name for c in draft.by_role("entity_id")), None)
    spec_columns = (
        [c.name for c in draft.by_role("feature")] + [target] + [c for c in (time_col, entity) if c]
    )
    checks: dict[str, Any] = {}
    pairs = [("rows", spec_columns)] + ([("keys", [entity, time_col])] if entity and time_col else [])
    for kind, cols in pairs:
        share = float(df.duplicated(cols, keep=False).mean())
        limit = MAX_DUPLICATE_FRACTION if share <= MAX_DUPLICATE_FRACTION else _null_limit(share)
        checks[kind] = (share, limit)
        if share > MAX_DUPLICATE_FRACTION:
            what = (
                "are exact duplicates (every spec column)"
                if kind == "rows"
                else f"repeat a ({entity}, {time_col}) pair"
            )
            draft.warnings.append(
                f"{_pct(share)} of rows {what}: check for double loads or joins that repeat rows; "
                f"the drafted limit lets them pass"
            )
    if classes is not None:
        import pandas as pd

        frame = df
        if time_col and not pd.api.types.is_datetime64_any_dtype(df[time_col].dtype):
            frame = df.assign(
                **{time_col: pd.to_datetime(df[time_col])}
            )  # CSV text, parsed as the pipeline does
        mask, how = split_holdout(frame, time_column=time_col, holdout_fraction=holdout, seed=42)
        counts = [
            (side, c, int((df.loc[m, target] == c).sum()))
            for side, m in (("train", ~mask), ("holdout", mask))
            for c in classes
        ]
        side, cls, n = min(counts, key=lambda t: t[2])
        checks["classes"] = (side, cls, n, how)
        if n < MIN_CLASS_COUNT:
            draft.warnings.append(
                f"class {cls!r} has {n} rows in the {side} ({how}); validation fails on fewer than "
                f"{MIN_CLASS_COUNT}: use data covering every class over time, or see split.on_missing_class"
            )
    return checks


def _render(draft: SpecDraft, target: pd.Series, classes: list[Any] | None) -> str:
    from include.modelops.metrics_catalog import METRICS

    holdout = HOLDOUT_FRACTION
    target_col = draft.by_role("target")[0]
    time_col = next(iter(draft.by_role("time_column")), None)
    entity = next(iter(draft.by_role("entity_id")), None)
    features = draft.by_role("feature")
    left_out = draft.by_role("left_out")
    metric, bound, threshold, why = _gate(draft.task, target, classes)
    others = sorted(m for m in METRICS[draft.task] if m != metric)
    sampled = (
        f"Types, dates and free text were judged on a random sample of {draft.sample_rows:,} rows;\n"
        f"# ranges, categories and null fractions on all {draft.rows:,} rows."
        if draft.sample_rows < draft.rows
        else f"Everything was inferred from all {draft.rows:,} rows."
    )
    min_rows = max(1, _nice_floor(draft.rows // 2))
    categoricals = [c.name for c in features if c.feature["type"] == "categorical"]
    out: list[str] = [
        f"# Drafted by `make draft-spec` on {date.today().isoformat()} from {draft.data_path} ({draft.fmt}).",
        f"# {sampled}",
        "# Review every value, replace each TODO, then run `make check-specs`.",
        "# Every field is documented in docs/model-spec.md.",
        f"name: {draft.name}",
        'description: "TODO: one paragraph: what the model predicts, for whom, and why."',
        "owner:",
        '  team: "TODO: the team accountable for the model"',
        '  email: "TODO: a contact address for incidents and reviews"',
        f"# Guessed from the target: {target_col.note}.",
        f"task: {draft.task}",
        "# TODO: review. 'auto' approval is only allowed for low-risk models; for a model whose decisions",
        "# affect people, set risk_tier: medium or high and approval.policy: manual (a human approves).",
        "risk_tier: low",
        'intended_use: "TODO: who uses the predictions, for what decision."',
        "out_of_scope_uses:",
        '  - "TODO: uses the model is not fit for."',
        "limitations:",
        '  - "TODO: known weaknesses (data coverage, rare classes, ...)."',
        "ethical_considerations:",
        '  - "TODO: fairness, privacy and possible harm."',
        "",
        "data:",
        f"  path: {_yaml_value(_spec_data_path(draft.data_path))}",
        f"  format: {draft.fmt}",
        f"  # The data has {draft.rows:,} rows; fewer than this fails validation.",
        f"  min_rows: {min_rows}",
        *_duplicate_lines(draft),
        "target:",
        f"  name: {_yaml_value(target_col.name)}",
    ]
    if classes is not None:
        out.append(f"  classes: {_yaml_value(classes)}")
    if time_col:
        out += [
            f"# {time_col.note.format(holdout=f'{holdout:.0%}')}.",
            f"time_column: {_yaml_value(time_col.name)}",
        ]
    else:
        out.append(
            "# No time column found (a datetime column without nulls): the holdout is a random sample."
        )
    if entity:
        out += [
            f"# Named like an id, {entity.note}; never a feature.",
            f"entity_id: {_yaml_value(entity.name)}",
        ]
    else:
        out.append("# No entity id found (a column named like *_id with many values and no nulls).")
    if categoricals:
        out.append(
            f"# Metrics can be sliced by categorical features, e.g. segment_columns: [{categoricals[0]}]"
        )
    out += ["segment_columns: []", "features:"]
    for c in features:
        out += [f"  # {c.note}", f"  - {_flow(c.feature)}"]
    if left_out:
        out.append("# Left out (add them by hand if they should be features):")
        out += [f"#   {c.name}: {c.note}" for c in left_out]
    out += [
        "",
        "split:",
        f"  holdout_fraction: {holdout}",
        "  seed: 42",
        *_class_lines(draft),
        "training:",
        "  backend: local",
        "  framework: sklearn",
        "  # HistGradientBoosting's defaults; e.g. max_iter, learning_rate, max_leaf_nodes.",
        "  params: {}",
        "evaluation:",
        f"  # Also available for {draft.task}: {', '.join(others)}.",
        f"  primary_metric: {metric}",
    ]
    if draft.task == "binary_classification":
        out += [
            "  # Label positive at score >= value; for a rare class choose it on the training split instead,",
            "  # e.g. {policy: target_recall, target: 0.6} (see docs/model-spec.md).",
            "  threshold: {policy: fixed, value: 0.5}",
        ]
    out += [
        "  bootstrap_samples: 200",
        "  gate:",
        "    # TODO: set what the use case needs;",
        f"    # {why};",
        f"    # this asks for {GATE_SHARE:.0%} of the way from no skill to a perfect 1.",
        "    thresholds:",
        f"      {metric}: {{{bound}: {threshold:g}}}",
        f"    # Largest allowed drop of {metric} vs the champion, on the same holdout rows.",
        "    max_drop_vs_champion: 0.01",
        f"    # {metric} must beat the naive baseline by at least this.",
        "    min_margin_over_baseline: 0.05",
    ]
    if draft.task == "regression":
        std = float(target.std())
        out += [
            f"    # rmse and mae are in the target's units (its standard deviation here is {_fmt(std)});",
            "    # add e.g. rmse: {max: ...} under thresholds from the use case's tolerance.",
        ]
    out += [
        "approval:",
        "  policy: auto",
        "  approvers: [admin]",
        "  timeout_hours: 72",
        "schedule: null",
        "monitoring:",
        '  drift_schedule: "@daily"',
        "  drift_share_threshold: 0.3",
        "  retrain_cooldown_hours: 24",
        "tags: []",
    ]
    for w in draft.warnings:
        out.append(f"# WARNING: {w}")
    return "\n".join(out) + "\n"


def _duplicate_lines(draft: SpecDraft) -> list[str]:
    lines = []
    if "rows" in draft.checks:
        share, limit = draft.checks["rows"]
        lines += [
            f"  # Exact duplicate rows (same value in every column named here): {_pct(share)} of rows.",
            f"  max_duplicate_row_fraction: {limit:g}",
        ]
    if "keys" in draft.checks:
        share, limit = draft.checks["keys"]
        lines += [
            f"  # Rows repeating an (entity_id, time_column) pair: {_pct(share)}.",
            f"  max_duplicate_key_fraction: {limit:g}",
        ]
    return lines


def _class_lines(draft: SpecDraft) -> list[str]:
    if "classes" not in draft.checks:
        return []
    side, cls, n, how = draft.checks["classes"]
    return [
        "  # Every class needs this many rows in the training split and in the holdout",
        f"  # (split {how}; fewest here: class {_yaml_value(cls)}, {n:,} rows in the {side}).",
        f"  min_class_count: {MIN_CLASS_COUNT}",
        "  # fail: stop the run when a class falls short; warn: only say so (log, report, model card).",
        "  on_missing_class: fail",
    ]


def _nice_floor(n: int) -> int:
    """``n`` rounded down to two significant digits (4,873 -> 4,800)."""
    if n < 100:
        return n
    step = 10 ** (len(str(n)) - 2)
    return n // step * step


def _check_schema(text: str, name: str) -> None:
    """The draft must load as a spec; a failure here is a bug in the drafting, not the user's data."""
    import yaml

    from include.modelops.spec import ModelSpec

    ModelSpec.model_validate({**yaml.safe_load(text), "name": name})


# --------------------------------------------------------------------------- writing


def write_spec_draft(draft: SpecDraft, out_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the draft as ``<out_dir>/<name>.yaml`` (default: the specs folder).

    Raises:
        SpecDraftError: the file exists and ``force`` is false, or ``out_dir`` is inside the
            data folder (the user's data is never written to).
    """
    from include.modelops.settings import get_settings

    folder = Path(out_dir).expanduser().resolve() if out_dir else get_settings().specs_dir
    data = draft.data_path
    if folder == data or data in folder.parents or (data.is_file() and folder == data.parent):
        raise SpecDraftError(
            f"OUT={folder} is where the data lives ({data}); the draft is never written next to the data. "
            "Pick another folder (default: include/models)."
        )
    target = folder / f"{draft.name}.yaml"
    if target.exists() and not force:
        raise SpecDraftError(f"{target} already exists; pass FORCE=1 to replace it, or pick another NAME.")
    folder.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, draft.text)
