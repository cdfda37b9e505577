"""Tag names this project writes on MLflow runs and model versions that more than one module reads.

Writers and readers take the name from here, so a rename cannot leave a reader behind.
"""

from __future__ import annotations

MONITORING = "modelops.monitoring."  # prefix of a monitoring run's tags (one run per drift window)
