"""Package a registered model as a bento, and prove the bento serves what was evaluated.

The packaging task calls, in order::

    bento_tag = build_bento(spec, version, model_uri)      # "fraud_detection_service:v3"
    report = smoke_serve(spec, bento_tag, rows, expected_scores)
    check_smoke_report(report)                             # raises TrainServeSkewError

The service's request/response contract lives here too (``request_row_model``,
``rows_to_frame``, ``predictions_from_scores``): ``bentos/service.py``, the smoke test
and the unit tests share one definition, and importing this module needs only pydantic.
bentoml and mlflow are imported inside the functions that use them, after
``BENTOML_HOME`` is set (BentoML reads it once per process, on first use).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import numbers
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from include.modelops.platform import processes
from include.modelops.platform import local_stack
from include.modelops.settings import PROJECT_ROOT, get_settings, git_commit
from include.modelops.spec import FeatureType, ModelSpec, TaskType

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

SERVICE_IMPORT = "service:ModelService"
BENTO_MODEL_FILE = "bento_model.json"
# The library is copied into every bento so that `include.modelops...` resolves inside it
# without the project on sys.path. All of it, not only what service.py imports: a pickled
# model (e.g. a torch trainer's PythonModel) refers to its class by module path.
SERVICE_PACKAGE_GLOB = "include/**/*.py"
# Label left out of the build hash: it records where a build came from, not what is in it.
_UNHASHED_LABELS = ("git_commit", "build_hash")


# The endpoint's limits (documented in bentos/README.md and the model card's serving section).
MAX_ROWS = 10_000  # rows per request
MAX_BODY_BYTES = 8 * 1024 * 1024  # a larger body is answered 413 before it is parsed
REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_CHARS = 128
# A request a rollout's shadow stage replays to the candidate's own port: its log rows say
# ``shadow``, never ``canary``. The model's endpoint (the splitter) strips it from client requests.
SHADOW_HEADER = "X-ModelOps-Shadow"


class TrainServeSkewError(Exception):
    """The served bento does not behave like the evaluated model (scores, validation or metrics)."""


class ServeStartupError(RuntimeError):
    """``bentoml serve`` exited or did not become ready in time; the message ends with its output."""


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


# --------------------------------------------------------------------------------------
# BentoML store: models and bentos
# --------------------------------------------------------------------------------------


def bentoml_model_tag(model_name: str, version: str) -> str:
    """The BentoML model tag of an MLflow model version, e.g. ``fraud_detection:v3``."""
    return f"{model_name}:v{version}"


def bento_tag(model_name: str, version: str) -> str:
    """The tag of the bento serving an MLflow model version, e.g. ``fraud_detection_service:v3``."""
    name = f"{model_name}_service"
    if len(name) > 63:  # BentoML's limit for a tag's name
        raise ValueError(f"model name {model_name!r} is too long for a bento tag; use at most 55 characters")
    return f"{name}:v{version}"


def _bentoml() -> Any:
    """Import bentoml with this project's store.

    BentoML reads ``BENTOML_HOME`` once per process, on first use, so it is set here
    before the import; if bentoml was already used with another home, store and build
    would go to the wrong place, so that is an error rather than a surprise.
    """
    home = get_settings().bentoml_home
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    active = Path(BentoMLContainer.bentoml_home.get()).resolve()
    if active != home:
        raise RuntimeError(
            f"BentoML in this process already uses the store {active}, but BENTOML_HOME is now {home}. "
            "Set BENTOML_HOME before bentoml is first imported (one store per process)."
        )
    return bentoml


@contextlib.contextmanager
def _temp_files_under(folder: Path) -> Iterator[None]:
    """Keep BentoML's and MLflow's temporary files inside the project while packaging."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def import_model(model_name: str, version: str, model_uri: str) -> str:
    """Copy an MLflow model into the BentoML store as ``<model_name>:v<version>``.

    Idempotent: an existing tag that holds the same MLflow model (same ``model_uuid``) is
    reused. A tag holding a different model (the MLflow registry was reset while the
    BentoML store was kept) is replaced, so a version number never serves stale weights.

    Args:
        model_name: Registered model name (the spec's name).
        version: MLflow model-version number.
        model_uri: Where MLflow finds the model, e.g. ``models:/fraud_detection/3``.

    Returns:
        The BentoML model tag.
    """
    bentoml = _bentoml()
    import mlflow
    from bentoml.exceptions import NotFound

    from include.modelops.platform import tracking

    settings = get_settings()
    tracking.client()  # sets the tracking URI, or says clearly that none is configured
    tag = bentoml_model_tag(model_name, version)
    with _temp_files_under(settings.bentoml_home / "tmp"):
        model_uuid = mlflow.models.get_model_info(model_uri).model_uuid or ""
        try:
            existing = bentoml.models.get(tag)
        except NotFound:
            existing = None
        if existing is not None:
            if existing.info.labels.get("mlflow_model_uuid") == model_uuid:
                log.info("BentoML model %s already holds %s; reusing it", tag, model_uri)
                return str(existing.tag)
            log.warning(
                "BentoML model %s holds MLflow model %s, not %s from %s; replacing it",
                tag,
                existing.info.labels.get("mlflow_model_uuid"),
                model_uuid,
                model_uri,
            )
            bentoml.models.delete(tag)
        log.info("Importing %s into the BentoML store at %s as %s", model_uri, settings.bentoml_home, tag)
        started = time.perf_counter()
        model = bentoml.mlflow.import_model(
            tag,
            model_uri,
            labels={"model": model_name, "model_version": str(version), "mlflow_model_uuid": model_uuid},
            metadata={"mlflow_model_uri": model_uri},
        )
    log.info("Imported %s in %.1f s", model.tag, time.perf_counter() - started)
    return str(model.tag)


