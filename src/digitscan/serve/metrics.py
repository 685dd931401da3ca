"""Prometheus metrics for the server: request counts and latencies per route and status, inference time, refusals.

`metrics = Metrics()` owns its own registry (one per app, so tests can build many apps); `metrics.render()` is /metrics.
With several worker processes (PROMETHEUS_MULTIPROC_DIR set, as `digitscan serve --workers N` does) every process
writes its values into files there and /metrics, whichever worker answers it, adds up all of them
(prometheus_client's multiprocess mode): the counters and histograms are the server's, the gauges the sum over the
live workers.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every label value must come from a fixed set: a client choosing one (a made-up method, a random URL) would add a
# time series per request, and 20,000 such requests made /metrics 45 MB. Methods outside this set are "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
STATIC_PREFIX = "/static/"
# Seconds. Single-digit predictions take a few milliseconds; photos and numbers up to a few hundred.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # max_batch is at most 1024
MODEL_CALL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's variable: its value classes read it at import


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_ENV) or None
        self.requests = Counter("digitscan_http_requests", "HTTP requests answered, by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("digitscan_http_request_duration_seconds",
                                 "Time from receiving the request to the end of the response, by route and status.",
                                 ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram("digitscan_inference_duration_seconds",
                                   "Time on a worker thread per image: decoding and preprocessing (predict), "
                                   "or the whole reading with its model calls (read, page).",
                                   ["endpoint", "outcome"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("digitscan_batch_size", "Inputs per model call of /api/predict's batcher.",
                                    buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self.model_call = Histogram("digitscan_model_call_duration_seconds",
                                    "Time of one batched model call of /api/predict, whatever its size.",
                                    buckets=MODEL_CALL_BUCKETS, registry=self.registry)
        self.rejected = Counter("digitscan_rejected_requests",
                                "API requests refused, by reason (too_large, unsupported, unreadable, too_costly, "
                                "invalid_request, bad_template, saturated, timeout, not_ready, processing_error, "
                                "out_of_memory).",
                                ["reason"], registry=self.registry)
        # livesum: with several workers, the sum over the live processes (ignored in a single process).
        self.admitted = Gauge("digitscan_inference_admitted", "Inferences running or waiting for a worker thread.",
                              registry=self.registry, multiprocess_mode="livesum")
        self.ready = Gauge("digitscan_model_ready", "Worker processes whose model is loaded and warmed up (1 with "
                           "one worker).", registry=self.registry, multiprocess_mode="livesum")

    def admitted_now(self, count: int) -> None:
        """The inference pool's count of running and waiting inferences, whenever it changes."""
        self.admitted.set(count)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.model_call.observe(seconds)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=self.multiprocess_dir)
        return generate_latest(every_worker), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by method, route template (not raw path) and status, each label
    from a fixed set (method_label, route_label) so no client can grow the number of series."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server ends up sending if the app raises before answering

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            labels = (method_label(scope), route_label(scope), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)


def method_label(scope: Scope) -> str:
    """The request method when it is a standard one, else "other": clients may send any token as a method."""
    method = scope["method"]
    return method if method in KNOWN_METHODS else "other"


def route_label(scope: Scope) -> str:
    """The matched route's template, so arbitrary URLs (scanners, typos) cannot blow up the label cardinality."""
    path = getattr(scope.get("route"), "path", None)  # set for the API routes
    if path:
        return path
    raw = scope["path"]
    if raw in DOCS_PATHS:
        return raw
    if raw.startswith(STATIC_PREFIX):
        return STATIC_PREFIX.rstrip("/")
    return "unmatched"
