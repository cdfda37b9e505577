"""Data validation: the fraud spec's data contract, checked with Great Expectations.

Frames are built from the spec itself, so the tests follow the spec when it changes;
``validate_dataset`` is exercised on data written by ``include.modelops.dataset``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.modelops.dataset import BROKEN_VARIANTS, generate_transactions
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import FeatureType, ModelSpec, load_spec
from include.modelops.validation import (
    DataValidationError,
    build_suite,
    raise_for_report,
    render_html,
    validate_dataframe,
    validate_dataset,
)

ROWS = 1_500


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    """The reference fraud spec, asking for fewer rows so that small test frames are enough."""
    reference = load_spec(PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml")
    return reference.model_copy(update={"data": reference.data.model_copy(update={"min_rows": 1_000})})


def valid_frame(spec: ModelSpec, rows: int = ROWS, seed: int = 7) -> pd.DataFrame:
    """Rows that satisfy every constraint of the spec."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for f in spec.features:
        if f.type == FeatureType.numeric:
            data[f.name] = rng.uniform(f.min or 0.0, f.max or 1.0, rows).round(2)
        elif f.type == FeatureType.integer:
            data[f.name] = rng.integers(int(f.min or 0), int(f.max or 10) + 1, rows)
        elif f.type == FeatureType.categorical:
            data[f.name] = rng.choice(f.categories, rows).astype(object)
        else:
            data[f.name] = rng.random(rows) < 0.1
    data[spec.target.name] = (rng.random(rows) < 0.05).astype(np.int64)
    data[spec.time_column] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(rows) * 60, unit="s")
    data[spec.entity_id] = [f"card_{i % 300:06d}" for i in range(rows)]
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def frame(spec: ModelSpec) -> pd.DataFrame:
    return valid_frame(spec)


def rejected(spec: ModelSpec, df: pd.DataFrame, expectation: str, column: str | None) -> str:
    """Validate, assert it failed, and return the gate's message after checking it names both."""
    report = validate_dataframe(spec, df)
    assert report["success"] is False
    with pytest.raises(DataValidationError) as raised:
        raise_for_report(report)
    message = str(raised.value)
    where = f"column '{column}'" if column else "table"
    assert f"  - {where}: {expectation}: " in message, message
    assert raised.value.report is report
    return message


# --- the suite --------------------------------------------------------------------------------


def test_importing_validation_does_not_import_great_expectations():
    code = "import sys, include.modelops.validation; print('great_expectations' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert out.stdout.strip() == "False", out.stderr


def test_suite_is_named_after_the_model_and_every_expectation_names_its_spec_field(spec):
    suite = build_suite(spec)

    assert suite.name == "fraud_detection_data_contract"
    assert all(e.meta and e.meta.get("spec_field") for e in suite.expectations)
    fields = {e.meta["spec_field"] for e in suite.expectations}
    assert {"data.min_rows", "target.classes", "time_column", "entity_id"} <= fields
    assert "features[distance_from_home_km].max_null_fraction" in fields


def test_suite_covers_columns_row_count_and_each_feature_constraint(spec):
    kinds = [(e.expectation_type, getattr(e, "column", None)) for e in build_suite(spec).expectations]

    for col in spec.required_columns:
        assert ("expect_column_to_exist", col) in kinds
        assert ("expect_column_values_to_not_be_null", col) in kinds
    assert ("expect_table_row_count_to_be_between", None) in kinds
    assert all(("expect_column_values_to_be_in_type_list", f) in kinds for f in spec.feature_names)
    assert ("expect_column_values_to_be_between", "hour_of_day") in kinds
    assert ("expect_column_values_to_be_in_set", "merchant_category") in kinds
    assert ("expect_column_values_to_be_in_set", "is_fraud") in kinds
    distance_nulls = next(
        e
        for e in build_suite(spec).expectations
        if e.expectation_type == "expect_column_values_to_not_be_null" and e.column == "distance_from_home_km"
    )
    assert distance_nulls.mostly == pytest.approx(0.95)


# --- validate_dataframe -----------------------------------------------------------------------


def test_valid_frame_passes_every_expectation(spec, frame):
    report = validate_dataframe(spec, frame)

    assert report["success"] is True, report["failed"]
    assert report["failed"] == []
    assert report["rows"] == ROWS
    stats = report["statistics"]
    assert stats["evaluated"] == len(build_suite(spec).expectations) == stats["successful"]
    assert stats["success_percent"] == 100.0
    raise_for_report(report)  # the gate lets it through


