"""Progressive rollout: stages, the canary analysis and the traffic backends (local, Kubernetes).

``backend_for`` lives here, above the backends: ``backend.py`` defines the interface and the
deployment state, ``local.py`` and ``kubernetes.py`` implement it, and only this package
module picks one, so no backend module imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from include.modelops.rollout.backend import TrafficBackend


def backend_for(model: str, kind: str = "local") -> TrafficBackend:
    """The spec's ``rollout.backend`` for ``model``."""
    if kind == "local":
        from include.modelops.rollout.local import LocalBackend

        return LocalBackend(model)
    if kind == "kubernetes":
        from include.modelops.rollout.kubernetes import KubernetesBackend

        return KubernetesBackend(model)
    raise ValueError(f"rollout.backend {kind!r} is not a backend; use 'local' or 'kubernetes'")
