"""Registry writes a rollback owes MLflow, kept on disk until they land.

A rollback moves traffic first and writes the registry afterwards (remove ``challenger``, tag
the version ``rolled_back``, add the deployment event, refresh the model card). When MLflow does
not answer, those writes must not hold up the rollback, and must not be lost: they are kept in
``<state>/rollout/<model>/registry-pending-v<version>.json`` (written before the first try) and
retried until they land, by a detached retry process (``python -m
include.modelops.rollout.pending <model>``, one per model) and by the next ``prepare`` or
``rollback`` of the model, which drain the file first. Each write is idempotent and is taken off
the file as soon as it has landed, so a retry never applies one twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from include.modelops.platform.storage import write_atomic
from include.modelops.rollout.backend import state_dir
from include.modelops.rollout.record import read_record, write_record

log = logging.getLogger(__name__)

PREFIX = "registry-pending-v"
# The first try, inside the rollback task: no retries, a short timeout (MLflow's own defaults
# retry for minutes while clients wait).
QUICK_RETRIES, QUICK_TIMEOUT_S = "0", "5"
# The retry process: every RETRY_MIN_S at first, backing off to RETRY_MAX_S, for RETRY_FOR_S.
RETRY_MIN_S, RETRY_MAX_S, RETRY_FOR_S = 1.0, 30.0, 7 * 24 * 3600.0


def pending_files(model: str) -> list[Path]:
    return sorted(state_dir(model).glob(f"{PREFIX}*.json"))


def pending_path(model: str, version: str) -> Path:
    return state_dir(model) / f"{PREFIX}{version}.json"


def _write(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str))


def save(model: str, version: str, writes: list[dict[str, Any]], *, record_update: dict[str, Any]) -> Path:
    """Keep ``writes`` (then the rollout record's ``record_update``) for ``version`` until they land."""
    path = pending_path(model, version)
    _write(
        path,
        {
            "model": model,
            "version": version,
            "created_at": time.time(),
            "writes": writes,
            "record_update": record_update,
        },
    )
    return path


@contextlib.contextmanager
def quick_mlflow() -> Iterator[None]:
    """MLflow's HTTP client without retries and with a short timeout, for the block."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": QUICK_RETRIES, "MLFLOW_HTTP_REQUEST_TIMEOUT": QUICK_TIMEOUT_S}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _apply(model: str, version: str, write: dict[str, Any]) -> dict[str, Any]:
    from include.modelops.platform import tracking
    from include.modelops.rollout import history

    op = write["op"]
    if op == "delete_alias_if":
        # Not tracking.alias_version: it answers None when MLflow is down, which would drop the write.
        aliases = tracking.client().get_registered_model(model).aliases or {}
        if str(aliases.get(write["alias"])) == str(version):
            tracking.client().delete_registered_model_alias(model, write["alias"])
        return {}
    if op == "tags":
        tracking.set_version_tags(model, version, write["tags"])
        return {}
    if op == "deployment_event":
        history.record_event(
            model,
            version,
            write["event"],
            stages=write["stages"],
            reason=write["reason"],
            dag_run_id=write.get("dag_run_id"),
        )
        card = history.refresh_model_card(model, version)
        if card is None:
            tracking.version_info(model, version)  # raises while MLflow is down: try the card again later
        return {"model_card": card}
    raise ValueError(f"unknown pending registry write {op!r}")


def drain_file(path: Path) -> dict[str, Any] | None:
    """Apply the file's writes in order, taking each off the file once it landed; None when it was empty.

    Raises whatever MLflow raised for the first write that did not land (the rest stay pending).
    """

    with _locked(path):
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        model, version, results = data["model"], data["version"], dict(data.get("results") or {})
        while data["writes"]:
            results.update(_apply(model, version, data["writes"][0]))
            data["writes"].pop(0)
            data["results"] = results
            _write(path, data)
        record = read_record(model, version)
        record.update(
            data.get("record_update") or {},
            registry_pending=False,
            registry_written_at=time.time(),
            **results,
        )
        write_record(model, version, record)
        path.unlink()
    log.info("%s v%s: the pending registry writes landed (%s)", model, version, path.name)
    return results


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.parent / (path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def drain(model: str, *, quick: bool = True) -> list[str]:
    """Land every pending registry write of ``model``; the file names still pending (MLflow unreachable)."""
    left = []
    for path in pending_files(model):
        try:
            with quick_mlflow() if quick else contextlib.nullcontext():
                drain_file(path)
        except Exception as exc:
            log.warning(
                "%s: registry writes in %s still pending (%s: %s)",
                model,
                path,
                type(exc).__name__,
                str(exc)[:300],
            )
            left.append(path.name)
    return left


def start_retry_process(model: str) -> int:
    """A detached process (own session) that retries the model's pending writes until they land; its pid."""
    from include.modelops.settings import PROJECT_ROOT

    logs = state_dir(model) / "logs"
    logs.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with (logs / "registry-retry.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.modelops.rollout.pending", model],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def retry_until_landed(model: str) -> int:
    """The retry process' loop; one per model (a second one exits at once)."""
    with open(state_dir(model) / "registry-retry.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another retry process is at it", model)
            return 0
        wait, deadline = RETRY_MIN_S, time.monotonic() + RETRY_FOR_S
        while pending_files(model):
            if not drain(model):
                break
            if time.monotonic() > deadline:
                log.error(
                    "%s: registry writes still pending after %.0f s; the next rollout or rollback of the "
                    "model retries them",
                    model,
                    RETRY_FOR_S,
                )
                return 1
            time.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)
    log.info("%s: no registry writes pending", model)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Retry a model's pending registry writes until they land.")
    parser.add_argument("model")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s modelops-registry-retry[%(process)d] %(levelname)s %(message)s",
    )
    return retry_until_landed(args.model)


if __name__ == "__main__":
    raise SystemExit(main())