def _canonical(requirement: str) -> str:
    name = re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


# The packages each MLflow flavour loads its models with. MLflow *infers* such a model's
# requirements.txt from every package imported while it loaded the model in the logging process,
# so a scikit-learn model logged next to torch (or under pytest) pins torch and pytest too.
_FLAVOR_PACKAGES: dict[str, tuple[str, ...]] = {
    "sklearn": ("scikit-learn",),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "catboost": ("catboost",),
    "pytorch": ("torch",),
}
_SERIALIZATION_PACKAGES = {"skops": "skops", "cloudpickle": "cloudpickle"}


def _dependency_closure(names: Sequence[str]) -> set[str]:
    """``names`` and everything they require when installed (no extras), as canonical names."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _model_needs(model_dir: Path) -> set[str] | None:
    """The canonical names a model's flavour needs to load it, or None when only its own pins can say.

    A model of a library flavour (``sklearn`` and the like) needs that library, the package it
    was serialised with, and their dependencies; a plain ``python_function`` model (the PyTorch
    trainer's, which logs explicit pins) keeps its requirements as logged.
    """
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.exists():
        return None
    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    packages = [pkg for flavor in flavors for pkg in _FLAVOR_PACKAGES.get(flavor, ())]
    if not packages:
        return None
    for conf in flavors.values():
        fmt = (conf or {}).get("serialization_format") if isinstance(conf, dict) else None
        if fmt in _SERIALIZATION_PACKAGES:
            packages.append(_SERIALIZATION_PACKAGES[fmt])
    return _dependency_closure(packages)


def _python_packages(base: Sequence[str], model_dir: Path) -> list[str]:
    """Pinned requirements: ``base`` at the installed versions, then what the model needs of its MLflow pins.

    Of a library-flavoured model's pins only those its flavour needs are kept (see
    ``_model_needs``): the bento of a scikit-learn model carries no torch or pytest.
    """
    pins: dict[str, str] = {}
    for name in base:
        pins[_canonical(name)] = f"{name}=={importlib.metadata.version(name)}"
    needs = _model_needs(model_dir)
    dropped: list[str] = []
    requirements = model_dir / "requirements.txt"
    if requirements.exists():
        for line in requirements.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-") or _canonical(line) in pins:
                continue
            if needs is not None and _canonical(line) not in needs:
                dropped.append(line)
                continue
            pins[_canonical(line)] = line
    if dropped:
        log.info(
            "Left out of the bento (MLflow inferred them from the logging process; the model's flavour "
            "does not load them): %s",
            ", ".join(dropped),
        )
    return sorted(pins.values(), key=str.lower)


def _load_template() -> dict[str, Any]:
    import yaml

    path = get_settings().bentos_dir / "bentofile.yaml"
    return yaml.safe_load(path.read_text())


def _write_build_context(ctx: Path, bento_model: dict[str, Any]) -> None:
    """A fresh build context: service.py, bento_model.json and the ``include`` package."""
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    shutil.copy2(get_settings().bentos_dir / "service.py", ctx / "service.py")
    for source in sorted(PROJECT_ROOT.glob(SERVICE_PACKAGE_GLOB)):
        target = ctx / source.relative_to(PROJECT_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (ctx / BENTO_MODEL_FILE).write_text(json.dumps(bento_model, indent=2, sort_keys=True) + "\n")


def _build_hash(ctx: Path, config: dict[str, Any]) -> str:
    """What a bento is made of: every file in its context and the build options."""
    digest = hashlib.sha256()
    for path in sorted(p for p in ctx.rglob("*") if p.is_file() and p.name != "bentofile.yaml"):
        digest.update(path.relative_to(ctx).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    hashed = {**config, "labels": {k: v for k, v in config["labels"].items() if k not in _UNHASHED_LABELS}}
    digest.update(json.dumps(hashed, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def build_bento(
    spec: ModelSpec,
    version: str,
    model_uri: str,
    *,
    build_root: Path | None = None,
    threshold: Mapping[str, Any] | None = None,
) -> str:
    """Build the bento that serves one MLflow model version.

    Imports the model into the BentoML store, writes a build context (``service.py``,
    ``bento_model.json`` and the project's ``include`` package) and builds
    ``<spec.name>_service:v<version>`` with the options of ``bentos/bentofile.yaml``.

    Idempotent: the bento's ``build_hash`` label hashes everything that goes into it.
    An existing bento with the same hash is reused, so a retried task changes nothing
    and a running server keeps its files. One with another hash (service code, spec or
    model changed under the same version) is deleted and rebuilt, because a tag must
    name exactly one content.

    Args:
        spec: The model's spec.
        version: MLflow model-version number.
        model_uri: Where MLflow finds the model, e.g. ``models:/fraud_detection/3``.
        build_root: Build-context folder; default
            ``$MODELOPS_STATE_DIR/bento_build/<name>-v<version>``.
        threshold: Binary: the version's decision threshold (``decision_threshold.threshold_info``),
            written to ``bento_model.json`` for the service to label with; default: read from the
            version's tags (``evaluation.threshold.registered_threshold``).

    Returns:
        The bento tag.
    """
    import yaml

    settings = get_settings()
    model_tag = import_model(spec.name, version, model_uri)
    bentoml = _bentoml()
    from bentoml.exceptions import NotFound

    tag = bento_tag(spec.name, version)
    ctx = Path(build_root) if build_root else settings.state_dir / "bento_build" / f"{spec.name}-v{version}"
    stored_model = bentoml.models.get(model_tag)
    model_uuid = stored_model.info.labels.get("mlflow_model_uuid", "")
    bento_model = {
        "model_name": spec.name,
        "model_version": str(version),
        "bentoml_model_tag": model_tag,
        "mlflow_model_uri": model_uri,
        "mlflow_model_uuid": model_uuid,
        "spec_hash": spec.spec_hash(),
        "spec": spec.model_dump(mode="json"),
    }
    if spec.task == TaskType.binary_classification:
        # The version's own threshold (chosen when it was trained), not the spec's: the service labels with it.
        if threshold is None:
            from include.modelops.evaluation.threshold import registered_threshold

            threshold = registered_threshold(spec, str(version))
        bento_model["decision_threshold"] = float(threshold["value"])
        bento_model["threshold"] = dict(threshold)
        log.info("Bento %s labels rows positive at score >= %s", tag, bento_model["decision_threshold"])
    log.info("Writing build context for %s to %s", tag, ctx)
    _write_build_context(ctx, bento_model)

    template = _load_template()
    python = dict(template.get("python") or {})
    python["packages"] = _python_packages(
        python.get("packages") or [], Path(stored_model.path_of("mlflow_model"))
    )
    config: dict[str, Any] = {
        "service": template.get("service", SERVICE_IMPORT),
        "name": tag.split(":")[0],
        "version": tag.split(":")[1],
        "description": (
            f"# {spec.name} v{version}\n\n{spec.description}\n\n"
            f"MLflow model `{model_uri}` (BentoML model `{model_tag}`). Built by airflow-modelops."
        ),
        "labels": {
            **(template.get("labels") or {}),
            "model": spec.name,
            "model_version": str(version),
            "spec_hash": spec.spec_hash(),
            "mlflow_model_uri": model_uri,
            "mlflow_model_uuid": model_uuid,
            "bentoml_model": model_tag,
            "git_commit": git_commit(),
        },
        "include": template.get("include"),
        "exclude": template.get("exclude"),
        "python": python,
    }
    build_hash = _build_hash(ctx, config)
    config["labels"]["build_hash"] = build_hash
    (ctx / "bentofile.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    try:
        existing = bentoml.bentos.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        if existing.info.labels.get("build_hash") == build_hash:
            log.info("Bento %s already built from these inputs (build_hash %s); reusing it", tag, build_hash)
            return str(existing.tag)
        log.warning(
            "Bento %s exists but was built from other inputs (build_hash %s, now %s); rebuilding it",
            tag,
            existing.info.labels.get("build_hash"),
            build_hash,
        )
        bentoml.bentos.delete(tag)

    # BentoML imports the service as the top-level module "service"; a previous build in
    # this process would otherwise hand back that build's module and its bento_model.json.
    previous = sys.modules.get("service")
    if previous is not None and Path(getattr(previous, "__file__", "") or "").name == "service.py":
        del sys.modules["service"]
    log.info("Building bento %s (packages: %s)", tag, ", ".join(python["packages"]))
    started = time.perf_counter()
    with _temp_files_under(settings.bentoml_home / "tmp"):
        bento = bentoml.bentos.build(
            config["service"],
            name=config["name"],
            version=config["version"],
            description=config["description"],
            labels=config["labels"],
            include=config["include"],
            exclude=config["exclude"],
            python=config["python"],
            build_ctx=str(ctx),
        )
    sys.modules.pop("service", None)
    log.info("Built bento %s in %.1f s at %s", bento.tag, time.perf_counter() - started, bento.path)
    return str(bento.tag)


# --------------------------------------------------------------------------------------
# Smoke test: serve the bento, compare with offline scores
# --------------------------------------------------------------------------------------


def serve_env() -> dict[str, str]:
    settings = get_settings()
    tmp = settings.bentoml_home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    # PYTHONPATH is dropped so the bento must import everything from its own files: a
    # bento that only works with the project on the path would fail later, in a container.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        BENTOML_HOME=str(settings.bentoml_home),
        BENTOML_DO_NOT_TRACK="True",
        MLFLOW_DISABLE_TELEMETRY=env.get("MLFLOW_DISABLE_TELEMETRY", "true"),
        TMPDIR=str(tmp),
        PYTHONUNBUFFERED="1",
    )
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server output)"


def _http(method: str, url: str, payload: Any = None, timeout: float = 30.0) -> tuple[int, str, str]:
    """(status, content type, body) of one request; HTTP errors are returned, not raised."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode(errors="replace")


def wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float, log_path: Path, tag: str) -> float:
    started = time.monotonic()
    last_progress = started
    while True:
        elapsed = time.monotonic() - started
        if proc.poll() is not None:
            raise ServeStartupError(
                f"bentoml serve {tag} exited with code {proc.returncode} after {elapsed:.1f} s. "
                f"Last lines of its output ({log_path}):\n{_tail(log_path)}"
            )
        try:
            status, _, _ = _http("GET", f"{base_url}/readyz", timeout=2.0)
        except (urllib.error.URLError, OSError):
            status = 0
        if status == 200:
            return elapsed
        if elapsed > timeout_s:
            raise ServeStartupError(
                f"bentoml serve {tag} was not ready after {timeout_s:.0f} s (MODELOPS_SERVE_TIMEOUT_S). "
                f"Last lines of its output ({log_path}):\n{_tail(log_path)}"
            )
        if time.monotonic() - last_progress >= 5:
            log.info("Waiting for %s to be ready at %s/readyz (%.0f s elapsed)", tag, base_url, elapsed)
            last_progress = time.monotonic()
        time.sleep(0.5)


