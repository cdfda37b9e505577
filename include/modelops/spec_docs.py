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
fails parsing with the file and field named (check it first with `make check-specs`).

This page is generated from the schema (`include/modelops/spec.py`) by `make spec-docs`.
The reference example is [`include/models/fraud_detection.yaml`](../include/models/fraud_detection.yaml).

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
                nesting, sub.__name__)
        else:
            type_name = _type_name(field.annotation)
        rows.append(f"| `{path}` | {type_name} | {default} | {desc} |")
        if sub:
            rows += _rows(sub, {"list": f"{path}[].", "map": f"{path}.<name>."}.get(nesting, f"{path}."))
    return rows


def render() -> str:
    """The whole reference page as Markdown."""
    table = ["| field | type | default | meaning |", "| --- | --- | --- | --- |", *_rows(ModelSpec)]
    return HEADER + "\n".join(table) + "\n"


def main() -> int:
    out = PROJECT_ROOT / "docs" / "model-spec.md"
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
