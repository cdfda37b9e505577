"""The supervisor of a model's local traffic splitter: keeps Caddy running between Airflow tasks.

``python -m include.modelops.rollout.splitter <model> --state-file <deployment.json>`` runs in a
session of its own (started by :class:`include.modelops.rollout.local.LocalBackend`) with Caddy
as its only child. When Caddy exits for any reason (killed, crashed, out of memory), it starts it
again at once from the deployment state on disk (same port, same weights, same admin socket),
without the state lock, so no task holding the lock can delay it; then, under the lock, it
records the restart (``splitter.restarts``, ``last_restart_at``, ``last_outage_s``, the new
Caddy pid) and sends the locked state's routing again if a writer changed it meanwhile. Every
restart is logged to the splitter log (``<state>/rollout/<model>/logs/caddy.log``).

SIGTERM stops Caddy and the supervisor; whoever stops the splitter stops this process first,
so it does not start Caddy again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from include.modelops.platform.processes import start_ticks
from include.modelops.rollout.backend import StateFile
from include.modelops.rollout.local import admin_answers, admin_request, caddy_config

log = logging.getLogger("modelops.splitter")

# A Caddy that exits again within this long after its start is crash-looping: wait longer each time.
_QUICK_EXIT_S = 5.0
_MAX_BACKOFF_S = 5.0


class _Stop(Exception):
    pass


def _on_signal(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def _start_caddy(caddy: str, config_path: Path, state_dir: Path) -> subprocess.Popen:
    home = state_dir / "caddy"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "HOME": str(home),
    }
    # Caddy inherits the supervisor's output (the splitter log) and process group, so stopping the
    # supervisor's group stops it too.
    return subprocess.Popen([caddy, "run", "--config", str(config_path)], env=env, cwd=state_dir)


def _restart(caddy: str, file: StateFile, model: str) -> tuple[subprocess.Popen, dict]:
    """Caddy again from the state on disk (written atomically, so a lock-free read is whole)."""
    state = file.read()
    config = caddy_config(state)
    config_path = file.path.parent / "caddy.json"
    config_path.write_text(json.dumps(config))
    with contextlib.suppress(FileNotFoundError):
        Path(state.splitter["admin"]).unlink()  # the killed one's socket: caddy would not listen on it
    return _start_caddy(caddy, config_path, file.path.parent), config


def _record(file: StateFile, child: subprocess.Popen, config: dict, down_at: float, outage_s: float) -> None:
    with file.locked() as state:
        sp = state.splitter
        sp.update(
            restarts=int(sp.get("restarts") or 0) + 1,
            last_restart_at=time.time(),
            last_down_at=down_at,
            last_outage_s=round(outage_s, 3),
            pid=child.pid,
            pid_start=start_ticks(child.pid),
        )
        wanted = caddy_config(state)
        if wanted != config:  # a writer moved the weights while caddy was down: send them again
            status, body = admin_request(sp["admin"], "POST", "/load", json.dumps(wanted).encode())
            log.info(
                "routing changed during the restart; sent the locked state's routing: HTTP %s %s",
                status,
                body[:200],
            )


def supervise(model: str, state_file: Path, caddy: str) -> int:
    file = StateFile(model, state_file)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    child: subprocess.Popen | None = None
    backoff = 0.05
    try:
        child = _start_caddy(caddy, state_file.parent / "caddy.json", state_file.parent)
        started = time.monotonic()
        log.info("supervising caddy pid %s for %s", child.pid, model)
        while True:
            rc = child.wait()
            down_at, down = time.time(), time.monotonic()
            backoff = min(backoff * 2, _MAX_BACKOFF_S) if down - started < _QUICK_EXIT_S else 0.1
            log.warning(
                "caddy pid %s exited (%s); restarting it in %.1f s from %s",
                child.pid,
                f"signal {-rc}" if rc < 0 else f"exit code {rc}",
                backoff,
                state_file,
            )
            while True:
                time.sleep(backoff)
                try:
                    child, config = _restart(caddy, file, model)
                    break
                except Exception:
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
                    log.exception("could not start caddy again; trying again in %.1f s", backoff)
            started = time.monotonic()
            sock = config["admin"]["listen"].removeprefix("unix/").split("|")[0]
            deadline = time.monotonic() + 10
            while (
                not admin_answers(sock, timeout=0.5) and child.poll() is None and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            outage = time.monotonic() - down
            log.warning("caddy restarted as pid %s after %.2f s down", child.pid, outage)
            try:
                _record(file, child, config, down_at, outage)
            except _Stop:
                raise
            except Exception:
                log.exception("could not record the restart in %s", state_file)
    except _Stop as stop:
        log.info("%s received: stopping caddy and the supervisor", stop)
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--state-file", type=Path, required=True, help="the model's deployment.json")
    parser.add_argument("--caddy", required=True, help="the caddy executable")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s modelops-splitter[%(process)d] %(levelname)s %(message)s",
    )
    return supervise(args.model, args.state_file, args.caddy)


if __name__ == "__main__":
    raise SystemExit(main())
