"""Data validation: the model spec's data contract, checked with Great Expectations.

``build_suite`` turns a spec into an expectation suite (every expectation says in its
``meta`` which spec field it came from). ``validate_dataframe`` runs it and returns a
JSON-serialisable report whose every result carries a short human sentence
(``observed``); ``render_html`` turns the report into one self-contained page;
``validate_dataset`` loads the spec's data, validates it and writes both files; and
``raise_for_report`` is the quality gate: it raises ``DataValidationError`` naming each
failed expectation and column.

Great Expectations is imported inside functions only: DAG files import this module
at parse time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.platform import reports
from include.modelops.platform.storage import write_atomic

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuite

    from include.modelops.spec import ModelSpec

log = logging.getLogger(__name__)

REPORT_JSON = "validation_report.json"
REPORT_HTML = "validation_report.html"

# dtype names GX's ExpectColumnValuesToBeInTypeList understands for pandas. Object columns
# are checked value by value (so numbers stored as strings fail); typed columns by dtype.
_NUMERIC_TYPES = [
    *(f"{k}{b}" for k in ("int", "uint") for b in (8, 16, 32, 64)),
    "float16",
    "float32",
    "float64",
    *(f"{k}{b}Dtype" for k in ("Int", "UInt") for b in (8, 16, 32, 64)),
    "Float32Dtype",
    "Float64Dtype",
    "int",
    "float",
]
_TEXT_TYPES = ["object", "str"]
_BOOLEAN_TYPES = ["bool", "BooleanDtype"]
# A time column must hold datetimes (any unit; time-zone-aware ones are compared in UTC, see
# _normalise_dtypes). Text and numbers fail: they cannot be ordered as time.
_TIME_TYPES = [f"datetime64[{unit}]" for unit in ("ns", "us", "ms", "s")]
_TYPE_LABELS = {"numeric": "numeric", "integer": "numeric", "categorical": "text", "boolean": "boolean"}

_MAX_MESSAGE_LINES = 25


class DataValidationError(Exception):
    """The data broke the spec's data contract; ``report`` is the full validation report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class DataSplitError(Exception):
    """The train/holdout split cannot be made from the data (e.g. one side would be empty)."""


# --------------------------------------------------------------------------- the suite


