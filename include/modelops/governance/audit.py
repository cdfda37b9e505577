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
* Airflow DAG runs: state, start/end and conf (``reason``, ``data_path``), read through the
  ``airflow`` CLI in the stack's environment, so the audit process never imports Airflow.

``make audit MODEL=<name> [VERSION=<n>]`` prints :func:`report`. Each event is a dict::

    {"at": iso, "kind": ..., "version": str | None, "summary": str, "link": str | None, "details": {...}}

with ``kind`` one of :data:`KINDS`. Tag timestamps have one-second resolution, so events in
the same second are ordered by lifecycle step.
"""

from __future__ import annotations

import configparser
import json
import logging
import re
import textwrap
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.modelops.platform import tracking
from include.modelops.platform.tags import (
    TAG_BENTO_TAG,
    TAG_DATA_FINGERPRINT,
    TAG_DATA_PATH,
    TAG_DEPLOYABLE,
    TAG_FAULT,
    TAG_FAULT_WRAPS,
    TAG_GATE_AT,
    TAG_GATE_STATUS,
    TAG_GATE_SUMMARY,
    TAG_GIT_COMMIT,
    TAG_KIND,
    TAG_MODEL,
    TAG_MODEL_CARD,
    TAG_MODEL_CARD_GENERATED_AT,
    TAG_MODEL_URI,
    TAG_PROMOTED_AT,
    TAG_REGISTERED_BY,
    TAG_RISK_TIER,
    TAG_ROLLED_BACK,
    TAG_ROLLED_BACK_AT,
    TAG_ROLLOUT_STATUS,
    TAG_ROLLOUT_SUMMARY,
    TAG_SMOKE_AT,
    TAG_SMOKE_MAX_ABS_DIFF,
    TAG_SPEC_HASH,
    TAG_SPLIT,
    TAG_TRIGGER_REASON,
    TAG_VALIDATION_AT,
    TAG_VALIDATION_FAILED,
    TAG_VALIDATION_STATUS,
    TAG_VALIDATION_SUMMARY,
)
from include.modelops.settings import get_settings

log = logging.getLogger(__name__)

KINDS = (
    "dag_run",
    "validation",
    "training",
    "gate",
    "registration",
    "model_card",
    "approval",
    "alias",
    "packaging",
    "rollout_run",
    "rollout",
    "deployment",
    "rollback",
    "promotion",
    "drift",
    "retrain",
)
# Lifecycle order, for events that carry the same second.
_RANK = {
    "dag_run:start": 0,
    "validation": 1,
    "training": 2,
    "gate": 3,
    "registration": 4,
    "alias:challenger": 5,
    "skipped": 4.5,
    "approval": 6,
    "packaging": 7,
    "rollout:start": 7.4,
    "rollout": 7.5,
    "rollout:end": 7.55,
    "rollback": 7.6,
    "alias:previous": 8,
    "alias:champion": 9,
    "promotion": 10,
    "alias": 11,
    # The tag holds the latest card, regenerated after promotion.
    "model_card": 12,
    "drift": 13,
    "retrain": 14,
    "dag_run:end": 15,
}
_DISPLACING_ALIASES = (tracking.CHAMPION, tracking.PREVIOUS)  # setting these takes them from another version


class AuditError(LookupError):
    """The model or version asked for does not exist; the message names what does."""


# --- reading the records ----------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    """A timestamp (epoch ms, ISO string, datetime) as an ISO UTC string to the second."""
    if value in (None, "", 0):
        return None
    if isinstance(value, int | float):
        dt = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def dag_run_url(dag_id: str, dag_run_id: str) -> str:
    """Link to a DAG run in the Airflow UI."""
    return f"{get_settings().airflow_ui_url}/dags/{dag_id}/runs/{dag_run_id}"


def _run_url(experiment_id: str, run_id: str) -> str:
    return f"{get_settings().mlflow_ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


class _Records:
    """Everything MLflow holds about one model, read once."""

    def __init__(self, model: str) -> None:
        c = tracking.client()
        self.model = model
        exp = c.get_experiment_by_name(model)
        self.experiment_id = exp.experiment_id if exp is not None else None
        self.runs: dict[str, Any] = {}
        self.logged_model_at: dict[str, str] = {}
        if self.experiment_id is not None:
            token = None
            while True:
                page = c.search_runs([self.experiment_id], max_results=1000, page_token=token)
                self.runs.update({r.info.run_id: r for r in page})
                token = page.token
                if not token:
                    break
            try:
                for lm in c.search_logged_models(experiment_ids=[self.experiment_id]):
                    self.logged_model_at[lm.model_id] = _iso(lm.creation_timestamp) or ""
            except Exception as exc:  # an older server without logged models: fall back to tag times
                log.debug("No logged models: %s", exc)
        self.versions: dict[str, Any] = {}
        self.aliases: dict[str, str] = {}
        try:
            rm = c.get_registered_model(model)
        except Exception:
            rm = None
        if rm is not None:
            self.aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
            for mv in c.search_model_versions(f"name = '{model}'"):
                self.versions[str(mv.version)] = mv
        self.rollouts = _rollout_records(model)
        if self.experiment_id is None and rm is None:
            raise AuditError(
                f"No model named '{model}' in MLflow ({get_settings().mlflow_tracking_uri}). "
                f"Models there: {', '.join(_known_models(c)) or 'none yet (run `make demo`)'}."
            )

    def version(self, version: str) -> Any:
        mv = self.versions.get(str(version))
        if mv is None:
            known = (
                ", ".join(sorted(self.versions, key=int))
                or "none (no run has passed validation and training)"
            )
            raise AuditError(f"{self.model} has no version {version}. Versions: {known}.")
        return mv

    def version_of_run(self, run_id: str) -> str | None:
        found = [v for v, mv in self.versions.items() if mv.run_id == run_id]
        return found[0] if found else None

    def dag_ids(self) -> list[str]:
        ids = {r.data.tags.get(tracking.TAG_DAG_ID) for r in self.runs.values()}
        ids |= {mv.tags.get(tracking.TAG_DAG_ID) for mv in self.versions.values()}
        if self.rollouts or any((mv.tags or {}).get(TAG_ROLLOUT_STATUS) for mv in self.versions.values()):
            ids.add(
                f"{self.model}_rollout"
            )  # rollout runs are Airflow runs too, with no MLflow run of their own
        return sorted(i for i in ids if i) or [f"{self.model}_training"]


def _rollout_records(model: str) -> dict[str, dict]:
    """``{version: record}`` from the rollout records on this machine (``<state>/rollout/<model>/v*.json``)."""
    out: dict[str, dict] = {}
    for path in sorted((get_settings().state_dir / "rollout" / model).glob("v*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out[str(record.get("version") or path.stem[1:])] = record
    return out


def _known_models(c: Any) -> list[str]:
    names = {m.name for m in c.search_registered_models()}
    names |= {e.name for e in c.search_experiments() if e.tags.get(TAG_MODEL)}
    return sorted(names)


# --- Airflow, through its CLI -----------------------------------------------------------------


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
                    "start_date": _iso(r.get("start_date")),
                    "end_date": _iso(r.get("end_date")),
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


# --- events -----------------------------------------------------------------------------------


def _event(
    at: str | None,
    kind: str,
    summary: str,
    *,
    version: str | None = None,
    link: str | None = None,
    rank: str | None = None,
    **details: Any,
) -> dict:
    return {
        "at": at,
        "kind": kind,
        "version": version,
        "summary": summary,
        "link": link,
        "details": {k: v for k, v in details.items() if v is not None},
        "_rank": _RANK[rank or kind],
    }


def _monitoring_events(run: Any) -> list[dict]:
    """The drift report and the retraining decision of one monitoring run (one window)."""
    from include.modelops.platform.tags import MONITORING as P

    tags, info = run.data.tags, run.info
    link = _run_url(info.experiment_id, info.run_id)
    version = tags.get(f"{P}model_version") or None
    common = {
        "run_id": info.run_id,
        "dag_id": tags.get(tracking.TAG_DAG_ID),
        "dag_run_id": tags.get(tracking.TAG_DAG_RUN),
        "window": tags.get(f"{P}window"),
    }
    m = run.data.metrics
    status = tags.get(f"{P}status")
    summary = f"Drift check of window {tags.get(f'{P}window')}: "
    if status == "checked":
        summary += (
            f"{int(m.get('rows', 0)):,} rows, {m.get('drift_share', 0):.0%} of features drifted"
            + (f" ({tags[f'{P}top_drifted']})" if tags.get(f"{P}top_drifted") else "")
            + (
                f", live {tags.get(f'{P}metric', 'metric')} drop {m['metric_drop']:.4f}"
                if "metric_drop" in m
                else ""
            )
            + (f", {int(m['quality_failures'])} data-quality failure(s)" if m.get("quality_failures") else "")
        )
    else:
        summary += {"no_traffic": "no traffic"}.get(
            status or "",
            str(status or "no status recorded")
            + (f": {tags[f'{P}rows']} rows" if tags.get(f"{P}rows") else ""),
        )
    if tags.get(f"{P}skipped_files", "0") not in ("", "0"):
        summary += f"; {tags[f'{P}skipped_files']} unreadable log file(s) skipped"
    at = _iso(info.end_time) or _iso(info.start_time)
    events = [
        _event(
            at,
            "drift",
            summary,
            version=version,
            link=link,
            status=status,
            report=tags.get(f"{P}report") or tags.get(f"{P}summary"),
            **common,
        )
    ]
    if tags.get(f"{P}outcome"):
        events.append(
            _event(
                _iso(tags.get(f"{P}decided_at")) or at,
                "retrain",
                f"Retraining decision ({tags[f'{P}outcome']}): {tags.get(f'{P}reason', '')}",
                version=version,
                link=link,
                outcome=tags[f"{P}outcome"],
                guard=tags.get(f"{P}guard") or None,
                triggers=tags.get(f"{P}triggers") or None,
                **common,
            )
        )
    return events


def _run_events(rec: _Records, run: Any) -> list[dict]:
    """Validation, training and gate events of one MLflow run (one DAG run)."""
    tags, info = run.data.tags, run.info
    if tags.get(TAG_KIND) == "monitoring":
        return _monitoring_events(run)
    run_id = info.run_id
    version = rec.version_of_run(run_id)
    link = _run_url(info.experiment_id, run_id)
    started, ended = _iso(info.start_time), _iso(info.end_time)
    common = {
        "run_id": run_id,
        "dag_id": tags.get(tracking.TAG_DAG_ID),
        "dag_run_id": tags.get(tracking.TAG_DAG_RUN),
        "run_status": info.status,
    }
    events = []
    v_status = tags.get(TAG_VALIDATION_STATUS)
    if v_status:
        fp = tags.get(TAG_DATA_FINGERPRINT)
        summary = f"Data validation {v_status}: {tags.get(TAG_VALIDATION_SUMMARY, '')}"
        summary += f" on {tags[TAG_DATA_PATH]}" if tags.get(TAG_DATA_PATH) else ""
        summary += f"; data fingerprint {fp[:12]}" if fp else ""
        if v_status != "passed":
            if tags.get(TAG_VALIDATION_FAILED):
                summary += f"; failed: {tags[TAG_VALIDATION_FAILED][:300]}"
            summary += f"; the run stopped here (MLflow run {info.status}), nothing was registered"
        events.append(
            _event(
                _iso(tags.get(TAG_VALIDATION_AT)) or started,
                "validation",
                summary,
                version=version,
                link=link,
                status=v_status,
                validation_summary=tags.get(TAG_VALIDATION_SUMMARY),
                data_path=tags.get(TAG_DATA_PATH),
                data_fingerprint=fp,
                report=f"runs:/{run_id}/validation/validation_report.html",
                **common,
            )
        )
    model_uri = tags.get(TAG_MODEL_URI)
    params, metrics = run.data.params, run.data.metrics
    if model_uri:
        model_id = model_uri.removeprefix("models:/")
        at = rec.logged_model_at.get(model_id) or _iso(tags.get(TAG_VALIDATION_AT)) or started
        how = (
            " ".join(
                _known(
                    ("", params.get("framework")), ("", params.get("backend") and f"({params['backend']})")
                )
            )
            or "a model (framework not recorded)"
        )
        rows = (
            f" on {int(params['train_rows']):,} rows" if str(params.get("train_rows", "")).isdigit() else ""
        )
        secs = f" in {metrics['train_seconds']:.1f} s" if "train_seconds" in metrics else ""
        holdout = {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")}
        events.append(
            _event(
                at,
                "training",
                f"Trained {how}{rows}{secs}: {model_uri}",
                version=version,
                link=link,
                model_uri=model_uri,
                params=dict(params),
                holdout_metrics=holdout or None,
                git_commit=tags.get("mlflow.source.git.commit"),
                **common,
            )
        )
    elif info.status in ("FAILED", "KILLED") and v_status == "passed":
        events.append(
            _event(
                ended or started,
                "training",
                f"The run ended {info.status} before a model was logged (see the DAG run's task logs)",
                version=version,
                link=link,
                **common,
            )
        )
    g_status = tags.get(TAG_GATE_STATUS)
    if g_status:
        events.append(
            _event(
                _iso(tags.get(TAG_GATE_AT)) or ended,
                "gate",
                f"Gate {g_status}: {tags.get(TAG_GATE_SUMMARY, '')}",
                version=version,
                link=link,
                status=g_status,
                gate_summary=tags.get(TAG_GATE_SUMMARY),
                report=f"runs:/{run_id}/evaluation/evaluation_report.html",
                **common,
            )
        )
    return events


def _alias_sets(rec: _Records) -> list[tuple[str, str, str]]:
    """(at, alias, version) for every ``modelops.alias.<alias>.set_at`` tag, oldest first."""
    out = []
    for v, mv in rec.versions.items():
        for key, value in (mv.tags or {}).items():
            parts = key.split(".")
            if (
                len(parts) == 4
                and parts[:2] == ["modelops", "alias"]
                and parts[3] == "set_at"
                and _iso(value)
            ):
                out.append((_iso(value), parts[2], v))
    return sorted(out, key=lambda t: (t[0], int(t[2])))


def _replaced(sets: list[tuple[str, str, str]], alias: str, version: str, at: str) -> str | None:
    """The version that held a champion/previous alias just before ``version`` took it (from the tags)."""
    if alias not in _DISPLACING_ALIASES:
        return None
    before = [s for s in sets if s[1] == alias and s[2] != version and s[0] <= at]
    return before[-1][2] if before else None


def _version_events(rec: _Records, version: str, sets: list[tuple[str, str, str]]) -> list[dict]:
    """Registration, model card, approvals, alias moves, packaging and promotion of one version."""
    from include.modelops.governance.approvals import records as approval_records

    model = rec.model
    mv = rec.versions[version]
    tags = dict(mv.tags or {})
    link = tracking.version_url(model, version)
    common = {
        "dag_id": tags.get(tracking.TAG_DAG_ID),
        "dag_run_id": tags.get(tracking.TAG_DAG_RUN),
        "run_id": mv.run_id,
    }
    created = _iso(mv.creation_timestamp)
    commit = tags.get(TAG_GIT_COMMIT)
    run = rec.runs.get(mv.run_id)
    run_tags = run.data.tags if run is not None else {}
    commit = commit or run_tags.get("mlflow.source.git.commit")
    origin = provenance(tags, run)
    if _fault(tags, run):
        registered = (
            f"by {origin}, not by the training DAG: it has no risk tier, spec hash, data fingerprint or "
            f"commit of its own"
        )
    else:
        registered = (
            "("
            + ", ".join(
                _known(
                    ("risk tier", tags.get(TAG_RISK_TIER) or run_tags.get(TAG_RISK_TIER)),
                    ("spec", tags.get(TAG_SPEC_HASH)),
                    ("commit", (commit or "")[:12]),
                )
            )
            + ")"
        )
        registered += f", by {origin}" if origin else ""
    events = [
        _event(
            created,
            "registration",
            f"Registered as {model} v{version} {registered}",
            version=version,
            link=link,
            risk_tier=tags.get(TAG_RISK_TIER),
            spec_hash=tags.get(TAG_SPEC_HASH),
            git_commit=commit,
            data_fingerprint=tags.get(TAG_DATA_FINGERPRINT),
            registered_by=origin,
            **common,
        )
    ]
    skipped = _skipped_steps(rec, version, tags, origin)
    if skipped:
        events.append(
            _event(created, "gate", skipped, version=version, link=link, rank="skipped", status="skipped")
        )
    if tags.get(TAG_MODEL_CARD):
        events.append(
            _event(
                _iso(tags.get(TAG_MODEL_CARD_GENERATED_AT)) or created,
                "model_card",
                f"Model card (latest) generated: {tags[TAG_MODEL_CARD]}",
                version=version,
                link=link,
                model_card=tags[TAG_MODEL_CARD],
            )
        )
    for r in approval_records(model, version, tags):
        who = (
            ", timed out: nobody answered"
            if r["timed_out"]
            else f" by {r.get('by') or 'an unrecorded approver'}"
        )
        summary = f"Approval {r['index']}: {str(r.get('decision') or 'no decision recorded').upper()}{who}"
        summary += f" (policy {r['policy']})" if r.get("policy") else ""
        summary += f': "{r["comment"]}"' if r.get("comment") else ""
        events.append(
            _event(
                _iso(r.get("at")) or created,
                "approval",
                summary,
                version=version,
                link=link,
                **{k: r.get(k) for k in ("index", "decision", "by", "comment", "policy", "timed_out")},
            )
        )
    for at, alias, v in sets:
        if v != version:
            continue
        old = _replaced(sets, alias, version, at)
        summary = f"Alias {alias} -> v{version}" + (f" (replacing v{old})" if old else "")
        events.append(
            _event(
                at,
                "alias",
                summary,
                version=version,
                link=link,
                rank=_alias_rank(alias),
                alias=alias,
                replaced=old,
            )
        )
    if tags.get(TAG_BENTO_TAG) or tags.get(TAG_SMOKE_AT):
        ok = tags.get(TAG_DEPLOYABLE) == "true"
        smoke = _smoke_sentence(tags, ok, origin)
        at = _iso(tags.get(TAG_SMOKE_AT)) or max(e["at"] for e in events if e["at"])
        bento = (
            f"Packaged bento {tags[TAG_BENTO_TAG]}" if tags.get(TAG_BENTO_TAG) else "No bento tag recorded"
        )
        events.append(
            _event(
                at,
                "packaging",
                f"{bento}; {smoke}",
                version=version,
                link=link,
                bento_tag=tags.get(TAG_BENTO_TAG),
                deployable=ok,
                max_abs_diff=tags.get(TAG_SMOKE_MAX_ABS_DIFF),
            )
        )
    for key in sorted(k for k in tags if k.startswith("modelops.rollout.stage.")):
        try:
            stage = json.loads(tags[key])
        except ValueError:
            continue
        share = (
            f"{stage.get('traffic_percent')}% of traffic"
            if stage.get("traffic_percent")
            else "copies of live requests, no traffic"
        )  # the shadow stage
        events.append(
            _event(
                _iso(stage.get("at")),
                "rollout",
                f"Rollout stage {stage.get('stage')} ({share}): "
                f"{str(stage.get('outcome') or 'no verdict recorded').upper()}: {stage.get('reason', '')}",
                version=version,
                link=link,
                stage=stage.get("stage"),
                outcome=stage.get("outcome"),
                traffic_percent=stage.get("traffic_percent"),
            )
        )
    for key in sorted(k for k in tags if k.startswith("modelops.rollout.pause.")):
        try:
            paused = json.loads(tags[key])
        except ValueError:
            continue
        who = "no answer (fail closed)" if paused.get("timed_out") else f"by {paused.get('by')}"
        events.append(
            _event(
                _iso(paused.get("at")),
                "rollout",
                f"Rollout paused after {paused.get('stage')} ({paused.get('traffic_percent')}% of "
                f"traffic): {str(paused.get('decision') or 'no decision recorded').upper()} {who}"
                + (f": {paused['comment']}" if paused.get("comment") else ""),
                version=version,
                link=link,
                stage=paused.get("stage"),
                decision=paused.get("decision"),
                by=paused.get("by"),
                comment=paused.get("comment"),
            )
        )
    events += _rollout_events(rec, version, tags, link)
    if tags.get(TAG_ROLLED_BACK_AT):
        events.append(
            _event(
                _iso(tags[TAG_ROLLED_BACK_AT]),
                "rollback",
                f"Rolled back: 100% of traffic to stable, challenger removed, champion untouched "
                f"({tags.get(TAG_ROLLED_BACK, '')})",
                version=version,
                link=link,
                reason=tags.get(TAG_ROLLED_BACK),
            )
        )
    if tags.get(TAG_PROMOTED_AT):
        at = _iso(tags[TAG_PROMOTED_AT])
        old = _replaced(sets, tracking.CHAMPION, version, at or "")
        events.append(
            _event(
                at,
                "promotion",
                f"Promoted v{version} to champion"
                + (f"; v{old} kept as previous (the rollback target)" if old else ""),
                version=version,
                link=link,
                previous=old,
            )
        )
    return events


def _known(*pairs: tuple[str, str | None]) -> list[str]:
    """``label value`` for each value that is recorded, ``no <label> recorded`` for the others."""
    return [
        f"{label} {value}".strip() if value else f"no {label or 'value'} recorded" for label, value in pairs
    ]


def _fault(tags: dict[str, str], run: Any = None) -> str | None:
    """The injected fault of a version ``demo.faults`` registered (tag on the version or its run)."""
    return tags.get(TAG_FAULT) or ((run.data.tags if run is not None else {}).get(TAG_FAULT))


def provenance(tags: dict[str, str], run: Any = None) -> str | None:
    """Who registered a version the training DAG did not, in words; None for the training DAG's own."""
    run_tags = run.data.tags if run is not None else {}
    fault = _fault(tags, run)
    if fault:
        wraps = tags.get(TAG_FAULT_WRAPS) or run_tags.get(TAG_FAULT_WRAPS)
        by = tags.get(TAG_REGISTERED_BY) or "make demo-bad-canary (include/modelops/demo/faults.py)"
        return (
            f"{by} as a fault-injected copy of "
            + (f"v{wraps}" if wraps else "a trained version (which one was not recorded)")
            + f" (fault {fault!r})"
        )
    if tags.get(TAG_REGISTERED_BY):
        return tags[TAG_REGISTERED_BY]
    if not tags.get(tracking.TAG_DAG_ID) and not run_tags.get(tracking.TAG_DAG_ID):
        return "hand or another tool (no training DAG run is recorded on it)"
    return None


