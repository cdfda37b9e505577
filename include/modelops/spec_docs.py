"""Render the model-spec reference (docs/model-spec.md) from the schema's own field descriptions.

The schema in ``include.modelops.spec`` is the single source; a test fails when the committed
document is out of date (regenerate with ``make spec-docs``).
"""

from __future__ import annotations

import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from include.modelops.settings import PROJECT_ROOT
from include.modelops.spec import ModelSpec

HEADER = """# Model spec reference

A model is declared in one YAML file, `include/models/<name>.yaml`; adding a file is all it
takes for the model's DAGs to appear. The file is validated when DAGs are parsed: a bad spec
gets no DAGs and shows in Airflow's *DAG Import Errors* (from `dags/model_specs.py`) with the file
and field named, while every other model's DAGs are unaffected (check it first with `make check-specs`).

This page is generated from the schema (`include/modelops/spec.py`) by `make spec-docs`.
The reference example is [`include/models/fraud_detection.yaml`](../include/models/fraud_detection.yaml).

## Starting a spec from your data

    make draft-spec DATA=/data/churn/customers.csv TARGET=churned NAME=churn_model

writes `include/models/churn_model.yaml` from the data: feature types, ranges with a margin,
categories, null fractions, the task guessed from the target, the time column and entity id,
each with a comment saying what it was inferred from. Review every value, replace each `TODO`,
then `make check-specs` and `make run MODEL=churn_model`.

## Using your own data

Point `data.path` at a CSV or Parquet file, or at a folder of them (searched recursively,
e.g. daily partitions), and set `data.format`. Relative paths are resolved against the
project root; `${VAR}` is expanded (`${MODELOPS_STATE_DIR}` defaults to `.state/`).
A run can override the path without editing the spec: trigger the DAG with conf
`{"data_path": "/path/to/new/data"}`.

```yaml
data: {path: /data/churn/customers.csv, format: csv, min_rows: 2000}
target: {name: churned, classes: [0, 1]}
features:
  - {name: tenure_months, type: integer, min: 0, max: 600}
  - {name: plan, type: categorical, categories: [basic, plus, pro]}
```

## What validation checks

Before anything is trained, `validate_dataset` checks the data against the spec with Great
Expectations and stops the run, without retries, naming each failure and the field it comes from:

- every column the spec names exists (a missing column whose likely renamed counterpart is in the
  data, same name up to case and `_`, or a close spelling, is named in the message);
- `data.min_rows`; each feature's type, `min`/`max`, `categories` and `max_null_fraction`;
  no null target, time or entity values; labels within `target.classes`;
- the time column holds datetimes. Parquet: store it as a timestamp or date; text is not parsed
  and fails. CSV: the text is parsed on read, with one date format for the whole column (ISO 8601
  such as `2026-01-31` or `2026-01-31T14:05:00` is always understood; `01/02/2026` is read month
  first, as pandas does, so prefer ISO 8601); values that do not parse fail, with examples;
- exact duplicate rows (same value in every column the spec names) up to
  `data.max_duplicate_row_fraction`, and repeated `(entity_id, time_column)` pairs up to
  `data.max_duplicate_key_fraction`; the message gives the count, the share, the limit and an
  example;
- the train/holdout split the run will make: both sides hold rows and, for classification,
  every class has at least `split.min_class_count` rows in the training split and in the
  holdout. A time-based holdout is the latest rows, so data sorted or batched by class can leave
  a class out; `split.on_missing_class` says whether that fails (default) or only warns (in the
  task log, the validation report, and the MLflow run's `modelops.validation.warnings` tag).

## Metrics per task

`evaluation.primary_metric` and the keys of `evaluation.gate.thresholds` must be one of:

| task | higher is better | lower is better |
| --- | --- | --- |
{metric_rows}

For the gate, a **drop** is always a change for the worse, in the metric's own units:
`max_drop_vs_champion: 0.01` lets roc_auc fall by at most 0.01, and lets rmse *rise* by at most
0.01. The **margin over baseline** is how much better than the naive baseline (the training
prevalence, class frequencies or mean) the candidate is: for rmse, mae and log_loss it is the
baseline's value minus the candidate's. rmse and mae are in the target's units, so set their
margins and drops from the target's scale (or gate on r2, which has no unit); a threshold on an
error metric is usually a `max`, e.g. `thresholds: {rmse: {max: 12.5}}`.

## Fields
"""


