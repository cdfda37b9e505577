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

import html
import json
import logging
import math
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
_TYPE_LABELS = {"numeric": "numeric", "integer": "numeric", "categorical": "text", "boolean": "boolean"}

_MAX_MESSAGE_LINES = 25


class DataValidationError(Exception):
    """The data broke the spec's data contract; ``report`` is the full validation report."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------- the suite


def build_suite(spec: ModelSpec) -> ExpectationSuite:
    """The spec's data contract as a GX expectation suite named ``<model>_data_contract``.

    Every expectation's ``meta`` holds ``spec_field`` (where the rule comes from) and
    ``check`` (the kind of rule), which the report uses to phrase its results.
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
    from great_expectations.data_context.types.base import ProgressBarsConfig

    started = time.perf_counter()
    suite = build_suite(spec)
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
    results = _explain_knock_on_errors([_summarise(r, df) for r in raw])
    report = _report(spec, results, rows=len(df), columns=[str(c) for c in df.columns], started=started)
    log.info("Validation %s: %s", "passed" if report["success"] else "FAILED", _summary(report))
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
    if not convert:
        return df
    return df.assign(**{str(c): df[c].astype(object) for c in convert})


def _summarise(raw: dict[str, Any], df: pd.DataFrame) -> dict[str, Any]:
    """One GX result as a small report entry with a human sentence."""
    config = raw["expectation_config"]
    kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
    meta = config.get("meta") or {}
    column = kwargs.get("column")
    result = raw.get("result") or {}
    error = _exception_message(raw.get("exception_info"))
    success = bool(raw.get("success")) and error is None
    missing = column is not None and column not in df.columns

    if missing:
        observed = "column is missing"
        success = False
    elif error is not None:
        observed = f"could not be checked: {error}"
    else:
        observed = _observed(meta.get("check"), success, meta, kwargs, result, _dtype(df, column))

    details = {
        "unexpected_percent": result.get("unexpected_percent"),
        "partial_unexpected_list": list(result.get("partial_unexpected_list") or [])[:5],
        "observed_value": result.get("observed_value"),
        "kwargs": kwargs,
    }
    if error is not None and not missing:
        details["exception"] = error
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
    if check in ("categories", "classes"):
        what = "categories" if check == "categories" else "classes"
        if not pct:
            return f"all values in the allowed {what}"
        unseen = _examples(result.get("partial_unexpected_list"))
        return f"{_percent(pct)} of values not in the allowed {what} (unseen: {unseen})"
    return "passed" if success else "failed"


def _report(
    spec: ModelSpec, results: list[dict[str, Any]], *, rows: int, columns: list[str], started: float
) -> dict[str, Any]:
    failed = [r for r in results if not r["success"]]
    evaluated = len(results)
    return {
        "model": spec.name,
        "suite": f"{spec.name}_data_contract",
        "success": not failed,
        "rows": int(rows),
        "columns": columns,
        "statistics": {
            "evaluated": evaluated,
            "successful": evaluated - len(failed),
            "unsuccessful": len(failed),
            "success_percent": round(100.0 * (evaluated - len(failed)) / evaluated, 1) if evaluated else 0.0,
        },
        "results": results,
        "failed": failed,
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
    from include.modelops.dataset import DataLoadError, read_dataset

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
    _write_atomic(json_path, json.dumps(report, indent=2, allow_nan=False))
    _write_atomic(html_path, render_html(report))
    if report["success"]:
        log.info("Data validation passed: %s. Report: %s", report["summary"], html_path)
    else:
        log.warning("Data validation FAILED: %s. Report: %s", report["summary"], html_path)
        for line in _failure_lines(report):
            log.warning("%s", line)
    return report


def _write_atomic(path: Path, text: str) -> None:
    # A retried task must never leave a half-written report behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


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
        if r.get("observed") == "column is missing" and r.get("column") is not None:
            missing.setdefault(r["column"], []).append(r)
    lines, shown = [], set()
    for r in failed:
        col = r.get("column")
        if col in missing:
            if col in shown:
                continue
            shown.add(col)
            group = missing[col]
            first = next((g for g in group if g["expectation"] == "expect_column_to_exist"), group[0])
            extra = len(group) - 1
            suffix = f" ({extra} other expectation{'s' * (extra != 1)} on it could not run)" if extra else ""
            lines.append(f"  - column {col!r}: {first['expectation']}: column is missing{suffix}")
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


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.5rem;margin:0 0 .5rem}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:1rem;font-weight:600;color:#fff;
 vertical-align:middle;font-size:.9rem;margin-left:.5rem}
.pass{background:#1a7f37}.fail{background:#cf222e}
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem;margin:1rem 0}
dt{font-weight:600;color:#59636e}dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d1d9e0;padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr.ok td.status{background:#dafbe1;color:#1a7f37;font-weight:600}
tr.ko td.status{background:#ffebe9;color:#cf222e;font-weight:600}
tr.ko{background:#fff8f7}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}
.muted{color:#59636e;font-size:.85rem}
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS, failed expectations first)."""
    e = html.escape
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
    results = sorted(report.get("results", []), key=lambda r: bool(r.get("success")))
    rows = "\n".join(
        f'<tr class="{"ok" if r.get("success") else "ko"}">'
        f'<td class="status">{"passed" if r.get("success") else "FAILED"}</td>'
        f"<td><code>{e(str(r.get('expectation')))}</code></td>"
        f"<td>{e(str(r['column'])) if r.get('column') is not None else '<span class=muted>table</span>'}</td>"
        f"<td>{e(str(r.get('observed', '')))}</td>"
        f"<td><code>{e(str(r.get('spec_field') or ''))}</code></td></tr>"
        for r in results
    )
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    title = f"Data validation: {report.get('model')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{e(title)}<span class="badge {"pass" if ok else "fail"}">{"PASSED" if ok else "FAILED"}</span></h1>
<dl>{dl}</dl>
<table>
<thead><tr><th>Status</th><th>Expectation</th><th>Column</th><th>Observed</th><th>Spec field</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="muted">Each rule comes from the model spec field shown; fix the data, or change the spec if the
change in the data is intended.</p>
</body></html>
"""


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
