"""The rollout's shadow stage: the candidate answers copies of live requests, and nobody sees its answers.

Before the first canary step, the candidate runs as the canary with 0% of the endpoint's traffic.
Each poke of the ``shadow`` sensor (:func:`check_shadow`):

1. reads the requests stable answered since the stage began from the inference log (their
   rows, features and ``X-Request-ID``), and replays the ones not yet copied to the canary's own
   port with the same request id and the header ``X-ModelOps-Shadow``; the canary logs its
   answers to them with the variant ``shadow`` and the replay discards them;
2. pairs stable's rows with the candidate's (same request id and row index) and judges them
   (:func:`include.modelops.rollout.analysis.analyse_shadow`): how often they disagree, how far
   apart their scores are, how many copies the candidate failed to answer.

Why a replay and not a mirror in front of the services: Caddy has no request mirroring, and a
copy made in the serving path would put the candidate's work (and its failures) on every live
request. Replaying from the inference log leaves the serving path as it is: clients only ever
reach stable, the candidate's answers go nowhere but its log, and a slow or broken candidate
slows nothing but this sensor. The price is delay (a request is copied a poke after stable
answered it) and the copies arrive in bursts, so the shadow stage judges what the candidate
answers, not its latency under live load; the canary steps that follow judge that.

The canary's metrics count the copies under its own label; every canary step takes its metrics
baseline when it begins, after the shadow stage, and reads only ``canary`` rows from the log,
so copies are never counted in a canary step's analysis. The model's endpoint strips
``X-ModelOps-Shadow`` from client requests (see :func:`include.modelops.rollout.local.splitter_config`).

Progress (which requests were copied, and the candidate's answer status) lives in the rollout
record under ``shadow``, so a retried or rescheduled poke never copies a request twice.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from include.modelops.platform import http, tracking
from include.modelops.rollout import analysis as a
from include.modelops.rollout import backend_for, contracts, stages
from include.modelops.rollout.backend import CANARY, STABLE, TrafficBackend
from include.modelops.rollout.record import read_record, utc_now, write_record
from include.modelops.serving.contract import REQUEST_ID_HEADER, SHADOW_HEADER
from include.modelops.settings import shadow_token
from include.modelops.spec import FeatureType, ModelSpec, load_spec_by_name

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SHADOW = "shadow"  # the stage's task id, and the variant its copies are logged as
# A copy answered 200 whose rows are not in the log yet may still be on its way (the service
# writes its log every second); after this long it counts as lost and another request is copied.
LOG_GRACE_S = 10.0
REPLAY_TIMEOUT_S = 10.0
# One poke copies for at most this long, so a slow candidate never holds the sensor for minutes.
REPLAY_BUDGET_S = 30.0
# At most this many copies per requested pair: a candidate whose answers never reach the log is
# inconclusive (rolled back at max_wait_s), not copied without end.
MAX_COPIES_PER_PAIR = 3


# --- the copies ---------------------------------------------------------------------------


def _value(feature_type: FeatureType, value: Any) -> Any:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if feature_type == FeatureType.integer:
        return int(value)
    if feature_type == FeatureType.numeric:
        return float(value)
    if feature_type == FeatureType.boolean:
        return bool(value)
    return str(value)


def request_bodies(spec: ModelSpec, rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The ``/predict`` body of each request in inference-log rows, by request id, in log order.

    The rows' ``feature.<name>`` columns become the request rows again (row order by
    ``row_index``); the entity ids go along when the request had them.
    """
    from include.modelops.serving.inference_log import FEATURE_PREFIX

    if rows.empty:
        return {}
    bodies: dict[str, dict[str, Any]] = {}
    for request_id, group in rows.groupby("request_id", sort=False):
        group = group.drop_duplicates("row_index", keep="last").sort_values("row_index")
        body: dict[str, Any] = {
            "rows": [
                {f.name: _value(f.type, rec.get(FEATURE_PREFIX + f.name)) for f in spec.features}
                for rec in group.to_dict(orient="records")
            ]
        }
        ids = group["entity_id"].tolist() if "entity_id" in group else []
        if ids and all(i is not None and i == i for i in ids):
            body["entity_ids"] = [str(i) for i in ids]
        bodies[str(request_id)] = body
    return bodies


