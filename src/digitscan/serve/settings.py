"""Server configuration: one flat pydantic-settings class, read from DIGITSCAN_* environment variables.

`Settings()` reads the environment; `Settings(port=9000)` overrides single values (the CLI passes its flags this way).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from digitscan.constants import MAX_FILE_BYTES, MAX_PIXELS, READ_TIME_LIMIT_S

MIB = 2**20


class Settings(BaseSettings):
    """Every knob of `digitscan serve`; environment variable = DIGITSCAN_ + the field name in capitals."""

    # env_parse_none_str: "none" in a variable is None, so every value, None included, survives the trip through
    # the environment that a worker process makes (as_environment).
    model_config = SettingsConfigDict(env_prefix="DIGITSCAN_", extra="ignore", frozen=True, env_parse_none_str="none")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model: str | None = Field(None, description="Checkpoint file; None = the shipped model.")
    preprocess: Literal["robust", "paper"] | None = Field(None, description="None = the checkpoint's own mode.")
    ensemble: bool = Field(False, description="The shipped ensemble instead of `model`: a little more accurate, "
                                              "several times slower.")

    # Limits. An upload is checked three times: its byte size while it streams in, its pixel count from the image
    # header before any pixel is decoded, and its format from its content (never from its name or Content-Type).
    max_upload_bytes: int = Field(5 * MIB, gt=0, le=MAX_FILE_BYTES)
    max_pixels: int = Field(25_000_000, gt=0, le=MAX_PIXELS)
    # Worker processes, each with its own copy of the model, its own threads and its own limits (uvicorn's workers).
    workers: int = Field(1, ge=1, le=64, description="Server processes; each loads the model.")
    # Images decoded and prepared at once per worker, each on its own thread; None = the usable cores divided among
    # the workers (at least 1), so N workers on N cores run one image each and nothing is oversubscribed ...
    max_concurrency: int | None = Field(None, ge=1, le=64)
    # ... and requests allowed to wait for one; beyond that the server answers 503 at once instead of queueing.
    max_queue: int = Field(64, ge=0, le=10_000)
    # Prepared inputs that arrive together share one model call (serve/batcher.py): the first one waits at most
    # batch_window_ms for others (0: no waiting; inputs that queued while the model was busy are batched anyway),
    # and a call takes at most max_batch inputs.
    batch_window_ms: float = Field(2.0, ge=0, le=1000, description="Longest wait for a batch to fill; 0 = none.")
    max_batch: int = Field(32, ge=1, le=1024, description="Most inputs in one model call.")
    request_timeout_s: float = Field(10.0, gt=0, le=600, description="Whole request, upload included; then 503.")
    # /api/read on a page of clutter stops after this long with a 422; keep it below request_timeout_s.
    read_time_limit_s: float = Field(READ_TIME_LIMIT_S, gt=0, le=600, description="Per image for /api/read; then 422.")
    # /api/page finds and reads every field of a form page (~0.3 s for a generated A4 form on one core).
    page_time_limit_s: float = Field(8.0, gt=0, le=600, description="Per page for /api/page; then 422.")
    # Connections, before any request reaches the app (serve/connections.py). A client gets header_timeout_s for the
    # headers of each request, from connecting or from its first byte; then the connection is closed.
    header_timeout_s: float = Field(10.0, gt=0, le=600, description="Seconds to send a request's headers.")
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=MIB, description="Largest request line + headers; "
                                                                           "then 400 (h11's limit).")
    keep_alive_timeout_s: float = Field(5.0, gt=0, le=600, description="Idle seconds between requests on one "
                                                                       "connection before it is closed.")
    # Past this many open connections a new one is answered 503 at once and closed; keep it well below the open-file
    # limit (the server raises its soft limit to fit it when the hard limit allows).
    max_connections: int = Field(1000, ge=1, le=100_000)
    torch_threads: int | None = Field(1, ge=1, le=256, description="Intra-op threads per inference (onnxruntime's, "
                                                                   "or PyTorch's for a checkpoint); None = the "
                                                                   "runtime's default.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # POST /bench/bare: the same multipart upload answered with a constant JSON, for benchmarks/load.py's ceiling of
    # the HTTP stack. Off in production: it is a free way to make the server parse uploads.
    benchmark_routes: bool = Field(False, description="Mount POST /bench/bare (benchmarks only).")

    @property
    def inference_threads(self) -> int:
        """Threads per worker that decode and prepare images: max_concurrency, or its default for the cores."""
        return self.max_concurrency or max(1, usable_cores() // self.workers)

    def as_environment(self) -> dict[str, str]:
        """These settings as DIGITSCAN_* variables, from which `Settings()` in another process rebuilds them."""
        return {f"DIGITSCAN_{name.upper()}": "none" if value is None else str(value)
                for name, value in self.model_dump().items()}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment, read once per process (what `create_app()` uses when given none)."""
    return Settings()