def _smoke_sentence(tags: dict[str, str], deployable: bool, origin: str | None) -> str:
    if tags.get(TAG_SMOKE_AT) or tags.get(TAG_SMOKE_MAX_ABS_DIFF):
        if not deployable:
            return "smoke-serve did not pass (not deployable)"
        diff = tags.get(TAG_SMOKE_MAX_ABS_DIFF)
        return "smoke-serve passed, served predictions match offline" + (
            f" (max |diff| {diff})" if diff else " (the largest difference was not recorded)"
        )
    why = f"registered by {origin}" if origin else "the version has no smoke-serve record (modelops.smoke.at)"
    return f"not smoke-served: {why}" + (
        "; marked deployable without it, so a rollout could take it" if deployable else ""
    )


def _skipped_steps(rec: _Records, version: str, tags: dict[str, str], origin: str | None) -> str | None:
    """``Gate and approval skipped: why`` for a version that went on without them; None when it did not."""
    from include.modelops.governance.approvals import records as approval_records

    run = rec.runs.get(rec.versions[version].run_id)
    gate = tags.get(TAG_GATE_STATUS) or (run.data.tags.get(TAG_GATE_STATUS) if run else None)
    went_on = (
        tags.get(TAG_DEPLOYABLE) == "true"
        or bool(tags.get(f"modelops.alias.{tracking.CHAMPION}.set_at"))
        or any(v == version for v in rec.aliases.values())
        or bool(tags.get(TAG_ROLLOUT_STATUS))
    )
    skipped = []
    if not gate:
        skipped.append("gate")
    if (not gate or gate == "passed") and went_on and not approval_records(rec.model, version, tags):
        skipped.append("approval")
    if not skipped:
        return None
    if _fault(tags, run):
        why = (
            f"registered by {origin} and sent straight to a rollout: the demo shows the rollout catching a bad "
            f"release, so it was never evaluated, gated or approved"
        )
    elif origin:
        why = f"registered by {origin}; no {' or '.join(skipped)} record is on the version"
    else:
        why = (
            f"no {' or '.join(skipped)} record is on the version (tags modelops.gate.*, modelops.approval.*)"
        )
    return f"{' and '.join(skipped).capitalize()} skipped: {why}"


