"""The FastAPI application: assembles settings, middleware, error handlers, routes and the page; loads the model once.

`run(Settings(...))` serves (the CLI), `create_app(...)` builds the app (tests); or
`uvicorn --factory digitscan.serve.app:create_app`, configured from DIGITSCAN_* variables, which is also how each
worker process builds its own app when `workers` > 1.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import logging.config
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware import Middleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from digitscan.errors import ModelOutputError
from digitscan.json_output import strict_json
from digitscan.recognize import Recognizer
from digitscan.serve.batcher import Batcher
from digitscan.serve.limits import BodyTooLarge, InferencePool, RequestLimits
from digitscan.serve.metrics import MULTIPROCESS_ENV, Metrics, MetricsMiddleware
from digitscan.serve.routes import STATIC_DIR, ApiError, bench_router, router
from digitscan.serve.settings import Settings, get_settings

log = logging.getLogger("digitscan.serve")

DESCRIPTION = """Handwritten digit recognition over HTTP. Upload an image as the multipart field `file`:
`/api/predict` reads one digit, `/api/read` a whole number, `/api/page` every field of a form page (or, with a
`template` file, the template's named fields). Bad input is a 4xx with `{"detail": "..."}`:
413 too large, 415 not a supported image, 422 unreadable; 503 with Retry-After when the server is busy."""


def load_recognizer(settings: Settings) -> Recognizer:
    """Load the checkpoint (and the line reader /api/read uses with the shipped model) and run one inference, so the
    first real request does not pay for warm-up."""
    recognizer = Recognizer.load(settings.model, preprocess=settings.preprocess, ensemble=settings.ensemble,
                                 threads=settings.torch_threads)  # per inference, onnxruntime's or PyTorch's
    recognizer.warm_up()
    return recognizer


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    pool = InferencePool(settings.inference_threads, settings.max_queue, on_change=app.state.metrics.admitted_now)
    app.state.pool = pool
    batcher = None
    try:
        recognizer = await asyncio.to_thread(load_recognizer, settings)  # keeps the event loop free meanwhile
        # As many inputs may wait for the model as requests may wait for the pool: the same bound, stage two.
        batcher = Batcher(recognizer.predict_inputs, settings.max_batch, settings.batch_window_ms / 1000,
                          max_pending=pool.capacity, on_batch=app.state.metrics.batch)
        app.state.batcher = batcher
        app.state.recognizer = recognizer
        app.state.metrics.ready.set(1)
        log.info("model %s loaded in process %d; %d inference threads, %d waiting at most; batches of up to %d "
                 "within %g ms", recognizer.name, os.getpid(), settings.inference_threads, settings.max_queue,
                 settings.max_batch, settings.batch_window_ms)
        yield
    finally:
        app.state.recognizer = None  # uvicorn has drained the connections; anything later gets 503 not ready
        app.state.metrics.ready.set(0)
        if batcher is not None:
            batcher.close()  # anything still waiting for the model is answered 503, not left hanging
        pool.close()


class StrictJSONResponse(JSONResponse):
    """Every JSON answer through digitscan's one encoder: a NaN or infinity is a ModelOutputError, never bare NaN."""

    def render(self, content) -> bytes:
        return strict_json(content).encode()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()
    app = FastAPI(
        title="digitscan",
        summary="Recognize handwritten digits and numbers in images.",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        default_response_class=StrictJSONResponse,
        middleware=[  # outermost first: metrics see every answer, including the limits' 413s and 503s
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(RequestLimits, max_upload_bytes=settings.max_upload_bytes,
                       timeout_s=settings.request_timeout_s, on_reject=metrics.reject),
        ],
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.recognizer = None
    app.state.pool = None
    app.state.batcher = None
    app.include_router(router)
    if settings.benchmark_routes:
        app.include_router(bench_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    add_error_handlers(app, metrics)
    return app


def run(settings: Settings) -> None:
    """Serve `create_app(settings)` with uvicorn until interrupted (SIGINT/SIGTERM: graceful shutdown).

    Connections are guarded before any request reaches the app (serve/connections.py): a deadline for each
    request's headers, a cap on open connections, a bound on the headers' size, and a log that a flood of bad
    connections cannot fill. With `workers` > 1, uvicorn starts that many processes on one listening socket; each
    rebuilds the settings from the DIGITSCAN_* variables set here, then the app with `create_app()`, loads its own
    model, and has its own threads, batcher and limits; their metrics go into a temporary directory
    (PROMETHEUS_MULTIPROC_DIR, unless the environment names one), removed when the server stops.
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from digitscan.serve.connections import GuardedProtocol, RepeatedLogFilter, fit_to_open_file_limit

    log_config = copy.deepcopy(LOGGING_CONFIG)  # digitscan's own lines (model loaded, failures) go with uvicorn's
    # On the handler, not on loggers: a logger's filter does not see its children's records (digitscan.serve).
    log_config["filters"] = {"repeated": {"()": RepeatedLogFilter}}
    log_config["handlers"]["default"]["filters"] = ["repeated"]
    loggers = log_config["loggers"]
    loggers["digitscan"] = {"handlers": ["default"], "level": settings.log_level.upper(), "propagate": False}
    # asyncio logs a traceback for every failed accept(); on this handler its lines are bounded like the others.
    loggers["asyncio"] = {"handlers": ["default"], "level": "WARNING", "propagate": False}
    logging.config.dictConfig(log_config)  # uvicorn configures the same again; this is for the line below
    # Raises this process's soft open-file limit, which the worker processes inherit: the cap holds in each.
    max_connections = fit_to_open_file_limit(settings.max_connections)
    metrics_dir = None
    if settings.workers > 1:
        os.environ.update(settings.as_environment())  # what each worker's create_app() reads (get_settings)
        if not os.environ.get(MULTIPROCESS_ENV):  # the workers' metrics, added up by whichever answers /metrics;
            metrics_dir = tempfile.mkdtemp(prefix="digitscan-metrics-")  # an operator's own directory is kept
            os.environ[MULTIPROCESS_ENV] = metrics_dir
        app = "digitscan.serve.app:create_app"  # uvicorn's workers need an import string; factory=True calls it
    else:
        app = create_app(settings)
    try:
        uvicorn.run(app, factory=settings.workers > 1, workers=settings.workers,
                    host=settings.host, port=settings.port, log_level=settings.log_level, log_config=log_config,
                    # A picklable factory, not a class made at run time: spawned workers receive it and rebuild it.
                    http=GuardedProtocol(settings.header_timeout_s, max_connections),
                    # One more than the protocol's own cap, which refuses connections before they send anything,
                    # so uvicorn's check (a 503 once a request is complete) is the second line, never the first.
                    limit_concurrency=max_connections + 1,
                    timeout_keep_alive=settings.keep_alive_timeout_s,
                    h11_max_incomplete_event_size=settings.max_header_bytes)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            del os.environ[MULTIPROCESS_ENV]


def add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Every error is JSON {"detail": str}; a 5xx only ever means the server itself is in trouble."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, ApiError):
            metrics.reject(exc.reason)
        elif isinstance(exc, BodyTooLarge):
            metrics.reject("too_large")
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.reject("invalid_request")
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                             for error in exc.errors())
        errors = [{"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]} for error in exc.errors()]
        return JSONResponse({"detail": f"invalid request: {problems}", "errors": errors}, 422)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ModelOutputError):  # the model's fault, not the upload's: say so instead of "internal"
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse({"detail": str(exc)}, exc.http_status)
        # The last line of defence: routes turn every input problem into a 4xx, so reaching here is a bug of ours.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, 500)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digitscan")
    except PackageNotFoundError:
        return "0+unknown"