def test_missing_column_fails_naming_the_column_once(spec, frame):
    message = rejected(
        spec, frame.drop(columns=["merchant_category"]), "expect_column_to_exist", "merchant_category"
    )

    assert "column is missing" in message
    assert message.count("'merchant_category'") == 1  # not once per expectation on it


def test_expectations_on_a_missing_column_are_failed_results_not_errors(spec, frame):
    report = validate_dataframe(spec, frame.drop(columns=["merchant_category"]))

    on_missing = [r for r in report["results"] if r["column"] == "merchant_category"]
    assert len(on_missing) == 4  # exists, type, nulls, categories
    assert all(not r["success"] and r["observed"] == "column is missing" for r in on_missing)
    assert report["statistics"]["unsuccessful"] == 4


def test_amounts_stored_as_text_fail_the_type_expectation(spec, frame):
    df = frame.assign(amount=frame["amount"].map(lambda v: f"{v:.2f}".replace(".", ",")))

    message = rejected(spec, df, "expect_column_values_to_be_in_type_list", "amount")

    assert "not numeric" in message


def test_nulls_above_the_allowed_fraction_fail(spec, frame):
    df = frame.copy()
    df.loc[df.index[:450], "amount"] = np.nan  # 30%

    message = rejected(spec, df, "expect_column_values_to_not_be_null", "amount")

    assert "30% of rows are null (allowed 0%)" in message


def test_nulls_below_the_allowed_fraction_pass_for_distance_from_home_km(spec, frame):
    df = frame.copy()
    df.loc[df.index[:45], "distance_from_home_km"] = np.nan  # 3%, the spec allows 5%

    report = validate_dataframe(spec, df)

    assert report["success"] is True, report["failed"]
    nulls = next(
        r
        for r in report["results"]
        if r["column"] == "distance_from_home_km"
        and r["expectation"] == "expect_column_values_to_not_be_null"
    )
    assert nulls["observed"] == "3% of rows are null (allowed 5%)"


def test_out_of_range_values_fail_with_examples(spec, frame):
    df = frame.copy()
    df.loc[df.index[:30], "hour_of_day"] = 27

    message = rejected(spec, df, "expect_column_values_to_be_between", "hour_of_day")

    assert "2% of values are not within [0, 23] (e.g. 27)" in message


def test_unseen_category_fails_naming_the_value(spec, frame):
    df = frame.copy()
    df.loc[df.index[:5], "merchant_category"] = "crypto_exchange"

    message = rejected(spec, df, "expect_column_values_to_be_in_set", "merchant_category")

    assert "'crypto_exchange'" in message


def test_too_few_rows_fail_on_row_count(spec, frame):
    message = rejected(spec, frame.head(999), "expect_table_row_count_to_be_between", None)

    assert "observed 999 rows, need ≥ 1,000" in message


def test_empty_frame_fails_on_row_count(spec, frame):
    report = validate_dataframe(spec, frame.iloc[:0])

    assert [(r["expectation"], r["observed"]) for r in report["failed"]] == [
        ("expect_table_row_count_to_be_between", "observed 0 rows, need ≥ 1,000")
    ]


def test_null_target_fails(spec, frame):
    df = frame.assign(is_fraud=frame["is_fraud"].astype(float))
    df.loc[df.index[:3], "is_fraud"] = np.nan

    rejected(spec, df, "expect_column_values_to_not_be_null", "is_fraud")


def test_storage_dtypes_are_not_data_errors(spec, frame):
    df = frame.astype(
        {
            "merchant_category": "category",
            "channel": "string",
            "hour_of_day": "Int64",
            "is_international": "boolean",
        }
    )

    report = validate_dataframe(spec, df)

    assert report["success"] is True, report["failed"]


def test_report_is_json_serialisable_with_short_details(spec, frame):
    df = frame.copy()
    df.loc[df.index[:100], "amount"] = -1.0

    report = validate_dataframe(spec, df)

    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["model"] == "fraud_detection"
    failed = report["failed"][0]
    assert set(failed) >= {"expectation", "column", "success", "observed", "details"}
    assert len(failed["details"]["partial_unexpected_list"]) <= 5
    assert failed["details"]["kwargs"] == {"column": "amount", "min_value": 0.0, "max_value": 50000.0}
    assert report["great_expectations_version"].startswith("1.")
    assert report["duration_s"] >= 0


# --- render_html and raise_for_report ---------------------------------------------------------