def _rollout_events(rec: _Records, version: str, tags: dict[str, str], link: str) -> list[dict]:
    """Each rollout run of the version (the rollout record) and its deployment history (the version tags)."""
    from include.modelops.rollout.history import deployment_history

    events = []
    record = rec.rollouts.get(version)
    if record:
        run_id = record.get("dag_run_id")
        against = (
            "first deployment: nothing to compare against, 100% after a health check"
            if record.get("first_deployment")
            else f"canary v{version} against stable v{record.get('stable_version')}"
        )
        events.append(
            _event(
                _iso(record.get("started_at")),
                "rollout_run",
                f"Rollout run {run_id or '(DAG run not recorded)'} started: {against}",
                version=version,
                link=dag_run_url(f"{rec.model}_rollout", run_id) if run_id else link,
                rank="rollout:start",
                dag_run_id=run_id,
                status=record.get("status"),
            )
        )
        if record.get("status") not in ("promoted", "rolled_back"):
            ran = ([record["shadow"]] if record.get("shadow") else []) + list(record.get("stages") or [])
            last = ran[-1] if ran else {}
            events.append(
                _event(
                    _iso(last.get("ended_at") or last.get("started_at")) or _iso(record.get("started_at")),
                    "rollout_run",
                    f"Rollout run {run_id} has no end recorded (status "
                    f"{record.get('status') or 'not recorded'}"
                    + (f", last stage {last.get('name')}: {last.get('outcome')}" if last else "")
                    + "): it is still running, or its DAG run stopped without a verdict",
                    version=version,
                    link=link,
                    rank="rollout:end",
                    dag_run_id=run_id,
                    status=record.get("status"),
                )
            )
    for e in deployment_history({k: v for k, v in tags.items() if k.startswith("modelops.deployment.")}):
        stages = ", ".join(f"{s['name']} {s['outcome']}" for s in e["stages"])
        events.append(
            _event(
                _iso(e["at"]),
                "deployment",
                f"Deployment history: {e['event']}"
                + (f" [{stages}]" if stages else "")
                + (f": {e['reason']}" if e["reason"] else ""),
                version=version,
                link=link,
                rank="rollout:end",
                event=e["event"],
            )
        )
    return events


