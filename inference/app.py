"""The HTTP endpoint: SageMaker's bring-your-own-container contract on FastAPI.

`GET /ping` answers 200 only once the model is loaded (503 before), `POST /invocations`
scores `application/json`, `application/jsonlines` or `text/csv` bodies and answers JSON or
JSON lines (a JSON item may carry a `title`: the model reads it in front of the text, as in
training), `GET /metrics` exposes request counts, latency and batch-size histograms in
the Prometheus text format. Every bad request gets a JSON error
`{"error": {"code", "message", "index"?}}` with a 4xx status, and the server keeps serving.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import uuid
from bisect import bisect_left
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response

from inference.batching import MicroBatcher, QueueFullError
from inference.capture import CaptureWriter
from inference.codec import JSON, RequestError, check_texts, parse_texts, render, request_format, response_format
from inference.config import GenerativeConfig, ServingConfig
from inference.predictor import Predictor, load_predictor
from inference.replies.api import build_router

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("fbrain.access")

CUSTOM_ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes"
EMBEDDING_ATTRIBUTE = "embedding=true"
OVERLENGTH_MODES = ("truncate", "reject")
KNOWN_PATHS = ("/ping", "/invocations", "/metrics")
LATENCY_BUCKETS_MS = (1, 2, 4, 6, 8, 10, 15, 25, 50, 100, 250, 500, 1000, 2500)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

# ---------------------------------------------------------------- metrics


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, cumulative = [], 0
        sep = "," if labels else ""
        for bound, count in zip(list(self.buckets) + ["+Inf"], self.counts):
            cumulative += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cumulative}')
        brace = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{brace} {self.total:.6f}", f"{name}_count{brace} {self.count}"]
        return out


@dataclass
class ServerMetrics:
    """Request and batch metrics, rendered in the Prometheus text exposition format."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    texts: int = 0
    latency_ms: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))
    batch_sizes: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    batch_latency_ms: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_request(self, path: str, status: int, latency_ms: float, texts: int) -> None:
        with self.lock:
            self.requests[(path, status)] = self.requests.get((path, status), 0) + 1
            self.texts += texts
            if path == "/invocations":
                self.latency_ms.observe(latency_ms)

    def record_batch(self, size: int, seconds: float) -> None:
        with self.lock:
            self.batch_sizes.observe(size)
            self.batch_latency_ms.observe(seconds * 1000)

    def render(self, extra: dict[str, float]) -> str:
        with self.lock:
            lines = ["# TYPE fbrain_requests_total counter"]
            lines += [f'fbrain_requests_total{{path="{p}",status="{s}"}} {n}' for (p, s), n in sorted(self.requests.items())]
            lines += ["# TYPE fbrain_texts_total counter", f"fbrain_texts_total {self.texts}"]
            lines += ["# TYPE fbrain_request_latency_ms histogram", *self.latency_ms.lines("fbrain_request_latency_ms")]
            lines += ["# TYPE fbrain_batch_size histogram", *self.batch_sizes.lines("fbrain_batch_size")]
            lines += ["# TYPE fbrain_batch_latency_ms histogram", *self.batch_latency_ms.lines("fbrain_batch_latency_ms")]
        for name, value in sorted(extra.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


class AccessLogMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware): one JSON log line and metrics per request."""

    def __init__(self, app: Any, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        scope.setdefault("state", {})
        scope["state"]["texts"] = 0
        scope["state"]["request_id"] = request_id = uuid.uuid4().hex

        async def send_recording(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            texts = scope["state"].get("texts", 0)
            path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"  # bounded label set
            self.metrics.record_request(path, status["code"], latency_ms, texts)
            if access_logger.isEnabledFor(logging.INFO):
                entry = {"event": "access", "request_id": request_id, "method": scope["method"], "path": scope["path"],
                         "status": status["code"], "latency_ms": round(latency_ms, 3), "texts": texts}
                if scope["state"].get("error_code"):
                    entry["error"] = scope["state"]["error_code"]
                access_logger.info(json.dumps(entry))


# ---------------------------------------------------------------- application


@dataclass
class ModelState:
    predictor: Predictor | None = None
    load_error: str | None = None
    batcher: MicroBatcher | None = None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "payload_too_large", f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "payload_too_large", f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(error: RequestError, request: Request) -> Response:
    request.state.error_code = error.code
    return Response(json.dumps(error.body()).encode("utf-8"), status_code=error.status, media_type=JSON)


def create_app(
    model_dir: Path | str | None = None,
    config: ServingConfig | None = None,
    *,
    loader: Callable[[], Predictor] | None = None,
    capture: CaptureWriter | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    generative: GenerativeConfig | None = None,
) -> FastAPI:
    """The endpoint app; the model loads in a background thread at start-up (`/ping` is 503 until then)."""
    config = config or ServingConfig()
    if config.overlength not in OVERLENGTH_MODES:
        raise ValueError(f"overlength {config.overlength!r}: choose one of {OVERLENGTH_MODES}")
    if loader is None:
        if model_dir is None:
            raise ValueError("create_app needs a model_dir or a loader")
        loader = lambda: load_predictor(model_dir, config, model_name, model_version)  # noqa: E731
    state = ModelState()
    metrics = ServerMetrics()

    async def load_model() -> None:
        try:
            predictor = await asyncio.to_thread(loader)
        except Exception as error:  # reported on /ping and in the log
            state.load_error = f"{type(error).__name__}: {error}"
            logger.exception("model failed to load")
            return
        batcher = MicroBatcher(
            predictor.predict, config.max_batch_size, config.max_batch_wait_ms / 1000.0, config.max_queue_texts,
            metrics.record_batch, adaptive_wait=config.adaptive_batch_wait,
        )
        await batcher.start()
        # The model, tokenizer and imports are long-lived: moving them out of the collector's view keeps
        # full collections (pauses of milliseconds, i.e. tail latency) short for the server's lifetime.
        gc.collect()
        gc.freeze()
        state.batcher, state.predictor = batcher, predictor

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if capture is not None:
            capture.start()
        loading = asyncio.create_task(load_model())
        try:
            yield
        finally:
            loading.cancel()
            if state.batcher is not None:
                await state.batcher.stop()
            if capture is not None:
                capture.close()

    app = FastAPI(title="feedback-brain endpoint", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.model = state
    app.state.metrics = metrics
    app.state.capture = capture

    @app.get("/ping")
    async def ping() -> Response:
        if state.predictor is None:
            detail = {"status": "failed" if state.load_error else "loading"}
            if state.load_error:
                detail["error"] = state.load_error
            return Response(json.dumps(detail), status_code=503, media_type=JSON)
        card = state.predictor.card
        body = {"status": "healthy", "model": {"name": card.name, "version": card.version, "runtime": state.predictor.runtime}}
        return Response(json.dumps(body), status_code=200, media_type=JSON)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        try:
            if state.predictor is None or state.batcher is None:
                raise RequestError(503, "model_not_ready", state.load_error or "the model is still loading; retry when /ping answers 200")
            in_fmt = request_format(request.headers.get("content-type"))
            out_fmt = response_format(request.headers.get("accept"))
            body = await _read_body(request, config.max_payload_bytes)
            texts = parse_texts(body, in_fmt)
            check_texts(texts, config)
            if config.overlength == "reject":
                limit = state.predictor.encoder.max_seq_length
                for i, text in enumerate(texts):
                    if (n := state.predictor.token_count(text)) > limit:
                        raise RequestError(400, "text_too_long", f"item {i}: {n} tokens; the model reads at most {limit}", i)
            include_embedding = EMBEDDING_ATTRIBUTE in request.headers.get(CUSTOM_ATTRIBUTES_HEADER, "").replace(" ", "").lower()
            try:
                predictions = await state.batcher.submit(texts, include_embedding)
            except QueueFullError as error:
                raise RequestError(503, "overloaded", str(error)) from None
        except RequestError as error:
            return _error_response(error, request)
        except Exception as error:  # a failed batch must not take the server down
            logger.exception("invocation failed")
            return _error_response(RequestError(500, "internal_error", f"{type(error).__name__}: {error}"), request)
        request.state.texts = len(texts)
        payload = render(predictions, out_fmt)
        if capture is not None:
            capture.capture(body, in_fmt, payload, out_fmt)
        return Response(payload, status_code=200, media_type=out_fmt)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        extra: dict[str, float] = {"fbrain_model_ready": 1.0 if state.predictor is not None else 0.0}
        if state.batcher is not None:
            extra["fbrain_queued_texts"] = float(state.batcher.queued_texts)
        if capture is not None:
            extra.update({"fbrain_capture_records_total": float(capture.written), "fbrain_capture_dropped_total": float(capture.dropped)})
        return Response(metrics.render(extra), media_type="text/plain; version=0.0.4")

    def score_texts(texts: list[str]) -> list[dict[str, Any]]:
        if state.predictor is None:
            raise HTTPException(503, "the model is still loading; retry when /ping answers 200")
        return state.predictor.predict(texts)

    # POST /responses and /summaries share the endpoint so one call can score and draft a reply.
    app.include_router(build_router(generative or GenerativeConfig(), scorer=score_texts, serving=config))
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    return app
