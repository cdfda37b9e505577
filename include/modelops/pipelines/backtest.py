"""The ``<model>_backtest`` DAG's task: ``make backtest`` from the Airflow UI, the changed spec as a param."""

from __future__ import annotations

import logging
import re

import yaml
from pydantic import ValidationError

from include.modelops.governance import backtest
from include.modelops.pipelines import contracts
from include.modelops.platform.storage import write_atomic
from include.modelops.settings import get_settings
from include.modelops.spec import ModelSpec, ModelSpecError, load_spec_by_name

log = logging.getLogger(__name__)


def changed_spec(model: str, spec_yaml: str) -> ModelSpec:
    """The changed spec from the param's YAML; ``ModelSpecError`` (a user's mistake, never retried) if unusable."""
    try:
        raw = yaml.safe_load(spec_yaml or "")
    except yaml.YAMLError as exc:
        raise ModelSpecError(f"the spec param is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelSpecError(
            "the spec param must be a whole model spec (a YAML mapping): paste the changed file"
        )
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise ModelSpecError(f"the spec param is not a valid model spec: {exc}") from None
    if spec.name != model:
        raise ModelSpecError(f"the spec param is for {spec.name!r}; this DAG backtests {model!r}")
    return spec


def run(model: str, spec_yaml: str, *, dag_run_id: str) -> contracts.Backtested:
    """Replay the model's recorded decisions under the changed spec; the HTML report's path and the flips."""
    result = backtest.run_backtest(
        model,
        changed_spec(model, spec_yaml),
        current=load_spec_by_name(model),
        spec_path="the DAG run's spec param",
    )
    text = backtest.render_text(result)
    for line in text.splitlines():
        log.info("%s", line)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dag_run_id)
    report = get_settings().runs_dir / model / "backtest" / f"{safe}.html"
    write_atomic(report, backtest.render_html(result))
    log.info("Backtest report: %s", report)
    return {
        "report_html": str(report),
        "candidates": len(result.candidates),
        "windows": len(result.windows),
        "gate_flips": [f"{c.dag_run_id or c.run_id}: {c.recorded} -> {c.replayed}" for c in result.flips],
        "window_flips": [f"{w.window}: {w.recorded} -> {w.replayed}" for w in result.window_flips],
    }
