"""The rollout's stages, one function per task of the ``<model>_rollout`` DAG.

``prepare`` puts the champion (stable) and the candidate (canary, no traffic yet) behind the
model's endpoint, or deploys a first model at 100% after a health check. ``check_stage`` is
the body of a stage sensor: the first call moves the canary to the stage's share, every call
checks that both processes answer and runs the analysis over the stage's window; it says
``done`` (passed with enough requests), ``wait``, or raises :class:`RolloutFailed`.
``promote`` and ``rollback`` end it and keep the registry in step with the traffic.

Progress lives in ``<state>/rollout/<model>/v<version>.json`` (the rollout record): a stage
already entered is never entered again, so a retried or rescheduled task resumes without
moving traffic twice.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from include.modelops.platform import http, tracking
from include.modelops.platform.tags import (
    TAG_BENTO_TAG,
    TAG_DEPLOYABLE,
    TAG_PROMOTED_AT,
    TAG_ROLLED_BACK,
    TAG_ROLLED_BACK_AT,
    TAG_ROLLOUT_STAGE,
    TAG_ROLLOUT_STATUS,
    TAG_ROLLOUT_SUMMARY,
)
from include.modelops.rollout import analysis as a
from include.modelops.rollout import backend_for, contracts, history
from include.modelops.rollout.backend import CANARY, STABLE, TrafficBackend, state_dir
from include.modelops.rollout.record import older_than_champion, read_record, utc_now, write_record
from include.modelops.spec import ModelSpec, Rollout, load_spec_by_name

log = logging.getLogger(__name__)

TAG_STATUS = TAG_ROLLOUT_STATUS  # running | promoted | rolled_back
TAG_STAGE = TAG_ROLLOUT_STAGE


class RolloutFailed(Exception):
    """The candidate failed a stage (analysis, a dead canary, inconclusive, or an abort): roll back."""


# --- the record ----------------------------------------------------------------------------


def rollout_of(spec: ModelSpec) -> Rollout:
    """The spec's rollout section; RolloutFailed when it has none (its training DAG promotes directly)."""
    if spec.rollout is None:
        raise RolloutFailed(
            f"{spec.name} has no rollout section in its spec: its training DAG promotes directly"
        )
    return spec.rollout


def stage_names(spec: ModelSpec) -> list[str]:
    """Task ids of the stages, in order (``canary_5``, ``canary_25``, ...)."""
    return [f"canary_{s.traffic_percent}" for s in rollout_of(spec).steps]


# --- prepare ----------------------------------------------------------------------------


def resolve_version(model: str, version: str | None, *, allow_older: bool = False) -> str:
    """The version to roll out: the one asked for, else the ``challenger``.

    A version older than the champion is refused (RolloutFailed) unless ``allow_older``: rolling
    one out by hand is a deliberate downgrade, never an accident of a stale trigger.
    """
    if not version:
        version = tracking.alias_version(model, tracking.CHALLENGER)
        if version is None:
            raise RolloutFailed(f"{model} has no challenger to roll out; trigger with the version as a param")
    version = str(version)
    champion = tracking.alias_version(model, tracking.CHAMPION)
    if not allow_older and champion != version and older_than_champion(version, champion):
        raise RolloutFailed(
            f"{model} v{version} is older than the champion v{champion}: refused. To roll back "
            f"to it on purpose, trigger {model}_rollout with the params version={version} "
            "and allow_older=true"
        )
    return version


def bento_of(model: str, version: str) -> str:
    tags = tracking.version_info(model, version)["tags"]
    if tags.get(TAG_DEPLOYABLE) != "true" or not tags.get(TAG_BENTO_TAG):
        raise RolloutFailed(
            f"{model} v{version} is not deployable (no bento passed smoke-serving); "
            "only a version the training DAG packaged and smoke-served can be rolled out"
        )
    return tags[TAG_BENTO_TAG]


def health_check(spec: ModelSpec, url: str) -> dict[str, Any]:
    """One example request through the endpoint; raises RolloutFailed unless it is answered."""
    from include.modelops.serving.contract import example_row

    try:
        reply = http.request("POST", f"{url}/predict", json={"rows": [example_row(spec)]}, timeout=30)
    except http.Unreachable as exc:
        raise RolloutFailed(f"health check: {url}/predict did not answer an example request: {exc}") from exc
    if not reply.ok:
        raise RolloutFailed(
            f"health check: {url}/predict did not answer an example request: HTTP {reply.status}: {reply.text[:300]}"
        )
    answer = json.loads(reply.text)
    return {"url": url, "answer": answer}