def build_suite(spec: ModelSpec, *, time_column_is_text: bool = False) -> ExpectationSuite:
    """The spec's data contract as a GX expectation suite named ``<model>_data_contract``.

    Every expectation's ``meta`` holds ``spec_field`` (where the rule comes from) and
    ``check`` (the kind of rule), which the report uses to phrase its results.

    Args:
        spec: The model spec.
        time_column_is_text: The data's time column holds text (it was not read as datetimes);
            adds an expectation naming the values that are not dates at all.
    """
    gx = _import_gx()
    E = gx.expectations
    expectations: list[Any] = []

    def add(expectation: Any, check: str, spec_field: str, **extra: Any) -> None:
        expectation.meta = {"check": check, "spec_field": spec_field, **extra}
        expectation.notes = f"From the model spec: {spec_field}."
        expectations.append(expectation)

    sources = _column_sources(spec)
    for col in spec.required_columns:
        add(E.ExpectColumnToExist(column=col), "column_exists", sources[col])
    add(E.ExpectTableRowCountToBeBetween(min_value=spec.data.min_rows), "row_count", "data.min_rows")

    for f in spec.features:
        field = f"features[{f.name}]"
        type_list = {
            "numeric": _NUMERIC_TYPES,
            "integer": _NUMERIC_TYPES,
            "categorical": _TEXT_TYPES,
            "boolean": _BOOLEAN_TYPES,
        }[f.type.value]
        add(
            E.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=type_list),
            "type",
            f"{field}.type",
            expected=_TYPE_LABELS[f.type.value],
        )
        add(
            E.ExpectColumnValuesToNotBeNull(column=f.name, mostly=1.0 - f.max_null_fraction),
            "nulls",
            f"{field}.max_null_fraction",
            allowed_null_fraction=f.max_null_fraction,
        )
        if f.min is not None or f.max is not None:
            add(
                E.ExpectColumnValuesToBeBetween(column=f.name, min_value=f.min, max_value=f.max),
                "range",
                f"{field}.min/max",
            )
        if f.categories:
            add(
                E.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.categories)),
                "categories",
                f"{field}.categories",
            )

    add(
        E.ExpectColumnValuesToNotBeNull(column=spec.target.name),
        "nulls",
        "target.name",
        allowed_null_fraction=0.0,
    )
    if spec.target.classes:
        add(
            E.ExpectColumnValuesToBeInSet(column=spec.target.name, value_set=list(spec.target.classes)),
            "classes",
            "target.classes",
        )
    for label, col in (("time_column", spec.time_column), ("entity_id", spec.entity_id)):
        if col:
            add(E.ExpectColumnValuesToNotBeNull(column=col), "nulls", label, allowed_null_fraction=0.0)
    if spec.time_column:
        add(
            E.ExpectColumnValuesToBeInTypeList(column=spec.time_column, type_list=_TIME_TYPES),
            "time_type",
            "time_column",
            format=spec.data.format,
        )
        if time_column_is_text:
            # Which values are not dates at all (GX's own parser, value by value).
            add(E.ExpectColumnValuesToBeDateutilParseable(column=spec.time_column), "dates", "time_column")
    # GX counts every copy of a repeated row (the first one too) as unexpected.
    max_rows = spec.data.max_duplicate_row_fraction
    add(
        E.ExpectCompoundColumnsToBeUnique(column_list=list(spec.required_columns), mostly=1.0 - max_rows),
        "duplicate_rows",
        "data.max_duplicate_row_fraction",
        allowed_fraction=max_rows,
    )
    if spec.entity_id and spec.time_column:
        max_keys = spec.data.max_duplicate_key_fraction
        add(
            E.ExpectCompoundColumnsToBeUnique(
                column_list=[spec.entity_id, spec.time_column], mostly=1.0 - max_keys
            ),
            "duplicate_keys",
            "data.max_duplicate_key_fraction",
            allowed_fraction=max_keys,
        )
    # Built in one go: ``ExpectationSuite.add_expectation`` needs a data context, this does not.
    return gx.ExpectationSuite(
        name=f"{spec.name}_data_contract",
        expectations=expectations,
        meta={"model": spec.name, "spec_hash": spec.spec_hash()},
    )


