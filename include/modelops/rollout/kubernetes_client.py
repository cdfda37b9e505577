"""Talking to the cluster: the :class:`KubeClient` protocol (get, apply, delete), the real client
(server-side apply through ``KubernetesHook``'s credentials) and a recording one for tests.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from include.modelops.rollout.kubernetes_manifests import (
    DEPLOYMENT,
    FIELD_MANAGER,
    GATEWAY_GROUP,
    GATEWAY_VERSION,
    HTTPROUTE,
    SECRET,
)


class KubeClient(Protocol):
    """The three verbs the backend uses, on objects of one namespace."""

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object (with its status), or None when it does not exist."""

    def apply(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or update the object to ``body`` (server-side apply)."""

    def delete(self, kind: str, name: str) -> None:
        """Delete the object; one that does not exist is fine."""


@dataclass(frozen=True)
class Call:
    verb: str
    kind: str
    name: str
    body: dict[str, Any] | None = None


@dataclass
class RecordingClient:
    """An in-memory cluster for tests: keeps applied objects, records every call in order.

    A Deployment reports all its replicas ready once applied, unless its name is in ``unready``
    (a pod that never becomes ready, or one that stopped answering).
    """

    calls: list[Call] = field(default_factory=list)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    unready: set[str] = field(default_factory=set)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        self.calls.append(Call("get", kind, name))
        obj = self.objects.get((kind, name))
        if obj is None:
            return None
        obj = copy.deepcopy(obj)
        if kind == DEPLOYMENT:
            replicas = obj["spec"].get("replicas", 1)
            ready = 0 if name in self.unready else replicas
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": replicas,
                "readyReplicas": ready,
                "updatedReplicas": replicas,
                "availableReplicas": ready,
            }
        return obj

    def apply(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(Call("apply", kind, name, copy.deepcopy(body)))
        old = self.objects.get((kind, name))
        obj = copy.deepcopy(body)
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        changed = old is None or old.get("spec") != obj.get("spec")
        obj["metadata"]["generation"] = generation + 1 if changed else generation
        self.objects[(kind, name)] = obj
        return copy.deepcopy(obj)

    def delete(self, kind: str, name: str) -> None:
        self.calls.append(Call("delete", kind, name))
        self.objects.pop((kind, name), None)

    def changes(self) -> list[tuple[str, str, str]]:
        """(verb, kind, name) of every apply and delete, in order."""
        return [(c.verb, c.kind, c.name) for c in self.calls if c.verb != "get"]


class KubernetesApiClient:
    """The ``kubernetes`` package against a real cluster: server-side apply, strict field validation.

    Credentials: the Airflow connection ``conn_id`` through the cncf.kubernetes provider's
    ``KubernetesHook``, one credential path with the training pods (a kubeconfig file or JSON, in
    cluster, a context). The default connection may be left undefined: then the pod's service
    account when running in a cluster, else the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``),
    with ``context`` (``MODELOPS_K8S_CONTEXT``) either way. The service account needs get, patch
    and delete on deployments (apps), services, secrets (the shadow Secret) and httproutes
    (gateway.networking.k8s.io) in the namespace.
    """

    def __init__(
        self,
        namespace: str,
        *,
        conn_id: str = "kubernetes_default",
        context: str | None = None,
        api_client: Any = None,
    ) -> None:
        self.namespace = namespace
        self.conn_id = conn_id
        self.context = context
        self._given = api_client

    @cached_property
    def api_client(self) -> Any:
        if self._given is not None:
            return self._given
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.conn_id, cluster_context=self.context).get_conn()

    def _call(self, verb: str, kind: str, name: str, body: dict[str, Any] | None = None) -> Any:
        from kubernetes import client

        ns = self.namespace
        opts = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "field_validation": "Strict",
            "_content_type": "application/apply-patch+yaml",
        }  # server-side apply; JSON is YAML
        if kind == HTTPROUTE:
            api = client.CustomObjectsApi(self.api_client)
            args = (GATEWAY_GROUP, GATEWAY_VERSION, ns, "httproutes", name)
            if verb == "get":
                return api.get_namespaced_custom_object(*args)
            if verb == "apply":
                return api.patch_namespaced_custom_object(*args, body, **opts)
            return api.delete_namespaced_custom_object(*args)
        api = client.AppsV1Api(self.api_client) if kind == DEPLOYMENT else client.CoreV1Api(self.api_client)
        suffix = {DEPLOYMENT: "deployment", SECRET: "secret"}.get(kind, "service")
        if verb == "get":
            obj = getattr(api, f"read_namespaced_{suffix}")(name, ns)
        elif verb == "apply":
            obj = getattr(api, f"patch_namespaced_{suffix}")(name, ns, body, **opts)
        else:
            obj = getattr(api, f"delete_namespaced_{suffix}")(name, ns)
        return self.api_client.sanitize_for_serialization(obj)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._call("get", kind, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("apply", kind, name, body)

    def delete(self, kind: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call("delete", kind, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