def prepare(
    model: str,
    version: str | None,
    *,
    dag_run_id: str,
    backend: TrafficBackend | None = None,
    allow_older: bool = False,
) -> contracts.Prepared:
    """Stable (the champion) and canary (no traffic) behind the endpoint; a first model goes straight to 100%.

    A version older than the champion is refused unless ``allow_older`` (see :func:`resolve_version`).
    """
    from include.modelops.rollout import pending

    spec = load_spec_by_name(model)
    if pending.drain(model):  # an earlier rollback's registry writes come first
        raise RolloutFailed(
            f"{model}: registry writes of an earlier rollback are still pending (MLflow does not "
            f"answer); see {state_dir(model)}"
        )
    version = resolve_version(model, version, allow_older=allow_older)
    bento = bento_of(model, version)
    backend = backend or backend_for(model, rollout_of(spec).backend)
    champion = tracking.alias_version(model, tracking.CHAMPION)
    record = read_record(model, version)
    if record.get("status") in ("promoted", "rolled_back") and record.get("dag_run_id") != dag_run_id:
        record = {}  # an earlier rollout of the same version ended; this is a new one
    if champion == version:
        raise RolloutFailed(f"{model} v{version} is already the champion; nothing to roll out")
    if champion is None:
        backend.deploy(STABLE, version, bento)
        check = health_check(spec, backend.endpoint())
        log.info(
            "%s v%s is the first version: deployed at 100%% after a health check (%s); there is no "
            "stable version to compare against",
            model,
            version,
            check["answer"],
        )
        record.update(
            model=model,
            version=version,
            stable_version=None,
            first_deployment=True,
            dag_run_id=dag_run_id,
            status="running",
            started_at=utc_now().isoformat(),
            stages=[],
        )
    else:
        backend.deploy(STABLE, champion, bento_of(model, champion))
        backend.deploy(CANARY, version, bento)
        record.setdefault("stages", [])
        record.update(
            model=model,
            version=version,
            stable_version=champion,
            first_deployment=False,
            dag_run_id=dag_run_id,
            status="running",
        )
        record.setdefault("started_at", utc_now().isoformat())
        log.info(
            "%s: stable v%s and canary v%s (no traffic yet) behind %s",
            model,
            champion,
            version,
            backend.endpoint(),
        )
    write_record(model, version, record)
    tracking.set_version_tags(model, version, {TAG_STATUS: "running"})
    return {
        "version": version,
        "stable_version": record["stable_version"],
        "endpoint": backend.endpoint(),
        "first_deployment": record["first_deployment"],
        "bento_tag": bento,
    }


# --- stages ------------------------------------------------------------------------------


def _window_dict(w: a.MetricsWindow) -> dict[str, Any]:
    return {
        "requests_by_status": w.requests_by_status,
        "latency_buckets": {str(k): v for k, v in w.latency_buckets.items()},
    }


def _window_of(d: dict[str, Any]) -> a.MetricsWindow:
    return a.MetricsWindow(
        {k: float(v) for k, v in d["requests_by_status"].items()},
        {float(k): float(v) for k, v in d["latency_buckets"].items()},
    )


def _scrape(backend: TrafficBackend, variant: str, version: str) -> a.MetricsWindow:
    return a.parse_service_metrics(backend.metrics_text(variant), variant=variant, version=version)


def _scores(spec: ModelSpec, version: str, variant: str, start: str, end: str | None = None) -> Any:
    from include.modelops.serving.inference_log import read_window

    frame = read_window(
        spec.name,
        version=version,
        variant=variant,
        start=datetime.fromisoformat(start),
        end=datetime.fromisoformat(end) if end else None,
    )
    return a.scores_of(spec.task.value, frame)


def _enter(spec: ModelSpec, record: dict, index: int, backend: TrafficBackend) -> dict:
    step = rollout_of(spec).steps[index]
    stages = record["stages"]
    if index < len(stages):
        return stages[index]  # entered before this retry or reschedule: never move traffic twice
    if index != len(stages):
        raise RuntimeError(
            f"stage {index} entered before stage {len(stages)}; the rollout record is inconsistent"
        )
    version, stable_version = record["version"], record["stable_version"]
    baseline = {CANARY: _window_dict(_scrape(backend, CANARY, version))}
    if step.traffic_percent < 100:
        baseline[STABLE] = _window_dict(_scrape(backend, STABLE, stable_version))
    backend.set_canary_percent(step.traffic_percent)
    stage = {
        "name": stage_names(spec)[index],
        "traffic_percent": step.traffic_percent,
        "started_at": utc_now().isoformat(),
        "baseline": baseline,
        "outcome": "running",
    }
    stages.append(stage)
    write_record(spec.name, version, record)
    log.info(
        "Stage %s: the canary v%s now answers %d%% of requests (stable v%s the rest)",
        stage["name"],
        version,
        step.traffic_percent,
        stable_version,
    )
    return stage


