"""Airflow DAG runs (state, start/end, conf): from Airflow's REST API, or through its CLI.

Two readers, one result (``{run_id: {"dag_id", "run_id", "state", "start_date", "end_date", "conf"}}``
and notes on what could not be read):

* :func:`read_dag_runs_api`: Airflow's public REST API (``/api/v2``), as a production deployment
  offers it (``MODELOPS_AIRFLOW_API_URL`` with a token or a user): one paged request per DAG, the
  conf included; nothing to install or reach but the API server.
* :func:`read_dag_runs`: this checkout's own metadata DB through the ``airflow`` CLI, when no API
  server runs (``make audit`` right after ``make demo``); the audit process never imports Airflow.
"""

from __future__ import annotations

import configparser
import json
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.modelops.governance.audit.records import iso
from include.modelops.platform import http

log = logging.getLogger(__name__)


def _airflow_db_missing(env: dict[str, str]) -> str | None:
    """Why Airflow's metadata DB cannot be read (a one-line note), or None when it can be tried."""
    home = Path(env.get("AIRFLOW_HOME") or Path.home() / "airflow")
    conn = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    cfg = home / "airflow.cfg"
    if not conn and cfg.exists():
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(cfg)
            conn = parser.get("database", "sql_alchemy_conn", fallback=None)
        except configparser.Error:
            conn = None
    conn = conn or f"sqlite:///{home / 'airflow.db'}"
    if conn.startswith("sqlite:"):
        path = Path(conn.split(":///", 1)[-1].split("?", 1)[0])
        if not path.exists():
            return f"Airflow: no metadata DB at {path}; showing MLflow records only."
    return None


def _json_after_noise(text: str) -> Any:
    """Airflow's CLI prints warnings before its JSON: decode from the first line that starts one."""
    for m in re.finditer(r"^[\[{]", text, flags=re.M):
        try:
            return json.JSONDecoder().raw_decode(text[m.start() :])[0]
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON in the output")


def _dag_run_conf(dag_id: str, run_id: str, env: dict[str, str]) -> dict | None:
    """The conf of one DAG run (``airflow dags state`` prints ``<state>, <conf JSON>``)."""
    from include.modelops.platform import local_stack

    res = local_stack.airflow(["dags", "state", dag_id, run_id], env, timeout_s=120)
    if res.returncode != 0:
        return None
    for line in reversed(res.stdout.strip().splitlines()):
        m = re.fullmatch(r"([a-z_]+|None)(?:, (\{.*\}))?", line.strip())
        if m:
            return json.loads(m.group(2)) if m.group(2) else {}
    return None


def read_dag_runs(
    dag_ids: Iterable[str], env: dict[str, str], *, conf_for: Iterable[str] | None = None, workers: int = 4
) -> tuple[dict[str, dict], list[str]]:
    """DAG runs of ``dag_ids`` from Airflow's metadata DB, through the ``airflow`` CLI.

    Args:
        dag_ids: the model's training DAG(s).
        env: the stack's environment (``local_stack.stack_env``): AIRFLOW_HOME and friends.
        conf_for: run ids whose conf (reason, data_path) to read too; None: every run.
            Each costs one ``airflow dags state`` call, so a version audit asks for one.
        workers: CLI calls run at once.

    Returns:
        ``{run_id: {"dag_id", "run_id", "state", "start_date", "end_date", "conf"}}`` and notes
        (one line each) on what could not be read; Airflow being absent is a note, not an error.
    """
    from include.modelops.platform import local_stack

    note = _airflow_db_missing(env)
    if note:
        return {}, [note]
    dag_ids = list(dag_ids)
    wanted = None if conf_for is None else set(conf_for)
    runs: dict[str, dict] = {}
    notes: list[str] = []

    def list_runs(dag_id: str) -> tuple[str, list[dict] | str]:
        res = local_stack.airflow(["dags", "list-runs", dag_id, "-o", "json"], env, timeout_s=120)
        if res.returncode != 0:
            why = (res.stderr or res.stdout).strip().splitlines()
            return dag_id, why[-1] if why else f"exit code {res.returncode}"
        try:
            return dag_id, _json_after_noise(res.stdout)
        except ValueError:
            return dag_id, "unreadable output of `airflow dags list-runs`"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # The conf of runs already known from MLflow is read while the runs are listed.
        early = {(d, r): pool.submit(_dag_run_conf, d, r, env) for d in dag_ids for r in (wanted or ())}
        for dag_id, listed in pool.map(list_runs, dag_ids):
            if isinstance(listed, str):
                notes.append(
                    f"Airflow: could not list the runs of {dag_id} ({listed}); showing MLflow records "
                    f"only for it."
                )
                continue
            for r in listed:
                runs[r["run_id"]] = {
                    "dag_id": dag_id,
                    "run_id": r["run_id"],
                    "state": r.get("state"),
                    "start_date": iso(r.get("start_date")),
                    "end_date": iso(r.get("end_date")),
                    "conf": None,
                }
        late = {
            (runs[r]["dag_id"], r): pool.submit(_dag_run_conf, runs[r]["dag_id"], r, env)
            for r in runs
            if wanted is None and all(r != k[1] for k in early)
        }
        for (dag_id, run_id), fut in {**early, **late}.items():
            if run_id in runs and runs[run_id]["dag_id"] == dag_id:
                try:
                    runs[run_id]["conf"] = fut.result()
                except Exception as exc:  # a conf we cannot read leaves the rest of the audit intact
                    log.debug("conf of %s: %s", run_id, exc)
    return runs, notes


