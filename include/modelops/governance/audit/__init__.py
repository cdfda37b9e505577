"""The audit trail: a model's or one version's lifecycle, in time order, from MLflow and Airflow.

Answers "why is version N in production, on what evidence, approved by whom?" from the
records the lifecycle steps already leave. It writes nothing to MLflow (the ``airflow`` CLI
logs its own invocation in Airflow's audit-log table, as every CLI call does):

* MLflow runs (one per DAG run): validation, training, gate tags and the run's status;
  a validation failure leaves a FAILED run with no model version and still shows here.
* MLflow model versions: registration, model card, approvals, alias moves, packaging
  and smoke-serve, promotion (tags written by ``steps``, ``approvals`` and ``tracking``).
* Rollout runs: the rollout records on this machine (``<state>/rollout/<model>/v<n>.json``: which
  DAG run, against which stable version, how it ended) and the version tags ``modelops.rollout.*``
  (stages, pauses, status) and ``modelops.deployment.*`` (deployment history).
* What is not recorded is said in words, with the reason where one is known (a version
  ``make demo-bad-canary`` registered is a fault-injected copy that was never smoke-served,
  gated or approved), never as a placeholder.
* Airflow DAG runs: state, start/end and conf (``reason``, ``data_path``), from Airflow's REST API
  when ``MODELOPS_AIRFLOW_API_URL`` is set, else through the ``airflow`` CLI in the stack's
  environment (this checkout's metadata DB); the audit process never imports Airflow.

``make audit MODEL=<name> [VERSION=<n>]`` prints :func:`report`. Each event is a dict::

    {"at": iso, "kind": ..., "version": str | None, "summary": str, "link": str | None, "details": {...}}

with ``kind`` one of :data:`KINDS`. Tag timestamps have one-second resolution, so events in
the same second are ordered by lifecycle step.
"""

from __future__ import annotations

from include.modelops.governance.audit.airflow_runs import AirflowApi, read_dag_runs, read_dag_runs_api
from include.modelops.governance.audit.events import collect_events
from include.modelops.governance.audit.records import KINDS, AuditError, dag_run_url
from include.modelops.governance.audit.render import render_text, render_verdict, report
from include.modelops.governance.audit.verdict import verdict

__all__ = [
    "AirflowApi",
    "read_dag_runs_api",
    "AuditError",
    "KINDS",
    "collect_events",
    "dag_run_url",
    "read_dag_runs",
    "render_text",
    "render_verdict",
    "report",
    "verdict",
]