def replay(
    url: str,
    request_id: str,
    body: dict[str, Any],
    *,
    timeout_s: float = REPLAY_TIMEOUT_S,
    token: str | None = None,
) -> int:
    """Send one copy to ``url``'s ``/predict`` as a shadow request; its HTTP status (0: no answer).

    The ``X-ModelOps-Shadow`` header carries the deployment's secret: ``token`` (the backend's,
    e.g. the Kubernetes Secret the pods read), else ``settings.shadow_token``. The candidate logs
    the copy as shadow traffic only when it matches.

    The answer itself is discarded: the candidate's log keeps it, under the variant ``shadow``.
    """
    try:
        return http.request(
            "POST",
            f"{url}/predict",
            json=body,
            headers={REQUEST_ID_HEADER: request_id, SHADOW_HEADER: token or shadow_token()},
            timeout=timeout_s,
        ).status
    except http.Unreachable:
        return 0


def copies_to_send(
    stable_ids: list[str],
    copies: dict[str, dict[str, Any]],
    paired_ids: set[str],
    *,
    wanted: int,
    now: datetime,
    max_copies: int,
) -> list[str]:
    """Which of the requests stable answered to copy now: enough for ``wanted`` pairs, none twice.

    A copy the candidate answered that is not paired yet counts as on its way for
    :data:`LOG_GRACE_S`; failed copies and lost ones do not, so others replace them, up to
    ``max_copies`` copies in all.

    Args:
        stable_ids: Request ids stable answered in the stage's window, oldest first.
        copies: Copies sent so far: request id -> ``{"status", "at"}`` (ISO time).
        paired_ids: Request ids whose rows both versions logged.
        wanted: Paired requests the stage needs.
        now: The current time.
        max_copies: The most copies the stage may send.
    """
    grace = now - timedelta(seconds=LOG_GRACE_S)
    pending = sum(
        1
        for rid, c in copies.items()
        if c["status"] == 200 and rid not in paired_ids and datetime.fromisoformat(c["at"]) > grace
    )
    need = min(wanted - len(paired_ids) - pending, max_copies - len(copies))
    if need <= 0:
        return []
    return [rid for rid in stable_ids if rid not in copies][:need]


# --- the sensor ---------------------------------------------------------------------------


def _read(model: str, version: str, variant: str, start: str) -> pd.DataFrame:
    from include.modelops.serving.inference_log import read_window

    return read_window(model, version=version, variant=variant, start=datetime.fromisoformat(start))


def _event(spec: ModelSpec, version: str, stage: dict, result: a.Analysis | None, reason: str) -> None:
    """The stage's audit event (a version tag, as the canary steps write theirs) and its table in MLflow."""
    event = {
        "at": tracking.now_iso(),
        "stage": SHADOW,
        "traffic_percent": 0,
        "outcome": stage["outcome"],
        "reason": reason[:1500],
    }
    tracking.set_version_tags(spec.name, version, {f"{stages.TAG_STAGE}{SHADOW}": json.dumps(event)})
    if result is not None:
        run_id = tracking.version_info(spec.name, version)["run_id"]
        if run_id:
            tracking.log_json(
                run_id,
                {**result.to_dict(), "stage": SHADOW, "table": a.render_table(result)},
                f"rollout/{SHADOW}.json",
            )


