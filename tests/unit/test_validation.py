"""Data validation: the fraud spec's data contract, checked with Great Expectations.

Frames are built from the spec itself, so the tests follow the spec when it changes;
``validate_dataset`` is exercised on data written by ``include.modelops.data.example``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.modelops.data.example import BROKEN_VARIANTS, generate_transactions
from include.modelops.data.validation import (
    DataValidationError,
    build_suite,
    likely_renames,
    raise_for_report,
    render_html,
    validate_dataframe,
    validate_dataset,
)
from include.modelops.platform import reports
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import FeatureType, ModelSpec, TaskType, load_spec

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
    code = "import sys, include.modelops.data.validation; print('great_expectations' in sys.modules)"
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
    # every expectation of the suite, plus the check of the train/holdout split
    assert stats["evaluated"] == len(build_suite(spec).expectations) + 1 == stats["successful"]
    assert report["results"][-1]["expectation"] == "train_and_holdout_hold_every_class"
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
    # and the duplicate-row check, which spans every spec column, could not run either
    [dupes] = [
        r
        for r in report["results"]
        if r["expectation"] == "expect_compound_columns_to_be_unique"
        and "merchant_category" in r["details"]["kwargs"]["column_list"]
    ]
    assert not dupes["success"] and dupes["details"]["missing_columns"] == ["merchant_category"]
    assert report["statistics"]["unsuccessful"] == 5


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
    assert reports.STYLESHEET in page  # the one toolkit's page and stylesheet
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


# --- duplicates -------------------------------------------------------------------------------


def compound_result(report: dict, columns: list[str]) -> dict:
    return next(
        r
        for r in report["results"]
        if r["expectation"] == "expect_compound_columns_to_be_unique"
        and r["details"]["kwargs"]["column_list"] == columns
    )


def test_exact_duplicate_rows_above_the_limit_fail_with_count_share_limit_and_example(spec, frame):
    df = pd.concat([frame, frame.iloc[[10, 20, 30]]], ignore_index=True)  # 6 of 1,503 rows: 0.4%
    strict = spec.model_copy(
        update={"data": spec.data.model_copy(update={"max_duplicate_row_fraction": 0.001})}
    )

    message = rejected(strict, df, "expect_compound_columns_to_be_unique", None)

    line = next(x for x in message.splitlines() if "exact duplicates" in x)
    assert (
        "6 rows (0.4%) are exact duplicates of another row in every column the spec names (allowed 0.1%)"
        in line
    )
    first = frame.iloc[10]
    assert f"e.g. rows 10, 1500 hold event_time='{first['event_time'].isoformat()}'" in line
    assert f"card_id='{first['card_id']}'" in line


def test_duplicate_rows_within_the_default_limit_pass_and_are_counted(spec, frame):
    df = pd.concat([frame, frame.iloc[[10]]], ignore_index=True)  # 2 of 1,501 rows, limit 1%

    report = validate_dataframe(spec, df)

    assert report["success"] is True, report["failed"]
    dupes = compound_result(report, spec.required_columns)
    assert dupes["observed"] == (
        "2 rows (0.1%) are exact duplicates of another row in every column the spec names (allowed 1%)"
    )
    assert dupes["spec_field"] == "data.max_duplicate_row_fraction"


def test_repeated_entity_and_time_pairs_fail_even_when_the_rows_differ(spec, frame):
    df = frame.copy()
    df.loc[df.index[1:40:2], "event_time"] = df["event_time"].shift(1)[1:40:2]
    df.loc[df.index[1:40:2], "card_id"] = df["card_id"].shift(1)[1:40:2]  # 20 pairs, other amounts

    message = rejected(spec, df, "expect_compound_columns_to_be_unique", None)

    assert "40 rows (2.7%) share their (card_id, event_time) with another row (allowed 1%)" in message
    assert "e.g. rows 0, 1 hold card_id='card_000000', event_time='2026-01-01T00:00:00'" in message
    assert "exact duplicates" not in message  # the amounts differ: not the same rows


def test_key_duplicates_are_only_checked_with_both_entity_id_and_time_column(spec):
    no_entity = spec.model_copy(update={"entity_id": None})

    compound = [
        e.column_list
        for e in build_suite(no_entity).expectations
        if e.expectation_type == "expect_compound_columns_to_be_unique"
    ]

    assert compound == [no_entity.required_columns]


# --- the time column --------------------------------------------------------------------------


def test_time_column_stored_as_text_fails_at_validation_naming_the_column_and_the_fix(spec, frame):
    df = frame.assign(event_time=frame["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object))

    message = rejected(spec, df, "expect_column_values_to_be_in_type_list", "event_time")

    assert "100% of values are text, not timestamps (e.g. '2026-01-01T00:00:00'" in message
    assert "store the column as a timestamp or date" in message
    report = validate_dataframe(spec, df)
    parseable = next(
        r for r in report["results"] if r["expectation"] == "expect_column_values_to_be_dateutil_parseable"
    )
    assert parseable["success"] and parseable["observed"] == "every value parses as a date"
    assert not any(r["expectation"] == "train_and_holdout_hold_every_class" for r in report["results"])


def test_time_column_of_numbers_fails_with_how_to_store_it(spec, frame):
    df = frame.assign(event_time=np.arange(len(frame)) * 60 + 1_767_225_600)

    message = rejected(spec, df, "expect_column_values_to_be_in_type_list", "event_time")

    assert "dtype int64, expected timestamps" in message and "unit='s'" in message


@pytest.mark.parametrize("unit", ["us", "s"])
def test_time_zone_aware_and_coarser_timestamps_are_time(spec, frame, unit):
    df = frame.assign(
        event_time=frame["event_time"].astype(f"datetime64[{unit}]").dt.tz_localize("Europe/Paris")
    )

    report = validate_dataframe(spec, df)

    assert report["success"] is True, report["failed"]


def test_csv_time_text_is_parsed_and_unparseable_values_are_listed(spec, frame, tmp_path):
    csv_spec = spec.model_copy(update={"data": spec.data.model_copy(update={"format": "csv"})})
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    # ISO 8601 with and without a time of day in one column is read as one format
    frame.assign(
        event_time=frame["event_time"].dt.strftime("%Y-%m-%d %H:%M").str.replace(" 00:00", "")
    ).to_csv(good, index=False)
    broken = frame["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S").astype(object)
    broken.iloc[[7, 9]] = ["not a date", "2026-31-12 10:00:00"]
    frame.assign(event_time=broken).to_csv(bad, index=False)

    passed = validate_dataset(dataset_spec(csv_spec, good), tmp_path / "good")
    failed = validate_dataset(dataset_spec(csv_spec, bad), tmp_path / "bad")

    assert passed["success"] is True, passed["failed"]
    assert {(r["expectation"], r["column"]) for r in failed["failed"]} == {
        ("expect_column_values_to_be_in_type_list", "event_time"),
        ("expect_column_values_to_be_dateutil_parseable", "event_time"),
    }
    with pytest.raises(DataValidationError) as raised:
        raise_for_report(failed)
    assert "could not be read as dates with one format" in str(raised.value)
    assert "ISO 8601" in str(raised.value)
    assert "do not parse as dates (e.g. 'not a date', '2026-31-12 10:00:00')" in str(raised.value)


# --- classes in the train/holdout split -------------------------------------------------------


def sorted_by_class(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its labels ordered by class, times kept in order: fraud comes last."""
    return frame.assign(is_fraud=np.sort(frame["is_fraud"].to_numpy()))