def test_html_report_is_self_contained_and_lists_failures_first(spec, frame):
    report = validate_dataframe(spec, frame.drop(columns=["channel"]))

    page = render_html(report)

    assert page.startswith("<!DOCTYPE html>")
    assert "FAILED" in page and "fraud_detection" in page
    assert "<link" not in page and "<script" not in page and "http" not in page
    first_row = page.index("<tbody>")
    assert page.index("column is missing", first_row) < page.index("passed", first_row)


def test_error_message_says_where_the_report_is_and_what_to_fix(spec, frame, monkeypatch):
    monkeypatch.delenv("MODELOPS_SPECS_DIR", raising=False)  # the message names the default specs folder
    report = validate_dataframe(spec, frame.head(10))
    report.update(report_html="/runs/1/validation_report.html", data_path="/data/fraud")

    with pytest.raises(DataValidationError) as raised:
        raise_for_report(report)

    message = str(raised.value)
    assert message.startswith(
        f"Data validation failed for model 'fraud_detection': 1 of {report['statistics']['evaluated']} "
        "expectations failed:\n"
    )
    assert "Report: /runs/1/validation_report.html" in message
    assert "Fix the data at /data/fraud" in message
    assert "include/models/fraud_detection.yaml" in message


# --- validate_dataset -------------------------------------------------------------------------


def dataset_spec(spec: ModelSpec, path: Path) -> ModelSpec:
    return spec.model_copy(update={"data": spec.data.model_copy(update={"path": str(path)})})


def test_validate_dataset_writes_json_and_html_reports(spec, tmp_path):
    data = tmp_path / "transactions"
    generate_transactions(data, rows=ROWS, days=3, variant="reference")

    report = validate_dataset(dataset_spec(spec, data), tmp_path / "reports")

    assert report["success"] is True, report["failed"]
    n = report["statistics"]["evaluated"]
    assert report["summary"] == f"{n}/{n} expectations passed on 1,500 rows"
    assert report["data_path"] == str(data)
    written = json.loads(Path(report["report_json"]).read_text())
    assert written["summary"] == report["summary"]
    assert "PASSED" in Path(report["report_html"]).read_text()


def test_html_of_a_failed_dataset_names_the_failed_expectation(spec, tmp_path):
    data = tmp_path / "transactions"
    generate_transactions(data, rows=ROWS, days=3, variant="nulls")

    report = validate_dataset(dataset_spec(spec, data), tmp_path / "reports")

    assert report["success"] is False
    page = Path(report["report_html"]).read_text()
    assert "expect_column_values_to_not_be_null" in page and "amount" in page


@pytest.mark.parametrize("variant", BROKEN_VARIANTS)
def test_every_broken_generated_dataset_is_rejected(spec, tmp_path, variant):
    data = tmp_path / variant
    generate_transactions(data, rows=ROWS, days=2, variant=variant)

    report = validate_dataset(dataset_spec(spec, data), tmp_path / "reports")

    assert report["success"] is False
    with pytest.raises(DataValidationError, match=r"Report: .*validation_report\.html"):
        raise_for_report(report)


def test_missing_data_path_gives_a_failed_report_naming_the_path(spec, tmp_path):
    missing = tmp_path / "no_such_folder"

    report = validate_dataset(dataset_spec(spec, missing), tmp_path / "reports")

    assert report["success"] is False
    assert report["rows"] == 0
    [failure] = report["failed"]
    assert failure["expectation"] == "dataset_is_readable" and failure["column"] is None
    assert str(missing) in failure["observed"]
    assert Path(report["report_json"]).exists() and Path(report["report_html"]).exists()
    with pytest.raises(DataValidationError, match="dataset: dataset_is_readable: No dataset at"):
        raise_for_report(report)


def test_unreadable_data_file_gives_a_failed_report_naming_the_file(spec, tmp_path):
    broken = tmp_path / "transactions.parquet"
    broken.write_bytes(b"not a parquet file")

    report = validate_dataset(dataset_spec(spec, broken), tmp_path / "reports")

    assert report["success"] is False
    assert report["failed"][0]["expectation"] == "dataset_is_readable"
    assert str(broken) in report["failed"][0]["observed"]


def test_frame_without_any_columns_fails_without_crashing(spec):
    report = validate_dataframe(spec, pd.DataFrame())

    assert report["success"] is False
    assert {r["column"] for r in report["failed"]} >= set(spec.required_columns)
    message = rejected(spec, pd.DataFrame(), "expect_column_to_exist", "amount")
    assert "observed 0 rows" in message