def _stage_event(
    spec: ModelSpec, version: str, index: int, stage: dict, result: a.Analysis | None, reason: str
) -> None:
    event = {
        "at": tracking.now_iso(),
        "stage": stage["name"],
        "traffic_percent": stage["traffic_percent"],
        "outcome": stage["outcome"],
        "reason": reason[:1500],
    }
    tracking.set_version_tags(spec.name, version, {f"{TAG_STAGE}{index:02d}": json.dumps(event)})
    if result is not None:
        run_id = tracking.version_info(spec.name, version)["run_id"]
        if run_id:
            tracking.log_json(
                run_id,
                {**result.to_dict(), "stage": stage["name"], "table": a.render_table(result)},
                f"rollout/{stage['name']}.json",
            )


def check_stage(
    model: str, version: str, index: int, *, backend: TrafficBackend | None = None
) -> contracts.StageResult:
    """One poke of stage ``index``: enter it once, check health, analyse the window.

    Returns:
        ``{"done": True, ...}`` when the stage passed, ``{"done": False, ...}`` to wait.

    Raises:
        RolloutFailed: The canary died or stopped answering, an analysis failed, or the stage was
            still inconclusive at its ``max_wait_s``. The reason is in the rollout record.
    """
    spec = load_spec_by_name(model)
    record = read_record(model, version)
    if record.get("first_deployment"):
        log.info(
            "Stage %s: nothing to compare against (first deployment, already at 100%%)",
            stage_names(spec)[index],
        )
        return {"done": True, "first_deployment": True}
    backend = backend or backend_for(model, rollout_of(spec).backend)
    step = rollout_of(spec).steps[index]
    stage = _enter(spec, record, index, backend)
    if stage["outcome"] == "passed":
        return {"done": True, "analysis": stage.get("analysis")}

    def fail(reason: str, result: a.Analysis | None = None) -> None:
        stage.update(
            outcome="failed",
            ended_at=utc_now().isoformat(),
            reason=reason,
            analysis=result.to_dict() if result else None,
        )
        record["failure"] = {"stage": stage["name"], "reason": reason}
        write_record(model, version, record)
        _stage_event(spec, version, index, stage, result, reason)
        raise RolloutFailed(f"stage {stage['name']} failed: {reason}")

    _check_router(backend, record, stage, fail)
    health = backend.health(CANARY)
    if not health.ok:
        fail(f"the canary process died or stopped answering ({health.detail})")

    now = utc_now()
    canary_window = a.metrics_window(_window_of(stage["baseline"][CANARY]), _scrape(backend, CANARY, version))
    canary_scores = _scores(spec, version, CANARY, stage["started_at"])
    if STABLE in stage["baseline"]:
        stable_window = a.metrics_window(
            _window_of(stage["baseline"][STABLE]), _scrape(backend, STABLE, record["stable_version"])
        )
        stable_scores = _scores(spec, record["stable_version"], STABLE, stage["started_at"])
        reference = {
            "window": _window_dict(stable_window),
            "start": stage["started_at"],
            "end": now.isoformat(),
        }
    else:  # at 100% stable answers nothing: its window of the previous stage is the reference
        reference = next(
            (s["reference"] for s in reversed(record["stages"][:index]) if s.get("reference")), None
        )
        if reference is None:
            fail("no stable window to compare with (a 100% step needs an earlier step)")
        stable_window = _window_of(reference["window"])
        stable_scores = _scores(spec, record["stable_version"], STABLE, reference["start"], reference["end"])
    result = a.analyse(
        rollout_of(spec).analysis,
        canary=canary_window,
        stable=stable_window,
        canary_scores=canary_scores,
        stable_scores=stable_scores,
        min_requests=rollout_of(spec).step_min_requests(step),
    )
    elapsed = (now - datetime.fromisoformat(stage["started_at"])).total_seconds()
    title = f"{model} v{version} stage {stage['name']} after {elapsed:.0f} s"
    if result.verdict == a.FAIL:
        log.info("%s", a.render_table(result, title=title))
        fail(result.reason(), result)
    if result.verdict == a.INCONCLUSIVE:
        if elapsed >= rollout_of(spec).step_max_wait_s(step):
            log.info("%s", a.render_table(result, title=title))
            fail(
                f"inconclusive after {elapsed:.0f} s (max_wait_s {rollout_of(spec).step_max_wait_s(step):g}): "
                f"{result.reason()}",
                result,
            )
        log.info(
            "%s: waiting (%d canary requests of %d; %s)",
            title,
            result.canary_requests,
            rollout_of(spec).step_min_requests(step),
            result.reason(),
        )
        return {"done": False, "canary_requests": result.canary_requests}
    log.info("%s", a.render_table(result, title=title))
    stage.update(outcome="passed", ended_at=now.isoformat(), analysis=result.to_dict(), reference=reference)
    write_record(model, version, record)
    _stage_event(spec, version, index, stage, result, result.reason())
    return {
        "done": True,
        "stage": stage["name"],
        "verdict": result.verdict,
        "canary_requests": result.canary_requests,
    }


