"""Trainers: one interface, several frameworks.

A trainer module exposes two functions:

* ``fit(spec, train, *, params, checkpoint_dir=None) -> model`` trains on a DataFrame that
  holds the spec's features and target, logging progress (and metrics to the active
  MLflow run, if any);
* ``log_model(model, spec, input_example) -> str`` logs an MLflow pyfunc model into the
  active run and returns its model URI. The pyfunc's ``predict`` takes the spec's feature
  columns; ``include.modelops.scoring`` normalises its output, so evaluation, the registry
  and serving do not care which framework trained the model.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TRAINERS = {
    "sklearn": "include.modelops.training.sklearn_trainer",
    "torch": "include.modelops.training.torch_trainer",
}


def get_trainer(framework: str) -> ModuleType:
    """The trainer module for ``framework`` (imported now, not at DAG parse time)."""
    if framework not in TRAINERS:
        raise ValueError(f"unknown training.framework {framework!r}; use one of {sorted(TRAINERS)}")
    return importlib.import_module(TRAINERS[framework])