def test_a_holdout_without_some_class_fails_validation_before_training(spec, frame):
    df = frame.assign(is_fraud=np.sort(frame["is_fraud"].to_numpy())[::-1])  # every fraud first

    message = rejected(spec, df, "train_and_holdout_hold_every_class", "is_fraud")

    assert "holdout: class 1 has 0 rows (need ≥ 5 of each class on both sides" in message
    assert "the holdout is the latest 20% of rows by event_time" in message
    assert "split.on_missing_class: warn" in message


def test_a_class_below_min_class_count_fails_on_the_side_that_lacks_it(spec, frame):
    df = sorted_by_class(frame)  # every fraud in the holdout, none in training

    report = validate_dataframe(spec, df)

    [failure] = report["failed"]
    assert failure["spec_field"] == "split.min_class_count"
    assert failure["observed"].startswith("train: class 1 has 0 rows")
    counts = failure["details"]["class_counts"]
    assert counts["train"]["1"] == 0 and counts["holdout"]["1"] == int(frame["is_fraud"].sum())


def test_min_class_count_is_read_from_the_spec(spec, frame):
    holdout_frauds = int(frame["is_fraud"].iloc[-300:].sum())
    needy = spec.model_copy(
        update={"split": spec.split.model_copy(update={"min_class_count": holdout_frauds + 1})}
    )

    message = rejected(needy, frame, "train_and_holdout_hold_every_class", "is_fraud")

    assert f"holdout: class 1 has {holdout_frauds} rows (need ≥ {holdout_frauds + 1}" in message
    assert validate_dataframe(spec, frame)["success"] is True