# A stage survives this many restarts of the traffic splitter; one more is a crash loop, not bad luck.
MAX_ROUTER_RESTARTS_PER_STAGE = 2


def _check_router(backend: TrafficBackend, record: dict, stage: dict, fail: Any) -> None:
    """Every poke sends a request through the model's endpoint: clients only ever see that path.

    A splitter the supervisor restarted since the stage began is recorded in the stage (restarts,
    last outage) but does not fail it: both variants lost the same requests, so the comparison
    stands. The stage fails when the endpoint does not answer now, or after more than
    :data:`MAX_ROUTER_RESTARTS_PER_STAGE` restarts.
    """
    router = backend.router_health()
    seen = stage.get("router")
    if seen is None:
        seen = stage["router"] = {"restarts_at_start": router.restarts, "restarts": 0}
        write_record(record["model"], record["version"], record)
    since = router.restarts - seen["restarts_at_start"]
    if since != seen.get("restarts"):
        seen.update(
            restarts=since, last_restart_at=router.last_restart_at, last_outage_s=router.last_outage_s
        )
        write_record(record["model"], record["version"], record)
        log.warning(
            "Stage %s: the traffic splitter was restarted %d time(s) since the stage began (last outage "
            "%s s)",
            stage["name"],
            since,
            router.last_outage_s,
        )
    if not router.ok:
        fail(
            f"the traffic splitter did not answer through the model's endpoint ({router.detail}); "
            f"{since} restart(s) since the stage began"
        )
    if since > MAX_ROUTER_RESTARTS_PER_STAGE:
        fail(
            f"the traffic splitter was restarted {since} times since the stage began (more than "
            f"{MAX_ROUTER_RESTARTS_PER_STAGE}): it is crash-looping"
        )


# --- the end ------------------------------------------------------------------------------


def promote(model: str, version: str, *, backend: TrafficBackend | None = None) -> contracts.RolloutPromoted:
    """Every stage passed: the candidate becomes stable at 100% and ``champion``; the old one ``previous``."""
    spec = load_spec_by_name(model)
    record = read_record(model, version)
    backend = backend or backend_for(model, rollout_of(spec).backend)
    if not record.get("first_deployment"):
        backend.promote_canary()
    aliases = tracking.promote_to_champion(model, version)
    challenger = tracking.alias_version(model, tracking.CHALLENGER)
    if challenger == version:
        tracking.client().delete_registered_model_alias(model, tracking.CHALLENGER)
    note = (
        "first deployment: deployed at 100% after a health check; there was nothing to compare against"
        if record.get("first_deployment")
        else f"every stage passed ({', '.join(stage_names(spec))})"
    )
    tracking.set_version_tags(
        model,
        version,
        {TAG_STATUS: "promoted", TAG_PROMOTED_AT: tracking.now_iso(), TAG_ROLLOUT_SUMMARY: note},
    )
    record.update(status="promoted", ended_at=utc_now().isoformat(), summary=note)
    write_record(model, version, record)
    log.info("%s v%s promoted: champion (previous: v%s); %s", model, version, aliases.get("previous"), note)
    card = _deployment_event(model, version, history.PROMOTED, record, note)
    return {
        "version": version,
        "champion": version,
        "previous": aliases.get("previous"),
        "summary": note,
        "endpoint": backend.endpoint(),
        "model_card": card,
    }


