"""The one training entrypoint: the same command trains locally and in a Kubernetes pod.

    python -m include.modelops.training.entrypoint --model fraud_detection \\
        --train-path /path/train.parquet --run-id <mlflow run id> [--checkpoint-dir DIR] [--xcom-file F]

It loads the spec, trains with the spec's framework, logs params and the model into the
given MLflow run (a binary classifier's decision threshold too, as tags: chosen on the
training split when the spec's threshold policy says so, see ``decision_threshold``), and
prints one result line ``MODELOPS_RESULT {"run_id": ..., "model_uri": ..., "threshold": ...}``.
With ``--xcom-file`` (``/airflow/xcom/return.json`` in a pod) it also writes the result
there, which is how KubernetesPodOperator returns it through XCom.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from include.modelops.platform.tags import TAG_MODEL_URI

RESULT_PREFIX = "MODELOPS_RESULT "
log = logging.getLogger("modelops.train")


def train(
    model: str,
    train_path: str,
    run_id: str,
    *,
    specs_dir: str | None = None,
    checkpoint_dir: str | None = None,
) -> dict:
    """Train ``model`` on ``train_path`` inside MLflow run ``run_id``; returns run id and model URI."""
    import mlflow
    import pandas as pd

    from include.modelops.platform import tracking
    from include.modelops.spec import load_spec_by_name
    from include.modelops.training import get_trainer
    from include.modelops.training.telemetry import GpuSampler

    spec = load_spec_by_name(model, Path(specs_dir) if specs_dir else None)
    expected = os.environ.get("MODELOPS_SPEC_HASH")
    if expected and expected != spec.spec_hash():
        # The pod carries the hash of the spec the DAG was built from; a stale training image
        # would otherwise train silently on an older spec.
        raise SystemExit(
            f"spec {model} in this image has hash {spec.spec_hash()}, the DAG expects {expected}: "
            "rebuild and push the training image (Dockerfile target `trainer`)"
        )
    trainer = get_trainer(spec.training.framework)
    t0 = time.perf_counter()
    train_df = pd.read_parquet(train_path)
    log.info("Loaded %d training rows from %s", len(train_df), train_path)
    tracking.client()
    params = dict(spec.training.params)
    # A target threshold policy is chosen before the run is active, so that the extra fit logs
    # nothing into it (its epochs, train_seconds) and the run's metrics stay the final model's.
    threshold = _choose_threshold(spec, trainer, train_df, params, checkpoint_dir)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params(
            {
                "framework": spec.training.framework,
                "backend": spec.training.backend,
                "train_rows": len(train_df),
                **{f"param.{k}": v for k, v in params.items()},
            }
        )
        if spec.task.value == "binary_classification":
            from include.modelops.evaluation import threshold as decision_threshold

            mlflow.set_tags(decision_threshold.to_tags(threshold))  # tags: a retry may choose again
        # GPU utilisation, memory and power go to the run as metrics, the summary as tags (no-op on CPU).
        with GpuSampler() as sampler:
            fitted = trainer.fit(
                spec, train_df, params=params, checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None
            )
        model_uri = trainer.log_model(fitted, spec, train_df.head(50))
        mlflow.set_tag(TAG_MODEL_URI, model_uri)
    log.info("Training finished in %.1f s; model %s", time.perf_counter() - t0, model_uri)
    result = {"run_id": run_id, "model_uri": model_uri, "telemetry": sampler.summary}
    if spec.task.value == "binary_classification":
        result["threshold"] = threshold
    return result


def _choose_threshold(
    spec: Any, trainer: Any, train_df: Any, params: dict, checkpoint_dir: str | None
) -> dict:
    """The spec's decision threshold (binary): fixed, or chosen on a slice of the training split.

    See ``include.modelops.evaluation.threshold``: a second model, fit on the rest of the split,
    scores the slice; the threshold is chosen on those scores, never on the holdout.
    """
    from include.modelops.evaluation import threshold as decision_threshold
    from include.modelops.scoring import feature_frame, to_scores

    def fit_and_score(fit_rows: Any, slice_rows: Any) -> Any:
        # Its own checkpoint folder: the final fit must neither resume from nor overwrite it.
        folder = Path(checkpoint_dir) / "threshold_fit" if checkpoint_dir else None
        model = trainer.fit(spec, fit_rows, params=params, checkpoint_dir=folder)
        frame = feature_frame(spec, slice_rows)
        output = model.predict_proba(frame) if hasattr(model, "predict_proba") else model.predict(frame)
        return to_scores(spec, output)

    started = time.perf_counter()
    info = decision_threshold.threshold_info(spec, train_df, fit_and_score)
    if info.get("slice"):
        log.info("Threshold chosen in %.1f s (one extra fit)", time.perf_counter() - started)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model name (include/models/<name>.yaml)")
    p.add_argument("--train-path", required=True, help="Parquet file with features and target")
    p.add_argument("--run-id", required=True, help="MLflow run to log into")
    p.add_argument("--specs-dir", default=None, help="folder of specs (default: MODELOPS_SPECS_DIR)")
    p.add_argument("--checkpoint-dir", default=None, help="where to checkpoint/resume (torch)")
    p.add_argument("--xcom-file", default=None, help="also write the result JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    result = train(
        args.model, args.train_path, args.run_id, specs_dir=args.specs_dir, checkpoint_dir=args.checkpoint_dir
    )
    if args.xcom_file:
        Path(args.xcom_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.xcom_file).write_text(json.dumps(result))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