def _rollout_summary(rec: _Records, version: str) -> str | None:
    """One line: how the version's rollout went (record on this machine, else the version's tags)."""
    tags = rec.versions[version].tags or {}
    record = rec.rollouts.get(version) or {}
    status = record.get("status") or tags.get(TAG_ROLLOUT_STATUS)
    if not status:
        return None
    stage = (record.get("failure") or {}).get("stage")
    run = record.get("dag_run_id")
    text = {"promoted": "promoted to champion", "rolled_back": "rolled back"}.get(status, status)
    if status == "rolled_back":
        reason = record.get("reason") or tags.get(TAG_ROLLED_BACK)
        text += (f" at {stage}" if stage else "") + (f": {reason}" if reason else "")
    elif status == "promoted" and (record.get("summary") or tags.get(TAG_ROLLOUT_SUMMARY)):
        text += f": {record.get('summary') or tags.get(TAG_ROLLOUT_SUMMARY)}"
    return f"v{version} {text}" + (f" (DAG run {run})" if run else "")


def _alias_rank(alias: str) -> str:
    return f"alias:{alias}" if f"alias:{alias}" in _RANK else "alias"


def _dag_run_events(run: dict, version: str | None) -> list[dict]:
    conf = run.get("conf") or {}
    link = dag_run_url(run["dag_id"], run["run_id"])
    kind_of_run = run["run_id"].split("__", 1)[0] if "__" in run["run_id"] else "manual"
    said = []
    if conf.get("reason"):
        said.append(f'reason "{conf["reason"]}"')
    if conf.get("data_path"):
        said.append(f"data_path {conf['data_path']}")
    common = {
        "dag_id": run["dag_id"],
        "dag_run_id": run["run_id"],
        "state": run.get("state"),
        "conf": run.get("conf"),
        "start_date": run.get("start_date"),
        "end_date": run.get("end_date"),
    }
    events = [
        _event(
            run.get("start_date"),
            "dag_run",
            f"DAG run {run['run_id']} started ({kind_of_run})" + (": " + ", ".join(said) if said else ""),
            version=version,
            link=link,
            rank="dag_run:start",
            phase="start",
            **common,
        )
    ]
    if run.get("end_date"):
        took = ""
        if run.get("start_date"):
            secs = int(
                (
                    datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])
                ).total_seconds()
            )
            h, m, sec = secs // 3600, secs % 3600 // 60, secs % 60
            took = " after " + (f"{h} h {m} min" if h else f"{m} min {sec} s" if m else f"{sec} s")
        events.append(
            _event(
                run["end_date"],
                "dag_run",
                f"DAG run {run['run_id']} ended {run.get('state')}{took}",
                version=version,
                link=link,
                rank="dag_run:end",
                phase="end",
                **common,
            )
        )
    return events


