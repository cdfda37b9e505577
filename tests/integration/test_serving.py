"""Serving production traffic with a real ``bentoml serve`` of a real bento: the inference log,
the metrics, bad requests (a table and a fuzz run), and no lost records on SIGTERM.

The bento (a tiny scikit-learn model shaped like the fraud spec) is built once for the
module (fixtures in conftest.py); each server writes its inference log to its own folder.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from include.modelops.spec import FeatureType, ModelSpec

pytestmark = pytest.mark.integration


NO_BODY = object()


def post(
    url: str,
    body: object = NO_BODY,
    *,
    path: str = "/predict",
    headers: dict[str, str] | None = None,
    method: str = "POST",
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request (any body, any headers): (status, lower-cased headers, body)."""
    if body is NO_BODY:
        body = None
    elif not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        all_headers = {k: v for k, v in all_headers.items() if v is not None}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rows(spec: ModelSpec, registered: dict) -> list[dict]:
    from include.modelops.serving.contract import request_rows

    return request_rows(spec, registered["holdout"])


@pytest.fixture(scope="module")
def served(built: dict, state: Path):
    """The bento served as variant ``canary``, logging to this module's own folder."""
    from include.modelops.serving.smoke import serve_bento

    log_root = state / "served_log"
    with serve_bento(
        built["tag"],
        timeout_s=180,
        log_dir=state / "serve",
        env={"MODELOPS_SERVE_VARIANT": "canary", "MODELOPS_INFERENCE_LOG_URL": str(log_root)},
    ) as s:
        s.log_root = str(log_root)  # type: ignore[attr-defined]
        yield s


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels`` (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metrics_text(url: str) -> str:
    status, _, body = post(url, path="/metrics", method="GET")
    assert status == 200
    return body.decode()


# ----------------------------------------------------------------------------------------
# The inference log
# ----------------------------------------------------------------------------------------


def test_client_request_id_is_returned_and_every_row_is_logged(spec, registered, rows, served):
    from include.modelops.serving.inference_log import read_window

    request_id = f"client-{uuid.uuid4().hex[:8]}"
    status, headers, body = post(
        served.url,
        {"rows": rows[:3], "entity_ids": ["card-1", "card-2", 7]},
        headers={"X-Request-ID": request_id},
    )
    assert status == 200, body
    assert headers["x-request-id"] == request_id
    answer = json.loads(body)
    assert np.allclose([p["score"] for p in answer], registered["expected"][:3], atol=1e-9)

    status, headers, _ = post(served.url, {"rows": rows[3:4]})
    generated = headers["x-request-id"]
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", generated)

    deadline = time.monotonic() + 15  # the writer flushes about every second
    while time.monotonic() < deadline:
        frame = read_window(spec.name, root=served.log_root)
        if {request_id, generated} <= set(frame.get("request_id", [])):
            break
        time.sleep(0.3)
    mine = frame[frame.request_id == request_id].sort_values("row_index")
    assert mine.row_index.tolist() == [0, 1, 2]
    assert mine.entity_id.tolist() == ["card-1", "card-2", "7"]
    assert (mine.variant == "canary").all() and (mine.model_version == registered["version"]).all()
    assert np.allclose(mine.score, registered["expected"][:3], atol=1e-9)
    assert mine["feature.merchant_category"].tolist() == [r["merchant_category"] for r in rows[:3]]
    assert (mine.latency_ms > 0).all()
    other = frame[frame.request_id == generated]
    assert len(other) == 1 and other.entity_id.isna().all()


def test_sigterm_under_load_loses_no_answered_request(spec, built, state, rows):
    """Every request that got a 200 before the server was told to stop is in the log."""
    from include.modelops.serving.inference_log import read_window
    from include.modelops.serving.smoke import serve_bento

    log_root = str(state / "sigterm_log")
    answered: list[str] = []
    stop = threading.Event()

    def client(worker: int) -> None:
        i = 0
        while not stop.is_set():
            rid = f"w{worker}-{i}"
            i += 1
            try:
                status, _, _ = post(
                    served.url,
                    {"rows": rows[i % 50 : i % 50 + 1 + i % 3]},
                    headers={"X-Request-ID": rid},
                    timeout=10,
                )
            except (OSError, http.client.HTTPException):  # cut off mid-answer: not answered
                if served.proc.poll() is not None:
                    return
                continue
            if status == 200:
                answered.append(rid)

    with serve_bento(
        built["tag"], timeout_s=180, log_dir=state / "serve", env={"MODELOPS_INFERENCE_LOG_URL": log_root}
    ) as served:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client, w) for w in range(8)]
            time.sleep(3)
            served.proc.send_signal(signal.SIGTERM)  # what Kubernetes sends to the container's process
            served.proc.wait(60)
            stop.set()
            for f in futures:
                f.result()
    assert len(answered) > 50, "the load did not get going"
    logged = set(read_window(spec.name, root=log_root).request_id)
    missing = [rid for rid in answered if rid not in logged]
    print(f"\n{len(answered)} requests answered before SIGTERM; {len(missing)} missing from the log")
    assert not missing, missing[:10]


