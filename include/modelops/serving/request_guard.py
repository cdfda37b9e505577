"""ASGI middleware in front of the service's ``/predict``: request ids, limits, one error format, metrics.

BentoML parses and validates the JSON body against the typed API; this middleware does
what must happen around that, for every answer including the rejected ones:

- ``X-Request-ID``: the client's id (1–128 characters of ``A-Z a-z 0-9 . _ : -``), else
  a generated one; passed on to the API (which logs it) and returned on every response.
- a body over ``MAX_BODY_BYTES`` is answered 413 without being parsed; a content type
  other than JSON is answered 415; every other route (``/model_info``, ``/metrics``, the
  docs ...) takes at most ``MAX_OTHER_BODY_BYTES`` (none needs a body), also when chunked;
- every 4xx body from ``/predict`` has one shape, naming each field and its problem::

      {"error": "rows[0].amount: Input should be greater than or equal to 0",
       "detail": [{"field": "rows[0].amount", "loc": ["rows", 0, "amount"],
                   "type": "greater_than_equal", "msg": "Input should be ..."}],
       "request_id": "..."}

- each answer is counted in the service's metrics (status, 4xx reason, 5xx, latency).
"""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from include.modelops.serving.contract import MAX_BODY_BYTES, REQUEST_ID_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_OTHER_BODY_BYTES = 64 * 1024  # any route but the guarded one: none of them reads a body
STARTED_AT_KEY = "modelops.started_at"  # perf_counter() when the request arrived, in the ASGI scope
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEADER = REQUEST_ID_HEADER.lower().encode()
_JSON_TYPES = ("application/json",)

_REASON_BY_TYPE = {
    "json_invalid": "invalid_json",
    "json_type": "invalid_json",
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "literal_error": "unknown_category",
    "enum": "unknown_category",
    "finite_number": "not_finite",
    "greater_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "too_short": "too_few_rows",
    "too_long": "too_many_rows",
    "entity_ids_mismatch": "entity_ids_mismatch",
}


def reason_of(error_type: str, loc: list[Any]) -> str:
    """The metrics ``reason`` of a validation error type (a small, fixed set)."""
    if error_type in ("too_short", "too_long") and loc and loc[0] != "rows":
        return "invalid_value"
    if error_type in _REASON_BY_TYPE:
        return _REASON_BY_TYPE[error_type]
    if error_type.endswith(("_type", "_parsing")) or error_type in ("int_from_float", "bool_parsing"):
        return "wrong_type"
    return "invalid_value"