def _sort(events: list[dict]) -> list[dict]:
    ordered = sorted(events, key=lambda e: (e["at"] or "9999", e["_rank"], int(e["version"] or 0)))
    for e in ordered:
        e.pop("_rank", None)
    return ordered


def collect_events(
    model: str, version: str | None = None, *, dag_runs: dict[str, dict] | None = None
) -> list[dict]:
    """The model's lifecycle events (or one version's), oldest first.

    Args:
        model: the model (registered model and experiment name).
        version: a version number; None: every run and version of the model, including
            runs that stopped at validation and never made a version.
        dag_runs: Airflow's DAG runs from :func:`read_dag_runs`; None leaves Airflow out.

    Raises:
        AuditError: no such model or version (the message names those that exist).
    """
    rec = _Records(model)
    return _collect(rec, None if version is None else str(version), dag_runs or {})


def _collect(rec: _Records, version: str | None, dag_runs: dict[str, dict]) -> list[dict]:
    sets = _alias_sets(rec)
    events: list[dict] = []
    if version is None:
        for run in rec.runs.values():
            events += _run_events(rec, run)
        for v in rec.versions:
            events += _version_events(rec, v, sets)
        versions_of_dag_run = {mv.tags.get(tracking.TAG_DAG_RUN): v for v, mv in rec.versions.items()}
        dag_run_ids = {r.data.tags.get(tracking.TAG_DAG_RUN) for r in rec.runs.values()}
        dag_ids = rec.dag_ids()
        for run_id, dr in dag_runs.items():
            if dr["dag_id"] in dag_ids or run_id in dag_run_ids:
                events += _dag_run_events(dr, versions_of_dag_run.get(run_id))
        return _sort(events)
    mv = rec.version(version)
    run = rec.runs.get(mv.run_id)
    if run is None:  # the run lives in another experiment: fetch it directly
        try:
            run = tracking.client().get_run(mv.run_id)
        except Exception:
            run = None
    if run is not None:
        events += _run_events(rec, run)
    for r in rec.runs.values():  # the windows this version served, and the decisions taken on them
        if (
            r.data.tags.get(TAG_KIND) == "monitoring"
            and r.data.tags.get("modelops.monitoring.model_version") == version
        ):
            events += _monitoring_events(r)
    events += _version_events(rec, version, sets)
    # Alias moves that took an alias away from this version (e.g. a newer champion).
    for at, alias, v in sets:
        if v != version and _replaced(sets, alias, v, at) == version:
            events.append(
                _event(
                    at,
                    "alias",
                    f"Alias {alias} -> v{v} (replacing v{version})",
                    version=v,
                    link=tracking.version_url(rec.model, v),
                    rank=_alias_rank(alias),
                    alias=alias,
                    replaced=version,
                )
            )
    dr = dag_runs.get(mv.tags.get(tracking.TAG_DAG_RUN, ""))
    if dr:
        events += _dag_run_events(dr, version)
    return _sort(events)


