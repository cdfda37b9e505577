"""Talking to a running Airflow through its REST API, as a reviewer or another system would."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class Api:
    """A client of Airflow's public REST API (``/api/v2``), one token per user."""

    def __init__(self, base: str, users: dict[str, str]):
        self.base = base
        self.tokens = {u: self._token(u, p) for u, p in users.items()}

    def _token(self, user: str, password: str) -> str:
        req = urllib.request.Request(
            f"{self.base}/auth/token",
            method="POST",
            data=json.dumps({"username": user, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["access_token"]

    def call(
        self, method: str, path: str, body: dict | None = None, *, user: str = "admin", attempts: int = 5
    ) -> tuple[int, dict]:
        """One request; a 5xx is retried (up to ``attempts`` in all), as a well-behaved client does.

        The test Airflow keeps its metadata in SQLite, where the API server's write can meet the
        scheduler's and fail with "Database error" (the transaction is rolled back, so a retry is safe).
        """
        for attempt in range(1, attempts + 1):
            req = urllib.request.Request(
                f"{self.base}/api/v2{path}",
                method=method,
                data=json.dumps(body).encode() if body is not None else None,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.tokens[user]}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                status, answer = e.code, json.loads(e.read() or b"{}")
                if status < 500 or attempt == attempts:
                    return status, answer
            time.sleep(2 * attempt)
        raise AssertionError("unreachable")

    def wait(self, what: str, fn, timeout_s: float = 600, every_s: float = 3, describe=None):
        """Poll ``fn`` until it returns something truthy; on timeout, say what ``describe()`` sees."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = fn()
            if value:
                return value
            time.sleep(every_s)
        seen = ""
        if describe is not None:
            try:
                seen = f"; {describe()}"
            except Exception as exc:  # the timeout is the failure to report, not this
                seen = f"; (could not describe: {exc})"
        raise TimeoutError(f"timed out waiting for {what}{seen}")


def trigger(api: Api, dag_id: str, conf: dict) -> str:
    status, body = api.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
    assert status == 200, body
    return body["dag_run_id"]


def ti(api: Api, dag_id: str, run_id: str, task_id: str) -> dict:
    return api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")[1]


def dag_run(api: Api, dag_id: str, run_id: str) -> dict:
    return api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")[1]


def run_state(api: Api, dag_id: str, run_id: str) -> str | None:
    """The run's final state, or None while it has not finished."""
    state = dag_run(api, dag_id, run_id).get("state")
    return state if state in ("success", "failed") else None


def task_states(api: Api, dag_id: str, run_id: str) -> str:
    """The run's task instances as ``task: state (try n)``, for a failure message."""
    status, body = api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
    if status != 200:
        return f"task instances: HTTP {status} {body}"
    return "task instances: " + ", ".join(
        f"{t.get('task_id')}: {t.get('state')} (try {t.get('try_number')})"
        for t in body.get("task_instances", [])
    )


def hitl_path(dag_id: str, run_id: str, task_id: str) -> str:
    return f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"