def _invalid_row(spec: ModelSpec, row: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A copy of ``row`` that breaks one constraint, and the field it breaks."""
    bad = dict(row)
    for feature in spec.features:
        if feature.type in (FeatureType.numeric, FeatureType.integer) and feature.min is not None:
            bad[feature.name] = feature.min - 1
            return bad, feature.name
    first = spec.features[0].name
    for feature in spec.features:
        if feature.max_null_fraction == 0:
            first = feature.name
            break
    bad.pop(first, None)
    return bad, first


def _percentile_ms(latencies: list[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(latencies, q)) * 1000, 3) if latencies else None


def _check_served(
    spec: ModelSpec,
    base_url: str,
    rows: list[dict[str, Any]],
    expected_scores: list[float],
    latency_requests: int,
    report: dict[str, Any],
) -> None:
    """Run the checks against a ready server, recording results and errors in ``report``."""
    import numpy as np

    status, _, body = _http("POST", f"{base_url}/predict", {"rows": rows})
    if status != 200:
        report["errors"].append(f"POST /predict returned HTTP {status}: {body[:2000]}")
    else:
        served = scores_from_predictions(spec, json.loads(body))
        expected = np.asarray(expected_scores, dtype=float)
        if served.shape != expected.shape:
            report["errors"].append(
                f"/predict returned scores of shape {list(served.shape)}, expected {list(expected.shape)}"
            )
        else:
            report["max_abs_diff"] = float(np.max(np.abs(served - expected))) if len(expected) else 0.0
            log.info(
                "Served vs offline scores on %d rows: max |diff| %.3g (tolerance %g)",
                len(rows),
                report["max_abs_diff"],
                report["tolerance"],
            )

    # Every row alone too: a valid row must be answered 200 whatever else is in its batch.
    latencies, refused = [], []
    for i, row in enumerate(rows):
        started = time.perf_counter()
        status, _, body = _http("POST", f"{base_url}/predict", {"rows": [row]})
        if status == 200:
            if i < max(latency_requests, 0):
                latencies.append(time.perf_counter() - started)
        else:
            refused.append(f"row {i} {json.dumps(row, default=str)[:300]}: HTTP {status} {body[:300]}")
    if refused:
        report["errors"].append(
            f"{len(refused)} valid row(s) sent alone were not answered 200 (first: {refused[0]})"
        )
    report["latency_ms_p50"] = _percentile_ms(latencies, 50)
    report["latency_ms_p95"] = _percentile_ms(latencies, 95)

    if rows:
        bad_row, field = _invalid_row(spec, rows[0])
        status, _, body = _http("POST", f"{base_url}/predict", {"rows": [bad_row]})
        report["invalid_request_status"] = status
        report["invalid_request_field"] = field
        try:
            report["invalid_request_detail"] = json.loads(body)
        except json.JSONDecodeError:
            report["invalid_request_detail"] = body[:2000]
        if status != 400 or field not in body:
            report["errors"].append(
                f"an invalid row ({field!r} broken) returned HTTP {status}, expected 400 naming {field!r}"
            )

    status, content_type, body = _http("GET", f"{base_url}/metrics")
    report["metrics_ok"] = status == 200 and content_type.startswith("text/plain") and "# TYPE" in body
    if not report["metrics_ok"]:
        report["errors"].append(f"GET /metrics returned HTTP {status} ({content_type}), not Prometheus text")


@dataclass
class ServedBento:
    """A running ``bentoml serve``: its base URL, process (its own process group) and output file."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    startup_s: float


@contextlib.contextmanager
def serve_bento(
    bento_tag: str,
    *,
    env: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
    timeout_s: float | None = None,
    log_dir: Path | None = None,
) -> Iterator[ServedBento]:
    """Run ``bentoml serve bento_tag`` until the block ends, then stop it and all its processes.

    Waits for ``/readyz``. ``env`` adds to the serving environment (e.g.
    ``MODELOPS_SERVE_VARIANT``, ``MODELOPS_INFERENCE_LOG_URL``). The server's output goes
    to a file in ``log_dir`` (default ``<state>/smoke_serve``). On exit the process group
    gets SIGTERM, so the service flushes its inference log, then SIGKILL for stragglers.

    Raises:
        ServeStartupError: The server exited or was not ready in time.
    """
    settings = get_settings()
    timeout_s = settings.serve_timeout_s if timeout_s is None else timeout_s
    host = host or settings.serve_host
    port = port or local_stack.free_port(host)
    base_url = f"http://{host}:{port}"
    log_dir = log_dir or settings.state_dir / "smoke_serve"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log_path = log_dir / f"{bento_tag.replace(':', '-')}-{stamp}-{port}.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]
    home = serving_home(port)
    full_env = {**serve_env(), "BENTOML_HOME": str(home), **(env or {})}
    log.info("Starting %s (output: %s)", " ".join(cmd[2:]), log_path)
    with log_path.open("wb") as server_log:
        proc = subprocess.Popen(
            cmd,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=settings.bentoml_home / "tmp",
            start_new_session=True,
        )
    try:
        startup_s = wait_ready(base_url, proc, timeout_s, log_path, bento_tag)
        yield ServedBento(url=base_url, proc=proc, log_path=log_path, startup_s=startup_s)
    finally:
        processes.stop_process(proc, timeout_s=20)
        shutil.rmtree(home, ignore_errors=True)


def serving_home(port: int) -> Path:
    """A ``BENTOML_HOME`` for one server: the project's bento and model store, its own metrics folder.

    ``bentoml serve`` keeps Prometheus' multi-process files in
    ``$BENTOML_HOME/prometheus_multiproc_dir`` and empties that folder when it starts, so
    two services on one store (stable and canary, or a smoke test next to ``make serve``)
    would wipe each other's metrics. Each server gets a home of links to the shared store.
    """
    store = get_settings().bentoml_home
    home = get_settings().state_dir / "serving_homes" / str(port)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    for name in ("bentos", "models"):
        (store / name).mkdir(parents=True, exist_ok=True)
        (home / name).symlink_to(store / name, target_is_directory=True)
    return home


def smoke_serve(
    spec: ModelSpec,
    bento_tag: str,
    rows: list[dict[str, Any]],
    expected_scores: list[float] | list[list[float]],
    *,
    tolerance: float = 1e-6,
    timeout_s: float | None = None,
    latency_requests: int = 50,
) -> dict[str, Any]:
    """Serve the bento locally and check it scores ``rows`` like the evaluated model.

    Starts ``bentoml serve`` on a free port of ``MODELOPS_SERVE_HOST``, waits for
    ``/readyz``, posts ``rows`` to ``/predict`` and compares the scores with
    ``expected_scores`` (offline ``scoring.score`` on the same rows), sends each row alone too
    (every one must be answered 200; the first ``latency_requests`` are timed), sends one invalid row (expects 400 naming the field), reads
    ``/metrics``, and always stops the server. The smoke test's requests are not
    production traffic: the service runs as variant ``smoke`` with its own inference log
    under ``<state>/smoke_serve/inference_log``, which must hold the scored rows after
    the server stops (``logged_rows``).

    Args:
        spec: The model's spec.
        bento_tag: The bento to serve.
        rows: Request rows (JSON values; nulls as None).
        expected_scores: Offline scores of ``rows`` (``scoring.to_scores`` contract).
        tolerance: Largest allowed absolute difference per score.
        timeout_s: How long to wait for readiness; default ``MODELOPS_SERVE_TIMEOUT_S``.
        latency_requests: Single-row requests timed for the latency percentiles.

    Returns:
        A JSON-serialisable report; ``ok`` is False on any failed check (see
        ``check_smoke_report``).

    Raises:
        ServeStartupError: The server exited or was not ready in time.
    """
    settings = get_settings()
    log_dir = settings.state_dir / "smoke_serve"
    # The smoke test's requests are not production traffic: they go to their own log, as variant "smoke".
    smoke_log = log_dir / "inference_log"
    report: dict[str, Any] = {
        "bento_tag": bento_tag,
        "ok": False,
        "rows": len(rows),
        "max_abs_diff": None,
        "tolerance": tolerance,
        "invalid_request_status": None,
        "invalid_request_field": None,
        "invalid_request_detail": None,
        "metrics_ok": False,
        "startup_s": None,
        "latency_ms_p50": None,
        "latency_ms_p95": None,
        "logged_rows": None,
        "inference_log": str(smoke_log),
        "errors": [],
        "url": None,
        "server_log": None,
    }
    started = datetime.now(UTC)
    with serve_bento(
        bento_tag,
        timeout_s=timeout_s,
        log_dir=log_dir,
        env={
            "MODELOPS_SERVE_VARIANT": "smoke",
            "MODELOPS_INFERENCE_LOG_URL": str(smoke_log),
            "MODELOPS_INFERENCE_LOG": "on",
        },
    ) as served:
        report.update(url=served.url, server_log=str(served.log_path), startup_s=round(served.startup_s, 3))
        log.info("%s ready in %.1f s", bento_tag, served.startup_s)
        try:
            _check_served(spec, served.url, rows, expected_scores, latency_requests, report)
        except (urllib.error.URLError, OSError) as exc:
            report["errors"].append(
                f"the server stopped answering ({exc}); last output:\n{_tail(served.log_path)}"
            )
    log.info("Stopped %s", bento_tag)
    try:
        from include.modelops.serving.inference_log import read_window

        logged = read_window(spec.name, start=started, variant="smoke", root=str(smoke_log))
        report["logged_rows"] = len(logged)
    except Exception as exc:  # the log is checked, but reading it must not hide the other results
        report["errors"].append(f"could not read the smoke test's inference log at {smoke_log}: {exc}")
    if report["logged_rows"] == 0 and report["max_abs_diff"] is not None:
        report["errors"].append(f"the service answered but wrote nothing to its inference log ({smoke_log})")

    diff = report["max_abs_diff"]
    if diff is not None and diff > tolerance:
        report["errors"].append(f"served scores differ from offline scores by up to {diff:.3g}")
    report["ok"] = not report["errors"] and diff is not None
    return report


def check_smoke_report(report: Mapping[str, Any]) -> None:
    """Raise ``TrainServeSkewError`` with a readable message when the smoke test failed."""
    if report.get("ok"):
        return
    lines = [f"Bento {report.get('bento_tag')} does not serve what was evaluated:"]
    diff, tolerance = report.get("max_abs_diff"), report.get("tolerance")
    if diff is not None and tolerance is not None and diff > tolerance:
        lines.append(
            f"  - scores differ from the offline scores by up to {diff:.3g} on {report.get('rows')} rows "
            f"(tolerance {tolerance:g}): training and serving disagree (feature dtypes, preprocessing "
            "or package versions)"
        )
    for error in report.get("errors") or []:
        if not error.startswith("served scores differ"):
            lines.append(f"  - {error}")
    if len(lines) == 1:
        lines.append("  - the smoke test did not complete")
    if report.get("server_log"):
        lines.append(f"Server output: {report['server_log']}")
    lines.append("The serving champion is unchanged; fix the cause and re-run the packaging task.")
    raise TrainServeSkewError("\n".join(lines))