def field_name(loc: list[Any]) -> str:
    """``["rows", 0, "amount"]`` → ``rows[0].amount``; an empty location is the body itself."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def error_body(detail: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    """The 4xx body: a one-line summary and one entry per problem, each naming its field."""
    entries = []
    for d in detail:
        loc = list(d.get("loc") or [])
        entries.append(
            {"field": field_name(loc), "loc": loc, "type": d.get("type", "invalid"), "msg": d.get("msg", "")}
        )
    first = f"{entries[0]['field']}: {entries[0]['msg']}" if entries else "invalid request"
    more = (
        f" (and {len(entries) - 1} more problem{'s' if len(entries) > 2 else ''})" if len(entries) > 1 else ""
    )
    return {"error": first + more, "detail": entries, "request_id": request_id}


class RequestGuard:
    """The middleware (``ModelService.add_asgi_middleware(RequestGuard, metrics=..., path=...)``).

    Args:
        app: The ASGI app behind it.
        metrics: A callable returning the service's ``ServiceMetrics`` (created lazily,
            after BentoML has set up multi-process metrics in the worker), or None.
        path: The guarded endpoint.
        max_body_bytes: Largest body accepted by ``path``.
        max_other_body_bytes: Largest body accepted by any other route.
    """

    def __init__(
        self,
        app: Any,
        *,
        metrics: Callable[[], Any] | None = None,
        path: str = "/predict",
        max_body_bytes: int = MAX_BODY_BYTES,
        max_other_body_bytes: int = MAX_OTHER_BODY_BYTES,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.max_other_body_bytes = max_other_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope[STARTED_AT_KEY] = started
        headers = list(scope.get("headers") or [])
        given = next((v for k, v in headers if k == _HEADER), None)
        request_id = given.decode("latin-1") if given is not None else uuid.uuid4().hex
        guarded = scope.get("path") == self.path
        if given is None:
            scope["headers"] = [*headers, (_HEADER, request_id.encode())]
        if not guarded:
            await self._pass_small_body(scope, receive, send, request_id)
            return

        async def reject(status: int, field: str, reason: str, msg: str) -> None:
            """Answer here, before BentoML parses anything; ``reason`` is also the error's type."""
            rid = request_id if _REQUEST_ID.match(request_id) else uuid.uuid4().hex
            body = error_body([{"loc": [field] if field else [], "type": reason, "msg": msg}], rid)
            await _send_json(send, status, body, rid)
            self._count(status, started, reason)

        if given is not None and not _REQUEST_ID.match(request_id):
            await reject(
                400,
                "header X-Request-ID",
                "bad_request_id",
                "must be 1-128 characters of A-Z a-z 0-9 . _ : - (or leave it out and one is generated)",
            )
            return
        if scope.get("method") != "POST":
            await _drain(receive)
            await reject(405, "", "method_not_allowed", f"{self.path} accepts POST only")
            return
        content_type = _header(headers, b"content-type")
        media_type = content_type.split(";")[0].strip().lower() if content_type else ""
        if media_type and media_type not in _JSON_TYPES:
            await _drain(receive, self.max_body_bytes)
            await reject(
                415,
                "header Content-Type",
                "wrong_content_type",
                f"must be application/json, got {content_type[:100]!r}",
            )
            return
        length = _header(headers, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await reject(
                413,
                "body",
                "body_too_large",
                f"the body is {length[:20]} bytes; the limit is {self.max_body_bytes} bytes "
                "(send fewer rows per request)",
            )
            return
        # Read the body here, so a chunked body over the limit is cut off too, then replay it.
        body = await _read_capped(receive, self.max_body_bytes)
        if body is _DISCONNECTED:
            return
        if body is None:
            await reject(
                413,
                "body",
                "body_too_large",
                f"the body is over the limit of {self.max_body_bytes} bytes (send fewer rows per request)",
            )
            return
        replay = _replaying(body, receive)

        state: dict[str, Any] = {"status": 500, "start": None, "chunks": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                if message["status"] < 400:
                    await _with_request_id(send, request_id)(message)
                else:
                    state["start"] = message  # the error body is rewritten once complete
                return
            if message["type"] == "http.response.body" and state["start"] is not None:
                state["chunks"].append(message.get("body", b""))
                if message.get("more_body"):
                    return
                await self._send_error(send, state["status"], b"".join(state["chunks"]), request_id, started)
                return
            await send(message)

        try:
            await self.app(scope, replay, capture)
        except Exception:
            self._count(500, started, None)
            raise
        if state["status"] < 400:
            self._count(state["status"], started, None)

    async def _pass_small_body(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """Any other route: a body over ``max_other_body_bytes`` is answered 413 before the app sees it."""
        limit = self.max_other_body_bytes
        rid = request_id if _REQUEST_ID.match(request_id) else uuid.uuid4().hex
        too_large = error_body(
            [
                {
                    "loc": ["body"],
                    "type": "body_too_large",
                    "msg": f"{scope.get('path')} takes a body of at most {limit} bytes",
                }
            ],
            rid,
        )
        length = _header(list(scope.get("headers") or []), b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _send_json(send, 413, too_large, rid)
            return
        body = await _read_capped(receive, limit)
        if body is _DISCONNECTED:
            return
        if body is None:
            await _send_json(send, 413, too_large, rid)
            return
        await self.app(scope, _replaying(body, receive), _with_request_id(send, request_id))

    async def _send_error(self, send: Send, status: int, raw: bytes, request_id: str, started: float) -> None:
        try:
            parsed = json.loads(raw or b"null")
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
            parsed = parsed[0]  # BentoML wraps some errors in a one-element list
        if status == 503:
            body = {"error": "the service is overloaded; retry later", "detail": [], "request_id": request_id}
            reason = None
        elif status >= 500:
            body = {
                "error": "the service failed to score this request; it has been logged",
                "detail": [],
                "request_id": request_id,
            }
            reason = None
        elif isinstance(parsed, dict) and isinstance(parsed.get("detail"), list) and parsed["detail"]:
            body = error_body(parsed["detail"], request_id)
            first = parsed["detail"][0]
            reason = reason_of(str(first.get("type", "")), list(first.get("loc") or []))
        else:
            message = parsed.get("error") if isinstance(parsed, dict) else raw[:500].decode(errors="replace")
            body = error_body(
                [{"loc": [], "type": "invalid", "msg": str(message or "invalid request")}], request_id
            )
            reason = {
                404: "not_found",
                405: "method_not_allowed",
                413: "body_too_large",
                415: "wrong_content_type",
            }.get(status, "other")
        await _send_json(send, status, body, request_id)
        self._count(status, started, reason)

    def _count(self, status: int, started: float, reason: str | None) -> None:
        if self.metrics is None:
            return
        try:
            self.metrics().answered(status, time.perf_counter() - started, reason)
        except Exception:  # metrics must never turn an answer into a failure
            pass


_DISCONNECTED: Any = object()  # _read_capped's answer when the client went away


async def _read_capped(receive: Receive, limit: int) -> Any:
    """The whole request body, None once it is over ``limit`` bytes, ``_DISCONNECTED`` if the client left."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _DISCONNECTED
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then whatever the connection says next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    value = next((v for k, v in headers if k == name), None)
    return value.decode("latin-1") if value is not None else None


def _with_request_id(send: Send, request_id: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
            message = {**message, "headers": [*headers, (_HEADER, request_id.encode("latin-1"))]}
        await send(message)

    return wrapped


async def _send_json(send: Send, status: int, body: dict[str, Any], request_id: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (_HEADER, request_id.encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _drain(receive: Receive, limit: int = 1 << 20) -> None:
    """Read (and discard) a body we will not use, up to ``limit`` bytes, so the connection stays clean."""
    size, more = 0, True
    while more and size <= limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)


def is_shadow(header_value: str | None, token: str) -> bool:
    """Whether a request's ``X-ModelOps-Shadow`` header marks it as the rollout's shadow copy.

    Only the replayer knows the deployment's token (``settings.shadow_token``); any other
    value, sent by a client to hide its requests from monitoring, is normal traffic.
    Compared in constant time.
    """
    if not header_value or not token:
        return False
    return hmac.compare_digest(header_value.strip().encode(), token.encode())
