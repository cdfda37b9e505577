"""A real bento labels rows with its version's recorded decision threshold, not the spec's constant."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from include.modelops.spec import ModelSpec

pytestmark = pytest.mark.integration


def _post(url: str, payload: object) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_bento_labels_with_the_threshold_recorded_on_its_version(
    spec: ModelSpec, registered: dict, state: Path
):
    from include.modelops.evaluation import threshold as decision_threshold
    from include.modelops.platform import tracking
    from include.modelops.serving.bento import build_bento
    from include.modelops.serving.contract import request_rows
    from include.modelops.serving.smoke import serve_bento

    scores = np.asarray(registered["expected"], dtype=float)
    value = float(np.quantile(scores, 0.5))  # a threshold that labels differently from 0.5 on these rows
    assert any((s >= value) != (s >= 0.5) for s in scores)
    info = {
        "value": value,
        "policy": "target_recall",
        "target": 0.6,
        "target_met": True,
        "source": "training split",
        "slice": None,
    }
    tracking.set_version_tags(spec.name, registered["version"], decision_threshold.to_tags(info))

    tag = build_bento(spec, registered["version"], registered["model_uri"])
    rows = request_rows(spec, registered["holdout"])
    with serve_bento(
        tag,
        timeout_s=180,
        log_dir=state / "serve_threshold",
        env={"MODELOPS_INFERENCE_LOG_URL": str(state / "threshold_log")},
    ) as served:
        answers = _post(f"{served.url}/predict", {"rows": rows})
        model_info = _post(f"{served.url}/model_info", {})

    assert [a["label"] for a in answers] == [int(s >= value) for s in scores]
    assert model_info["decision_threshold"] == pytest.approx(value)
    assert model_info["threshold"]["policy"] == "target_recall"
