"""Prove a bento serves what was evaluated: serve it (``serve_bento``), send the holdout rows and
invalid ones (``smoke_serve``), and compare with the offline scores (``check_smoke_report`` raises
``TrainServeSkewError``).

The packaging task calls, in order::

    bento_tag = build_bento(spec, version, model_uri)      # "fraud_detection_service:v3"
    report = smoke_serve(spec, bento_tag, rows, expected_scores)
    check_smoke_report(report)                             # raises TrainServeSkewError
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.modelops.platform import http, local_stack, processes
from include.modelops.serving.contract import scores_from_predictions
from include.modelops.settings import get_settings
from include.modelops.spec import FeatureType, ModelSpec

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


class TrainServeSkewError(Exception):
    """The served bento does not behave like the evaluated model (scores, validation or metrics)."""


class ServeStartupError(RuntimeError):
    """``bentoml serve`` exited or did not become ready in time; the message ends with its output."""


# --------------------------------------------------------------------------------------
# Smoke test: serve the bento, compare with offline scores
# --------------------------------------------------------------------------------------


def serve_env() -> dict[str, str]:
    settings = get_settings()
    tmp = settings.bentoml_home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    # PYTHONPATH is dropped so the bento must import everything from its own files: a
    # bento that only works with the project on the path would fail later, in a container.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        BENTOML_HOME=str(settings.bentoml_home),
        BENTOML_DO_NOT_TRACK="True",
        MLFLOW_DISABLE_TELEMETRY=env.get("MLFLOW_DISABLE_TELEMETRY", "true"),
        TMPDIR=str(tmp),
        PYTHONUNBUFFERED="1",
    )
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server output)"


def _http(method: str, url: str, payload: Any = None, timeout: float = 30.0) -> tuple[int, str, str]:
    """(status, content type, body) of one request; HTTP errors are returned, not raised."""
    reply = http.request(method, url, json=payload, timeout=timeout)
    return reply.status, reply.content_type, reply.text


def wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float, log_path: Path, tag: str) -> float:
    """Seconds until ``<base_url>/readyz`` answered 200; ServeStartupError if the server exits or times out."""
    started = time.monotonic()

    def ready() -> bool:
        if proc.poll() is not None:
            raise ServeStartupError(
                f"bentoml serve {tag} exited with code {proc.returncode} after {time.monotonic() - started:.1f} s. "
                f"Last lines of its output ({log_path}):\n{_tail(log_path)}"
            )
        return http.answers(f"{base_url}/readyz", below=300)  # 503 until the model is loaded

    elapsed = http.wait_until(ready, timeout_s=timeout_s, what=f"{tag} to be ready at {base_url}/readyz")
    if elapsed is None:
        raise ServeStartupError(
            f"bentoml serve {tag} was not ready after {timeout_s:.0f} s (MODELOPS_SERVE_TIMEOUT_S). "
            f"Last lines of its output ({log_path}):\n{_tail(log_path)}"
        )
    return elapsed


def _invalid_row(spec: ModelSpec, row: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A copy of ``row`` that breaks one constraint, and the field it breaks."""
    bad = dict(row)
    for feature in spec.features:
        if feature.type in (FeatureType.numeric, FeatureType.integer) and feature.min is not None:
            bad[feature.name] = feature.min - 1
            return bad, feature.name
    first = spec.features[0].name
    for feature in spec.features:
        if feature.max_null_fraction == 0:
            first = feature.name
            break
    bad.pop(first, None)
    return bad, first


def _percentile_ms(latencies: list[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(latencies, q)) * 1000, 3) if latencies else None


