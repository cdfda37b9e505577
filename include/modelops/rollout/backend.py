"""The traffic backend interface a rollout drives, and the deployment state it keeps.

A backend runs the ``stable`` and ``canary`` versions of a model behind one endpoint and
moves a share of requests between them. ``local`` (:mod:`include.modelops.rollout.local`)
does it with ``bentoml serve`` processes behind Caddy; a ``kubernetes`` backend does it with
Deployments and a Gateway API HTTPRoute. The rollout stages only see this interface.

The deployment state (which version runs where, at what weight) is a JSON file under the
state folder, written atomically under a lock, so an Airflow task retry or a restart of the
splitter resumes from it instead of moving traffic twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from include.modelops.platform.storage import write_atomic
from include.modelops.settings import get_settings

STABLE, CANARY = "stable", "canary"
VARIANTS = (STABLE, CANARY)


@dataclass
class Deployed:
    """One running version: where it answers and how to find its process again."""

    version: str
    bento_tag: str
    url: str
    pid: int | None = None
    pid_start: int | None = None  # the process' start time in clock ticks: pid + start name one process
    home: str | None = None  # the server's own BENTOML_HOME, which also finds its worker processes
    log_path: str | None = None
    started_at: str | None = None


@dataclass
class DeploymentState:
    """What a backend runs for one model; the JSON file's content."""

    model: str
    canary_percent: int = 0
    variants: dict[str, Deployed] = field(default_factory=dict)
    splitter: dict[str, Any] = field(default_factory=dict)
    updated_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DeploymentState:
        raw = json.loads(text)
        raw["variants"] = {k: Deployed(**v) for k, v in (raw.get("variants") or {}).items()}
        return cls(**raw)


@dataclass(frozen=True)
class Health:
    """Whether a variant's process exists and its service answers."""

    alive: bool
    ready: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.alive and self.ready


@dataclass(frozen=True)
class RouterHealth:
    """Whether a request through the model's endpoint (the traffic splitter) is answered.

    ``restarts`` counts the splitter's restarts since it was first started (``last_restart_at``
    is a Unix time); a stage compares it with the count when the stage began.
    """

    ok: bool
    detail: str
    restarts: int = 0
    last_restart_at: float | None = None
    last_outage_s: float | None = None


def check_canary_share(state: DeploymentState, percent: int) -> None:
    """Raise unless ``percent`` is a share (0..100) a backend running ``state`` can give the canary."""
    if not 0 <= percent <= 100:
        raise ValueError(f"canary share must be 0..100, got {percent}")
    if percent and CANARY not in state.variants:
        raise RuntimeError(f"{state.model} has no canary to send {percent}% of traffic to")


def state_dir(model: str) -> Path:
    path = get_settings().state_dir / "rollout" / model
    path.mkdir(parents=True, exist_ok=True)
    return path


class StateFile:
    """The deployment state of one model, read and written atomically under an exclusive lock."""

    def __init__(self, model: str, path: Path | None = None) -> None:
        self.model = model
        self.path = path or state_dir(model) / "deployment.json"

    def read(self) -> DeploymentState:
        if not self.path.exists():
            return DeploymentState(model=self.model)
        return DeploymentState.from_json(self.path.read_text())

    def write(self, state: DeploymentState) -> None:
        from include.modelops.platform.tracking import now_iso

        state.updated_at = now_iso()
        write_atomic(self.path, state.to_json())  # a reader sees the old or the new state, never half of one

    @contextlib.contextmanager
    def locked(self) -> Iterator[DeploymentState]:
        """The state for a read-modify-write: written back when the block ends without an error."""
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            yield state
            self.write(state)


class TrafficBackend(Protocol):
    """What a rollout needs from where the model is served."""

    model: str

    def endpoint(self) -> str:
        """The URL clients call; it stays the same through rollouts and rollbacks."""

    def state(self) -> DeploymentState:
        """The current deployment (versions, canary share)."""

    def deploy(self, variant: str, version: str, bento_tag: str) -> Deployed:
        """Run ``version`` as ``variant`` (idempotent: a healthy one already there is kept)."""

    def set_canary_percent(self, percent: int) -> None:
        """Send ``percent`` of requests to the canary and the rest to stable (idempotent)."""

    def health(self, variant: str) -> Health:
        """Is the variant's process alive, and does it answer?"""

    def router_health(self) -> RouterHealth:
        """Does a cheap request (``/livez``) through the model's endpoint get an answer? (No side effects.)"""

    def metrics_text(self, variant: str) -> str:
        """The variant's Prometheus metrics text (raises OSError when it does not answer)."""

    def promote_canary(self) -> Deployed:
        """Make the canary's version the stable one at 100%, then drain and stop the old processes."""

    def stop(self, variant: str) -> None:
        """Stop the variant (no traffic is routed to a stopped variant)."""

    def shutdown(self) -> None:
        """Stop everything this backend runs for the model (the endpoint goes away)."""
