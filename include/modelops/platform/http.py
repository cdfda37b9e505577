"""HTTP for every stage: one client (httpx) and one way to wait until a server answers (tenacity).

Calls return the answer whatever its status (a 500 is an answer: the caller decides what it
means) and raise :class:`Unreachable`, an ``OSError``, when no answer came: nothing listens, the
connection broke, or the timeout passed. Every request opens its own connection, as the servers
this project talks to (bento services, the traffic splitter, MLflow, Airflow, Prometheus) are
started, killed and restarted on the same ports by the rollout, and a pooled connection to a
process that is gone would turn a health check into a false alarm.

``uds=`` sends the request over a Unix socket (Caddy's admin API, which listens on one owned by
this user only).
"""

from __future__ import annotations

import json as _json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

log = logging.getLogger(__name__)
# httpx logs every request at INFO: the commands' output would fill with readiness polls.
logging.getLogger("httpx").setLevel(logging.WARNING)


class Unreachable(OSError):
    """No answer: nothing listens at the address, the connection broke, or the timeout passed."""


@dataclass(frozen=True)
class Reply:
    status: int
    text: str
    content_type: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


_CLIENTS: dict[tuple[int, str | None], httpx.Client] = {}


def _client(uds: str | None) -> httpx.Client:
    # One per process (a forked Airflow task gets its own) and socket; no keep-alive (see above).
    key = (os.getpid(), uds)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = httpx.Client(
            transport=httpx.HTTPTransport(uds=uds) if uds else None,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
    return client


def request(
    method: str,
    url: str,
    *,
    json: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    uds: str | None = None,
) -> Reply:
    """One request; its :class:`Reply` whatever the status. Raises :class:`Unreachable` without an answer.

    ``json`` is sent as ``json.dumps`` writes it (httpx's own encoder refuses NaN, which a row of
    a user's table may hold and the services read).
    """
    if json is not None:
        content = _json.dumps(json).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        r = _client(uds).request(method, url, content=content, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:
        raise Unreachable(f"{method} {url}: {type(exc).__name__}: {exc or 'no answer'}") from exc
    return Reply(r.status_code, r.text, r.headers.get("content-type", ""))


def get(url: str, *, timeout: float = 2.0, uds: str | None = None) -> Reply:
    return request("GET", url, timeout=timeout, uds=uds)


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.5,
    progress_every_s: float | None = 5.0,
) -> float | None:
    """Call ``ready`` every ``interval_s`` until it returns True; the seconds that took, or None at ``timeout_s``.

    ``ready`` may raise to give up at once (a server process that exited will never answer); the
    exception reaches the caller as it is. Every ``progress_every_s`` the wait logs that it is
    still waiting for ``what``.
    """
    started = time.monotonic()
    last_note = [started]

    def note(state: tenacity.RetryCallState) -> None:
        now = time.monotonic()
        if progress_every_s is not None and now - last_note[0] >= progress_every_s:
            log.info("Waiting for %s (%.0f s of %.0f s)", what, now - started, timeout_s)
            last_note[0] = now

    ok = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout_s),
        wait=tenacity.wait_fixed(interval_s),
        retry=tenacity.retry_if_result(lambda answer: not answer),
        before_sleep=note,
        retry_error_callback=lambda state: False,
        reraise=True,
    )(ready)
    return time.monotonic() - started if ok else None


def answers(url: str, *, below: int = 500, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with a status under ``below`` (a server that is up, whatever it says)."""
    try:
        return get(url, timeout=timeout).status < below
    except Unreachable:
        return False