def rollback(
    model: str, version: str, *, reason: str | None = None, backend: TrafficBackend | None = None
) -> contracts.RolledBack:
    """Take the candidate out: 100% to stable at once, canary stopped, then the registry as before the rollout.

    Traffic moves first, before any MLflow call: a registry that does not answer cannot keep clients
    on a failing candidate. The registry writes (``challenger`` removed, ``rolled_back`` tags, the
    deployment event and model card) are then tried once, quickly; if MLflow does not answer they
    stay in a pending file (:mod:`include.modelops.rollout.pending`) that a detached process retries
    until they land, and the record says ``registry_pending: true`` meanwhile.
    """
    from include.modelops.rollout import pending

    spec = load_spec_by_name(model)
    record = read_record(model, version)
    if _is_champion(model, version, record):
        log.info("%s v%s is the champion (the rollout did not start); nothing to roll back", model, version)
        return {"version": version, "rolled_back": False, "reason": "the version is the champion"}
    backend = backend or backend_for(model, rollout_of(spec).backend)
    _note_abort_of_running_stage(record)
    reason = (
        reason
        or (record.get("failure") or {}).get("reason")
        or ("aborted" if record.get("stages") else "the rollout could not start (see prepare_rollout's log)")
    )
    started = time.perf_counter()
    if record.get("first_deployment"):
        backend.stop(STABLE)  # nothing served before: the endpoint answers 503 again
    else:
        backend.set_canary_percent(0)
        backend.stop(CANARY)
    moved_s = time.perf_counter() - started
    log.info(
        "%s v%s rolled back in %.2f s (traffic 100%% on stable v%s): %s",
        model,
        version,
        moved_s,
        record.get("stable_version"),
        reason,
    )
    stage = (record.get("failure") or {}).get("stage")
    full_reason = (f"{stage}: " if stage else "") + reason
    record.update(
        model=model,
        version=version,
        status="rolled_back",
        ended_at=utc_now().isoformat(),
        reason=reason,
        traffic_moved_s=round(moved_s, 3),
        registry_pending=True,
    )
    write_record(model, version, record)
    writes = [
        {"op": "delete_alias_if", "alias": tracking.CHALLENGER},
        {
            "op": "tags",
            "tags": {
                TAG_STATUS: "rolled_back",
                TAG_ROLLED_BACK: full_reason[:4000],
                TAG_ROLLED_BACK_AT: tracking.now_iso(),
            },
        },
        {
            "op": "deployment_event",
            "event": history.ROLLED_BACK,
            "stages": history.stages_of(record),
            "reason": full_reason,
            "dag_run_id": record.get("dag_run_id"),
        },
    ]
    path = pending.save(model, version, writes, record_update={})
    left = pending.drain(model)
    record = read_record(model, version)
    if left:
        pid = pending.start_retry_process(model)
        record["registry_retry_pid"] = pid
        write_record(model, version, record)
        log.warning(
            "%s v%s: traffic is back on stable, but MLflow did not answer: the registry writes (challenger "
            "alias removal, rolled_back tags, deployment event, model card) are PENDING in %s and will be "
            "retried until they land (retry process pid %s, log %s; the next rollout or rollback of %s "
            "retries them too)",
            model,
            version,
            path,
            pid,
            path.parent / "logs" / "registry-retry.log",
            model,
        )
    return {
        "version": version,
        "rolled_back": True,
        "reason": reason,
        "stage": stage,
        "champion": record.get("stable_version"),
        "model_card": record.get("model_card"),
        "registry_pending": bool(left),
        "traffic_moved_s": round(moved_s, 3),
    }


def _is_champion(model: str, version: str, record: dict) -> bool:
    """Is ``version`` the champion? The rollout record says so when there is one; else ask MLflow (quickly)."""
    from include.modelops.rollout import pending

    if record:
        return record.get("status") == "promoted" or record.get("stable_version") == str(version)
    try:
        with pending.quick_mlflow():
            return tracking.alias_version(model, tracking.CHAMPION) == str(version)
    except Exception as exc:  # MLflow down and no record: the rollout never got far; take out what runs
        log.warning(
            "%s: MLflow did not answer (%s); rolling back v%s from the deployment state alone",
            model,
            exc,
            version,
        )
        return False


def _note_abort_of_running_stage(record: dict) -> None:
    """A stage still baking with no verdict was stopped from outside (its task marked failed): say so."""
    ran = ([record["shadow"]] if record.get("shadow") else []) + record.get("stages", [])
    running = next((s for s in ran if s.get("outcome") == "running"), None)
    if running is None or record.get("failure"):
        return
    reason = (
        f"aborted while {running['name']} baked: its task was marked failed (by a person in the UI or "
        "the REST API, or it failed without a verdict: see its log)"
    )
    running.update(outcome="aborted", ended_at=utc_now().isoformat(), reason=reason)
    record["failure"] = {"stage": running["name"], "reason": reason}