def check_shadow(model: str, version: str, *, backend: TrafficBackend | None = None) -> contracts.StageResult:
    """One poke of the shadow stage: copy what stable answered to the candidate, then judge the pairs.

    Returns:
        ``{"done": True, ...}`` when the stage passed (or there is no stable version to shadow),
        ``{"done": False, ...}`` to wait for more pairs.

    Raises:
        RolloutFailed: The canary died or stopped answering, the paired analysis failed, or the
            stage had fewer than ``rollout.shadow.requests`` pairs at its ``max_wait_s``.
    """
    spec = load_spec_by_name(model)
    rollout = stages.rollout_of(spec)
    record = read_record(model, version)
    if record.get("first_deployment"):
        log.info("Stage shadow: nothing to compare against (first deployment, already at 100%%)")
        return {"done": True, "first_deployment": True}
    cfg = rollout.shadow
    if cfg is None:
        log.info("Stage shadow: the spec has no rollout.shadow section any more; nothing to do")
        return {"done": True, "skipped": True}
    backend = backend or backend_for(model, rollout.backend)
    stage = record.get("shadow")
    if stage is None:
        stage = {
            "name": SHADOW,
            "traffic_percent": 0,
            "started_at": utc_now().isoformat(),
            "outcome": "running",
            "copies": {},
        }
        record["shadow"] = stage
        write_record(model, version, record)
        log.info(
            "Stage shadow: stable v%s answers every request; the candidate v%s gets a copy of %d of them "
            "and its answers are discarded",
            record["stable_version"],
            version,
            cfg.requests,
        )
    if stage["outcome"] == "passed":
        return {"done": True, "analysis": stage.get("analysis")}

    def fail(reason: str, result: a.Analysis | None = None) -> None:
        stage.update(
            outcome="failed",
            ended_at=utc_now().isoformat(),
            reason=reason,
            analysis=result.to_dict() if result else None,
        )
        record["failure"] = {"stage": SHADOW, "reason": reason}
        write_record(model, version, record)
        _event(spec, version, stage, result, reason)
        raise stages.RolloutFailed(f"stage {SHADOW} failed: {reason}")

    health = backend.health(CANARY)
    if not health.ok:
        fail(f"the canary process died or stopped answering ({health.detail})")
    if backend.state().canary_percent:
        fail(
            f"the canary answers {backend.state().canary_percent}% of live requests during the shadow stage; "
            "it must answer none"
        )

    now = utc_now()
    stable_rows = _read(model, record["stable_version"], STABLE, stage["started_at"])
    shadow_rows = _read(model, version, SHADOW, stage["started_at"])
    copies: dict[str, dict[str, Any]] = stage["copies"]
    s_pairs, _ = a.paired_rows(stable_rows, shadow_rows)
    paired_ids = set(s_pairs["request_id"].astype(str)) if not s_pairs.empty else set()
    not_answered = sum(1 for c in copies.values() if c["status"] != 200)
    result = a.analyse_shadow(
        spec.task.value,
        rollout.analysis,
        stable=stable_rows,
        shadow=shadow_rows,
        replayed=len(copies),
        not_answered=not_answered,
        min_requests=cfg.requests,
        max_disagreement_rate=cfg.max_disagreement_rate,
    )
    elapsed = (now - datetime.fromisoformat(stage["started_at"])).total_seconds()
    title = f"{model} v{version} stage {SHADOW} after {elapsed:.0f} s"
    if result.verdict == a.FAIL:
        log.info("%s", a.render_table(result, title=title))
        fail(result.reason(), result)
    if result.verdict == a.PASS:
        log.info("%s", a.render_table(result, title=title))
        stage.update(outcome="passed", ended_at=now.isoformat(), analysis=result.to_dict())
        write_record(model, version, record)
        _event(spec, version, stage, result, result.reason())
        return {
            "done": True,
            "stage": SHADOW,
            "verdict": result.verdict,
            "paired_requests": result.canary_requests,
        }
    if elapsed >= cfg.max_wait_s:
        log.info("%s", a.render_table(result, title=title))
        lost = sum(1 for rid, c in copies.items() if c["status"] == 200 and rid not in paired_ids)
        hint = (
            f"; {lost} copies the candidate answered never reached its inference log (is "
            "MODELOPS_INFERENCE_LOG on for it?)"
            if lost > cfg.requests // 2
            else ""
        )
        fail(
            f"inconclusive after {elapsed:.0f} s (max_wait_s {cfg.max_wait_s:g}): {result.reason()}{hint}",
            result,
        )

    stable_ids = list(dict.fromkeys(stable_rows["request_id"].astype(str))) if not stable_rows.empty else []
    to_send = copies_to_send(
        stable_ids,
        copies,
        paired_ids,
        wanted=cfg.requests,
        now=now,
        max_copies=MAX_COPIES_PER_PAIR * cfg.requests,
    )
    sent = _send(spec, backend, stable_rows, to_send, copies)
    write_record(model, version, record)
    log.info(
        "%s: waiting (%d of %d requests paired; %d copies sent now, %d in all, %d not answered; %s)",
        title,
        result.canary_requests,
        cfg.requests,
        sent,
        len(copies),
        sum(1 for c in copies.values() if c["status"] != 200),
        result.reason(),
    )
    return {"done": False, "paired_requests": result.canary_requests, "copies": len(copies)}


def _send(
    spec: ModelSpec,
    backend: TrafficBackend,
    stable_rows: pd.DataFrame,
    request_ids: list[str],
    copies: dict[str, dict[str, Any]],
) -> int:
    """Copy ``request_ids`` to the canary's own port; each outcome goes into ``copies``."""
    if not request_ids:
        return 0
    canary = backend.state().variants.get(CANARY)
    if canary is None:
        raise stages.RolloutFailed("stage shadow: no canary is deployed to receive the copies")
    wanted = set(request_ids)
    bodies = request_bodies(spec, stable_rows[stable_rows["request_id"].astype(str).isin(wanted)])
    # The Kubernetes backend's pods read the token from its Secret; the local services share the state folder's.
    token = backend.shadow_token() if hasattr(backend, "shadow_token") else shadow_token()
    deadline = time.monotonic() + REPLAY_BUDGET_S
    sent = 0
    for rid in request_ids:
        if time.monotonic() > deadline:
            break
        status = replay(canary.url, rid, bodies[rid], token=token)
        copies[rid] = {"status": status, "at": datetime.now(UTC).isoformat()}
        sent += 1
    return sent