# --- verdict ----------------------------------------------------------------------------------


def verdict(model: str, version: str, *, dag_runs: dict[str, dict] | None = None) -> dict:
    """Why a version is (or is not) where it is: aliases, gate, approvals, evidence, lineage.

    Raises:
        AuditError: no such model or version.
    """
    return _verdict(_Records(model), str(version), dag_runs or {})


def _verdict(rec: _Records, version: str, dag_runs: dict[str, dict]) -> dict:
    from include.modelops.governance.approvals import APPROVED
    from include.modelops.governance.approvals import records as approval_records

    mv = rec.version(version)
    tags = dict(mv.tags or {})
    run = rec.runs.get(mv.run_id)
    run_tags = run.data.tags if run is not None else {}
    aliases = sorted(a for a, v in rec.aliases.items() if v == version)
    approvals = approval_records(rec.model, version, tags)
    risk = tags.get(TAG_RISK_TIER) or run_tags.get(TAG_RISK_TIER)
    required = 2 if risk == "high" else 1
    approvers = sorted(
        {r.get("by") for r in approvals if r.get("decision") == APPROVED and not r["timed_out"]}
    )
    gate_status = tags.get(TAG_GATE_STATUS) or run_tags.get(TAG_GATE_STATUS)
    missing = []
    if gate_status != "passed":
        missing.append(f"a passed gate (it is {gate_status or 'absent'})")
    if not tags.get(TAG_MODEL_CARD):
        missing.append("a model card")
    if len(approvers) < required:
        missing.append(f"{required} distinct approval(s) (it has {len(approvers)})")
    if tags.get(TAG_DEPLOYABLE) != "true" or not (tags.get(TAG_SMOKE_AT) or tags.get(TAG_SMOKE_MAX_ABS_DIFF)):
        missing.append("a passed smoke-serve")
    dag_id, dag_run_id = tags.get(tracking.TAG_DAG_ID), tags.get(tracking.TAG_DAG_RUN)
    dr = dag_runs.get(dag_run_id or "")
    sets = _alias_sets(rec)
    status = _status_sentence(rec, version, aliases, tags, approvals, gate_status, sets)
    if tracking.CHAMPION in aliases and missing:
        status += " WARNING: it serves without complete evidence."
    return {
        "model": rec.model,
        "version": version,
        "status": status,
        "aliases": aliases,
        "all_aliases": dict(rec.aliases),
        "in_production": tracking.CHAMPION in aliases,
        "gate": {
            "status": gate_status,
            "summary": tags.get(TAG_GATE_SUMMARY) or run_tags.get(TAG_GATE_SUMMARY),
            "at": _iso(run_tags.get(TAG_GATE_AT)),
        },
        "approvals": approvals,
        "approvals_required": required,
        "approvers": approvers,
        "evidence_complete": not missing,
        "evidence_missing": missing,
        "model_card": tags.get(TAG_MODEL_CARD),
        "model_card_generated_at": _iso(tags.get(TAG_MODEL_CARD_GENERATED_AT)),
        "data_fingerprint": tags.get(TAG_DATA_FINGERPRINT) or run_tags.get(TAG_DATA_FINGERPRINT),
        "data_path": run_tags.get(TAG_DATA_PATH),
        "validation": run_tags.get(TAG_VALIDATION_SUMMARY),
        "split": run_tags.get(TAG_SPLIT),
        "git_commit": tags.get(TAG_GIT_COMMIT) or run_tags.get("mlflow.source.git.commit"),
        "spec_hash": tags.get(TAG_SPEC_HASH),
        "risk_tier": risk,
        "dag_id": dag_id,
        "dag_run_id": dag_run_id,
        "dag_run_state": dr.get("state") if dr else None,
        "dag_run_reason": ((dr or {}).get("conf") or {}).get("reason") or run_tags.get(TAG_TRIGGER_REASON),
        "dag_run_url": dag_run_url(dag_id, dag_run_id) if dag_id and dag_run_id else None,
        "mlflow_run_id": mv.run_id,
        "mlflow_run_url": _run_url(run.info.experiment_id, mv.run_id) if run is not None else None,
        "version_url": tracking.version_url(rec.model, version),
        "bento_tag": tags.get(TAG_BENTO_TAG),
        "deployable": tags.get(TAG_DEPLOYABLE) == "true",
        "promoted_at": _iso(tags.get(TAG_PROMOTED_AT)),
        "registered_by": provenance(tags, run),
        "skipped": _skipped_steps(rec, version, tags, provenance(tags, run)),
        "smoke": _smoke_sentence(tags, tags.get(TAG_DEPLOYABLE) == "true", provenance(tags, run)),
        "rollout": _rollout_summary(rec, version),
    }