def outcome(model: str, version: str | None) -> contracts.RolloutOutcome:
    """How the rollout of ``version`` ended, in one sentence for the run's last task."""
    record = read_record(model, version) if version else {}
    status = record.get("status") or "not started"
    ran = ([record["shadow"]] if record.get("shadow") else []) + record.get("stages", [])
    if status == "promoted":
        message = f"{model} v{version} promoted to champion: {record.get('summary')}"
    elif status == "rolled_back":
        stage = (record.get("failure") or {}).get("stage")
        message = (
            f"{model} v{version} rolled back"
            + (f" at {stage}" if stage else "")
            + f": {record.get('reason')}. Stable v{record.get('stable_version')} serves 100%, "
            + (
                "the registry writes are pending (MLflow did not answer) and are retried until they land."
                if record.get("registry_pending")
                else "the registry is as before the rollout."
            )
        )
    else:
        message = f"{model}: the rollout of v{version} did not complete ({status}); see prepare_rollout's log"
    log.info("%s", message)
    return {
        "model": model,
        "version": version,
        "status": status,
        "message": message,
        "stages": [{k: s.get(k) for k in ("name", "traffic_percent", "outcome", "reason")} for s in ran],
    }


def restore_previous(
    model: str,
    *,
    reason: str | None = None,
    backend: TrafficBackend | None = None,
    dag_run_id: str | None = None,
) -> contracts.Restored:
    """Take back a completed promotion: ``previous`` serves 100% again and the aliases swap back.

    The version that was champion gets ``previous`` (it can be rolled forward again) and is tagged
    ``rolled_back`` with the reason.
    """
    spec = load_spec_by_name(model)
    champion = tracking.alias_version(model, tracking.CHAMPION)
    previous = tracking.alias_version(model, tracking.PREVIOUS)
    if previous is None or champion is None:
        raise RolloutFailed(
            f"{model} has no previous version to go back to (champion v{champion}, previous "
            f"{'v' + previous if previous else 'none'})"
        )
    backend = backend or backend_for(model, rollout_of(spec).backend)
    if backend.state().variants.get(CANARY) is not None:
        backend.stop(CANARY)
    started = time.perf_counter()
    backend.deploy(
        STABLE, previous, bento_of(model, previous)
    )  # the new stable takes 100%, then the old stops
    reason = reason or "rolled back by request"
    tracking.set_alias(model, tracking.CHAMPION, previous)
    tracking.set_alias(model, tracking.PREVIOUS, champion)
    tracking.set_version_tags(
        model,
        champion,
        {TAG_STATUS: "rolled_back", TAG_ROLLED_BACK: reason[:4000], TAG_ROLLED_BACK_AT: tracking.now_iso()},
    )
    tracking.set_version_tags(model, previous, {TAG_PROMOTED_AT: tracking.now_iso()})
    log.info(
        "%s: v%s serves 100%% again (%.1f s); v%s rolled back: %s",
        model,
        previous,
        time.perf_counter() - started,
        champion,
        reason,
    )
    full = [{"name": STABLE, "traffic_percent": 100, "outcome": "serving"}]
    cards = {
        champion: _deployment_event(
            model,
            champion,
            history.TAKEN_BACK,
            {"dag_run_id": dag_run_id},
            f"{reason}; v{previous} serves 100% again",
            stages=[],
        ),
        previous: _deployment_event(
            model,
            previous,
            history.RESTORED,
            {"dag_run_id": dag_run_id},
            f"v{champion} was taken back: {reason}",
            stages=full,
        ),
    }
    return {
        "champion": previous,
        "previous": champion,
        "rolled_back": champion,
        "reason": reason,
        "endpoint": backend.endpoint(),
        "model_cards": cards,
    }


def _deployment_event(
    model: str, version: str, event: str, record: dict, reason: str, *, stages: list[dict] | None = None
) -> str | None:
    """Add the event to the version's deployment history and regenerate its model card (its URI)."""
    history.record_event(
        model,
        version,
        event,
        stages=history.stages_of(record) if stages is None else stages,
        reason=reason,
        dag_run_id=record.get("dag_run_id"),
    )
    return history.refresh_model_card(model, version)
