"""The service's request contract, built from the fraud spec: what a client may send.

These run without BentoML or a server: the schema is built by
``include.modelops.packaging.request_row_model``, the same function ``bentos/service.py``
uses, so a row rejected here is a 400 from the service (checked end to end in
``tests/integration/test_packaging.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from include.modelops.packaging import (
    example_row,
    predictions_from_scores,
    request_row_model,
    request_rows,
    rows_to_frame,
    scores_from_predictions,
)
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import ModelSpec, load_spec


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_spec(PROJECT_ROOT / "include" / "models" / "fraud_detection.yaml")


@pytest.fixture(scope="module")
def row_model(spec: ModelSpec):
    return request_row_model(spec)


@pytest.fixture()
def valid_row() -> dict:
    return {
        "amount": 42.5,
        "merchant_category": "online_retail",
        "channel": "online",
        "region": "west",
        "hour_of_day": 23,
        "distance_from_home_km": 12.0,
        "card_age_days": 400,
        "txn_count_24h": 3,
        "customer_age": 37,
        "is_international": True,
    }


def rejected_fields(row_model, row: dict) -> dict[str, str]:
    """Field name -> pydantic error type, for a row the schema must reject."""
    with pytest.raises(ValidationError) as info:
        row_model.model_validate(row)
    return {".".join(str(p) for p in e["loc"]): e["type"] for e in info.value.errors()}


def test_valid_row_is_accepted(row_model, valid_row):
    parsed = row_model.model_validate(valid_row)
    assert parsed.model_dump() == valid_row


def test_example_input_is_a_valid_row(spec, row_model):
    row_model.model_validate(example_row(spec))


def test_nullable_feature_may_be_null_or_left_out(row_model, valid_row):
    null = row_model.model_validate({**valid_row, "distance_from_home_km": None})
    assert null.distance_from_home_km is None
    del valid_row["distance_from_home_km"]
    assert row_model.model_validate(valid_row).distance_from_home_km is None


def test_non_nullable_feature_may_not_be_null(row_model, valid_row):
    assert rejected_fields(row_model, {**valid_row, "amount": None}) == {"amount": "float_type"}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("amount", -0.01, "greater_than_equal"),
        ("amount", 50000.01, "less_than_equal"),
        ("hour_of_day", 24, "less_than_equal"),
        ("customer_age", 17, "greater_than_equal"),
        ("hour_of_day", 3.5, "int_from_float"),
        ("amount", float("nan"), "finite_number"),
    ],
)
def test_out_of_range_value_is_rejected_naming_the_field(row_model, valid_row, field, value, error):
    assert rejected_fields(row_model, {**valid_row, field: value}) == {field: error}


def test_unknown_category_is_rejected_naming_the_field(row_model, valid_row):
    assert rejected_fields(row_model, {**valid_row, "merchant_category": "casino"}) == {
        "merchant_category": "literal_error"
    }


def test_missing_field_is_rejected_naming_the_field(row_model, valid_row):
    del valid_row["hour_of_day"]
    assert rejected_fields(row_model, valid_row) == {"hour_of_day": "missing"}


def test_extra_field_is_rejected_naming_the_field(row_model, valid_row):
    assert rejected_fields(row_model, {**valid_row, "is_fraud": 1}) == {"is_fraud": "extra_forbidden"}


def test_every_bad_field_is_named_at_once(row_model, valid_row):
    bad = {**valid_row, "amount": -1, "channel": "phone", "card_id": "c-1"}
    assert set(rejected_fields(row_model, bad)) == {"amount", "channel", "card_id"}


def test_schema_documents_features_and_bounds(row_model):
    schema = row_model.model_json_schema()
    assert schema["title"] == "FraudDetectionRow"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["amount"]["minimum"] == 0
    assert schema["properties"]["amount"]["description"] == "Transaction amount in EUR."
    assert "distance_from_home_km" not in schema["required"]
    assert "amount" in schema["required"]


def test_rows_become_a_frame_with_one_dtype_per_feature_type(spec, row_model, valid_row):
    rows = [row_model.model_validate(valid_row), {**valid_row, "distance_from_home_km": None}]
    frame = rows_to_frame(spec, rows)
    assert list(frame.columns) == spec.feature_names
    dtypes = frame.dtypes.astype(str).to_dict()
    assert dtypes["amount"] == "float64"
    assert dtypes["distance_from_home_km"] == "float64"
    assert dtypes["hour_of_day"] == "int64"
    assert dtypes["is_international"] == "bool"
    assert dtypes["merchant_category"] == "object"
    assert np.isnan(frame.loc[1, "distance_from_home_km"])


def test_data_rows_become_json_request_rows(spec, row_model, valid_row):
    frame = rows_to_frame(spec, [valid_row, {**valid_row, "distance_from_home_km": None, "amount": 0.1 + 0.2}])
    frame["is_fraud"] = [0, 1]  # columns beyond the features are left out
    rows = request_rows(spec, frame)
    assert rows[0] == valid_row
    assert rows[1]["distance_from_home_km"] is None
    assert rows[1]["amount"] == 0.1 + 0.2  # full precision, not rounded
    assert json.loads(json.dumps(rows)) == rows
    for row in rows:
        row_model.model_validate(row)


def test_binary_response_labels_by_the_decision_threshold(spec):
    threshold = spec.evaluation.decision_threshold
    predictions = predictions_from_scores(spec, np.array([threshold - 1e-9, threshold, 0.93]))
    assert predictions == [
        {"score": threshold - 1e-9, "label": 0},
        {"score": threshold, "label": 1},
        {"score": 0.93, "label": 1},
    ]
    assert scores_from_predictions(spec, predictions).tolist() == [threshold - 1e-9, threshold, 0.93]


def test_importing_packaging_does_not_import_bentoml_or_mlflow():
    code = (
        "import sys, include.modelops.packaging\n"
        "heavy = [m for m in ('bentoml', 'mlflow', 'sklearn', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, env=env)