def _status_sentence(
    rec: _Records,
    version: str,
    aliases: list[str],
    tags: dict[str, str],
    approvals: list[dict],
    gate_status: str | None,
    sets: list[tuple[str, str, str]],
) -> str:
    v = f"v{version}"
    if tracking.CHAMPION in aliases:
        since = _iso(tags.get(f"modelops.alias.{tracking.CHAMPION}.set_at"))
        return f"{v} is in production: alias champion (serving) since {since or 'an unrecorded time'}."
    champion = rec.aliases.get(tracking.CHAMPION)
    now = f" The champion is v{champion}." if champion else " There is no champion."
    taken = [
        (at, v2) for at, a, v2 in sets if a == tracking.CHAMPION and _replaced(sets, a, v2, at) == version
    ]
    served = ""
    if tags.get(f"modelops.alias.{tracking.CHAMPION}.set_at"):
        served = f" It served as champion from {_iso(tags[f'modelops.alias.{tracking.CHAMPION}.set_at'])}" + (
            f" until v{taken[0][1]} replaced it at {taken[0][0]}." if taken else "."
        )
    if tracking.PREVIOUS in aliases:
        return f"{v} is not serving; it is the rollback target (alias previous).{served}{now}"
    if tags.get(TAG_ROLLED_BACK_AT):
        return (
            f"{v} was rolled back during its rollout at {_iso(tags[TAG_ROLLED_BACK_AT])} "
            f"({tags.get(TAG_ROLLED_BACK, 'no reason recorded')}) and never became champion.{now}"
        )
    if tracking.CHALLENGER in aliases:
        return f"{v} passed the gate and awaits approval or promotion (alias challenger).{now}"
    if gate_status and gate_status != "passed":
        return f"{v} was rejected at the gate and never served.{now}"
    rejected = [r for r in approvals if r.get("decision") != "approved"]
    if rejected:
        r = rejected[-1]
        who = "nobody answered before the deadline" if r["timed_out"] else f"{r.get('by')} rejected it"
        return f"{v} was not promoted: {who}.{now}"
    return f"{v} is not serving.{served}{now}"


# --- the report -------------------------------------------------------------------------------


def render_text(
    events: list[dict],
    *,
    model: str,
    version: str | None,
    verdict: dict | None = None,
    notes: Iterable[str] = (),
    footer: Iterable[str] = (),
    width: int = 118,
) -> str:
    """A timeline for a terminal: one event per block, time (UTC), step, version, what happened, link."""
    what = f"{model} v{version}" if version else f"{model} (every run and version)"
    lines = [
        f"Audit trail of {what}",
        "=" * min(width, 78),
        f"Times in UTC; sources: MLflow ({get_settings().mlflow_tracking_uri}) and Airflow.",
        *notes,
        "",
    ]
    if not events:
        lines.append("No lifecycle events recorded yet.")
    for e in events:
        at = (e["at"] or "").replace("T", " ")[:19] or "time not recorded".ljust(19)
        head = f"{at}  {e['kind']:<12} {('v' + e['version']) if e['version'] else '-':<4}  "
        indent = " " * len(head)
        lines += textwrap.wrap(
            e["summary"],
            width=width,
            initial_indent=head,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        ) or [head]
        if e.get("link"):
            lines.append(indent + e["link"])
    if verdict:
        lines += ["", *render_verdict(verdict, width=width)]
    footer = list(footer)
    if footer:
        lines += ["", *footer]
    return "\n".join(lines) + "\n"


def render_verdict(v: dict, *, width: int = 118) -> list[str]:
    """The closing block of a version's audit: where it is and on what evidence."""

    def row(label: str, text: str | None) -> list[str]:
        return (
            textwrap.wrap(
                text or "not recorded",
                width=width,
                initial_indent=f"  {label:<17} ",
                subsequent_indent=" " * 20,
                break_on_hyphens=False,
                break_long_words=False,
            )
            or []
        )

    approvals = [
        f"#{r['index']} {str(r.get('decision') or 'no decision recorded').upper()} by "
        f"{r.get('by') or 'an unrecorded approver'} at {_iso(r.get('at')) or 'an unrecorded time'}"
        + (f" (policy {r['policy']})" if r.get("policy") else "")
        + (" [timed out]" if r["timed_out"] else "")
        + (f': "{r["comment"]}"' if r.get("comment") else "")
        for r in v["approvals"]
    ]
    out = [f"Verdict: {v['model']} v{v['version']}", "-" * min(width, 78)]
    out += row("Status", v["status"])
    registry = ", ".join(f"{a}=v{n}" for a, n in sorted(v["all_aliases"].items())) or "none"
    out += row("Aliases", f"{', '.join(v['aliases']) or 'none'}   (registry now: {registry})")
    out += row("Registered by", v["registered_by"] or "the training DAG")
    out += row(
        "Gate",
        f"{v['gate']['status']}: {v['gate']['summary'] or 'no summary recorded'}"
        if v["gate"]["status"]
        else "no gate decision recorded",
    )
    if v["skipped"]:
        out += row("Skipped", v["skipped"])
    out += row(
        "Approvals",
        f"{len(v['approvers'])} of {v['approvals_required']} required "
        + (
            f"(risk tier {v['risk_tier']})"
            if v["risk_tier"]
            else "(no risk tier recorded: one approval assumed)"
        ),
    )
    for a in approvals:
        out += row("", a)
    out += row(
        "Evidence",
        "complete: gate passed, model card, approval(s), smoke-serve"
        if v["evidence_complete"]
        else "INCOMPLETE for promotion, lacks " + "; ".join(v["evidence_missing"]),
    )
    out += row("Smoke-serve", v["smoke"])
    out += row("Rollout", v["rollout"] or "never rolled out")
    out += row("Model card", v["model_card"])
    out += row(
        "Data",
        (
            f"fingerprint {v['data_fingerprint']}"
            if v["data_fingerprint"]
            else "no data fingerprint recorded"
            + (f" (registered by {v['registered_by']})" if v["registered_by"] else "")
        )
        + (f" of {v['data_path']}" if v["data_path"] else "")
        + (f"; {v['validation']}" if v["validation"] else "")
        + (f"; split {v['split']}" if v["split"] else ""),
    )
    out += row("Git commit", v["git_commit"])
    out += row("Spec hash", v["spec_hash"])
    if v["dag_id"] or v["dag_run_id"]:
        out += row(
            "DAG run",
            f"{v['dag_id'] or 'DAG not recorded'} / {v['dag_run_id'] or 'run not recorded'}"
            + (f" ({v['dag_run_state']})" if v["dag_run_state"] else "")
            + (f', reason "{v["dag_run_reason"]}"' if v["dag_run_reason"] else ""),
        )
        if v["dag_run_url"]:
            out += row("", v["dag_run_url"])
    else:
        out += row("DAG run", "none: no training DAG run registered it")
    out += row("MLflow run", v["mlflow_run_url"])
    out += row("Model version", v["version_url"])
    if v["bento_tag"]:
        out += row("Bento", f"{v['bento_tag']} ({'deployable' if v['deployable'] else 'not deployable'})")
    return out


