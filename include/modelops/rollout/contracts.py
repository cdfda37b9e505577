"""What the rollout DAG's tasks hand each other through XCom, one TypedDict per task result.

As ``pipelines/contracts.py`` does for the training and monitoring DAGs (these live here, below
the pipelines, because the rollout's own functions return them). ``tests/unit/test_xcom_contracts.py``
checks every ``return {...}`` of those functions against them: the required keys always, the
``NotRequired`` ones only where that outcome has them.
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired[...] when the class is
# created, and a string annotation would make every key required.
from typing import Any, NotRequired, TypedDict


class Prepared(TypedDict):
    """``prepare_rollout``: stable and canary behind the endpoint (or a first version at 100%)."""

    version: str
    stable_version: str | None
    endpoint: str
    first_deployment: bool
    bento_tag: str


class StageResult(TypedDict):
    """A stage sensor's poke (``canary_<n>``, ``shadow``): done or not yet, and what was seen."""

    done: bool
    first_deployment: NotRequired[bool]  # nothing to compare against: passed at once
    skipped: NotRequired[bool]  # shadow stage of a spec without one
    analysis: NotRequired[dict[str, Any] | None]  # a stage that had passed before this poke (a retry)
    stage: NotRequired[str]
    verdict: NotRequired[str]
    canary_requests: NotRequired[int]
    paired_requests: NotRequired[int]
    copies: NotRequired[int]


class RolloutPromoted(TypedDict):
    """``promote``: the candidate is stable at 100% and champion."""

    version: str
    champion: str
    previous: str | None
    summary: str
    endpoint: str
    model_card: str | None


class RolledBack(TypedDict):
    """``rollback``: traffic back on stable, the candidate stopped, the registry as before (or pending)."""

    version: str
    rolled_back: bool
    reason: str
    stage: NotRequired[str | None]
    champion: NotRequired[str | None]
    model_card: NotRequired[str | None]
    registry_pending: NotRequired[bool]
    traffic_moved_s: NotRequired[float]


class RolloutOutcome(TypedDict):
    """``summarize``: how the rollout ended, in one sentence, with each stage's outcome."""

    model: str
    version: str | None
    status: str
    message: str
    stages: list[dict[str, Any]]


class Restored(TypedDict):
    """``model_rollback`` DAG: a completed promotion taken back; ``previous`` serves 100% again."""

    champion: str
    previous: str
    rolled_back: str
    reason: str
    endpoint: str
    model_cards: dict[str, str | None]
