"""The one 4xx format of the service and the metrics reason of each problem (pure functions of
``include.modelops.serving.request_guard``; the middleware itself runs in tests/integration/test_serving.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from include.modelops.serving.metrics import REJECTION_REASONS
from include.modelops.serving.request_guard import error_body, field_name, reason_of


@pytest.mark.parametrize(
    ("loc", "name"),
    [
        (["rows", 0, "amount"], "rows[0].amount"),
        (["rows"], "rows"),
        ([], "body"),
        (["entity_ids", 3], "entity_ids[3]"),
        (["header X-Request-ID"], "header X-Request-ID"),
    ],
)
def test_field_name_reads_like_the_request(loc, name):
    assert field_name(loc) == name


@pytest.mark.parametrize(
    ("error_type", "loc", "reason"),
    [
        ("json_invalid", [], "invalid_json"),
        ("missing", ["rows", 0, "amount"], "missing_field"),
        ("extra_forbidden", ["rows", 0, "x"], "unknown_field"),
        ("literal_error", ["rows", 0, "channel"], "unknown_category"),
        ("greater_than_equal", ["rows", 0, "amount"], "out_of_range"),
        ("finite_number", ["rows", 0, "amount"], "not_finite"),
        ("too_short", ["rows"], "too_few_rows"),
        ("too_long", ["rows"], "too_many_rows"),
        ("too_long", ["entity_ids"], "invalid_value"),
        ("float_parsing", ["rows", 0, "amount"], "wrong_type"),
        ("int_from_float", ["rows", 0, "hour_of_day"], "wrong_type"),
        ("model_type", [], "wrong_type"),
        ("entity_ids_mismatch", ["entity_ids"], "entity_ids_mismatch"),
        ("something_new", [], "invalid_value"),
    ],
)
def test_every_problem_maps_to_a_known_reason(error_type, loc, reason):
    assert reason_of(error_type, loc) == reason
    assert reason in REJECTION_REASONS


def test_error_body_names_each_field_and_problem_from_pydantic_errors():
    class Row(BaseModel):
        model_config = ConfigDict(extra="forbid")
        amount: float = Field(ge=0)
        channel: str

    class Request(BaseModel):
        rows: list[Row]

    with pytest.raises(ValidationError) as info:
        Request.model_validate({"rows": [{"amount": 1, "channel": "pos"}, {"amount": -1, "x": 1}]})
    body = error_body(info.value.errors(include_context=False, include_input=False), "rid-1")
    assert body["request_id"] == "rid-1"
    assert body["error"] == "rows[1].amount: Input should be greater than or equal to 0 (and 2 more problems)"
    assert [(d["field"], d["type"]) for d in body["detail"]] == [
        ("rows[1].amount", "greater_than_equal"),
        ("rows[1].channel", "missing"),
        ("rows[1].x", "extra_forbidden"),
    ]
    assert body["detail"][0]["loc"] == ["rows", 1, "amount"]