def report(model: str, version: str | None = None, *, airflow_env: dict[str, str] | None = None) -> str:
    """The whole audit as text: the timeline and, for a version, the verdict.

    Args:
        model: the model.
        version: one version, or None for the model's whole history.
        airflow_env: the stack's environment for the ``airflow`` CLI; None leaves Airflow out.

    Raises:
        AuditError: no such model or version.
    """
    rec = _Records(model)
    version = None if version is None else str(version)
    notes: list[str] = []
    dag_runs: dict[str, dict] = {}
    if version is not None:
        mv = rec.version(version)  # fail fast, before asking Airflow
        conf_for: list[str] | None = (
            [mv.tags[tracking.TAG_DAG_RUN]] if mv.tags.get(tracking.TAG_DAG_RUN) else []
        )
    else:
        conf_for = None
    if airflow_env is not None:
        dag_runs, notes = read_dag_runs(rec.dag_ids(), airflow_env, conf_for=conf_for)
    else:
        notes.append("Airflow: not consulted; showing MLflow records only.")
    events = _collect(rec, version, dag_runs)
    if version is not None:
        return render_text(
            events, model=model, version=version, verdict=_verdict(rec, version, dag_runs), notes=notes
        )
    return render_text(events, model=model, version=None, notes=notes, footer=_model_footer(rec, dag_runs))


def _model_footer(rec: _Records, dag_runs: dict[str, dict]) -> list[str]:
    """Where the model stands now: aliases, what became of each version, DAG-run outcomes."""
    from include.modelops.governance.approvals import records as approval_records

    aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(rec.aliases.items())) or "none"
    fates = []
    for v in sorted(rec.versions, key=int):
        tags = rec.versions[v].tags or {}
        held = sorted(a for a, n in rec.aliases.items() if n == v)
        rejected = [r for r in approval_records(rec.model, v, tags) if r.get("decision") != "approved"]
        if held:
            fate = "/".join(held)
        elif tags.get(TAG_GATE_STATUS) not in (None, "passed"):
            fate = "rejected at the gate"
        elif rejected:
            fate = "timed out" if rejected[-1]["timed_out"] else f"rejected by {rejected[-1].get('by')}"
        elif tags.get(f"modelops.alias.{tracking.CHAMPION}.set_at"):
            fate = "served, since replaced"
        elif tags.get(TAG_ROLLED_BACK_AT):
            fate = "rolled back"
        else:
            fate = "not promoted"
        fates.append(f"v{v} {fate}" + (" (fault-injected copy)" if tags.get(TAG_FAULT) else ""))
    stopped = sum(1 for r in rec.runs.values() if r.data.tags.get(TAG_VALIDATION_STATUS) == "failed")
    watched = [r for r in rec.runs.values() if r.data.tags.get(TAG_KIND) == "monitoring"]
    faulty = [r for r in rec.runs.values() if r.data.tags.get(TAG_FAULT)]
    rollouts = [line for v in sorted(rec.versions, key=int) if (line := _rollout_summary(rec, v))]
    requested = sum(1 for r in watched if r.data.tags.get("modelops.monitoring.outcome") == "retrain")
    monitoring = f"; {len(watched)} monitoring window(s), {requested} retrain request(s)" if watched else ""
    states: dict[str, int] = {}
    for r in dag_runs.values():
        states[str(r.get("state"))] = states.get(str(r.get("state")), 0) + 1
    out = [
        f"Now: {rec.model}",
        "-" * 78,
        f"  {'Aliases':<17} {aliases}",
        f"  {'Versions':<17} {'; '.join(fates) or 'none'}",
        f"  {'Training runs':<17} {len(rec.runs) - len(watched) - len(faulty)}, of which {stopped} stopped at "
        f"data validation"
        + monitoring
        + (f"; {len(faulty)} fault-injected candidate run(s) (make demo-bad-canary)" if faulty else ""),
        f"  {'Rollout runs':<17} "
        + (f"{len(rollouts)}: " + "; ".join(rollouts) if rollouts else "none recorded"),
    ]
    if dag_runs:
        out.append(
            f"  {'Airflow DAG runs':<17} {len(dag_runs)}: "
            + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        )
    out.append(f"  {'Ask about one':<17} make audit MODEL={rec.model} VERSION=<n>")
    return out


__all__ = [
    "KINDS",
    "AuditError",
    "collect_events",
    "dag_run_url",
    "read_dag_runs",
    "render_text",
    "render_verdict",
    "report",
    "verdict",
]