def test_kill_9_under_load_loses_no_answered_request_once_the_server_is_back(spec, built, state, rows):
    """kill -9 of the whole server (no shutdown hook runs): the restarted server writes every row it answered."""
    import psutil

    from include.modelops.serving.inference_log import read_window
    from include.modelops.serving.smoke import serve_bento

    log_root = str(state / "kill9_log")
    env = {"MODELOPS_INFERENCE_LOG_URL": log_root, "MODELOPS_INFERENCE_LOG_SPOOL": str(state / "kill9_spool")}
    answered: list[str] = []
    stop = threading.Event()

    def client(worker: int, url: str) -> None:
        i = 0
        while not stop.is_set():
            rid = f"k{worker}-{i}"
            i += 1
            try:
                status, _, _ = post(
                    url,
                    {"rows": rows[i % 50 : i % 50 + 1 + i % 3]},
                    headers={"X-Request-ID": rid},
                    timeout=10,
                )
            except (OSError, http.client.HTTPException):  # cut off mid-answer: not answered
                continue
            if status == 200:
                answered.append(rid)

    with serve_bento(built["tag"], timeout_s=180, log_dir=state / "serve", env=env) as served:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client, w, served.url) for w in range(8)]
            deadline = time.monotonic() + 60
            while len(answered) < 100 and time.monotonic() < deadline:
                time.sleep(0.05)
            # Every process of the server, mid-load: the workers run in process groups of their own.
            server = psutil.Process(served.proc.pid)
            processes = [server, *server.children(recursive=True)]
            assert len(processes) > 2, "expected the server and its workers"
            for p in processes:
                p.send_signal(signal.SIGKILL)
            psutil.wait_procs(processes, timeout=30)
            served.proc.wait(30)
            stop.set()
            for f in futures:
                f.result()
    assert len(answered) > 50, "the load did not get going"
    before = set(read_window(spec.name, root=log_root).request_id)
    print(
        f"\n{len(answered)} requests answered before kill -9; {len(set(answered) - before)} not in the log yet"
    )

    with serve_bento(built["tag"], timeout_s=180, log_dir=state / "serve", env=env) as again:
        deadline = time.monotonic() + 60  # the restarted workers write the spool in the background
        while time.monotonic() < deadline:
            logged = set(read_window(spec.name, root=log_root).request_id)
            if set(answered) <= logged:
                break
            time.sleep(0.5)
        missing = [rid for rid in answered if rid not in logged]
        server_log = again.log_path.read_text(errors="replace")
    assert not missing, (missing[:10], server_log[-3000:])
    if set(answered) - before:
        assert "recovered" in server_log and "rows of" in server_log  # the loss was made good, and said so


# ----------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------


