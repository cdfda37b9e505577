"""Versions registered before a change of the library's layout still load and score the same.

The champion is re-scored on every candidate's holdout, so a model registered months ago must
load under today's code. A torch pyfunc names its wrapper class by module path; a moved module
would make every such version unloadable. The fixtures were written by an earlier commit (see
``tests/fixtures/registered_models/make_fixtures.py``) and are never regenerated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.modelops import scoring
from include.modelops.spec import load_spec_by_name

FIXTURES = Path(__file__).parents[1] / "fixtures" / "registered_models"


@pytest.mark.parametrize("name", ["torch_pyfunc", "sklearn_skops"])
def test_a_model_registered_by_an_earlier_layout_loads_and_scores_the_same(name):
    spec = load_spec_by_name("fraud_detection")
    rows = pd.read_parquet(FIXTURES / "rows.parquet")
    expected = np.asarray(json.loads((FIXTURES / "expected_scores.json").read_text())[name])

    model = scoring.load_pyfunc(str(FIXTURES / name))
    scores = scoring.score(spec, model, rows)

    assert len(scores) == len(rows) == len(expected)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
