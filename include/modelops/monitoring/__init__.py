"""Watching production: the drift reference, the inference-log window, the Evidently drift
report, and the retraining policy that turns a report into one decision with a reason.

Imports only run downward: ``policy`` is plain Python (no pandas), ``drift`` imports
Evidently inside its functions, and ``steps`` wires them to MLflow and the inference log.
"""
