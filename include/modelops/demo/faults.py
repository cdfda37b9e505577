"""Broken candidates on purpose: show (and test) that a rollout takes a bad version out by itself.

:func:`register_faulty_candidate` registers a new version that wraps a real, trained version with
one fault (``error``: every prediction fails, the service answers 500; ``shift``: every
P(positive) is 0.5 higher; ``slow``: 300 ms per call), from its first prediction or, with
``fault_after_s``, only that many seconds after it (a candidate that starts failing mid-stage).
The model is MLflow "models from code" (``faulty_model.py``), so its bento carries the fault
itself, as a real bad release would.
"""

from __future__ import annotations

from pathlib import Path

from include.modelops.platform.tags import TAG_FAULT, TAG_FAULT_WRAPS, TAG_MODEL, TAG_REGISTERED_BY
from include.modelops.spec import ModelSpec

FAULTS = ("error", "shift", "slow")
MODEL_CODE = Path(__file__).with_name("faulty_model.py")


# Version tags that say where a fault-injected version came from (``make audit`` reads them).
TAG_WRAPS, TAG_REGISTERED_BY = TAG_FAULT_WRAPS, TAG_REGISTERED_BY


def register_faulty_candidate(
    spec: ModelSpec,
    inner_version: str,
    fault: str,
    *,
    experiment_id: str,
    workdir: Path,
    fault_after_s: float | None = None,
    registered_by: str = "make demo-bad-canary",
) -> str:
    """Register a version that wraps ``inner_version`` with ``fault``; returns the new version.

    ``fault_after_s``: the fault turns on this many seconds after the version's first prediction
    (default: from the first one). The version is tagged ``modelops.fault``,
    ``modelops.fault.wraps`` (``inner_version``) and ``modelops.registered_by`` (who registered
    it), so its audit says it is a fault-injected copy that skipped the gate, approval and smoke-serve.
    """
    import mlflow

    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {list(FAULTS)}")
    if fault_after_s is not None and fault_after_s < 0:
        raise ValueError(f"fault_after_s must be >= 0 seconds, got {fault_after_s}")
    inner_dir = workdir / f"inner-v{inner_version}-{fault}"
    mlflow.artifacts.download_artifacts(f"models:/{spec.name}/{inner_version}", dst_path=str(inner_dir))
    inner = mlflow.pyfunc.load_model(str(inner_dir))
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.name}-faulty-{fault}"):
        mlflow.set_tags(
            {
                TAG_MODEL: spec.name,
                TAG_FAULT: fault,
                TAG_WRAPS: str(inner_version),
                **({"modelops.fault_after_s": str(fault_after_s)} if fault_after_s else {}),
            }
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"inner": str(inner_dir)},
            model_config={"fault": fault, **({"fault_after_s": fault_after_s} if fault_after_s else {})},
            signature=inner.metadata.signature,
        )
    provenance = {TAG_FAULT: fault, TAG_WRAPS: str(inner_version), TAG_REGISTERED_BY: registered_by}
    return str(mlflow.register_model(info.model_uri, spec.name, tags=provenance).version)
