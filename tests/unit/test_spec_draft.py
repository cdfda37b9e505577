"""`make draft-spec`: a spec drafted from someone else's data loads, passes validation on that
data, and never touches the data.

The data is made with scikit-learn's generators (binary, multiclass, regression) plus the
columns real tables have: an event date, a customer id, an order id, a category, a flag,
a count, free text and some nulls. It is written as one CSV file and as a folder of daily
Parquet partitions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from include.modelops import cli
from include.modelops.data.spec_draft import SpecDraftError, draft_spec, write_spec_draft
from include.modelops.data.validation import validate_dataset
from include.modelops.spec import load_spec

ROWS = 1_200
TASKS = ("binary_classification", "multiclass_classification", "regression")


def make_frame(task: str, rows: int = ROWS, seed: int = 3) -> pd.DataFrame:
    """A table with a label for ``task`` and the usual non-feature columns around the features."""
    from sklearn.datasets import make_classification, make_regression

    rng = np.random.default_rng(seed)
    if task == "regression":
        X, y = make_regression(n_samples=rows, n_features=5, n_informative=4, noise=5.0, random_state=seed)
    else:
        n_classes = 2 if task == "binary_classification" else 3
        X, y = make_classification(
            n_samples=rows, n_features=5, n_informative=3, n_classes=n_classes, random_state=seed
        )
    frame = pd.DataFrame(X, columns=[f"signal_{i}" for i in range(5)])
    frame["order_id"] = np.arange(100_000, 100_000 + rows)
    frame["customer_id"] = [f"cust_{i:05d}" for i in rng.integers(0, rows // 8, rows)]
    frame["event_time"] = pd.Timestamp("2026-03-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 45 * 86_400, rows)), unit="s"
    )
    frame["channel"] = np.where(X[:, 0] > 0.5, "online", np.where(X[:, 1] > 0, "store", "phone")).astype(
        object
    )
    frame["is_member"] = X[:, 2] > 0
    frame["visits"] = rng.poisson(4, rows)
    frame["note"] = [f"called on {i}, ref {rng.integers(10**9)}" for i in range(rows)]
    frame.loc[rng.random(rows) < 0.06, "signal_1"] = np.nan
    frame.loc[rng.random(rows) < 0.03, "channel"] = None
    frame["label"] = y
    return frame


def write_csv(frame: pd.DataFrame, folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "table.csv"
    frame.to_csv(path, index=False)
    return path


def write_parquet_partitions(frame: pd.DataFrame, folder: Path) -> Path:
    for day, part in frame.groupby(frame["event_time"].dt.strftime("%Y-%m-%d")):
        (folder / f"event_date={day}").mkdir(parents=True)
        part.to_parquet(folder / f"event_date={day}" / "part-0000.parquet", index=False)
    return folder


def checksums(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and the sha256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("task", TASKS)
def test_drafted_spec_loads_passes_validation_and_leaves_the_data_untouched(tmp_path, task, fmt):
    frame = make_frame(task)
    folder = tmp_path / "their_data"
    data = write_csv(frame, folder) if fmt == "csv" else write_parquet_partitions(frame, folder)
    before = checksums(folder)

    draft = draft_spec(data, "label", "their_model")
    path = write_spec_draft(draft, tmp_path / "specs")
    spec = load_spec(path)
    report = validate_dataset(spec, tmp_path / "report")

    assert path == tmp_path / "specs" / "their_model.yaml"
    assert spec.task.value == task
    assert spec.data.format == fmt and spec.data.resolved_path() == data.resolve()
    assert spec.time_column == "event_time"
    assert spec.entity_id == "customer_id"
    types = {f.name: f.type.value for f in spec.features}
    assert types == {
        **{f"signal_{i}": "numeric" for i in range(5)},
        "channel": "categorical",
        "is_member": "boolean",
        "visits": "integer",
    }
    assert "order_id" not in types and "note" not in types  # a row id and free text are no features
    assert spec.target.classes == (
        {"binary_classification": [0, 1], "multiclass_classification": [0, 1, 2]}.get(task)
    )
    assert report["success"], report["failed"]
    assert checksums(folder) == before


def test_draft_says_what_it_inferred_and_marks_what_to_fill_in(tmp_path):
    frame = make_frame("binary_classification")
    data = write_csv(frame, tmp_path / "data")

    text = draft_spec(data, "label", "churn").text

    lines = text.splitlines()
    feature_line = next(i for i, line in enumerate(lines) if line.lstrip().startswith("- {name: signal_0"))
    observed_min, observed_max = frame["signal_0"].min(), frame["signal_0"].max()
    assert f"min {observed_min:,.6g}, max {observed_max:,.6g} (+10% margin)" in lines[feature_line - 1]
    assert f"Everything was inferred from all {ROWS:,} rows." in text
    assert "note: near-unique text" in text
    assert "order_id: an identifier" in text
    raw = yaml.safe_load(text)
    for field in ("description", "intended_use"):
        assert raw[field].startswith("TODO")
    assert raw["owner"]["team"].startswith("TODO") and raw["owner"]["email"].startswith("TODO")
    assert all(f["description"] == "TODO" for f in raw["features"])


def test_ranges_have_a_margin_and_null_fractions_have_headroom(tmp_path):
    frame = make_frame("regression")
    data = write_csv(frame, tmp_path / "data")

    spec = load_spec(write_spec_draft(draft_spec(data, "label", "amounts"), tmp_path / "specs"))

    features = {f.name: f for f in spec.features}
    signal = features["signal_0"]
    span = frame["signal_0"].max() - frame["signal_0"].min()
    assert signal.min <= frame["signal_0"].min() - 0.1 * span < signal.min + 0.02 * span
    assert signal.max >= frame["signal_0"].max() + 0.1 * span > signal.max - 0.02 * span
    assert features["visits"].min == 0  # a count never goes below 0, margin or not
    observed_nulls = frame["signal_1"].isna().mean()
    assert observed_nulls < features["signal_1"].max_null_fraction <= observed_nulls + 0.05
    assert features["signal_0"].max_null_fraction == 0.0
    assert features["channel"].categories == ["online", "phone", "store"]
    assert spec.evaluation.primary_metric == "r2"  # free of the target's units, unlike rmse


def test_text_labels_put_the_rarer_class_last_as_the_positive_one(tmp_path):
    frame = make_frame("binary_classification")
    rng = np.random.default_rng(0)
    frame["label"] = np.where(rng.random(len(frame)) < 0.2, "churned", "stayed")
    data = write_csv(frame, tmp_path / "data")

    draft = draft_spec(data, "label", "churn")
    spec = load_spec(write_spec_draft(draft, tmp_path / "specs"))

    assert spec.task.value == "binary_classification"
    assert spec.target.classes == ["stayed", "churned"]
    assert "guessed as the rarer one, 'churned'" in draft.text
    assert validate_dataset(spec, tmp_path / "report")["success"]


def test_every_task_gets_a_primary_metric_and_a_threshold_above_the_baseline(tmp_path):
    for task, metric in zip(TASKS, ("roc_auc", "macro_f1", "r2"), strict=True):
        data = write_csv(make_frame(task), tmp_path / task)
        spec = load_spec(write_spec_draft(draft_spec(data, "label", "gated"), tmp_path / task / "specs"))
        assert spec.evaluation.primary_metric == metric
        k = len(spec.target.classes or [])
        # Above chance, not only above the naive baseline: guessing k classes scores macro_f1 1/k,
        # more than the majority-class baseline does.
        chance = {"roc_auc": 0.5, "macro_f1": 1 / k if k else 0.0, "r2": 0.0}[metric]
        assert spec.evaluation.gate.thresholds[metric].min >= chance + 0.1


def test_large_data_is_sampled_for_types_but_every_row_sets_the_ranges(tmp_path):
    frame = make_frame("multiclass_classification", rows=3_000)
    data = write_parquet_partitions(frame, tmp_path / "data")

    draft = draft_spec(data, "label", "sampled", sample_rows=300)
    spec = load_spec(write_spec_draft(draft, tmp_path / "specs"))

    assert draft.sample_rows == 300 and draft.rows == 3_000
    assert "random sample of 300 rows" in draft.text
    assert validate_dataset(spec, tmp_path / "report")["success"]


def test_dates_stored_as_text_in_parquet_are_not_the_time_column(tmp_path):
    frame = make_frame("binary_classification")
    frame["event_time"] = frame["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S")
    data = tmp_path / "data.parquet"
    frame.to_parquet(data, index=False)

    draft = draft_spec(data, "label", "text_dates")

    assert "time_column:" not in draft.text
    assert "event_time: text that parses as dates" in draft.text


def test_spec_written_to_the_specs_folder_passes_check_specs(tmp_path, monkeypatch, capsys):
    data = write_csv(make_frame("regression"), tmp_path / "data")
    monkeypatch.setenv("MODELOPS_SPECS_DIR", str(tmp_path / "specs"))

    assert cli.main(["draft-spec", "--data", str(data), "--target", "label", "--name", "house_prices"]) == 0
    assert cli.main(["check-specs"]) == 0

    out = capsys.readouterr().out
    assert f"Drafted {tmp_path / 'specs' / 'house_prices.yaml'}" in out
    assert "ok  house_prices: regression, 8 features" in out


def test_an_existing_spec_is_kept_unless_forced(tmp_path, capsys):
    data = write_csv(make_frame("binary_classification"), tmp_path / "data")
    specs = tmp_path / "specs"
    specs.mkdir()
    existing = specs / "churn.yaml"
    existing.write_text("# hand-written, do not lose\n")
    args = ["draft-spec", "--data", str(data), "--target", "label", "--name", "churn", "--out", str(specs)]

    assert cli.main(args) == 2
    assert existing.read_text() == "# hand-written, do not lose\n"
    assert "already exists; pass FORCE=1" in capsys.readouterr().out

    assert cli.main([*args, "--force"]) == 0
    assert load_spec(existing).task.value == "binary_classification"


def test_unknown_target_lists_the_columns_and_suggests_a_close_one(tmp_path, capsys):
    data = write_csv(make_frame("binary_classification"), tmp_path / "data")

    code = cli.main(
        [
            "draft-spec",
            "--data",
            str(data),
            "--target",
            "lable",
            "--name",
            "churn",
            "--out",
            str(tmp_path / "specs"),
        ]
    )

    out = capsys.readouterr().out
    assert code == 2
    assert "TARGET='lable' is not a column of the data. Did you mean 'label'?" in out
    assert "Columns: signal_0, signal_1" in out and "Traceback" not in out
    assert not (tmp_path / "specs").exists()


@pytest.mark.parametrize(
    ("make_data", "message"),
    [
        (lambda d: d / "missing.csv", "no such file or folder"),
        (lambda d: (d / "empty.csv").write_text("a,b,label\n") and d / "empty.csv", "has no rows"),
        (
            lambda d: (d / "broken.parquet").write_bytes(b"not parquet at all") and d / "broken.parquet",
            "Cannot read parquet file",
        ),
        (lambda d: d, "No .parquet or .csv files under"),
    ],
    ids=["missing", "empty", "unreadable", "no-data-files"],
)
def test_bad_data_gives_a_clear_error_and_no_spec(tmp_path, capsys, make_data, message):
    folder = tmp_path / "data"
    folder.mkdir()
    data = make_data(folder)

    code = cli.main(
        [
            "draft-spec",
            "--data",
            str(data),
            "--target",
            "label",
            "--name",
            "churn",
            "--out",
            str(tmp_path / "specs"),
        ]
    )

    out = capsys.readouterr().out
    assert code == 2
    assert out.startswith("error: ") and message in out and "Traceback" not in out
    assert not (tmp_path / "specs").exists()


def test_a_target_with_one_value_is_refused(tmp_path):
    frame = make_frame("binary_classification")
    frame["label"] = 1
    data = write_csv(frame, tmp_path / "data")

    with pytest.raises(SpecDraftError, match="1 distinct value"):
        draft_spec(data, "label", "churn")


def test_the_spec_is_never_written_into_the_data_folder(tmp_path):
    folder = write_parquet_partitions(make_frame("regression"), tmp_path / "data")
    before = checksums(folder)
    draft = draft_spec(folder, "label", "prices")

    with pytest.raises(SpecDraftError, match="never written next to the data"):
        write_spec_draft(draft, folder / "specs")
    assert checksums(folder) == before


def test_a_format_the_folder_does_not_hold_is_named(tmp_path):
    folder = write_parquet_partitions(make_frame("regression"), tmp_path / "data")

    with pytest.raises(SpecDraftError, match="No csv files at .*check DATA and FORMAT"):
        draft_spec(folder, "label", "prices", fmt="csv")


def test_nulls_in_the_target_are_flagged_in_the_draft(tmp_path):
    frame = make_frame("binary_classification")
    frame["label"] = frame["label"].astype("float64")
    frame.loc[:9, "label"] = np.nan
    data = write_csv(frame, tmp_path / "data")

    draft = draft_spec(data, "label", "churn")
    spec = load_spec(write_spec_draft(draft, tmp_path / "specs"))
    report = validate_dataset(spec, tmp_path / "report")

    assert spec.target.classes == [0, 1]  # integers stored as floats because of the nulls
    assert "# WARNING: the target 'label' has 10 null rows" in draft.text
    assert [r["column"] for r in report["failed"]] == ["label"]


def test_draft_sets_the_duplicate_and_class_count_checks_with_what_the_data_shows(tmp_path):
    data = write_csv(make_frame("multiclass_classification"), tmp_path / "data")

    draft = draft_spec(data, "label", "tiers")

    raw = yaml.safe_load(draft.text)
    assert raw["data"]["max_duplicate_row_fraction"] == 0.01
    assert raw["data"]["max_duplicate_key_fraction"] == 0.01
    assert raw["split"]["min_class_count"] == 5 and raw["split"]["on_missing_class"] == "fail"
    assert "# Exact duplicate rows (same value in every column named here): 0% of rows." in draft.text
    assert "# (split time-based: event_time >" in draft.text and "rows in the holdout)." in draft.text
    assert not draft.warnings


def test_duplicated_rows_are_flagged_and_the_drafted_limit_still_holds_on_the_data(tmp_path):
    frame = make_frame("binary_classification")
    frame = pd.concat([frame, frame.iloc[:60]]).sort_values("event_time", kind="stable")  # 120 of 1,260 rows
    data = write_csv(frame, tmp_path / "data")

    draft = draft_spec(data, "label", "churn")
    spec = load_spec(write_spec_draft(draft, tmp_path / "specs"))
    report = validate_dataset(spec, tmp_path / "report")

    assert (
        "# WARNING: 9.5% of rows are exact duplicates (every spec column): check for double loads"
        in draft.text
    )
    assert spec.data.max_duplicate_row_fraction == 0.15  # half as much again, rounded up
    assert report["success"], report["failed"]


def test_a_class_missing_from_the_holdout_is_flagged_in_the_draft(tmp_path):
    frame = make_frame("binary_classification")
    frame["label"] = np.sort(frame["label"].to_numpy())[::-1]  # every 1 before every 0 in time
    data = write_csv(frame, tmp_path / "data")

    draft = draft_spec(data, "label", "churn")

    assert any(w.startswith("class 1 has 0 rows in the holdout") for w in draft.warnings), draft.warnings
    assert "# WARNING: class 1 has 0 rows in the holdout" in draft.text
