"""A bento's Python requirements: what its model needs, nothing more."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import yaml

from include.modelops.serving.bento import _python_packages

BASE = ["mlflow", "numpy", "pandas", "pydantic", "PyYAML"]
# What MLflow infers for a scikit-learn model logged in a process that had torch and pytest loaded.
INFERRED = [
    "mlflow==3.17.2",
    "dill==0.4.1",
    "numpy==2.4.6",
    "psutil==7.2.2",
    "pytest==9.0.2",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
    "skops==0.16.0",
    "torch==2.13.0",
    "tqdm==4.70.1",
]


def model_dir(tmp_path: Path, flavors: dict, requirements: list[str]) -> Path:
    folder = tmp_path / "mlflow_model"
    folder.mkdir()
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return folder


def names(pins: list[str]) -> set[str]:
    return {p.split("==", 1)[0].lower() for p in pins}


def test_sklearn_bento_has_no_torch_or_pytest(tmp_path):
    flavors = {
        "python_function": {"loader_module": "mlflow.sklearn"},
        "sklearn": {"serialization_format": "skops", "pickled_model": "model.skops"},
    }

    pins = _python_packages(BASE, model_dir(tmp_path, flavors, INFERRED))

    assert "torch" not in names(pins) and "pytest" not in names(pins)
    assert {"dill", "psutil", "tqdm"}.isdisjoint(names(pins))
    # the model's own needs keep the versions it was logged with
    assert {"scikit-learn==1.9.1", "scipy==1.17.1", "skops==0.16.0"} <= set(pins)
    assert f"mlflow=={importlib.metadata.version('mlflow')}" in pins


def test_pickled_sklearn_model_keeps_cloudpickle(tmp_path):
    flavors = {"sklearn": {"serialization_format": "cloudpickle"}}

    pins = _python_packages(BASE, model_dir(tmp_path, flavors, [*INFERRED, "cloudpickle==3.1.1"]))

    assert "cloudpickle==3.1.1" in pins and "torch" not in names(pins)


def test_python_function_model_keeps_its_logged_pins(tmp_path):
    # The PyTorch trainer logs a pyfunc with explicit pins: only the model knows what it needs.
    flavors = {
        "python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"}
    }

    pins = _python_packages(BASE, model_dir(tmp_path, flavors, ["torch==2.13.0", "pandas==2.3.3"]))

    assert "torch==2.13.0" in pins
