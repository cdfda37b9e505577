"""
### Invalid model specs, shown as this file's Airflow DAG import error

The DAG files (`model_training.py`, `model_rollout.py`, `model_monitoring.py`,
`model_rollback.py`) build DAGs for every *valid* spec in `include/models/` and skip the
invalid ones, so that one bad spec takes down its own model's DAGs and no other model's. This
file defines no DAG: it raises the invalid specs' errors, each naming the spec file and the
field to fix, so that they appear under *DAG Import Errors* in the Airflow UI (and in
`airflow dags list-import-errors`) until the spec is fixed; `make check-specs` prints the same.
"""

from __future__ import annotations

from include.modelops.spec import ModelSpecError, load_specs

_invalid = load_specs()[1]
if _invalid:
    raise ModelSpecError(
        f"{len(_invalid)} invalid model spec(s): their models have no DAGs until fixed; every other "
        "model's DAGs are unaffected.\n" + "\n".join(str(e) for e in _invalid)
    )
