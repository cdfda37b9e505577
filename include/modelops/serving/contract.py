"""The endpoint's request and response contract, one definition for the service, the smoke test
and the tests: ``request_row_model`` (the pydantic row a request carries), ``rows_to_frame``,
``predictions_from_scores`` and ``endpoint_contract``. Importing it needs only pydantic.
"""

from __future__ import annotations

import logging
import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from include.modelops.spec import FeatureType, ModelSpec, TaskType

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

# The endpoint's limits (documented in bentos/README.md and the model card's serving section).
MAX_ROWS = 10_000  # rows per request
MAX_BODY_BYTES = 8 * 1024 * 1024  # a larger body is answered 413 before it is parsed
REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_CHARS = 128
# A request a rollout's shadow stage replays to the candidate's own port: its log rows say
# ``shadow``, never ``canary``. The model's endpoint (the splitter) strips it from client requests.
SHADOW_HEADER = "X-ModelOps-Shadow"


# --------------------------------------------------------------------------------------
# The service's contract: request rows, model input frame, response rows
# --------------------------------------------------------------------------------------


def _model_class_name(spec: ModelSpec) -> str:
    return "".join(part.capitalize() for part in spec.name.split("_")) + "Row"


def _json_kind(value: Any) -> str:
    """What a client sent, in JSON's words, for an error message: ``a string``, ``true``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})" if len(value) <= 20 else "a string"
    if isinstance(value, numbers.Real):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


def _json_number(value: Any) -> Any:
    """numeric: a JSON number (integer or not), never a string or true/false; 3 is read as 3.0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PydanticCustomError(
            "float_type", "Input should be a JSON number, not {kind}", {"kind": _json_kind(value)}
        )
    if isinstance(value, int) and abs(value) > _FLOAT_MAX:
        return math.inf if value > 0 else -math.inf  # a JSON integer beyond any float: refused as not finite
    return value


def _json_whole_number(value: Any) -> Any:
    """integer: a JSON integer or a number with no fractional part (3.0 is read as 3); never 3.5."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PydanticCustomError(
            "int_type",
            "Input should be a whole number (e.g. 3 or 3.0), not {kind}",
            {"kind": _json_kind(value)},
        )
    if isinstance(value, float) and value.is_integer():
        value = int(
            value
        )  # exact, however large (pydantic's own int refuses a float beyond 2**63 as a "string")
    if isinstance(value, numbers.Integral) and abs(int(value)) > _FLOAT_MAX:
        raise PydanticCustomError("finite_number", "Input should be a finite number (within ±1.8e308)")
    return value  # a fractional part (int_from_float), NaN or infinity is refused by pydantic's int


def _json_boolean(value: Any) -> Any:
    """boolean: JSON true or false only; not 0/1, "true" or "yes"."""
    if not isinstance(value, bool):
        raise PydanticCustomError(
            "bool_type", "Input should be true or false, not {kind}", {"kind": _json_kind(value)}
        )
    return value


def _bound(feature_type: FeatureType, value: float, *, lower: bool) -> float | int:
    """A spec bound as the schema states it: an integer feature's as the nearest integer inside it."""
    if feature_type != FeatureType.integer:
        return value
    return math.ceil(value) if lower else math.floor(value)


# The bounds of a numeric or integer feature without ``min``/``max``: the model is fed float64,
# so a value beyond it (a 400-digit JSON integer) could never be scored.
_FLOAT_MAX = sys.float_info.max


def request_row_model(spec: ModelSpec) -> type[BaseModel]:
    """The pydantic model of one request row, built from the spec's features.

    Types are strict, as JSON states them (a wrong type is a 400 naming the field, never
    converted silently), and the model's JSON schema (the OpenAPI document's) says exactly this:

    - numeric: a JSON number, integer or not (``"number"``); not a string, not true/false, not NaN
      or infinity;
    - integer: a JSON integer, or a number with no fractional part such as ``3.0``
      (``"integer"``, which JSON Schema defines the same way); never ``3.5``, a string or true/false;
    - boolean: ``true`` or ``false`` only; not ``0``/``1``, ``"true"`` or ``"yes"``;
    - categorical: one of its ``categories``, as the exact string (``"enum"``).

    Bounds are the spec's ``min``/``max`` (``minimum``/``maximum``; without one, the largest
    64-bit float, what the model is fed, bounds that side). A feature whose
    ``max_null_fraction`` is above 0 may be null or left out (``anyOf [..., null]``, not
    required); every other feature is required and never null. Unknown fields are rejected
    (``additionalProperties: false``), so a misspelt column fails loudly instead of being
    scored as missing.
    """
    fields: dict[str, Any] = {}
    for feature in spec.features:
        annotation: Any
        if feature.type in (FeatureType.numeric, FeatureType.integer):
            bounds: dict[str, Any] = {}
            unbounded: dict[str, float] = {}  # stated in the schema, enforced by the before-validator
            for key, schema_key, value, default in (
                ("ge", "minimum", feature.min, -_FLOAT_MAX),
                ("le", "maximum", feature.max, _FLOAT_MAX),
            ):
                if value is not None:
                    bounds[key] = _bound(feature.type, value, lower=key == "ge")
                elif feature.type == FeatureType.numeric:
                    bounds[key] = default
                else:  # pydantic's int takes only an int bound
                    unbounded[schema_key] = default
            if feature.type == FeatureType.numeric:
                annotation = Annotated[
                    float, Field(allow_inf_nan=False, **bounds), BeforeValidator(_json_number)
                ]
            else:
                annotation = Annotated[
                    int,
                    Field(json_schema_extra=unbounded or None, **bounds),
                    BeforeValidator(_json_whole_number),
                ]
        elif feature.type == FeatureType.categorical:
            annotation = Literal[tuple(feature.categories or ())]
        else:
            annotation = Annotated[bool, BeforeValidator(_json_boolean)]
        description = feature.description or None
        if feature.max_null_fraction > 0:
            fields[feature.name] = (annotation | None, Field(default=None, description=description))
        else:
            fields[feature.name] = (annotation, Field(description=description))
    return create_model(
        _model_class_name(spec),
        __config__=ConfigDict(extra="forbid", protected_namespaces=(), title=_model_class_name(spec)),
        __doc__=f"One row of features for model {spec.name!r} (see its spec).",
        **fields,
    )


