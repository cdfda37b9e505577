"""A candidate with a chosen fault, for `make demo-bad-canary` and the rollout tests (MLflow "models from code").

It wraps a really trained model (artifact ``inner``) and, by its model config ``fault``:
``none`` answers as the inner model, ``error`` fails every prediction (the service answers 500),
``shift`` moves every P(positive) up by 0.5, ``slow`` sleeps 300 ms per call. With
``fault_after_s`` (seconds) the fault turns on only that long after the model's first
prediction: it answers as the inner model until then, as a release that breaks in production
does (the rollout benchmark's "canary starts failing mid-stage"). Logged with
``mlflow.pyfunc.log_model(python_model=<this file>)``, so the bento carries this code itself
(see :func:`include.modelops.demo.faults.register_faulty_candidate`). Never imported.
"""

import time

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class FaultyCandidate(PythonModel):
    def load_context(self, context):
        self.inner = mlflow.pyfunc.load_model(context.artifacts["inner"])
        config = context.model_config or {}
        self.fault = config.get("fault", "none")
        self.after_s = float(config.get("fault_after_s") or 0)
        self.first_call = None

    def _faulty(self):
        now = time.monotonic()
        if self.first_call is None:
            self.first_call = now
        return now - self.first_call >= self.after_s

    def predict(self, context, model_input, params=None):
        if not self._faulty():
            return np.asarray(self.inner.predict(model_input), dtype=float)
        if self.fault == "error":
            raise RuntimeError("injected fault: this candidate cannot score")
        if self.fault == "slow":
            time.sleep(0.3)
        out = np.asarray(self.inner.predict(model_input), dtype=float)
        if self.fault == "shift":
            positive = np.clip(out[:, -1] + 0.5, 0.0, 1.0)
            out = np.column_stack([1.0 - positive, positive])
        return out


mlflow.models.set_model(FaultyCandidate())
