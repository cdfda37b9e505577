"""The drift reference is a fixed-size, reproducible sample of the training split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from include.modelops.monitoring.reference import reference_sample
from include.modelops.spec import ModelSpecError, load_spec
from tests.conftest import REFERENCE_SPEC


def _train(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "amount": rng.gamma(2, 50, n),
            "channel": rng.choice(["pos", "online"], n),
            "is_fraud": rng.integers(0, 2, n),
            "card_id": [f"c{i}" for i in range(n)],
        }
    )


def test_reference_sample_has_the_configured_size_features_and_target(reference_spec):
    spec = reference_spec.model_copy(
        update={"monitoring": reference_spec.monitoring.model_copy(update={"reference_sample_rows": 500})}
    )
    sample = reference_sample(spec, _train(3000))
    assert len(sample) == 500
    assert list(sample.columns) == ["amount", "channel", "is_fraud"], "features and target only, no entity id"
    assert sample.equals(reference_sample(spec, _train(3000))), "seeded: the same split gives the same sample"


def test_small_training_split_is_kept_whole(reference_spec):
    assert len(reference_sample(reference_spec, _train(120))) == 120


def test_feature_drift_override_must_name_a_feature(tmp_path):
    raw = yaml.safe_load(REFERENCE_SPEC.read_text())
    raw["monitoring"]["feature_drift"] = {
        "amount": {"method": "psi", "threshold": 0.2},
        "amout": {"method": "ks"},
    }
    path = tmp_path / "fraud_detection.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        ModelSpecError, match=r"monitoring.feature_drift names unknown feature\(s\) \['amout'\]"
    ):
        load_spec(path)