def test_metrics_are_labelled_by_model_version_and_variant(spec, registered, rows, served):
    labels = {"model": spec.name, "version": registered["version"], "variant": "canary"}
    before = metrics_text(served.url)
    assert post(served.url, {"rows": rows[:5]})[0] == 200
    assert post(served.url, {"rows": [{**rows[0], "amount": -5}]})[0] == 400
    assert post(served.url, {"rows": [{**rows[0], "channel": "fax"}]})[0] == 400
    assert post(served.url, "{not json")[0] == 400
    after = metrics_text(served.url)

    def delta(name: str, **extra: str) -> float:
        return metric_value(after, name, **labels, **extra) - metric_value(before, name, **labels, **extra)

    assert delta("modelops_predictions_total") == 5
    assert delta("modelops_request_rejections_total", reason="out_of_range") == 1
    assert delta("modelops_request_rejections_total", reason="unknown_category") == 1
    assert delta("modelops_request_rejections_total", reason="invalid_json") == 1
    assert delta("modelops_requests_total", status="200") == 1
    assert delta("modelops_request_latency_seconds_count") == 1
    assert delta("modelops_prediction_score_count") == 5
    assert metric_value(after, "modelops_request_errors_total", **labels) == 0
    assert (
        "modelops_inference_log_dropped_rows_total" in after or "modelops_inference_log_dropped_rows" in after
    )
    assert "bentoml_service_request_total" in after  # BentoML's own metrics are still there


# ----------------------------------------------------------------------------------------
# Bad requests
# ----------------------------------------------------------------------------------------


