"""The service's request contract, built from the fraud spec: what a client may send.

These run without BentoML or a server: the schema is built by
``include.modelops.serving.contract.request_row_model``, the same function ``bentos/service.py``
uses, so a row rejected here is a 400 from the service (checked end to end in
``tests/integration/test_packaging.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from include.modelops.serving.contract import (
    example_row,
    predictions_from_scores,
    request_row_model,
    request_rows,
    rows_to_frame,
    scores_from_predictions,
)
from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import Feature, FeatureType, ModelSpec, load_spec


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
    # One dtype per type, as training saw it (scoring.feature_frame): integers and booleans as float64.
    assert dtypes["hour_of_day"] == "float64"
    assert dtypes["is_international"] == "float64"
    assert dtypes["merchant_category"] == "object"
    assert np.isnan(frame.loc[1, "distance_from_home_km"])


def test_data_rows_become_json_request_rows(spec, row_model, valid_row):
    # A table as stored (bool, int64, float64 with NaN, text), not the model's input frame.
    records = [valid_row, {**valid_row, "distance_from_home_km": None, "amount": 0.1 + 0.2}]
    frame = pd.DataFrame.from_records(records, columns=spec.feature_names)
    frame["is_fraud"] = [0, 1]  # columns beyond the features are left out
    rows = request_rows(spec, frame)
    assert rows[0] == valid_row
    assert rows[1]["distance_from_home_km"] is None
    assert rows[1]["amount"] == 0.1 + 0.2  # full precision, not rounded
    assert json.loads(json.dumps(rows)) == rows
    for row in rows:
        row_model.model_validate(row)


def test_binary_response_labels_by_the_decision_threshold(spec):
    from include.modelops.serving.contract import served_threshold

    threshold = served_threshold(spec)  # no version threshold given: the spec's fixed value (0.5)
    predictions = predictions_from_scores(spec, np.array([threshold - 1e-9, threshold, 0.93]))
    assert predictions == [
        {"score": threshold - 1e-9, "label": 0},
        {"score": threshold, "label": 1},
        {"score": 0.93, "label": 1},
    ]
    assert scores_from_predictions(spec, predictions).tolist() == [threshold - 1e-9, threshold, 0.93]


def test_importing_the_serving_modules_does_not_import_bentoml_or_mlflow():
    code = (
        "import sys, include.modelops.serving.contract, include.modelops.serving.bento, include.modelops.serving.smoke\n"
        "heavy = [m for m in ('bentoml', 'mlflow', 'sklearn', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, env=env)


# ----------------------------------------------------------------------------------------
# Strict JSON types: the service accepts exactly what its published JSON schema says
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def every_type_spec() -> ModelSpec:
    """Each feature type, required and nullable, with bounds and without."""
    return ModelSpec.model_validate(
        {
            "name": "every_type",
            "description": "d",
            "owner": {"team": "t", "email": "t@example.com"},
            "task": "regression",
            "data": {"path": "unused.parquet"},
            "target": {"name": "y"},
            "evaluation": {"primary_metric": "rmse"},
            "features": [
                {"name": "amount", "type": "numeric", "min": 0, "max": 100},
                {"name": "score", "type": "numeric"},
                {"name": "spend", "type": "numeric", "min": -5.5, "max_null_fraction": 0.1},
                {"name": "count", "type": "integer", "min": 0, "max": 50},
                {"name": "offset", "type": "integer"},
                {"name": "visits", "type": "integer", "max": 9, "max_null_fraction": 0.1},
                {"name": "member", "type": "boolean"},
                {"name": "opted_in", "type": "boolean", "max_null_fraction": 0.1},
                {"name": "plan", "type": "categorical", "categories": ["basic", "Pro", "1"]},
                {"name": "tier", "type": "categorical", "categories": ["gold"], "max_null_fraction": 0.1},
            ],
        }
    )


# JSON values a client may send for any field: right and wrong types, edges of the bounds.
JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    3,
    -1,
    9,
    10,
    50,
    51,
    100,
    -5.5,
    -6,
    3.0,
    50.0,
    3.5,
    0.25,
    100.5,
    -0.0,
    1e300,
    -1e300,
    10**400,
    "23",
    "3.0",
    "yes",
    "true",
    "false",
    "",
    "basic",
    "BASIC",
    "Pro",
    "1",
    "gold",
    [],
    [3],
    {},
    {"value": 3},
]


def contract_accepts(feature: Feature, value: Any) -> bool:
    """The documented contract (README, "Serving"), independent of how the service implements it."""
    if value is None:
        return feature.max_null_fraction > 0
    if feature.type == FeatureType.categorical:
        return isinstance(value, str) and value in (feature.categories or [])
    if feature.type == FeatureType.boolean:
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if feature.type == FeatureType.integer and isinstance(value, float) and not value.is_integer():
        return False
    low = -sys.float_info.max if feature.min is None else feature.min
    high = sys.float_info.max if feature.max is None else feature.max
    return low <= value <= high


def service_verdict(row_model, row: dict) -> tuple[bool, set[str]]:
    """(accepted, fields named) as the service validates a JSON body; the same from decoded JSON."""
    text = json.dumps(row)
    verdicts = []
    for validate in (
        lambda: row_model.model_validate_json(text),
        lambda: row_model.model_validate(json.loads(text)),
    ):
        try:
            validate()
            verdicts.append((True, set()))
        except ValidationError as e:
            verdicts.append((False, {".".join(str(p) for p in err["loc"]) for err in e.errors()}))
    assert verdicts[0] == verdicts[1], f"JSON text and decoded JSON disagree on {row}"
    return verdicts[0]


def test_every_json_value_is_accepted_exactly_when_contract_and_schema_say_so(every_type_spec):
    row_model = request_row_model(every_type_spec)
    schema = jsonschema.Draft202012Validator(row_model.model_json_schema())
    base = example_row(every_type_spec)
    assert schema.is_valid(base)
    mismatches, checked = [], 0
    for feature in every_type_spec.features:
        for value in JSON_VALUES:
            row = {**base, feature.name: value}
            accepted, named = service_verdict(row_model, row)
            expected = contract_accepts(feature, value)
            in_schema = schema.is_valid(row)
            checked += 1
            if not (accepted == expected == in_schema) or (not accepted and named != {feature.name}):
                mismatches.append(
                    f"{feature.name} ({feature.type.value}) = {value!r}: contract {expected}, "
                    f"service {accepted} (naming {sorted(named)}), schema {in_schema}"
                )
    assert not mismatches, f"{len(mismatches)} of {checked}:\n" + "\n".join(mismatches)


def test_a_feature_may_be_left_out_exactly_when_it_is_nullable(every_type_spec):
    row_model = request_row_model(every_type_spec)
    schema = jsonschema.Draft202012Validator(row_model.model_json_schema())
    for feature in every_type_spec.features:
        row = {k: v for k, v in example_row(every_type_spec).items() if k != feature.name}
        accepted, named = service_verdict(row_model, row)
        assert accepted == schema.is_valid(row) == (feature.max_null_fraction > 0), feature.name
        assert accepted or named == {feature.name}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("amount", "23", "float_type"),
        ("amount", "yes", "float_type"),
        ("amount", True, "float_type"),
        ("count", 3.5, "int_from_float"),
        ("count", "3", "int_type"),
        ("count", True, "int_type"),
        ("member", 1, "bool_type"),
        ("member", "yes", "bool_type"),
        ("member", "true", "bool_type"),
        ("plan", "BASIC", "literal_error"),
        ("plan", 1, "literal_error"),
    ],
)
def test_a_wrong_json_type_is_refused_naming_the_field(every_type_spec, field, value, error):
    row_model = request_row_model(every_type_spec)
    with pytest.raises(ValidationError) as info:
        row_model.model_validate_json(json.dumps({**example_row(every_type_spec), field: value}))
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [((field,), error)]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("field", ["amount", "score", "count", "offset"])
def test_nan_and_infinity_are_refused_for_numbers(every_type_spec, field, token):
    # Not JSON, so no JSON schema can say it; pydantic's parser reads them, and the service refuses them.
    row = json.dumps({**example_row(every_type_spec), field: 0}).replace(
        f'"{field}": 0', f'"{field}": {token}'
    )
    with pytest.raises(ValidationError) as info:
        request_row_model(every_type_spec).model_validate_json(row)
    assert [(e["loc"], e["type"]) for e in info.value.errors()] == [((field,), "finite_number")]


def test_whole_numbers_are_read_as_the_feature_type(every_type_spec):
    row_model = request_row_model(every_type_spec)
    parsed = row_model.model_validate_json(
        json.dumps({**example_row(every_type_spec), "amount": 3, "count": 3.0})
    )
    assert type(parsed.amount) is float and parsed.amount == 3.0
    assert type(parsed.count) is int and parsed.count == 3


def test_schema_states_types_enums_nullability_and_bounds(every_type_spec):
    schema = request_row_model(every_type_spec).model_json_schema()
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"amount", "score", "count", "offset", "member", "plan"}
    assert {k: props["amount"][k] for k in ("type", "minimum", "maximum")} == {
        "type": "number",
        "minimum": 0,
        "maximum": 100,
    }
    assert {k: props["count"][k] for k in ("type", "minimum", "maximum")} == {
        "type": "integer",
        "minimum": 0,
        "maximum": 50,
    }
    assert props["offset"]["type"] == "integer" and props["offset"]["maximum"] == sys.float_info.max
    assert props["member"]["type"] == "boolean"
    assert props["plan"]["enum"] == ["basic", "Pro", "1"] and props["plan"]["type"] == "string"
    for name, kind in {
        "spend": "number",
        "visits": "integer",
        "opted_in": "boolean",
        "tier": "string",
    }.items():
        assert props[name]["anyOf"][1] == {"type": "null"} and props[name]["anyOf"][0]["type"] == kind, name
        assert props[name]["default"] is None


def test_example_row_is_valid_for_every_range():
    def spec_with(feature: dict) -> ModelSpec:
        return ModelSpec.model_validate(
            {
                "name": "one",
                "description": "d",
                "owner": {"team": "t", "email": "t@example.com"},
                "task": "regression",
                "data": {"path": "unused.parquet"},
                "target": {"name": "y"},
                "evaluation": {"primary_metric": "rmse"},
                "features": [feature],
            }
        )

    for feature in (
        {"type": "integer", "max": -5},
        {"type": "numeric", "max": -5},
        {"type": "integer", "min": 7.5},
        {"type": "integer", "min": 0.2, "max": 1.8},
        {"type": "integer", "min": -3, "max": -2},
    ):
        spec = spec_with({"name": "x", **feature})
        row = example_row(spec)
        request_row_model(spec).model_validate_json(json.dumps(row))
        assert type(row["x"]) is (int if feature["type"] == "integer" else float), feature
