"""Real models and bentos for rollout tests: a stable version, a good candidate, faulty candidates."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from include.modelops.platform import processes
from include.modelops.spec import ModelSpec


def train_and_register(spec: ModelSpec, frame: pd.DataFrame, *, seed: int, experiment_id: str) -> str:
    """Fit the project's scikit-learn pipeline on a sample of ``frame``; returns its registered version."""
    import mlflow

    from include.modelops.training import sklearn_trainer

    train = frame.sample(frac=0.8, random_state=seed)
    with mlflow.start_run(experiment_id=experiment_id):
        model = sklearn_trainer.fit(spec, train, params={"max_iter": 30, "random_state": seed})
        uri = sklearn_trainer.log_model(model, spec, train.head(50))
    return str(mlflow.register_model(uri, spec.name).version)


def register_faulty(
    spec: ModelSpec, inner_version: str, fault: str, *, experiment_id: str, workdir: Path
) -> str:
    """Register a candidate that wraps version ``inner_version`` with ``fault``; returns its version."""
    from include.modelops.demo.faults import register_faulty_candidate

    return register_faulty_candidate(spec, inner_version, fault, experiment_id=experiment_id, workdir=workdir)


def build(spec: ModelSpec, version: str) -> str:
    from include.modelops.serving.bento import build_bento

    return build_bento(spec, version, f"models:/{spec.name}/{version}")


@contextlib.contextmanager
def traffic(url: str, model: str, source: Path, env: dict[str, str], *, rate: float = 15) -> Iterator[None]:
    """The traffic generator sending rows of ``source`` to ``url`` until the block ends."""
    from include.modelops.settings import PROJECT_ROOT

    sender = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "include.modelops.cli",
            "traffic",
            "--model",
            model,
            "--url",
            url,
            "--rate",
            str(rate),
            "--count",
            "100000",
            "--duration",
            "900",
            "--rows-per-request",
            "8",
            "--source",
            str(source),
            "--label-delay",
            "0",
            "--pending",
            "drop",
            "--ready-timeout",
            "60",
        ],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        processes.stop_process(sender)


def variants_answering(url: str, spec: ModelSpec, frame: pd.DataFrame, n: int = 20) -> set[tuple[str, str]]:
    """Send n requests through the endpoint; (variant, version) of every row the inference log holds for them."""
    from include.modelops.serving.contract import request_rows
    from include.modelops.serving.inference_log import read_window

    started, probe = datetime.now(UTC), f"probe-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"rows": request_rows(spec, frame.head(2))}).encode()
    for i in range(n):
        request = urllib.request.Request(
            f"{url}/predict",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-Request-ID": f"{probe}-{i}"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        logged = read_window(spec.name, start=started)
        logged = logged[logged["request_id"].str.startswith(probe)]
        if len(logged) >= 2 * n:
            break
        time.sleep(0.5)
    assert len(logged) == 2 * n
    return set(zip(logged["variant"], logged["model_version"], strict=True))
