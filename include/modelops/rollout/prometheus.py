"""A serving variant's request counters and latency histogram from Prometheus, as the rollout's analysis reads them."""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

from include.modelops.platform import http
from include.modelops.rollout.analysis import MetricsWindow


def _label(value: str) -> str:
    return json.dumps(
        str(value)
    )  # a double-quoted string with escapes, as PromQL and the text format read it


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class PrometheusQuery:
    """A variant's request counters and latency histogram from a Prometheus server's HTTP API."""

    def __init__(self, url: str, *, timeout_s: float = 10) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query (``/api/v1/query``); its vector of ``{"metric": labels, "value": [t, v]}``.

        Raises:
            OSError: Prometheus did not answer, or answered with an error (its message included).
        """
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        reply = http.get(url, timeout=self.timeout_s)  # Unreachable (an OSError) when it does not answer
        code = reply.status
        try:  # Prometheus explains a refused query in JSON too (400 bad_data, 422 execution, 503 timeout)
            answer = json.loads(reply.text)
        except ValueError as exc:
            if not reply.ok:
                raise OSError(f"Prometheus {self.url}: HTTP {code} for {promql!r}") from exc
            raise OSError(f"Prometheus {self.url} did not answer JSON for {promql!r}: {exc}") from exc
        if answer.get("status") != "success":
            raise OSError(
                f"Prometheus {self.url} refused {promql!r} (HTTP {code}): {answer.get('errorType')}: "
                f"{answer.get('error')}"
            )
        data = answer.get("data") or {}
        if data.get("resultType") != "vector":
            raise OSError(
                f"Prometheus {self.url}: expected a vector for {promql!r}, got {data.get('resultType')}"
            )
        return data.get("result") or []

    @staticmethod
    def selector(model: str, version: str, variant: str) -> str:
        return f"model={_label(model)},version={_label(version)},variant={_label(variant)}"

    def window(self, model: str, version: str, variant: str) -> MetricsWindow:
        """The cumulative counters of every pod of the variant (what one service's ``/metrics`` would say)."""
        sel = self.selector(model, version, variant)
        by_status = {
            r["metric"].get("status", ""): float(r["value"][1])
            for r in self.query(f"sum by (status) (modelops_requests_total{{{sel}}})")
        }
        buckets = {
            float(r["metric"]["le"]): float(r["value"][1])
            for r in self.query(f"sum by (le) (modelops_request_latency_seconds_bucket{{{sel}}})")
        }
        return MetricsWindow(by_status, buckets)

    def exposition(self, model: str, version: str, variant: str) -> str:
        """The window as Prometheus text, which :func:`analysis.parse_service_metrics` reads."""
        return render_exposition(
            self.window(model, version, variant), model=model, version=version, variant=variant
        )


def render_exposition(window: MetricsWindow, *, model: str, version: str, variant: str) -> str:
    """A :class:`MetricsWindow` as the service's own metrics text (``modelops_requests_total``, latency buckets)."""
    base = f"model={_label(model)},version={_label(version)},variant={_label(variant)}"
    lines = ["# TYPE modelops_requests_total counter"]  # as prometheus_client writes it
    lines += [
        f"modelops_requests_total{{{base},status={_label(status)}}} {value!r}"
        for status, value in sorted(window.requests_by_status.items())
    ]
    lines.append("# TYPE modelops_request_latency_seconds histogram")
    lines += [
        f'modelops_request_latency_seconds_bucket{{{base},le="{_le(le)}"}} {value!r}'
        for le, value in sorted(window.latency_buckets.items())
    ]
    return "\n".join(lines) + "\n"