def _import_gx() -> Any:
    """Import Great Expectations quietly: no analytics, no import-time log flood."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX logs ~150 INFO lines while importing and more per context; a task log needs none of
    # them. Left alone when someone configured the GX logger on purpose.
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx

    # This one module pins its own logger to INFO ("Created temporary directory ...").
    docs_logger = logging.getLogger("great_expectations.data_context.types.base")
    if docs_logger.level == logging.INFO:
        docs_logger.setLevel(logging.WARNING)
    return gx


def _column_sources(spec: ModelSpec) -> dict[str, str]:
    sources = {f.name: f"features[{f.name}]" for f in spec.features}
    sources[spec.target.name] = "target.name"
    if spec.time_column:
        sources[spec.time_column] = "time_column"
    if spec.entity_id:
        sources[spec.entity_id] = "entity_id"
    return sources


# --------------------------------------------------------------------------- validation


def validate_dataframe(spec: ModelSpec, df: pd.DataFrame) -> dict[str, Any]:
    """Check ``df`` against the spec's data contract.

    Returns:
        A JSON-serialisable report: ``model``, ``success``, ``rows``, ``columns``,
        ``statistics``, ``results`` (one per expectation, in suite order, each with a short
        human ``observed`` text), ``failed``, ``duration_s``, ``great_expectations_version``.
        Expectations on a missing column are failed results observing "column is missing".
    """
    gx = _import_gx()
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    started = time.perf_counter()
    time_col = spec.time_column
    time_is_text = bool(
        time_col
        and time_col in df.columns
        and not pd.api.types.is_datetime64_any_dtype(df[time_col].dtype)
        and pd.api.types.is_string_dtype(df[time_col].dtype)
    )
    suite = build_suite(spec, time_column_is_text=time_is_text)
    log.info(
        "Validating %s rows x %d columns with %d expectations (suite %s)",
        f"{len(df):,}",
        len(df.columns),
        len(suite.expectations),
        suite.name,
    )

    context = gx.get_context(mode="ephemeral")
    # tqdm bars would fill the Airflow task log with carriage returns.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (
        context.data_sources.add_pandas(name=f"{spec.name}_data")
        .add_dataframe_asset(name=spec.name)
        .add_batch_definition_whole_dataframe(name="whole_dataframe")
    )
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{spec.name}_validation", data=batch, suite=suite)
    )
    outcome = definition.run(
        batch_parameters={"dataframe": _normalise_dtypes(df)},
        result_format={"result_format": "BASIC", "partial_unexpected_count": 20},
    ).to_json_dict()

    order = {e.id: i for i, e in enumerate(suite.expectations)}
    raw = sorted(outcome["results"], key=lambda r: order.get(r["expectation_config"].get("id"), len(order)))
    results = _explain_knock_on_errors([_summarise(r, df, spec) for r in raw])
    split = _check_split(spec, df, results)
    if split is not None:
        results.append(split)
    report = _report(spec, results, rows=len(df), columns=[str(c) for c in df.columns], started=started)
    log.info("Validation %s: %s", "passed" if report["success"] else "FAILED", _summary(report))
    for r in report["warnings"]:
        log.warning("Validation warning: %s: %s", r["expectation"], r["observed"])
    return report


def _normalise_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """Categorical and string-extension columns as object, so the text type check sees their values.

    A ``category`` or ``string`` dtype is a storage choice, not a data error.
    """
    import pandas as pd

    convert = [
        c
        for c, dtype in df.dtypes.items()
        if isinstance(dtype, pd.CategoricalDtype)
        or (pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype))
    ]
    # GX's type check cannot name a time-zone-aware dtype; the same instants in UTC are checked.
    aware = [c for c, dtype in df.dtypes.items() if isinstance(dtype, pd.DatetimeTZDtype)]
    if not convert and not aware:
        return df
    return df.assign(
        **{str(c): df[c].astype(object) for c in convert},
        **{str(c): df[c].dt.tz_convert(None) for c in aware},
    )


def _summarise(raw: dict[str, Any], df: pd.DataFrame, spec: ModelSpec | None = None) -> dict[str, Any]:
    """One GX result as a small report entry with a human sentence."""
    config = raw["expectation_config"]
    kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
    meta = config.get("meta") or {}
    column = kwargs.get("column")
    result = raw.get("result") or {}
    error = _exception_message(raw.get("exception_info"))
    success = bool(raw.get("success")) and error is None
    missing = column is not None and column not in df.columns
    absent = [c for c in kwargs.get("column_list") or [] if c not in df.columns]

    if missing:
        observed = "column is missing"
        if meta.get("check") == "column_exists":
            claimed = set(spec.required_columns) if spec is not None else set()
            renamed = likely_renames(column, [str(c) for c in df.columns if c not in claimed])
            if renamed:
                observed += (
                    f"; the data has {' and '.join(repr(c) for c in renamed)}: if the column was renamed, "
                    f"rename it back in the data or change {meta.get('spec_field', 'its name')} in the spec"
                )
        success = False
    elif absent:
        observed = f"could not be checked: {', '.join(repr(c) for c in absent)} missing (see above)"
        success = False
    elif error is not None:
        observed = f"could not be checked: {error}"
    else:
        observed = _observed(meta.get("check"), success, meta, kwargs, result, _dtype(df, column))
        if not success and meta.get("check") in ("duplicate_rows", "duplicate_keys"):
            observed += _duplicate_example(df, kwargs["column_list"])

    details = {
        "unexpected_percent": result.get("unexpected_percent"),
        "partial_unexpected_list": list(result.get("partial_unexpected_list") or [])[:5],
        "observed_value": result.get("observed_value"),
        "kwargs": kwargs,
    }
    if error is not None and not missing and not absent:
        details["exception"] = error
    if missing or absent:
        details["missing_columns"] = [column] if missing else absent
    return _jsonable(
        {
            "expectation": config["type"],
            "column": column,
            "success": success,
            "observed": observed,
            "spec_field": meta.get("spec_field"),
            "details": details,
        }
    )


def likely_renames(missing: str, columns: list[str], limit: int = 2) -> list[str]:
    """Columns of the data that look like ``missing`` renamed: same name ignoring case and
    ``_``/``-``/space/``.``, else close by ``difflib`` (e.g. ``merchant_category`` -> ``MerchantCategory``,
    ``merchant_categ``)."""
    import difflib

    def norm(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch not in "_- .")

    by_norm: dict[str, list[str]] = {}
    for col in columns:
        by_norm.setdefault(norm(col), []).append(col)
    target = norm(missing)
    if target in by_norm:
        return by_norm[target][:limit]
    close = difflib.get_close_matches(target, list(by_norm), n=limit, cutoff=0.65)
    return [col for key in close for col in by_norm[key]][:limit]


def _check_split(spec: ModelSpec, df: pd.DataFrame, results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The holdout the split step will make, checked before training: both sides hold rows and,
    for classification, every class has ``split.min_class_count`` rows on each side.

    Skipped (None) when the row count, the target or the time column already failed: the split
    needs them sound, and a second message about too little data would say nothing new.
    """
    from include.modelops.data.reading import split_holdout

    target, time_col = spec.target.name, spec.time_column
    needed = {target, *([time_col] if time_col else [])}
    if any(
        not r["success"]
        and (r["column"] in needed or r["expectation"] == "expect_table_row_count_to_be_between")
        for r in results
    ):
        return None
    mask, how = split_holdout(
        df, time_column=time_col, holdout_fraction=spec.split.holdout_fraction, seed=spec.split.seed
    )
    sides = {"train": df.loc[~mask, target], "holdout": df.loc[mask, target]}
    classification = spec.task.value != "regression"
    entry: dict[str, Any] = {
        "expectation": "train_and_holdout_hold_every_class"
        if classification
        else "train_and_holdout_hold_rows",
        "column": target,
        "success": True,
        "spec_field": "split.min_class_count" if classification else "split.holdout_fraction",
        "details": {"split": how, "rows": {k: int(len(v)) for k, v in sides.items()}},
    }
    empty = [k for k, v in sides.items() if v.empty]
    if empty:
        where = f"every {time_col} is at or before the cut" if time_col and "holdout" in empty else "no rows"
        entry.update(
            success=False,
            observed=(
                f"the split ({how}) leaves the {' and '.join(empty)} empty ({where}): "
                f"{'the time column needs more than one distinct time; ' if time_col else ''}"
                "use more data or change split.holdout_fraction"
            ),
        )
        return _jsonable(entry)
    if not classification:
        entry["observed"] = f"{len(sides['train']):,} train / {len(sides['holdout']):,} holdout rows ({how})"
        return _jsonable(entry)

    need = spec.split.min_class_count
    classes = (
        list(spec.target.classes)
        if spec.target.classes
        else sorted(df[target].dropna().unique().tolist(), key=str)
    )
    counts = [(side, _unwrap(c), int((values == c).sum())) for side, values in sides.items() for c in classes]
    entry["details"]["class_counts"] = {
        side: {str(c): n for sd, c, n in counts if sd == side} for side in sides
    }
    short = [(side, c, n) for side, c, n in counts if n < need]
    if not short:
        side, cls, n = min(counts, key=lambda t: t[2])
        entry["observed"] = (
            f"every class has ≥ {need} rows in train and holdout ({how}; fewest: class {cls!r}, "
            f"{n:,} rows in the {side})"
        )
        return _jsonable(entry)
    listed = "; ".join(f"{side}: class {c!r} has {n:,} rows" for side, c, n in short[:6])
    if len(short) > 6:
        listed += f"; ... {len(short) - 6} more"
    hint = (
        f"the holdout is the latest {spec.split.holdout_fraction:.0%} of rows by {time_col}: data sorted or "
        "batched by class leaves classes out of it; "
        if time_col
        else ""
    )
    entry.update(
        success=False,
        observed=(
            f"{listed} (need ≥ {need} of each class on both sides; split {how}): {hint}metrics and the "
            "baseline margin mean little without every class; use data covering every class over time, "
            "or change split.min_class_count, or set split.on_missing_class: warn"
        ),
    )
    if spec.split.on_missing_class == "warn":
        entry["severity"] = "warning"
    return _jsonable(entry)


