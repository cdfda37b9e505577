"""The synthetic fraud dataset, its variants, and reading/fingerprinting datasets."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from include.modelops.data.example import BROKEN_VARIANTS, VARIANTS, generate_transactions, main
from include.modelops.data.reading import (
    DataLoadError,
    DatasetNotFoundError,
    fingerprint_dataset,
    read_dataset,
)
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import FeatureType, load_spec

ROWS, DAYS = 6000, 10


@pytest.fixture(scope="module")
def spec():
    return load_spec(PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


def _generate(root: Path, variant: str, **kwargs) -> pd.DataFrame:
    out = root / variant
    generate_transactions(out, rows=kwargs.pop("rows", ROWS), days=DAYS, variant=variant, **kwargs)
    return read_dataset(out)


@pytest.fixture(scope="module")
def reference(data_root) -> pd.DataFrame:
    return _generate(data_root, "reference")


def _positive_rate(frame: pd.DataFrame) -> float:
    return float(frame["is_fraud"].mean())


# --- the reference data honours the spec -----------------------------------------------------


def test_reference_has_exactly_the_spec_columns(reference, spec):
    assert sorted(reference.columns) == sorted(spec.required_columns)


def test_reference_column_types_match_the_spec(reference, spec):
    for feature in spec.features:
        column = reference[feature.name]
        if feature.type == FeatureType.numeric:
            assert pd.api.types.is_float_dtype(column), feature.name
        elif feature.type == FeatureType.integer:
            assert pd.api.types.is_integer_dtype(column), feature.name
        elif feature.type == FeatureType.boolean:
            assert pd.api.types.is_bool_dtype(column), feature.name
        else:
            assert pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)
    assert pd.api.types.is_datetime64_dtype(reference[spec.time_column])
    assert set(reference[spec.target.name].unique()) == {0, 1}
    assert pd.api.types.is_integer_dtype(reference[spec.target.name])
    assert reference[spec.entity_id].str.fullmatch(r"card_\d{6}").all()


def test_reference_values_stay_within_spec_bounds_categories_and_null_limits(reference, spec):
    for feature in spec.features:
        column = reference[feature.name]
        assert column.isna().mean() <= feature.max_null_fraction, feature.name
        values = column.dropna()
        if feature.min is not None:
            assert values.min() >= feature.min, feature.name
        if feature.max is not None:
            assert values.max() <= feature.max, feature.name
        if feature.categories:
            assert set(values.unique()) <= set(feature.categories), feature.name


def test_reference_has_a_few_missing_distances(reference):
    assert 0.002 < reference["distance_from_home_km"].isna().mean() < 0.03


def test_reference_fraud_rate_is_realistic(reference):
    assert 0.01 <= _positive_rate(reference) <= 0.03


def test_fraud_rate_differs_between_channels_and_regions(reference):
    by_channel = reference.groupby("channel")["is_fraud"].mean()
    by_region = reference.groupby("region")["is_fraud"].mean()
    assert by_channel["online"] > 2 * by_channel["pos"]
    assert by_region.max() > 1.3 * by_region.min()


def test_reference_is_sorted_by_event_time_and_spans_the_requested_days(reference):
    times = reference["event_time"]
    assert times.is_monotonic_increasing
    assert times.min() >= pd.Timestamp("2026-01-01")
    assert times.max() < pd.Timestamp("2026-01-01") + pd.Timedelta(days=DAYS)


def test_summary_describes_what_was_written(tmp_path):
    summary = generate_transactions(tmp_path / "d", rows=2000, days=3, start="2026-02-01")
    assert summary["variant"] == "reference"
    assert summary["rows"] == 2000
    assert summary["files"] == 3
    assert (summary["start"], summary["end"]) == ("2026-02-01", "2026-02-03")
    assert summary["positive_rate"] == pytest.approx(summary["positives"] / 2000, abs=1e-5)
    parts = sorted(p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*.parquet"))
    assert parts == [f"event_date=2026-02-0{d}/part-0000.parquet" for d in (1, 2, 3)]


def test_progress_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="include.modelops.data.example"):
        generate_transactions(tmp_path / "d", rows=1000, days=12)
    assert any("10/12 daily partitions" in r.getMessage() for r in caplog.records)


# --- determinism and idempotence ------------------------------------------------------------


def test_same_seed_gives_identical_data_and_another_seed_does_not(tmp_path, reference):
    again = _generate(tmp_path, "reference")
    pd.testing.assert_frame_equal(again, reference)
    other = _generate(tmp_path / "other", "reference", seed=7)
    assert not other.equals(reference)


def test_rewriting_replaces_the_folder_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "d"
    generate_transactions(out, rows=1000, days=5)
    first = fingerprint_dataset(out)
    generate_transactions(out, rows=1000, days=3)
    assert len([p for p in out.iterdir() if p.name.startswith("event_date=")]) == 3
    generate_transactions(out, rows=1000, days=5)
    assert fingerprint_dataset(out) == first
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_refuses_to_replace_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="Refusing to replace"):
        generate_transactions(tmp_path, rows=100, days=1)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_never_replaces_a_users_folder_of_date_partitions(tmp_path):
    user = tmp_path / "user_data"
    part = user / "event_date=2026-01-01"
    part.mkdir(parents=True)
    (part / "part-0000.parquet").write_bytes(b"the user's own data")
    with pytest.raises(ValueError, match="was not written by this generator"):
        generate_transactions(user, rows=100, days=1)
    assert (part / "part-0000.parquet").read_bytes() == b"the user's own data"
    assert sorted(p.name for p in user.rglob("*")) == ["event_date=2026-01-01", "part-0000.parquet"]


def test_unknown_variant_is_rejected_with_the_list_of_variants(tmp_path):
    with pytest.raises(ValueError, match="covariate_shift") as err:
        generate_transactions(tmp_path / "d", variant="typo")
    assert all(v in str(err.value) for v in VARIANTS)
    assert not (tmp_path / "d").exists()


# --- drift variants --------------------------------------------------------------------------


def test_covariate_shift_moves_inputs_towards_larger_online_and_international(data_root, reference):
    shifted = _generate(data_root, "covariate_shift")
    assert shifted["amount"].mean() > 1.3 * reference["amount"].mean()
    assert (shifted["channel"] == "online").mean() > (reference["channel"] == "online").mean() + 0.1
    assert shifted["is_international"].mean() > 1.5 * reference["is_international"].mean()
    assert (shifted["merchant_category"] == "electronics").mean() > (
        reference["merchant_category"] == "electronics"
    ).mean()


def test_label_shift_at_least_doubles_the_fraud_rate(data_root, reference):
    shifted = _generate(data_root, "label_shift")
    assert len(shifted) == ROWS
    assert 2 * _positive_rate(reference) <= _positive_rate(shifted) <= 0.07


def test_concept_drift_moves_fraud_to_daytime_gaming_and_online_retail(data_root, reference):
    drifted = _generate(data_root, "concept_drift")
    targets = ["gaming", "online_retail"]

    def share_of_fraud_in_targets(frame: pd.DataFrame) -> float:
        fraud = frame[frame["is_fraud"] == 1]
        return float(fraud["merchant_category"].isin(targets).mean())

    def share_of_fraud_at_night(frame: pd.DataFrame) -> float:
        return float((frame.loc[frame["is_fraud"] == 1, "hour_of_day"] < 6).mean())

    assert share_of_fraud_in_targets(drifted) > 1.5 * share_of_fraud_in_targets(reference)
    assert share_of_fraud_at_night(drifted) < 0.5 * share_of_fraud_at_night(reference)
    # The inputs are drawn as in the reference; only P(fraud | x) changed.
    pd.testing.assert_frame_equal(drifted.drop(columns="is_fraud"), reference.drop(columns="is_fraud"))


# --- broken variants -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken(data_root) -> dict[str, pd.DataFrame]:
    return {v: _generate(data_root, v, rows=2000) for v in BROKEN_VARIANTS}


def test_broken_variants_are_the_last_eight():
    assert BROKEN_VARIANTS == (
        "missing_column",
        "wrong_type",
        "nulls",
        "out_of_range",
        "empty",
        "duplicate_rows",
        "time_as_text",
        "class_sorted",
    )


def test_missing_column_variant_lacks_merchant_category(broken):
    assert "merchant_category" not in broken["missing_column"].columns
    assert "amount" in broken["missing_column"].columns


def test_wrong_type_variant_stores_amount_as_text(broken):
    amount = broken["wrong_type"]["amount"]
    assert not pd.api.types.is_numeric_dtype(amount)
    assert isinstance(amount.iloc[0], str)


def test_nulls_variant_blanks_about_thirty_percent_of_amounts(broken):
    assert broken["nulls"]["amount"].isna().mean() == pytest.approx(0.3, abs=0.04)


def test_out_of_range_variant_has_negative_amounts_and_impossible_hours(broken):
    frame = broken["out_of_range"]
    assert (frame["amount"] < 0).any()
    assert frame["hour_of_day"].between(24, 30).any()
    assert frame["hour_of_day"].max() <= 30


def test_empty_variant_writes_one_file_with_the_full_schema_and_no_rows(broken, data_root, reference):
    frame = broken["empty"]
    assert len(frame) == 0
    assert list(frame.columns) == list(reference.columns)
    assert frame.dtypes.equals(reference.dtypes)
    assert len(list((data_root / "empty").rglob("*.parquet"))) == 1


def test_duplicate_rows_variant_repeats_five_percent_of_the_rows(broken, reference_2000):
    frame = broken["duplicate_rows"]
    assert len(frame) == 2100
    assert frame.duplicated().sum() == 100
    pd.testing.assert_frame_equal(frame.drop_duplicates().reset_index(drop=True), reference_2000)


def test_time_as_text_variant_stores_event_times_as_iso_text(broken, reference_2000):
    times = broken["time_as_text"]["event_time"]
    assert pd.api.types.is_object_dtype(times) and isinstance(times.iloc[0], str)
    assert times.iloc[0] == reference_2000["event_time"].iloc[0].strftime("%Y-%m-%dT%H:%M:%S")


def test_class_sorted_variant_puts_every_fraud_before_the_latest_fifth(broken, reference_2000):
    frame = broken["class_sorted"].sort_values("event_time", kind="stable")
    assert frame["is_fraud"].sum() == reference_2000["is_fraud"].sum() > 0
    assert frame["is_fraud"].iloc[-len(frame) // 5 :].sum() == 0
    assert sorted(frame["event_time"]) == sorted(reference_2000["event_time"])


@pytest.fixture(scope="module")
def reference_2000(data_root) -> pd.DataFrame:
    return _generate(data_root / "ref2000", "reference", rows=2000)


# --- reading datasets ------------------------------------------------------------------------


def test_reading_a_partitioned_folder_adds_no_partition_column(reference):
    assert "event_date" not in reference.columns
    assert len(reference) == ROWS


def test_reading_a_single_file(data_root):
    first = sorted((data_root / "reference").rglob("*.parquet"))[0]
    frame = read_dataset(first)
    assert 0 < len(frame) < ROWS


def test_missing_path_says_what_was_looked_for_and_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist") as err:
        read_dataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "make data" in str(err.value) and "data.path" in str(err.value)


def test_folder_without_data_files_is_not_found(tmp_path):
    (tmp_path / "readme.txt").write_text("no data here")
    with pytest.raises(DatasetNotFoundError, match=r"\*\*/\*\.parquet") as err:
        read_dataset(tmp_path)
    assert "make data" in str(err.value)


def test_corrupt_file_is_named_in_the_error(tmp_path):
    generate_transactions(tmp_path / "d", rows=500, days=2)
    bad = tmp_path / "d" / "event_date=2026-01-02" / "part-0000.parquet"
    bad.write_bytes(b"not a parquet file")
    with pytest.raises(DataLoadError, match="event_date=2026-01-02/part-0000.parquet"):
        read_dataset(tmp_path / "d")


def test_csv_round_trip_matches_parquet(tmp_path, reference):
    summary = generate_transactions(tmp_path / "csv", rows=ROWS, days=DAYS, fmt="csv")
    assert summary["files"] == DAYS
    frame = read_dataset(tmp_path / "csv", fmt="csv", parse_dates=["event_time"])
    pd.testing.assert_frame_equal(frame, reference)


def test_time_column_text_is_parsed_from_csv_but_left_alone_in_parquet(tmp_path):
    frame = pd.DataFrame({"t": ["2026-01-31", "2026-02-01 10:30"], "x": [1, 2]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)

    from_csv = read_dataset(tmp_path / "d.csv", fmt="csv", parse_dates=["t"])
    from_parquet = read_dataset(tmp_path / "d.parquet", parse_dates=["t"])

    assert list(from_csv["t"]) == [pd.Timestamp("2026-01-31"), pd.Timestamp("2026-02-01 10:30")]
    assert list(from_parquet["t"]) == list(frame["t"])  # Parquet text is not guessed at: validation says so


def test_unparseable_csv_times_stay_text_for_validation_to_name(tmp_path):
    pd.DataFrame({"t": ["2026-01-31", "soon"]}).to_csv(tmp_path / "d.csv", index=False)

    frame = read_dataset(tmp_path / "d.csv", fmt="csv", parse_dates=["t"])

    assert list(frame["t"]) == ["2026-01-31", "soon"]


def test_parquet_dates_become_timestamps_in_a_time_column(tmp_path):
    import datetime as dt

    pd.DataFrame({"d": [dt.date(2026, 1, 2), dt.date(2026, 1, 1)]}).to_parquet(tmp_path / "d.parquet")

    frame = read_dataset(tmp_path / "d.parquet", parse_dates=["d"])

    assert pd.api.types.is_datetime64_any_dtype(frame["d"])
    assert frame["d"].min() == pd.Timestamp("2026-01-01")


def test_wrong_type_amounts_stay_text_in_csv_too(tmp_path):
    generate_transactions(tmp_path / "csv", rows=300, days=1, variant="wrong_type", fmt="csv")
    frame = read_dataset(tmp_path / "csv", fmt="csv")
    assert not pd.api.types.is_numeric_dtype(frame["amount"])


# --- fingerprints ----------------------------------------------------------------------------


def test_fingerprint_is_stable_and_changes_when_a_file_changes(tmp_path):
    out = tmp_path / "d"
    generate_transactions(out, rows=500, days=3)
    first = fingerprint_dataset(out)
    assert first == fingerprint_dataset(out)
    assert first["files"] == 3
    assert first["bytes"] == sum(p.stat().st_size for p in out.rglob("*.parquet"))
    assert len(first["sha256"]) == 64

    part = out / "event_date=2026-01-02" / "part-0000.parquet"
    part.write_bytes(part.read_bytes() + b"\0")
    assert fingerprint_dataset(out)["sha256"] != first["sha256"]


def test_fingerprint_of_a_missing_dataset_is_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError):
        fingerprint_dataset(tmp_path / "nowhere")


# --- command line ----------------------------------------------------------------------------


def test_command_line_writes_a_dataset_and_prints_a_summary(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "d"), "--rows", "800", "--days", "2", "--variant", "label_shift"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("label_shift: 800 rows") and str(tmp_path / "d") in line
    assert len(read_dataset(tmp_path / "d")) == 800


def test_command_line_rejects_an_unknown_variant(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "d"), "--variant", "typo"])
    assert exit_info.value.code == 2
    assert "reference" in capsys.readouterr().err