def _check_served(
    spec: ModelSpec,
    base_url: str,
    rows: list[dict[str, Any]],
    expected_scores: list[float],
    latency_requests: int,
    report: dict[str, Any],
) -> None:
    """Run the checks against a ready server, recording results and errors in ``report``."""
    import numpy as np

    status, _, body = _http("POST", f"{base_url}/predict", {"rows": rows})
    if status != 200:
        report["errors"].append(f"POST /predict returned HTTP {status}: {body[:2000]}")
    else:
        served = scores_from_predictions(spec, json.loads(body))
        expected = np.asarray(expected_scores, dtype=float)
        if served.shape != expected.shape:
            report["errors"].append(
                f"/predict returned scores of shape {list(served.shape)}, expected {list(expected.shape)}"
            )
        else:
            report["max_abs_diff"] = float(np.max(np.abs(served - expected))) if len(expected) else 0.0
            log.info(
                "Served vs offline scores on %d rows: max |diff| %.3g (tolerance %g)",
                len(rows),
                report["max_abs_diff"],
                report["tolerance"],
            )

    # Every row alone too: a valid row must be answered 200 whatever else is in its batch.
    latencies, refused = [], []
    for i, row in enumerate(rows):
        started = time.perf_counter()
        status, _, body = _http("POST", f"{base_url}/predict", {"rows": [row]})
        if status == 200:
            if i < max(latency_requests, 0):
                latencies.append(time.perf_counter() - started)
        else:
            refused.append(f"row {i} {json.dumps(row, default=str)[:300]}: HTTP {status} {body[:300]}")
    if refused:
        report["errors"].append(
            f"{len(refused)} valid row(s) sent alone were not answered 200 (first: {refused[0]})"
        )
    report["latency_ms_p50"] = _percentile_ms(latencies, 50)
    report["latency_ms_p95"] = _percentile_ms(latencies, 95)

    if rows:
        bad_row, field = _invalid_row(spec, rows[0])
        status, _, body = _http("POST", f"{base_url}/predict", {"rows": [bad_row]})
        report["invalid_request_status"] = status
        report["invalid_request_field"] = field
        try:
            report["invalid_request_detail"] = json.loads(body)
        except json.JSONDecodeError:
            report["invalid_request_detail"] = body[:2000]
        if status != 400 or field not in body:
            report["errors"].append(
                f"an invalid row ({field!r} broken) returned HTTP {status}, expected 400 naming {field!r}"
            )

    status, content_type, body = _http("GET", f"{base_url}/metrics")
    report["metrics_ok"] = status == 200 and content_type.startswith("text/plain") and "# TYPE" in body
    if not report["metrics_ok"]:
        report["errors"].append(f"GET /metrics returned HTTP {status} ({content_type}), not Prometheus text")