def _explain_knock_on_errors(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Say "wrong type" instead of GX's internal error where a failed type check caused it.

    A range check on text raises inside GX ("Column values, min_value, and max_value must
    either be None or of the same type"); the data engineer needs the cause, not that.
    """
    wrong_type = {
        r["column"]
        for r in results
        if r["expectation"] == "expect_column_values_to_be_in_type_list" and not r["success"]
    }
    for r in results:
        if r["column"] in wrong_type and "exception" in r["details"]:
            r["observed"] = "could not be checked: the column has the wrong type (see the type expectation)"
    return results


def _exception_message(info: Any) -> str | None:
    """The exception GX caught for a result, if any (its shape differs by where it was raised)."""
    if not isinstance(info, dict):
        return None
    candidates = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for item in candidates:
        if item.get("raised_exception"):
            message = str(item.get("exception_message") or "unknown error").strip()
            return message.splitlines()[-1][:300] if message else "unknown error"
    return None


def _dtype(df: pd.DataFrame, column: str | None) -> str:
    if column is None:
        return "n/a"
    dtypes = df.dtypes[df.columns == column]
    return str(dtypes.iloc[0]) if len(dtypes) == 1 else f"{len(dtypes)} columns share this name"


def _observed(check: str | None, success: bool, meta: dict, kwargs: dict, result: dict, dtype: str) -> str:
    """A short sentence a person can act on, phrased by the kind of rule (``meta["check"]``)."""
    pct = result.get("unexpected_percent") or 0.0
    examples = _examples(result.get("partial_unexpected_list"))
    if check == "column_exists":
        return "column is present"
    if check == "row_count":
        return (
            f"observed {_count(result.get('observed_value'))} rows, need ≥ {_count(kwargs.get('min_value'))}"
        )
    if check == "nulls":
        allowed = 100.0 * float(meta.get("allowed_null_fraction", 0.0))
        return f"{_percent(pct)} of rows are null (allowed {_percent(allowed)})"
    if check == "type":
        expected = meta.get("expected", "the declared type")
        if "unexpected_percent" in result:  # object column, checked value by value
            if not pct:
                return f"dtype {dtype}; all values are {expected}"
            return f"dtype {dtype}; {_percent(pct)} of values are not {expected} (e.g. {examples})"
        return f"dtype {dtype}" if success else f"dtype {dtype}, expected {expected}"
    if check == "range":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            bounds = f"within [{_num(low)}, {_num(high)}]"
        else:
            bounds = f"≥ {_num(low)}" if low is not None else f"≤ {_num(high)}"
        if not pct:
            return f"all values {bounds}"
        return f"{_percent(pct)} of values are not {bounds} (e.g. {examples})"
    if check == "time_type":
        return _time_type_observed(success, meta, result, dtype, pct, examples)
    if check == "dates":
        if not pct:
            return "every value parses as a date"
        return f"{_percent(pct)} of values do not parse as dates (e.g. {examples})"
    if check in ("duplicate_rows", "duplicate_keys"):
        count = int(result.get("unexpected_count") or 0)
        allowed = _percent(100.0 * float(meta.get("allowed_fraction", 0.0)))
        what = (
            "are exact duplicates of another row in every column the spec names"
            if check == "duplicate_rows"
            else f"share their ({', '.join(kwargs.get('column_list', []))}) with another row"
        )
        if not count:
            if check == "duplicate_rows":
                return "no exact duplicate rows"
            return f"no repeated ({', '.join(kwargs.get('column_list', []))}) pairs"
        return f"{_count(count)} rows ({_percent(pct)}) {what} (allowed {allowed})"
    if check in ("categories", "classes"):
        what = "categories" if check == "categories" else "classes"
        if not pct:
            return f"all values in the allowed {what}"
        unseen = _examples(result.get("partial_unexpected_list"))
        return f"{_percent(pct)} of values not in the allowed {what} (unseen: {unseen})"
    return "passed" if success else "failed"


def _time_type_observed(
    success: bool, meta: dict, result: dict, dtype: str, pct: float, examples: str
) -> str:
    """What the time column holds, and how to store it so that it can be ordered."""
    if success:
        return f"dtype {dtype}"
    if "unexpected_percent" not in result:  # a typed column: numbers, booleans, ...
        return (
            f"dtype {dtype}, expected timestamps: store the column as a timestamp or date "
            "(e.g. pandas.to_datetime(values, unit='s') for epoch seconds)"
        )
    if meta.get("format") == "csv":
        return (
            f"dtype {dtype}; {_percent(pct)} of values could not be read as dates with one format "
            f"(e.g. {examples}): write every value in one date format, ISO 8601 preferred "
            "(2026-01-31 or 2026-01-31T14:05:00, one UTC offset for all)"
        )
    return (
        f"dtype {dtype}; {_percent(pct)} of values are text, not timestamps (e.g. {examples}): "
        "Parquet text is not parsed, store the column as a timestamp or date "
        "(pandas: df[col] = pandas.to_datetime(df[col]) before writing)"
    )


def _duplicate_example(df: pd.DataFrame, columns: list[str]) -> str:
    """'; e.g. rows 3 and 9: {...}' for the first repeated row (row numbers count from 0)."""
    import pandas as pd

    keys = pd.util.hash_pandas_object(df[columns], index=False)  # equal rows, NaN included, hash alike
    repeated = keys[keys.duplicated(keep=False)]
    if repeated.empty:
        return ""
    same = repeated.index[repeated == repeated.iloc[0]]
    first = df.loc[same[0]]
    rows = [str(i) for i in same[:3]]
    more = f" and {len(same) - 3} more" if len(same) > 3 else ""
    shown = columns if len(columns) <= 4 else columns[-2:] + columns[:2]
    values = ", ".join(f"{c}={_jsonable(_unwrap(first[c]))!r}" for c in shown)
    if len(shown) < len(columns):
        values += ", ..."
    return f"; e.g. rows {', '.join(rows)}{more} hold {values}"


def _report(
    spec: ModelSpec, results: list[dict[str, Any]], *, rows: int, columns: list[str], started: float
) -> dict[str, Any]:
    # A failed check the spec chose to only warn about (severity "warning") does not fail the data.
    warned = [r for r in results if not r["success"] and r.get("severity") == "warning"]
    failed = [r for r in results if not r["success"] and r.get("severity") != "warning"]
    evaluated = len(results)
    successful = evaluated - len(failed) - len(warned)
    return {
        "model": spec.name,
        "suite": f"{spec.name}_data_contract",
        "success": not failed,
        "rows": int(rows),
        "columns": columns,
        "statistics": {
            "evaluated": evaluated,
            "successful": successful,
            "unsuccessful": len(failed),
            "warnings": len(warned),
            "success_percent": round(100.0 * successful / evaluated, 1) if evaluated else 0.0,
        },
        "results": results,
        "failed": failed,
        "warnings": warned,
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 3),
        "great_expectations_version": _gx_version(),
    }


def _gx_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("great_expectations")
    except PackageNotFoundError:  # pragma: no cover - GX is a pinned dependency
        return "unknown"


def _summary(report: dict[str, Any]) -> str:
    s = report["statistics"]
    text = f"{s['successful']}/{s['evaluated']} expectations passed on {report['rows']:,} rows"
    if any(r["expectation"] == "dataset_is_readable" for r in report["failed"]):
        text += " (the dataset could not be read)"
    warned = len(report.get("warnings") or [])
    if warned:
        text += f", {warned} warning{'s' * (warned != 1)}"
    return text


# --------------------------------------------------------------------------- the dataset


def validate_dataset(spec: ModelSpec, out_dir: str | Path) -> dict[str, Any]:
    """Load the spec's data, validate it and write ``validation_report.json`` and ``.html``.

    Failed data does not raise (call ``raise_for_report`` for the gate); unreadable data
    becomes a failed report with one ``dataset_is_readable`` result naming the problem.

    Returns:
        The report plus ``report_json`` and ``report_html`` (paths), ``data_path`` and
        ``summary`` (e.g. "39/41 expectations passed on 100,000 rows").
    """
    from include.modelops.data.reading import DataLoadError, read_dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path = spec.data.resolved_path()
    started = time.perf_counter()
    log.info("Loading %s data for model %r from %s", spec.data.format, spec.name, data_path)
    try:
        df = read_dataset(
            data_path, spec.data.format, parse_dates=[spec.time_column] if spec.time_column else ()
        )
    except DataLoadError as exc:
        log.error("Cannot read the data for model %r: %s", spec.name, exc)
        unreadable = {
            "expectation": "dataset_is_readable",
            "column": None,
            "success": False,
            "observed": str(exc),
            "spec_field": "data.path",
            "details": {"path": str(data_path), "format": spec.data.format, "error": type(exc).__name__},
        }
        report = _report(spec, [unreadable], rows=0, columns=[], started=started)
    else:
        log.info(
            "Loaded %s rows x %d columns in %.1fs",
            f"{len(df):,}",
            len(df.columns),
            time.perf_counter() - started,
        )
        report = validate_dataframe(spec, df)

    json_path, html_path = out / REPORT_JSON, out / REPORT_HTML
    report.update(
        data_path=str(data_path),
        report_json=str(json_path),
        report_html=str(html_path),
        summary=_summary(report),
    )
    # A retried task must never leave a half-written report behind.
    write_atomic(json_path, json.dumps(report, indent=2, allow_nan=False))
    write_atomic(html_path, render_html(report))
    if report["success"]:
        log.info("Data validation passed: %s. Report: %s", report["summary"], html_path)
    else:
        log.warning("Data validation FAILED: %s. Report: %s", report["summary"], html_path)
        for line in _failure_lines(report):
            log.warning("%s", line)
    return report


# --------------------------------------------------------------------------- the gate


def raise_for_report(report: dict[str, Any]) -> None:
    """Raise ``DataValidationError`` naming each failed expectation and column if the report failed."""
    if report.get("success"):
        return
    stats = report.get("statistics", {})
    lines = [
        (
            f"Data validation failed for model {report.get('model')!r}: "
            f"{stats.get('unsuccessful', len(report.get('failed', [])))} of {stats.get('evaluated', '?')} "
            "expectations failed:"
        ),
        *_failure_lines(report),
    ]
    if report.get("report_html"):
        lines.append(f"Report: {report['report_html']}")
    data = f"the data at {report['data_path']}" if report.get("data_path") else "the data"
    spec_file = _spec_file(str(report.get("model")))
    if all(r.get("expectation") == "dataset_is_readable" for r in report.get("failed", [])):
        lines.append(f"Check that {data} exists and is readable, or fix data.path in the spec ({spec_file}).")
    else:
        lines.append(
            f"Fix {data}, or if the change is intended, update the constraints in the spec ({spec_file})."
        )
    raise DataValidationError("\n".join(lines), report)


def _failure_lines(report: dict[str, Any]) -> list[str]:
    """One line per failure; a missing column is one line, not one per expectation on it."""
    failed = report.get("failed", [])
    missing: dict[str, list[dict]] = {}
    for r in failed:
        if r.get("column") is not None and (r.get("details") or {}).get("missing_columns") == [r["column"]]:
            missing.setdefault(r["column"], []).append(r)
    lines, shown = [], set()
    for r in failed:
        col = r.get("column")
        if col is None and (r.get("details") or {}).get("missing_columns"):
            continue  # a check over several columns, one of them missing: said on that column's line
        if col in missing:
            if col in shown:
                continue
            shown.add(col)
            group = missing[col]
            first = next((g for g in group if g["expectation"] == "expect_column_to_exist"), group[0])
            extra = len(group) - 1
            suffix = f" ({extra} other expectation{'s' * (extra != 1)} on it could not run)" if extra else ""
            lines.append(f"  - column {col!r}: {first['expectation']}: {first['observed']}{suffix}")
            continue
        where = (
            f"column {col!r}"
            if col is not None
            else ("dataset" if r.get("expectation") == "dataset_is_readable" else "table")
        )
        lines.append(f"  - {where}: {r.get('expectation')}: {r.get('observed')}")
    if len(lines) > _MAX_MESSAGE_LINES:
        lines = [
            *lines[:_MAX_MESSAGE_LINES],
            f"  ... and {len(lines) - _MAX_MESSAGE_LINES} more (see the report)",
        ]
    return lines


def _spec_file(model: str) -> str:
    from include.modelops.settings import PROJECT_ROOT
    from include.modelops.spec import ModelSpecError, spec_path

    try:
        path = spec_path(model)
    except ModelSpecError:
        return f"include/models/{model}.yaml"
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- HTML


# What only this report has; the rest is platform/reports.py's stylesheet.
_CSS = """
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem;margin:1rem 0}
dt{font-weight:600;color:#59636e}dd{margin:0}
tr.ok td.status{background:#dafbe1;color:#1a7f37;font-weight:600}
tr.ko td.status{background:#ffebe9;color:#cf222e;font-weight:600}
tr.ko{background:#fff8f7}
tr.warn td.status{background:#fff8c5;color:#9a6700;font-weight:600}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS, failed expectations first)."""
    e = reports.escape
    ok = bool(report.get("success"))
    stats = report.get("statistics", {})
    facts = [
        ("Rows", f"{report.get('rows', 0):,}"),
        ("Columns", str(len(report.get("columns", [])))),
        (
            "Expectations",
            (
                f"{stats.get('successful', 0)} of {stats.get('evaluated', 0)} passed "
                f"({stats.get('success_percent', 0)}%), {stats.get('unsuccessful', 0)} failed"
                + (f", {stats['warnings']} warned" if stats.get("warnings") else "")
            ),
        ),
    ]
    if report.get("data_path"):
        facts.append(("Data", report["data_path"]))
    facts += [
        ("Validated at", str(report.get("validated_at", ""))),
        ("Duration", f"{report.get('duration_s', 0)} s"),
        ("Great Expectations", str(report.get("great_expectations_version", ""))),
    ]

    def status(r: dict) -> tuple[int, str, str]:
        if r.get("success"):
            return 2, "ok", "passed"
        return (1, "warn", "WARNING") if r.get("severity") == "warning" else (0, "ko", "FAILED")

    results = sorted(report.get("results", []), key=lambda r: status(r)[0])
    rows = "\n".join(
        f'<tr class="{status(r)[1]}">'
        f'<td class="status">{status(r)[2]}</td>'
        f"<td><code>{e(str(r.get('expectation')))}</code></td>"
        f"<td>{e(str(r['column'])) if r.get('column') is not None else '<span class=muted>table</span>'}</td>"
        f"<td>{e(str(r.get('observed', '')))}</td>"
        f"<td><code>{e(str(r.get('spec_field') or ''))}</code></td></tr>"
        for r in results
    )
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    title = f"Data validation: {report.get('model')}"
    body = f"""<h1>{e(title)} {reports.badge("PASSED" if ok else "FAILED", ok)}</h1>
<dl>{dl}</dl>
<table>
<thead><tr><th>Status</th><th>Expectation</th><th>Column</th><th>Observed</th><th>Spec field</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="muted">Each rule comes from the model spec field shown; fix the data, or change the spec if the
change in the data is intended.</p>"""
    return reports.page(title, body, css=_CSS)


# --------------------------------------------------------------------------- formatting


def _percent(value: float) -> str:
    if not value:
        return "0%"
    if value < 0.1:
        return f"{value:.2g}%"
    return f"{value:.1f}".rstrip("0").rstrip(".") + "%"


def _count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _examples(values: Any, limit: int = 3) -> str:
    """A few distinct offending values, as the data engineer would search for them."""
    distinct = list(dict.fromkeys(repr(_jsonable(v)) for v in values or []))[:limit]
    return ", ".join(distinct) if distinct else "no examples"


def _unwrap(value: Any) -> Any:
    """A numpy scalar as the plain Python value (so that repr shows 12.5, not np.float64(12.5))."""
    return value.item() if hasattr(value, "item") and not hasattr(value, "isoformat") else value


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf as None, timestamps as ISO text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp, numpy datetime via pandas
        try:
            return value.isoformat()
        except (TypeError, ValueError):
            return str(value)
    if hasattr(value, "item"):  # numpy scalar
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            return str(value)
    return str(value)