@dataclass(frozen=True)
class AirflowApi:
    """Airflow's public REST API at ``url``: a bearer ``token``, or one from ``/auth/token`` for a user."""

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout_s: float = 30.0

    def bearer(self) -> str:
        if self.token:
            return self.token
        if not (self.username and self.password):
            raise http.Unreachable(
                "no credentials: set MODELOPS_AIRFLOW_API_TOKEN, or MODELOPS_AIRFLOW_API_USERNAME and _PASSWORD"
            )
        reply = http.request(
            "POST",
            f"{self.url.rstrip('/')}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=self.timeout_s,
        )
        if reply.status not in (200, 201):
            raise http.Unreachable(
                f"{self.url}/auth/token refused the user {self.username!r} (HTTP {reply.status})"
            )
        return json.loads(reply.text)["access_token"]


PAGE = 100  # DAG runs per request (the API's default limit is 50, its maximum 100)


def read_dag_runs_api(
    dag_ids: Iterable[str], api: AirflowApi, *, conf_for: Iterable[str] | None = None
) -> tuple[dict[str, dict], list[str]]:
    """DAG runs of ``dag_ids`` from Airflow's REST API (``GET /api/v2/dags/{dag_id}/dagRuns``, paged).

    ``conf_for`` is accepted as :func:`read_dag_runs` takes it; the API returns every run's conf
    with the run, so it costs nothing more. What cannot be read is a note, never an error.
    """
    del conf_for
    runs: dict[str, dict] = {}
    notes: list[str] = []
    try:
        headers = {"Authorization": f"Bearer {api.bearer()}"}
    except http.Unreachable as exc:
        return {}, [f"Airflow API at {api.url}: {exc}; showing MLflow records only."]
    for dag_id in dag_ids:
        offset = 0
        while True:
            url = f"{api.url.rstrip('/')}/api/v2/dags/{dag_id}/dagRuns?limit={PAGE}&offset={offset}"
            try:
                reply = http.request("GET", url, headers=headers, timeout=api.timeout_s)
            except http.Unreachable as exc:
                notes.append(
                    f"Airflow API at {api.url} did not answer ({exc}); showing MLflow records only for {dag_id}."
                )
                break
            if reply.status == 404:
                break  # the DAG was never parsed there: no runs
            if not reply.ok:
                why = "refused the credentials" if reply.status in (401, 403) else "failed"
                notes.append(
                    f"Airflow API at {api.url} {why} listing the runs of {dag_id} (HTTP {reply.status}); "
                    f"showing MLflow records only for it."
                )
                break
            page = json.loads(reply.text)
            for r in page.get("dag_runs") or []:
                runs[r["dag_run_id"]] = {
                    "dag_id": dag_id,
                    "run_id": r["dag_run_id"],
                    "state": r.get("state"),
                    "start_date": iso(r.get("start_date")),
                    "end_date": iso(r.get("end_date")),
                    "conf": r.get("conf") or {},
                }
            offset += PAGE
            if offset >= int(page.get("total_entries") or 0):
                break
    return runs, notes