@dataclass
class ServedBento:
    """A running ``bentoml serve``: its base URL, process (its own process group) and output file."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    startup_s: float


@contextlib.contextmanager
def serve_bento(
    bento_tag: str,
    *,
    env: Mapping[str, str] | None = None,
    host: str | None = None,
    port: int | None = None,
    timeout_s: float | None = None,
    log_dir: Path | None = None,
) -> Iterator[ServedBento]:
    """Run ``bentoml serve bento_tag`` until the block ends, then stop it and all its processes.

    Waits for ``/readyz``. ``env`` adds to the serving environment (e.g.
    ``MODELOPS_SERVE_VARIANT``, ``MODELOPS_INFERENCE_LOG_URL``). The server's output goes
    to a file in ``log_dir`` (default ``<state>/smoke_serve``). On exit the process group
    gets SIGTERM, so the service flushes its inference log, then SIGKILL for stragglers.

    Raises:
        ServeStartupError: The server exited or was not ready in time.
    """
    settings = get_settings()
    timeout_s = settings.serve_timeout_s if timeout_s is None else timeout_s
    host = host or settings.serve_host
    port = port or local_stack.free_port(host)
    base_url = f"http://{host}:{port}"
    log_dir = log_dir or settings.state_dir / "smoke_serve"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log_path = log_dir / f"{bento_tag.replace(':', '-')}-{stamp}-{port}.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", host, "--port", str(port)]
    home = serving_home(port)
    full_env = {**serve_env(), "BENTOML_HOME": str(home), **(env or {})}
    log.info("Starting %s (output: %s)", " ".join(cmd[2:]), log_path)
    with log_path.open("wb") as server_log:
        proc = subprocess.Popen(
            cmd,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=settings.bentoml_home / "tmp",
            start_new_session=True,
        )
    try:
        startup_s = wait_ready(base_url, proc, timeout_s, log_path, bento_tag)
        yield ServedBento(url=base_url, proc=proc, log_path=log_path, startup_s=startup_s)
    finally:
        processes.stop_process(proc, timeout_s=20)
        shutil.rmtree(home, ignore_errors=True)


def serving_home(port: int) -> Path:
    """A ``BENTOML_HOME`` for one server: the project's bento and model store, its own metrics folder.

    ``bentoml serve`` keeps Prometheus' multi-process files in
    ``$BENTOML_HOME/prometheus_multiproc_dir`` and empties that folder when it starts, so
    two services on one store (stable and canary, or a smoke test next to ``make serve``)
    would wipe each other's metrics. Each server gets a home of links to the shared store.
    """
    store = get_settings().bentoml_home
    home = get_settings().state_dir / "serving_homes" / str(port)
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    for name in ("bentos", "models"):
        (store / name).mkdir(parents=True, exist_ok=True)
        (home / name).symlink_to(store / name, target_is_directory=True)
    return home


def smoke_serve(
    spec: ModelSpec,
    bento_tag: str,
    rows: list[dict[str, Any]],
    expected_scores: list[float] | list[list[float]],
    *,
    tolerance: float = 1e-6,
    timeout_s: float | None = None,
    latency_requests: int = 50,
) -> dict[str, Any]:
    """Serve the bento locally and check it scores ``rows`` like the evaluated model.

    Starts ``bentoml serve`` on a free port of ``MODELOPS_SERVE_HOST``, waits for
    ``/readyz``, posts ``rows`` to ``/predict`` and compares the scores with
    ``expected_scores`` (offline ``scoring.score`` on the same rows), sends each row alone too
    (every one must be answered 200; the first ``latency_requests`` are timed), sends one invalid row (expects 400 naming the field), reads
    ``/metrics``, and always stops the server. The smoke test's requests are not
    production traffic: the service runs as variant ``smoke`` with its own inference log
    under ``<state>/smoke_serve/inference_log``, which must hold the scored rows after
    the server stops (``logged_rows``).

    Args:
        spec: The model's spec.
        bento_tag: The bento to serve.
        rows: Request rows (JSON values; nulls as None).
        expected_scores: Offline scores of ``rows`` (``scoring.to_scores`` contract).
        tolerance: Largest allowed absolute difference per score.
        timeout_s: How long to wait for readiness; default ``MODELOPS_SERVE_TIMEOUT_S``.
        latency_requests: Single-row requests timed for the latency percentiles.

    Returns:
        A JSON-serialisable report; ``ok`` is False on any failed check (see
        ``check_smoke_report``).

    Raises:
        ServeStartupError: The server exited or was not ready in time.
    """
    settings = get_settings()
    log_dir = settings.state_dir / "smoke_serve"
    # The smoke test's requests are not production traffic: they go to their own log, as variant "smoke".
    smoke_log = log_dir / "inference_log"
    report: dict[str, Any] = {
        "bento_tag": bento_tag,
        "ok": False,
        "rows": len(rows),
        "max_abs_diff": None,
        "tolerance": tolerance,
        "invalid_request_status": None,
        "invalid_request_field": None,
        "invalid_request_detail": None,
        "metrics_ok": False,
        "startup_s": None,
        "latency_ms_p50": None,
        "latency_ms_p95": None,
        "logged_rows": None,
        "inference_log": str(smoke_log),
        "errors": [],
        "url": None,
        "server_log": None,
    }
    started = datetime.now(UTC)
    with serve_bento(
        bento_tag,
        timeout_s=timeout_s,
        log_dir=log_dir,
        env={
            "MODELOPS_SERVE_VARIANT": "smoke",
            "MODELOPS_INFERENCE_LOG_URL": str(smoke_log),
            "MODELOPS_INFERENCE_LOG": "on",
        },
    ) as served:
        report.update(url=served.url, server_log=str(served.log_path), startup_s=round(served.startup_s, 3))
        log.info("%s ready in %.1f s", bento_tag, served.startup_s)
        try:
            _check_served(spec, served.url, rows, expected_scores, latency_requests, report)
        except OSError as exc:
            report["errors"].append(
                f"the server stopped answering ({exc}); last output:\n{_tail(served.log_path)}"
            )
    log.info("Stopped %s", bento_tag)
    try:
        from include.modelops.serving.inference_log import read_window

        logged = read_window(spec.name, start=started, variant="smoke", root=str(smoke_log))
        report["logged_rows"] = len(logged)
    except Exception as exc:  # the log is checked, but reading it must not hide the other results
        report["errors"].append(f"could not read the smoke test's inference log at {smoke_log}: {exc}")
    if report["logged_rows"] == 0 and report["max_abs_diff"] is not None:
        report["errors"].append(f"the service answered but wrote nothing to its inference log ({smoke_log})")

    diff = report["max_abs_diff"]
    if diff is not None and diff > tolerance:
        report["errors"].append(f"served scores differ from offline scores by up to {diff:.3g}")
    report["ok"] = not report["errors"] and diff is not None
    return report


def check_smoke_report(report: Mapping[str, Any]) -> None:
    """Raise ``TrainServeSkewError`` with a readable message when the smoke test failed."""
    if report.get("ok"):
        return
    lines = [f"Bento {report.get('bento_tag')} does not serve what was evaluated:"]
    diff, tolerance = report.get("max_abs_diff"), report.get("tolerance")
    if diff is not None and tolerance is not None and diff > tolerance:
        lines.append(
            f"  - scores differ from the offline scores by up to {diff:.3g} on {report.get('rows')} rows "
            f"(tolerance {tolerance:g}): training and serving disagree (feature dtypes, preprocessing "
            "or package versions)"
        )
    for error in report.get("errors") or []:
        if not error.startswith("served scores differ"):
            lines.append(f"  - {error}")
    if len(lines) == 1:
        lines.append("  - the smoke test did not complete")
    if report.get("server_log"):
        lines.append(f"Server output: {report['server_log']}")
    lines.append("The serving champion is unchanged; fix the cause and re-run the packaging task.")
    raise TrainServeSkewError("\n".join(lines))
