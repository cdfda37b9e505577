"""The PyTorch trainer on a few thousand synthetic fraud transactions: on the GPU where one is visible, else CPU."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from include.modelops import scoring
from include.modelops.data.example import generate_transactions
from include.modelops.data.reading import read_dataset
from include.modelops.spec import ModelSpec, load_spec_by_name
from include.modelops.training import checkpoints, get_trainer, torch_features, torch_steps, torch_trainer

SMALL = {"epochs": 3, "batch_size": 256, "hidden_sizes": [32, 16], "embedding_dim": 4, "patience": 10}


@pytest.fixture(scope="module")
def spec():
    return load_spec_by_name("fraud_detection")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """6,000 transactions (about 2% fraud); train on the first 80% in time, hold out the rest."""
    out = tmp_path_factory.mktemp("data") / "transactions"
    generate_transactions(out, rows=6000, days=6, seed=11)
    df = read_dataset(out).sort_values("event_time", kind="stable").reset_index(drop=True)
    cut = int(len(df) * 0.8)
    return df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True)


def weights(model: torch_trainer.TorchTabularModel) -> dict[str, torch.Tensor]:
    return model.net.state_dict()


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registered_as_the_torch_framework():
    assert get_trainer("torch") is torch_trainer


def test_beats_the_naive_baseline_on_holdout(spec, data):
    train, holdout = data
    model = torch_trainer.fit(spec, train, params={**SMALL, "epochs": 8, "patience": 3})
    scores = model.predict(holdout)
    auc = roc_auc_score(holdout["is_fraud"].to_numpy(), scores)
    assert auc > 0.75, f"holdout ROC-AUC {auc:.3f}; a constant score gets 0.5"
    # Class weights shift the logits; the offset shifts them back, so scores stay probabilities.
    assert scores.min() >= 0 and scores.max() <= 1
    assert scores.mean() < 3 * holdout["is_fraud"].mean() + 0.01


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(spec, data):
    train = data[0].iloc[:2000]
    params = {**SMALL, "epochs": 2}
    first = torch_trainer.fit(spec, train, params=params)
    again = torch_trainer.fit(spec, train, params=params)
    other = torch_trainer.fit(spec, train, params={**params, "seed": 7})
    assert same_weights(weights(first), weights(again))
    assert not same_weights(weights(first), weights(other))


class Preempted(RuntimeError):
    """Stands in for the node going away."""


def test_run_killed_after_epoch_k_resumes_at_k_plus_1_with_the_same_result(
    spec, data, tmp_path, monkeypatch, caplog
):
    train = data[0].iloc[:2000]
    params = {**SMALL, "epochs": 4}
    uninterrupted = torch_trainer.fit(spec, train, params=params, checkpoint_dir=tmp_path / "straight")

    real_save = checkpoints.save_checkpoint

    def save_then_die_after_epoch_2(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise Preempted("node preempted after epoch 2")

    ckpt = tmp_path / "preempted"
    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die_after_epoch_2)
    with pytest.raises(Preempted):
        torch_trainer.fit(spec, train, params=params, checkpoint_dir=ckpt)
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)

    epochs_trained = []
    real_epoch = torch_trainer.train_one_epoch

    def counting_epoch(*args, **kwargs):
        epochs_trained.append(1)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(torch_trainer, "train_one_epoch", counting_epoch)
    caplog.set_level(logging.INFO, logger=torch_trainer.__name__)
    resumed = torch_trainer.fit(spec, train, params=params, checkpoint_dir=ckpt)

    assert any("epoch 2 done; resuming from epoch 3" in r.getMessage() for r in caplog.records)
    assert len(epochs_trained) == 2  # epochs 3 and 4 only
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert same_weights(weights(resumed), weights(uninterrupted))


def test_training_stops_after_patience_epochs_without_improvement(spec, data, monkeypatch):
    epochs_trained = []
    real_epoch = torch_trainer.train_one_epoch

    def counting_epoch(*args, **kwargs):
        epochs_trained.append(1)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(torch_trainer, "train_one_epoch", counting_epoch)
    # A learning rate this small cannot move the validation metric by the minimum improvement.
    model = torch_trainer.fit(
        spec, data[0].iloc[:1500], params={**SMALL, "epochs": 10, "patience": 2, "lr": 1e-12}
    )
    assert len(epochs_trained) == 3  # the first epoch sets the best, two more without improvement
    assert [h["epoch"] for h in model.history] == [1, 2, 3]


def test_retry_after_training_finished_reuses_the_weights_without_training(spec, data, tmp_path, monkeypatch):
    train = data[0].iloc[:1500]
    params = {**SMALL, "epochs": 2}
    first = torch_trainer.fit(spec, train, params=params, checkpoint_dir=tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(torch_trainer, "train_one_epoch", no_training)
    again = torch_trainer.fit(spec, train, params=params, checkpoint_dir=tmp_path)
    assert same_weights(weights(first), weights(again))


def test_checkpoint_of_other_data_is_not_resumed(spec, data, tmp_path, caplog):
    params = {**SMALL, "epochs": 1}
    torch_trainer.fit(spec, data[0].iloc[:1500], params=params, checkpoint_dir=tmp_path)
    caplog.set_level(logging.INFO, logger=torch_trainer.__name__)
    torch_trainer.fit(spec, data[0].iloc[1500:3000], params=params, checkpoint_dir=tmp_path)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "written for other data" in messages and "resuming" not in messages


def test_device_roc_auc_is_the_rank_formula_with_ties(tmp_path):
    rng = np.random.default_rng(3)
    y = (rng.random(5000) < 0.1).astype(np.float32)
    scores = np.round(rng.random(5000) + y * 0.3, 2).astype(np.float32)  # many ties
    device = torch_trainer.resolve_device("auto")
    got = torch_steps.roc_auc_tensor(torch.from_numpy(y).to(device), torch.from_numpy(scores).to(device))
    assert float(got) == pytest.approx(roc_auc_score(y, scores.astype(np.float64)), abs=1e-12)
    one_class = torch_steps.roc_auc_tensor(torch.zeros(10, device=device), torch.rand(10, device=device))
    assert np.isnan(float(one_class))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="checks that the host never waits for a GPU")
def test_validation_queues_its_work_without_waiting_for_the_gpu(spec, data):
    train = data[0].iloc[:1500]
    model = torch_trainer.fit(spec, train, params={**SMALL, "epochs": 1})
    device = torch_trainer.resolve_device("auto")
    dense, cat = model.encoder.transform(train)
    val = {
        "dense": torch.from_numpy(dense).to(device),
        "cat": torch.from_numpy(cat).to(device),
        "y": torch.from_numpy(model.target.encode(train["is_fraud"])).to(device),
    }
    net, loss_fn = model.net.to(device), model.target.loss_fn(device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any wait for the GPU raises
    try:
        loss, auc = torch_trainer.validate(net, val, loss_fn, model.target, device, None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert 0.5 < float(auc) <= 1 and float(loss) > 0


def test_a_failed_checkpoint_write_fails_the_run(spec, data, tmp_path, monkeypatch):
    def disk_full(path, state):
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoints, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space left"):
        torch_trainer.fit(spec, data[0].iloc[:1000], params={**SMALL, "epochs": 2}, checkpoint_dir=tmp_path)


def test_unknown_param_is_named(spec, data):
    with pytest.raises(ValueError, match=r"max_iter"):
        torch_trainer.fit(spec, data[0], params={"max_iter": 200})
    with pytest.raises(ValueError, match=r"training.params.precision"):
        torch_trainer.fit(spec, data[0], params={"precision": "fp8"})
    with pytest.raises(ValueError, match=r"training.params.batch_size"):
        torch_trainer.fit(spec, data[0], params={"batch_size": "big"})


def test_logged_pyfunc_predicts_what_the_trained_model_predicts(spec, data, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    exp = mlflow.create_experiment("torch", artifact_location=(tmp_path / "artifacts").as_uri())
    train, holdout = data
    with mlflow.start_run(experiment_id=exp) as run:
        model = torch_trainer.fit(spec, train.iloc[:2500], params={**SMALL, "epochs": 2})
        uri = torch_trainer.log_model(model, spec, train.head(50))

    loaded = scoring.load_pyfunc(uri)
    assert loaded.metadata.get_input_schema().input_names() == spec.feature_names
    served = scoring.score(spec, loaded, holdout)
    assert served.shape == (len(holdout),)
    np.testing.assert_allclose(served, model.predict(holdout), rtol=1e-6, atol=1e-7)

    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_roc_auc")] == [1, 2]
    logged = client.get_run(run.info.run_id).data
    # The device the trainer picked: a GPU where one is visible, else the CPU.
    expected_device = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert logged.tags["torch.device"] == expected_device
    # What ``auto`` resolved to is recorded as params (SMALL asks for batch 256 explicitly).
    assert logged.params["torch.batch_size"] == "256"
    assert logged.params["torch.device"] == expected_device
    assert logged.params["torch.precision"] == "fp32"  # a 32-wide network: full precision everywhere
    assert logged.params["torch.cuda_graphs"] == str(torch.cuda.is_available()).lower()


def test_unknown_categories_and_missing_values_still_score(spec, data):
    train, holdout = data
    model = torch_trainer.fit(spec, train.iloc[:1500], params={**SMALL, "epochs": 1})
    odd = holdout.head(3).copy()
    odd["merchant_category"] = ["spaceship", None, "grocery"]
    odd["distance_from_home_km"] = [np.nan, 5.0, np.nan]
    scores = model.predict(odd)
    assert np.isfinite(scores).all() and scores.shape == (3,)


def test_category_codes_are_the_same_however_the_text_column_is_held():
    """Large object columns are grouped by object identity (pyarrow and the CSV parser share one
    object per distinct string); every way of holding the text must give the same codes."""
    categories = ["grocery", "fuel", "1", "None"]
    pool = np.array(["grocery", "fuel", "travel", None, np.nan, "1", 1, "None", "Fuel"], dtype=object)
    values = pool[np.random.default_rng(7).integers(0, len(pool), 120_000)]  # shared objects
    # What the codes mean: the position of the value's text in ``categories``, -1 if missing or unknown.
    expected = np.array(
        [-1 if pd.isna(v) else (categories.index(str(v)) if str(v) in categories else -1) for v in values]
    )
    held = {
        "object, shared": pd.Series(values),
        "object, one per row": pd.Series([v if not isinstance(v, str) else "".join(v) for v in values]),
        "object, small": pd.Series(values[:500]),
        "category": pd.Series(values).astype("category"),
        "string": pd.Series(values).astype("string"),
    }
    for how, column in held.items():
        got = torch_features._category_codes(column, categories)
        np.testing.assert_array_equal(got, expected[: len(column)], err_msg=how)


def test_entrypoint_trains_with_torch_and_returns_telemetry(spec, data, tmp_path, monkeypatch, capsys):
    import json

    import mlflow
    import yaml

    from include.modelops.training import entrypoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    specs = tmp_path / "specs"
    specs.mkdir()
    raw = spec.model_dump(mode="json")
    raw["training"] = {"framework": "torch", "params": {**SMALL, "epochs": 1}}
    (specs / "fraud_detection.yaml").write_text(yaml.safe_dump(raw))
    train_path = tmp_path / "train.parquet"
    data[0].iloc[:1500].to_parquet(train_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    exp = mlflow.create_experiment("fraud_detection", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = mlflow.MlflowClient().create_run(exp).info.run_id

    assert (
        entrypoint.main(
            [
                "--model",
                "fraud_detection",
                "--train-path",
                str(train_path),
                "--run-id",
                run_id,
                "--specs-dir",
                str(specs),
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
                "--xcom-file",
                str(tmp_path / "xcom" / "return.json"),
            ]
        )
        == 0
    )

    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(entrypoint.RESULT_PREFIX))
    result = json.loads(line[len(entrypoint.RESULT_PREFIX) :])
    assert result == json.loads((tmp_path / "xcom" / "return.json").read_text())
    assert result["run_id"] == run_id and result["model_uri"].startswith("models:/")
    if torch.cuda.is_available():  # NVML samples the GPU the run trained on
        assert result["telemetry"]["enabled"] is True
        assert result["telemetry"]["gpu_count"] >= 1 and result["telemetry"]["samples"] >= 2
    else:  # no GPU: one log line, no failure
        assert result["telemetry"]["enabled"] is False
    assert (tmp_path / "ckpt" / torch_trainer.CHECKPOINT_FILE).exists()


# --- every task type x table shape ----------------------------------------------------------
#
# The trainer once crashed on every table without a categorical feature (the checkpoint
# fingerprint could not hash the [n, 0] category matrix), and the bundled example has
# categoricals, so nothing caught it. These small tables have each feature kind the spec knows,
# with and without nulls, as training reads them from Parquet; the model is then scored the way
# the service scores request rows.

TASK_TYPES = {
    "binary": "binary_classification",
    "multiclass": "multiclass_classification",
    "regression": "regression",
}
FEATURE_SETS = {  # which feature kinds the table has
    "categoricals": ("numeric", "integer", "boolean", "categorical"),
    "no-categoricals": ("numeric", "integer", "boolean"),
    "no-numerics": ("boolean", "categorical"),
    "only-categoricals": ("categorical",),  # no dense input at all
}
TINY = {"epochs": 2, "batch_size": 64, "hidden_sizes": [16], "embedding_dim": 4, "patience": 10}
LEVELS = ["low", "mid", "high"]
COLORS = np.array(["amber", "green", "red"], dtype=object)


def shape_spec(task: str, kinds: tuple[str, ...], *, nulls: bool) -> ModelSpec:
    gaps = {"max_null_fraction": 0.3} if nulls else {}
    by_kind = {
        "numeric": {"name": "amount", "type": "numeric", "min": -50, "max": 50},
        "integer": {"name": "visits", "type": "integer", "min": 0, "max": 100},
        "boolean": {"name": "member", "type": "boolean"},
        "categorical": {"name": "level", "type": "categorical", "categories": LEVELS},
    }
    return ModelSpec.model_validate(
        {
            "name": "shapes",
            "description": "One feature of each kind.",
            "owner": {"team": "t", "email": "t@example.com"},
            "task": TASK_TYPES[task],
            "data": {"path": "unused.parquet", "min_rows": 100},
            "target": {"name": "y", **({"classes": [0, 1]} if task == "binary" else {})},
            "features": [{**by_kind[k], **gaps} for k in kinds],
            "training": {"framework": "torch", "params": TINY},
            "evaluation": {
                "primary_metric": {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}[task]
            },
        }
    )


def shape_table(task: str, kinds: tuple[str, ...], *, nulls: bool, tmp_path, n: int = 400) -> pd.DataFrame:
    """A table whose target depends on every feature, read back from Parquet as training reads it."""
    rng = np.random.default_rng(5)
    signal = np.zeros(n)
    frame = pd.DataFrame(index=range(n))
    if "numeric" in kinds:
        frame["amount"] = rng.normal(0, 10, n)
        signal += frame["amount"] / 10
    if "integer" in kinds:
        frame["visits"] = rng.integers(0, 100, n).astype("float64")  # whole numbers stored as floats
        signal += (frame["visits"] - 50) / 30
    if "boolean" in kinds:
        member = rng.random(n) < 0.5
        frame["member"] = pd.array(member, dtype="boolean") if nulls else member  # nullable or plain bool
        signal += np.where(member, 1.0, -1.0)
    if "categorical" in kinds:
        level = rng.integers(0, len(LEVELS), n)
        frame["level"] = np.array(LEVELS, dtype=object)[level]
        signal += level - 1.0
    if nulls:
        for col in list(frame.columns):
            frame.loc[rng.random(n) < 0.15, col] = None
    frame["y"] = {
        "binary": (signal > 0).astype(int),
        "multiclass": COLORS[np.digitize(signal, [-0.7, 0.7])],  # string labels
        "regression": 3 * signal + rng.normal(0, 0.1, n),
    }[task]
    path = tmp_path / "table.parquet"
    frame.to_parquet(path)
    return pd.read_parquet(path)


def assert_valid_scores(spec: ModelSpec, scores: np.ndarray, n: int) -> None:
    assert np.isfinite(scores).all()
    if spec.task.value == "multiclass_classification":
        assert scores.shape == (n, 3)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    else:
        assert scores.shape == (n,)
    if spec.task.value == "binary_classification":
        assert ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("nulls", [False, True], ids=["no-nulls", "nulls"])
@pytest.mark.parametrize("features", list(FEATURE_SETS))
@pytest.mark.parametrize("task", list(TASK_TYPES))
def test_every_task_and_table_shape_trains_and_serves(sqlite_mlflow_store, task, features, nulls, tmp_path):
    import mlflow

    from include.modelops.serving.contract import request_row_model, request_rows, rows_to_frame, smoke_rows

    kinds = FEATURE_SETS[features]
    spec = shape_spec(task, kinds, nulls=nulls)
    data = shape_table(task, kinds, nulls=nulls, tmp_path=tmp_path)
    train, holdout = data.iloc[:320].reset_index(drop=True), data.iloc[320:].reset_index(drop=True)
    with mlflow.start_run():
        # With a checkpoint folder, as every training task runs.
        model = torch_trainer.fit(spec, train, params=TINY, checkpoint_dir=tmp_path / "ckpt")
        uri = torch_trainer.log_model(model, spec, train.head(50))
    assert (tmp_path / "ckpt" / torch_trainer.CHECKPOINT_FILE).exists()
    loaded = scoring.load_pyfunc(uri)

    # Request rows as the smoke test sends them: the sample, the row without a null, each
    # nullable feature null alone, and the JSON type edges.
    validator = request_row_model(spec)
    rows = smoke_rows(spec, request_rows(spec, holdout.head(20)))
    rows = [validator.model_validate(r).model_dump() for r in rows]
    assert any(all(v is not None for v in r.values()) for r in rows)
    assert any(v is None for r in rows for v in r.values()) == nulls
    served = scoring.to_scores(
        spec, loaded.predict(scoring.conform_to_model(rows_to_frame(spec, rows), loaded))
    )
    assert_valid_scores(spec, served, len(rows))
    assert np.ptp(served, axis=0).max() > 0, "every row got the same score: the features were not read"
    # The rows as training read them (Parquet dtypes: bool, nullable boolean, NaN) score the same.
    raw = pd.DataFrame.from_records(rows, columns=spec.feature_names)
    if "member" in raw:
        raw["member"] = raw["member"].astype("boolean" if nulls else bool)
    np.testing.assert_allclose(served, model.predict(raw), rtol=1e-6, atol=1e-7)

    offline = scoring.score(spec, loaded, holdout)
    assert_valid_scores(spec, offline, len(holdout))


@pytest.mark.parametrize("features", ["no-categoricals", "only-categoricals"])
def test_run_without_categoricals_or_numerics_resumes_from_its_checkpoint(features, tmp_path, monkeypatch):
    kinds = FEATURE_SETS[features]
    spec = shape_spec("binary", kinds, nulls=True)
    train = shape_table("binary", kinds, nulls=True, tmp_path=tmp_path)
    params = {**TINY, "epochs": 3}
    uninterrupted = torch_trainer.fit(spec, train, params=params, checkpoint_dir=tmp_path / "straight")

    real_save = checkpoints.save_checkpoint

    def save_then_die_after_epoch_1(path, state):
        real_save(path, state)
        if state["epoch"] == 1:
            raise Preempted("node preempted after epoch 1")

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die_after_epoch_1)
    with pytest.raises(Preempted):
        torch_trainer.fit(spec, train, params=params, checkpoint_dir=tmp_path / "preempted")
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    resumed = torch_trainer.fit(spec, train, params=params, checkpoint_dir=tmp_path / "preempted")

    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert same_weights(weights(resumed), weights(uninterrupted))


def test_a_null_boolean_is_encoded_as_false_however_the_column_is_held():
    """Training reads booleans from Parquet (bool, or nullable boolean with NA); the service gets
    them from ``scoring.feature_frame`` as float64 1.0 / 0.0 / NaN. A null must never count as true
    (``astype(bool)`` makes NaN true), and every way of holding the column encodes the same."""
    spec = shape_spec("binary", ("boolean",), nulls=True)
    encoder = torch_trainer.TabularEncoder.fit(spec, pd.DataFrame({"member": [True, False]}))
    held = {
        "nullable boolean": pd.Series([True, False, None], dtype="boolean"),
        "float64 from feature_frame": scoring.feature_frame(
            spec, pd.DataFrame({"member": pd.array([True, False, None], dtype="boolean")})
        )["member"],
        "object": pd.Series([True, False, None], dtype=object),
    }
    assert held["float64 from feature_frame"].dtype == np.float64
    for how, column in held.items():
        dense, cat = encoder.transform(pd.DataFrame({"member": column}))
        np.testing.assert_array_equal(dense[:, 0], [1.0, 0.0, 0.0], err_msg=how)
        assert cat.shape == (3, 0)
    dense, _ = encoder.transform(pd.DataFrame({"member": [True, False]}))  # the old bool dtype
    np.testing.assert_array_equal(dense[:, 0], [1.0, 0.0])