def bad_requests(spec: ModelSpec, row: dict) -> list[tuple[str, dict, int, str]]:
    """(case, request kwargs, expected status, field the error must name)."""
    body = lambda **changes: {"rows": [{**row, **changes}]}  # noqa: E731
    missing = {k: v for k, v in row.items() if k != "hour_of_day"}
    return [
        ("wrong type", {"body": body(amount="12 euros")}, 400, "rows[0].amount"),
        ("bool for a number", {"body": body(hour_of_day=[1])}, 400, "rows[0].hour_of_day"),
        (
            "NaN",
            {
                "body": '{"rows": ['
                + json.dumps(row)[:-1]
                + ', "amount": NaN}]}'.replace(f'"amount": {json.dumps(row["amount"])}, ', "", 1)
            },
            400,
            "rows[0].amount",
        ),
        ("infinity", {"body": json.dumps(body(amount=float("inf")))}, 400, "rows[0].amount"),
        ("out of range", {"body": body(customer_age=130)}, 400, "rows[0].customer_age"),
        ("unknown category", {"body": body(merchant_category="casino")}, 400, "rows[0].merchant_category"),
        ("missing field", {"body": {"rows": [missing]}}, 400, "rows[0].hour_of_day"),
        ("extra field", {"body": body(is_fraud=1)}, 400, "rows[0].is_fraud"),
        ("empty list", {"body": {"rows": []}}, 400, "rows"),
        ("no rows at all", {"body": {}}, 400, "rows"),
        ("more rows than the limit", {"body": {"rows": [row] * 10_001}}, 400, "rows"),
        (
            "entity ids of another length",
            {"body": {"rows": [row], "entity_ids": ["a", "b"]}},
            400,
            "entity_ids",
        ),
        ("10 MB body", {"body": b'{"rows": [' + b" " * 10_000_000 + b"]}"}, 413, "body"),
        ("not JSON", {"body": b"amount=12&channel=pos"}, 400, "body"),
        (
            "wrong content type",
            {"body": body(), "headers": {"Content-Type": "text/csv"}},
            415,
            "header Content-Type",
        ),
        (
            "form content type",
            {"body": b"rows=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            415,
            "header Content-Type",
        ),
        ("unicode junk", {"body": body(channel="\u202e\ufffd\U0001f4a9\x00")}, 400, "rows[0].channel"),
        ("unicode field name", {"body": body(**{"amoünt\u200b": 1})}, 400, "rows[0].amoünt\u200b"),
        ("invalid UTF-8", {"body": b'{"rows": [{"channel": "\xff\xfe"}]}'}, 400, "body"),
        ("a list, not an object", {"body": [row]}, 400, "body"),
        (
            "bad request id",
            {"body": body(), "headers": {"X-Request-ID": "x" * 500}},
            400,
            "header X-Request-ID",
        ),
        ("GET", {"method": "GET"}, 405, ""),
    ]


def test_every_bad_request_gets_a_4xx_naming_the_field_and_the_service_keeps_serving(spec, rows, served):
    failures = []
    for case, kwargs, expected, field in bad_requests(spec, rows[0]):
        status, headers, raw = post(served.url, **kwargs)
        try:
            answer = json.loads(raw)
        except ValueError:
            failures.append(f"{case}: body is not JSON: {raw[:200]!r}")
            continue
        fields = [d["field"] for d in answer.get("detail", [])]
        if status != expected or (field and field not in fields) or not answer.get("error"):
            failures.append(f"{case}: HTTP {status} {answer}")
        elif not headers.get("x-request-id"):
            failures.append(f"{case}: no X-Request-ID on the answer")
    assert not failures, "\n".join(failures)
    status, _, raw = post(served.url, {"rows": rows[:2]})
    assert status == 200 and len(json.loads(raw)) == 2


def test_error_message_names_the_field_and_the_problem(rows, served):
    status, _, raw = post(served.url, {"rows": [rows[0], {**rows[1], "amount": -1, "channel": "fax"}]})
    answer = json.loads(raw)
    assert status == 400
    assert answer["error"].startswith("rows[1].amount: Input should be greater than or equal to 0")
    assert "(and 1 more problem)" in answer["error"]
    assert {d["field"]: d["type"] for d in answer["detail"]} == {
        "rows[1].amount": "greater_than_equal",
        "rows[1].channel": "literal_error",
    }


def wrong_types(row: dict) -> list[tuple[str, dict, str, str]]:
    """(case, body, field the 400 must name, error type): a wrong JSON type for each kind of field."""
    body = lambda **changes: {"rows": [{**row, **changes}]}  # noqa: E731
    return [
        ('numeric as a string "23"', body(amount="23"), "rows[0].amount", "float_type"),
        ('numeric as "yes"', body(amount="yes"), "rows[0].amount", "float_type"),
        ("numeric as true", body(amount=True), "rows[0].amount", "float_type"),
        ("integer with a fraction", body(hour_of_day=3.5), "rows[0].hour_of_day", "int_from_float"),
        ('integer as a string "3"', body(hour_of_day="3"), "rows[0].hour_of_day", "int_type"),
        ("integer as true", body(hour_of_day=True), "rows[0].hour_of_day", "int_type"),
        ("boolean as 1", body(is_international=1), "rows[0].is_international", "bool_type"),
        ('boolean as "yes"', body(is_international="yes"), "rows[0].is_international", "bool_type"),
        ('boolean as "true"', body(is_international="true"), "rows[0].is_international", "bool_type"),
        (
            "category in another case",
            body(channel=row["channel"].upper()),
            "rows[0].channel",
            "literal_error",
        ),
        (
            "nullable numeric as a string",
            body(distance_from_home_km="12"),
            "rows[0].distance_from_home_km",
            "float_type",
        ),
        ("null for a required feature", body(customer_age=None), "rows[0].customer_age", "int_type"),
        ("entity_ids null", {"rows": [row], "entity_ids": None}, "entity_ids", "list_type"),
        ("entity id true", {"rows": [row], "entity_ids": [True]}, "entity_ids[0]", "entity_id_type"),
    ]


def test_a_wrong_json_type_gets_a_400_naming_the_field(rows, served):
    failures = []
    for case, body, field, error in wrong_types(rows[0]):
        status, _, raw = post(served.url, body)
        answer = json.loads(raw)
        named = {d["field"]: d["type"] for d in answer.get("detail", [])}
        if status != 400 or named != {field: error} or not answer["error"].startswith(f"{field}: "):
            failures.append(f"{case}: HTTP {status} {answer}")
    assert not failures, "\n".join(failures)


def test_whole_numbers_in_either_json_form_are_scored_alike(rows, served):
    row = next(r for r in rows if r["distance_from_home_km"] is not None)
    as_ints = {
        **row,
        "amount": round(row["amount"]),
        "distance_from_home_km": round(row["distance_from_home_km"]),
    }
    as_floats = {
        **as_ints,
        "amount": float(as_ints["amount"]),
        "hour_of_day": float(row["hour_of_day"]),
        "customer_age": float(row["customer_age"]),
    }
    status, _, raw = post(served.url, {"rows": [as_ints, as_floats], "entity_ids": [7, 7.0]})
    assert status == 200, raw
    first, second = json.loads(raw)
    assert first == second


def published_request_schema(url: str):
    """The /predict request body's JSON schema from the served /docs.json, references resolvable."""
    import jsonschema

    status, _, raw = post(url, path="/docs.json", method="GET")
    assert status == 200
    docs = json.loads(raw)
    schema = docs["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # References are "#/components/schemas/<name>": put the components at the root they point into.
    return jsonschema.Draft202012Validator({**schema, "components": docs["components"]})


def test_published_request_schema_accepts_what_the_service_accepts(rows, served):
    schema = published_request_schema(served.url)
    row = rows[0]
    good = {
        "three rows": {"rows": rows[:3]},
        "string entity id": {"rows": [row], "entity_ids": ["card-1"]},
        "integer entity id": {"rows": [row], "entity_ids": [7]},
        "numeric as 42, integer as 3.0": {"rows": [{**row, "amount": 42, "hour_of_day": 3.0}]},
        "nullable null": {"rows": [{**row, "distance_from_home_km": None}]},
        "nullable left out": {"rows": [{k: v for k, v in row.items() if k != "distance_from_home_km"}]},
        # Unknown top-level keys are ignored, and the schema (no additionalProperties there) allows them.
        "unknown top-level key": {"rows": [row], "comment": "ignored"},
    }
    bad = {case: body for case, body, _, _ in wrong_types(row)} | {
        "no rows": {"rows": []},
        "10,001 rows": {"rows": [row] * 10_001},
        "empty body": {},
        "below min": {"rows": [{**row, "amount": -1}]},
        "above max": {"rows": [{**row, "customer_age": 130}]},
        "unknown category": {"rows": [{**row, "channel": "fax"}]},
        "unknown field": {"rows": [{**row, "is_fraud": 1}]},
        "required field left out": {"rows": [{k: v for k, v in row.items() if k != "hour_of_day"}]},
        "fractional entity id": {"rows": [row], "entity_ids": [1.5]},
    }
    mismatches = []
    for case, body, expected in [(c, b, True) for c, b in good.items()] + [
        (c, b, False) for c, b in bad.items()
    ]:
        status = post(served.url, body)[0]
        in_schema = schema.is_valid(body)
        if in_schema != expected or (status == 200) != expected:
            mismatches.append(
                f"{case}: published schema says {'valid' if in_schema else 'invalid'}, "
                f"service answered {status}"
            )
    assert not mismatches, "\n".join(mismatches)


JUNK_VALUES = [
    None,
    "",
    "x" * 5000,
    "\u0000",
    "\ud7ff\ue000\uffff",
    "💥" * 100,
    -1,
    -1e308,
    1e308,
    10**40,
    0.5,
    True,
    False,
    [],
    {},
    [[[[]]]],
    {"a": {"b": None}},
    "NaN",
    "1e309",
    "0x10",
    " 3 ",
    3,
    2.0,
]


def fuzz_cases(spec: ModelSpec, row: dict, n: int, seed: int = 11) -> list[dict]:
    """``n`` requests, most of them broken in one random way (seeded, so a failure replays)."""
    rng = random.Random(seed)
    names = spec.feature_names

    def mutated_row() -> dict:
        r = dict(row)
        for _ in range(rng.randint(1, 3)):
            action = rng.random()
            if action < 0.6:
                r[rng.choice(names)] = rng.choice(JUNK_VALUES)
            elif action < 0.75:
                r.pop(rng.choice(names), None)
            elif action < 0.9:
                r["".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 12)))] = 1
            else:
                f = rng.choice(spec.features)
                if f.type == FeatureType.categorical:
                    r[f.name] = rng.choice(f.categories or ["x"])  # a valid change
        return r

    cases = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.55:
            body: object = {"rows": [mutated_row() for _ in range(rng.randint(1, 4))]}
            if rng.random() < 0.2:
                body["entity_ids"] = rng.choice([["a"], [1, 2, 3, 4], "abc", [None], [[1]], None])
            cases.append({"body": body})
        elif kind < 0.7:
            text = json.dumps({"rows": [mutated_row()]})
            cut = rng.randint(0, len(text))
            cases.append(
                {"body": text[:cut] + rng.choice(["", "}", "]]", "\\", "\ud800", "NaN", ","]) + text[cut:]}
            )
        elif kind < 0.8:
            cases.append({"body": bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))})
        elif kind < 0.88:
            cases.append(
                {
                    "body": rng.choice(
                        [
                            [],
                            "rows",
                            42,
                            None,
                            {"rows": None},
                            {"rows": {}},
                            {"rows": "x"},
                            {"rows": [[]]},
                            {"rows": [None]},
                            {"rows": [1, 2]},
                            {"rows": [row], "extra": 1},
                            "[" * 5000 + "]" * 5000,
                        ]
                    )
                }
            )
        elif kind < 0.94:
            cases.append(
                {
                    "body": {"rows": [row]},
                    "headers": {
                        "Content-Type": rng.choice(
                            [
                                "text/plain",
                                "multipart/form-data; boundary=x",
                                "application/octet-stream",
                                "application/xml",
                                "application/vnd.bentoml+pickle",
                                "",
                                "json",
                            ]
                        )
                    },
                }
            )
        else:
            cases.append(
                {
                    "body": {"rows": [row]},
                    "headers": {
                        "X-Request-ID": rng.choice(
                            ["ok-1", "", " ", "a b", "é" * 3, "x" * 129, "..", "A:B-c_d.e"]
                        )
                    },
                }
            )
    return cases


def test_fuzzed_requests_never_get_a_5xx_and_the_next_valid_request_is_answered(
    spec, registered, rows, served
):
    cases = fuzz_cases(spec, rows[0], 1_200)
    statuses: dict[int, int] = {}
    server_errors = []
    started = time.perf_counter()

    def send(case: dict) -> tuple[dict, int, bytes]:
        status, _, raw = post(served.url, **case)
        return case, status, raw

    with ThreadPoolExecutor(4) as pool:
        for case, status, raw in pool.map(send, cases):
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 500:
                server_errors.append((case, raw[:300]))
            elif status >= 400:
                answer = json.loads(raw)
                assert answer["error"] and answer["detail"] and all(d["field"] for d in answer["detail"]), (
                    answer
                )
    print(
        f"\n{len(cases)} fuzzed requests in {time.perf_counter() - started:.1f} s: {dict(sorted(statuses.items()))}"
    )
    assert not server_errors, server_errors[:5]
    assert sum(v for k, v in statuses.items() if k >= 400) > len(cases) / 2  # the fuzzing did break requests
    status, _, raw = post(served.url, {"rows": rows[:10]})
    assert status == 200
    assert np.allclose([p["score"] for p in json.loads(raw)], registered["expected"][:10], atol=1e-9)