def example_row(spec: ModelSpec) -> dict[str, Any]:
    """A valid request row: the middle of each numeric range, the first category, False.

    An integer feature gets a whole number inside its range (a JSON integer), a numeric one a
    float; a range open on one side is read as one unit wide from its bound.
    """
    row: dict[str, Any] = {}
    for feature in spec.features:
        if feature.type in (FeatureType.numeric, FeatureType.integer):
            low, high = feature.min, feature.max
            if low is None:
                low = high - 1.0 if high is not None else 0.0
            if high is None:
                high = low + 1.0
            middle = low + (high - low) / 2
            if feature.type == FeatureType.integer:
                whole = math.floor(middle)
                row[feature.name] = whole if whole >= low else math.ceil(low)
            else:
                row[feature.name] = float(middle)
        elif feature.type == FeatureType.categorical:
            row[feature.name] = (feature.categories or [""])[0]
        else:
            row[feature.name] = False
    return row


def request_rows(spec: ModelSpec, df: pd.DataFrame) -> list[dict[str, Any]]:
    """The spec's feature columns of ``df`` as request rows: plain JSON values, nulls as None.

    Floats keep full precision (``json`` writes the shortest exact repr), so a row sent to
    the service is bit-for-bit the row scored offline.
    """
    import pandas as pd

    records = df[spec.feature_names].to_dict(orient="records")
    return [{name: (None if pd.isna(value) else value) for name, value in rec.items()} for rec in records]