def test_on_missing_class_warn_passes_with_the_warning_in_the_report_and_log(spec, frame, caplog, tmp_path):
    lenient = spec.model_copy(update={"split": spec.split.model_copy(update={"on_missing_class": "warn"})})
    data = tmp_path / "sorted.parquet"
    sorted_by_class(frame).to_parquet(data, index=False)

    with caplog.at_level("WARNING", logger="include.modelops.data.validation"):
        report = validate_dataset(dataset_spec(lenient, data), tmp_path / "reports")

    assert report["success"] is True and report["failed"] == []
    [warning] = report["warnings"]
    assert warning["severity"] == "warning" and warning["observed"].startswith("train: class 1 has 0 rows")
    assert report["summary"].endswith(", 1 warning")
    assert report["statistics"]["warnings"] == 1
    assert "train: class 1 has 0 rows" in caplog.text
    assert "WARNING" in Path(report["report_html"]).read_text()
    raise_for_report(report)  # the gate lets it through: the spec asked for a warning only


def test_one_instant_for_every_row_leaves_the_holdout_empty_and_fails(spec, frame):
    df = frame.assign(event_time=pd.Timestamp("2026-01-01"), card_id=[f"card_{i}" for i in range(len(frame))])

    message = rejected(spec, df, "train_and_holdout_hold_every_class", "is_fraud")

    assert "leaves the holdout empty" in message and "more than one distinct time" in message


def test_regression_split_is_checked_for_rows_not_classes(spec, frame):
    reg = spec.model_copy(
        update={
            "task": TaskType.regression,
            "target": spec.target.model_copy(update={"classes": None}),
            "evaluation": spec.evaluation.model_copy(update={"primary_metric": "rmse"}),
        }
    )

    report = validate_dataframe(reg, frame.assign(is_fraud=frame["amount"] / 100))

    split = report["results"][-1]
    assert split["expectation"] == "train_and_holdout_hold_rows" and split["success"]
    assert split["observed"].startswith("1,200 train / 300 holdout rows (time-based: event_time >")


# --- renamed columns --------------------------------------------------------------------------


def test_a_missing_column_names_its_likely_renamed_counterpart(spec, frame):
    df = frame.rename(columns={"merchant_category": "MerchantCategory", "card_age_days": "card_age_day"})

    message = rejected(spec, df, "expect_column_to_exist", "merchant_category")

    assert (
        "column 'merchant_category': expect_column_to_exist: column is missing; the data has 'MerchantCategory': "
        "if the column was renamed, rename it back in the data or change features[merchant_category] in the spec"
    ) in message
    assert (
        "column 'card_age_days': expect_column_to_exist: column is missing; the data has 'card_age_day'"
        in message
    )


def test_a_missing_column_without_a_look_alike_gets_no_guess(spec, frame):
    df = frame.drop(columns=["merchant_category"]).assign(loaded_by="etl")

    message = rejected(spec, df, "expect_column_to_exist", "merchant_category")

    assert "column 'merchant_category': expect_column_to_exist: column is missing (3 other" in message
    assert "the data has" not in message


@pytest.mark.parametrize(
    "missing,columns,expected",
    [
        ("merchant_category", ["Merchant Category", "amount"], ["Merchant Category"]),
        ("event_time", ["EVENT-TIME"], ["EVENT-TIME"]),
        ("distance_from_home_km", ["distance_from_home"], ["distance_from_home"]),
        ("amount", ["region", "channel"], []),
    ],
)
def test_likely_renames_ignore_case_and_separators_and_allow_close_spellings(missing, columns, expected):
    assert likely_renames(missing, columns) == expected