def _type_name(annotation: object) -> str:
    text = str(annotation).replace("typing.", "").replace("include.modelops.spec.", "")
    for enum_cls in ("TaskType", "FeatureType", "RiskTier"):
        if enum_cls in text:
            import include.modelops.spec as spec_mod

            return " \\| ".join(m.value for m in getattr(spec_mod, enum_cls))
    return text.replace("<class '", "").replace("'>", "").replace("|", "\\|")


def _model_of(annotation: object) -> tuple[type[BaseModel] | None, str]:
    """The nested model of a field, and how it nests: "" (plain), "list" or "map"."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, {list: "list", dict: "map"}.get(typing.get_origin(annotation), "")
    return None, ""


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub, nesting = _model_of(field.annotation)
        if field.is_required():
            default = "**required**"
        elif field.default_factory is not None:
            default = "see below" if sub else f"`{field.default_factory()}`"
        elif field.default is PydanticUndefined:
            default = ""
        else:
            value = field.default.value if hasattr(field.default, "value") else field.default
            default = f"`{value!r}`" if value == "" else f"`{value}`"
        desc = field.description or (sub.__doc__ or "").strip() if sub else field.description or ""
        desc = desc.replace("|", "\\|")
        if sub:
            type_name = {"list": f"list of {sub.__name__}", "map": f"map of name to {sub.__name__}"}.get(
                nesting, sub.__name__
            )
        else:
            type_name = _type_name(field.annotation)
        rows.append(f"| `{path}` | {type_name} | {default} | {desc} |")
        if sub:
            rows += _rows(sub, {"list": f"{path}[].", "map": f"{path}.<name>."}.get(nesting, f"{path}."))
    return rows


def _metric_rows() -> str:
    from include.modelops.metrics_catalog import METRICS

    rows = []
    for task, metrics in METRICS.items():
        up = ", ".join(f"`{m}`" for m, high in sorted(metrics.items()) if high)
        down = ", ".join(f"`{m}`" for m, high in sorted(metrics.items()) if not high)
        rows.append(f"| {task} | {up} | {down} |")
    return "\n".join(rows)


def render() -> str:
    """The whole reference page as Markdown."""
    table = ["| field | type | default | meaning |", "| --- | --- | --- | --- |", *_rows(ModelSpec)]
    return HEADER.replace("{metric_rows}", _metric_rows()) + "\n".join(table) + "\n"


SETTINGS_HEADER = """# Settings reference

Generated from `include/modelops/settings.py` by `make spec-docs`; do not edit by hand.

Every setting is an environment variable, read when a step needs it (an Airflow task, a served
bento, a `make` command). An empty variable counts as unset; a value that cannot be used is
refused with the variable's name. Defaults are for the one-laptop mode, with all state under
`MODELOPS_STATE_DIR`; at scale the same names point at shared services.
"""

_SETTINGS_GROUPS = (
    ("Everything", "", "Settings"),
    (
        "Training pods",
        "`training.backend: kubernetes`; see `include/modelops/training/pod.py`.",
        "PodSettings",
    ),
    (
        "Serving on Kubernetes",
        "`rollout.backend: kubernetes`; see `include/modelops/rollout/kubernetes.py` and [rollout.md](rollout.md). "
        "The Airflow workers reach the cluster with the Airflow connection `MODELOPS_K8S_CONN_ID` "
        "(`KubernetesHook`, as training pods are started).",
        "ServingClusterSettings",
    ),
)


def render_settings() -> str:
    """``docs/settings.md``: one table per settings group, from the fields' own defaults and descriptions."""
    from include.modelops import settings

    out = [SETTINGS_HEADER]
    for title, intro, name in _SETTINGS_GROUPS:
        out += [
            f"## {title}",
            "",
            *([intro, ""] if intro else []),
            "| variable | default | meaning |",
            "| --- | --- | --- |",
        ]
        for var, default, meaning in getattr(settings, name).variables():
            out.append(f"| `{var}` | {default.replace('``', '`')} | {meaning.replace('``', '`')} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    for out, text in (
        (PROJECT_ROOT / "docs" / "model-spec.md", render()),
        (PROJECT_ROOT / "docs" / "settings.md", render_settings()),
    ):
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