def smoke_rows(spec: ModelSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` plus the edge rows every valid request may be: the smoke test's request rows.

    A served model once answered 500 to every row without a null, because the batch it had
    been tested with happened to hold one. So next to the sample rows come, built from the
    first one: the row with no null at all (every null filled from another sample row); for
    each nullable feature, that row with just this feature null; and the type edges a client
    may send, numeric features as JSON integers and integer features as floats with ``.0``.
    Edge rows are appended in that order; the caller scores them offline like any other row.
    """
    import math

    if not rows:
        return []
    base = dict(rows[0])
    for feature in spec.features:  # fill a null from the first sample row that has the feature
        if base.get(feature.name) is None:
            base[feature.name] = next(
                (r[feature.name] for r in rows if r.get(feature.name) is not None),
                example_row(spec)[feature.name],
            )
    edges = [base]
    edges += [{**base, f.name: None} for f in spec.features if f.max_null_fraction > 0]
    as_ints, as_floats = dict(base), dict(base)
    for feature in spec.features:
        value = base[feature.name]
        if feature.type == FeatureType.numeric:
            whole = round(float(value))
            low = -math.inf if feature.min is None else feature.min
            high = math.inf if feature.max is None else feature.max
            if not low <= whole <= high:  # the nearest whole number in range, if there is one
                whole = math.ceil(low) if whole < low else math.floor(high)
            if low <= whole <= high:
                as_ints[feature.name] = int(whole)
        elif feature.type == FeatureType.integer:
            as_floats[feature.name] = float(value)
    edges += [row for row in (as_ints, as_floats) if row != base]
    return [*rows, *edges]


def rows_to_frame(spec: ModelSpec, rows: Sequence[Mapping[str, Any] | BaseModel]) -> pd.DataFrame:
    """The model's input frame for request rows: ``scoring.feature_frame``, the conversion training used.

    One dtype per feature type whatever the values (see ``feature_frame``), so a batch with no
    null, or with ``3`` where training saw ``3.0``, is scored like any other.
    """
    import pandas as pd

    from include.modelops.scoring import feature_frame

    records = [row.model_dump() if isinstance(row, BaseModel) else dict(row) for row in rows]
    return feature_frame(spec, pd.DataFrame.from_records(records, columns=spec.feature_names))


def served_threshold(spec: ModelSpec, bento_model: Mapping[str, Any] | None = None) -> float:
    """The decision threshold a bento labels with: its version's (``bento_model.json``'s
    ``decision_threshold``), else the spec's fixed value (a bento built before thresholds were recorded)."""
    from include.modelops.evaluation.metrics import spec_threshold

    value = (bento_model or {}).get("decision_threshold")
    return float(value) if value is not None else float(spec_threshold(spec)["value"])


def predictions_from_scores(
    spec: ModelSpec, scores: np.ndarray, *, threshold: float | None = None
) -> list[dict[str, Any]]:
    """Response rows for scores from ``scoring.to_scores``.

    binary: ``{"score": P(positive), "label": 1 if score >= threshold else 0}``, where
    ``threshold`` is the served version's decision threshold (``served_threshold``; None:
    the spec's fixed value); regression: ``{"prediction": value}``; multiclass:
    ``{"probabilities": {class: p}, "label": most likely class}``. Values keep full float
    precision so the smoke test can compare them with offline scores.
    """
    import numpy as np

    scores = np.asarray(scores, dtype=float)
    if spec.task == TaskType.binary_classification:
        threshold = served_threshold(spec) if threshold is None else float(threshold)
        return [{"score": float(s), "label": int(s >= threshold)} for s in scores.reshape(-1)]
    if spec.task == TaskType.regression:
        return [{"prediction": float(p)} for p in scores.reshape(-1)]
    classes = [str(c) for c in spec.target.classes] if spec.target.classes else None
    out = []
    for probs in scores:
        names = classes or [str(i) for i in range(len(probs))]
        out.append(
            {
                "probabilities": {name: float(p) for name, p in zip(names, probs, strict=True)},
                "label": names[int(np.argmax(probs))],
            }
        )
    return out


def endpoint_contract(spec: ModelSpec, *, threshold: float | None = None) -> dict[str, Any]:
    """The ``/predict`` contract of the model's bento, for people: fields, limits, answers, errors.

    JSON-serialisable; the model card's serving section and the docs state it. The
    service enforces it (``request_row_model``, ``MAX_ROWS``, ``MAX_BODY_BYTES`` and
    ``include.modelops.serving.request_guard``). ``threshold``: the version's decision
    threshold (binary), else the spec's fixed value.
    """
    if spec.task == TaskType.binary_classification:
        t = served_threshold(spec) if threshold is None else float(threshold)
        response = f'{{"score": P(positive), "label": 1 if score >= {t:.6g} else 0}}'
    elif spec.task == TaskType.regression:
        response = '{"prediction": value}'
    else:
        response = '{"probabilities": {class: p}, "label": the most likely class}'
    fields = []
    for feature in spec.features:
        kind = feature.type.value
        if feature.type == FeatureType.categorical:
            allowed = "one of: " + ", ".join(str(c) for c in feature.categories or [])
        elif feature.type == FeatureType.boolean:
            allowed = "true or false (not 0/1 or a string)"
        else:
            low = "" if feature.min is None else f"{feature.min:g} ≤ "
            high = "" if feature.max is None else f" ≤ {feature.max:g}"
            allowed = f"{low}value{high}" if (low or high) else "any finite number"
            if feature.type == FeatureType.numeric:
                allowed += " (a JSON number; not a string or true/false, no NaN or infinity)"
            else:
                allowed += " (a whole number: 3 or 3.0, never 3.5, a string or true/false)"
        fields.append(
            {
                "name": feature.name,
                "type": kind,
                "allowed": allowed,
                "required": feature.max_null_fraction == 0,
                "description": feature.description or "",
            }
        )
    return {
        "endpoint": "POST /predict",
        "content_type": "application/json",
        "request": '{"rows": [{feature: value, ...}, ...], "entity_ids": [id, ...] (optional, one per row)}',
        "max_rows": MAX_ROWS,
        "max_body_bytes": MAX_BODY_BYTES,
        "request_id_header": f"{REQUEST_ID_HEADER}: the client's id (1-{MAX_REQUEST_ID_CHARS} characters of "
        "A-Z a-z 0-9 . _ : -), else one is generated; every answer carries it",
        "fields": fields,
        "unknown_fields": "rejected (a misspelt column is an error, never scored as missing)",
        "response": f"a JSON list, one object per row in request order: {response}",
        "errors": {
            "format": '{"error": "<field>: <problem>", "detail": [{"field", "loc", "type", "msg"}], '
            '"request_id"}',
            "400": "a field is missing, unknown, of the wrong type, NaN/infinite, out of range or an unknown "
            "category; no rows or too many rows; entity_ids of another length; not JSON; bad X-Request-ID",
            "405": "a method other than POST",
            "413": f"a body over {MAX_BODY_BYTES} bytes",
            "415": "a content type other than application/json",
            "503": "overloaded: requests waited too long for a batch; retry",
        },
    }


def scores_from_predictions(spec: ModelSpec, predictions: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The inverse of ``predictions_from_scores``: the score array from response rows."""
    import numpy as np

    if spec.task == TaskType.binary_classification:
        return np.array([p["score"] for p in predictions], dtype=float)
    if spec.task == TaskType.regression:
        return np.array([p["prediction"] for p in predictions], dtype=float)
    return np.array([list(p["probabilities"].values()) for p in predictions], dtype=float)
