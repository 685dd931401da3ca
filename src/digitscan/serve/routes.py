"""The HTTP routes: thin async handlers over Recognizer; the image work itself runs on the inference pool's threads,
and /api/predict's model call in a batch shared with the requests that arrive with it (serve/batcher.py).

Mounted by `create_app`; each handler gets the recognizer, pool, batcher, settings and metrics as FastAPI
dependencies. `bench_router` (POST /bench/bare) is mounted only with the benchmark_routes setting.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from digitscan.constants import MAX_TEMPLATE_BYTES
from digitscan.errors import ImageError, Saturated, TemplateError
from digitscan.fields.template import Template, parse_template
from digitscan.image.decode import decode_image
from digitscan.recognize import Recognizer
from digitscan.serve.batcher import Batcher
from digitscan.serve.limits import InferencePool
from digitscan.serve.metrics import Metrics
from digitscan.serve.settings import Settings

log = logging.getLogger("digitscan.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"


class ApiError(HTTPException):
    """An HTTP error answered as {"detail": str}; `reason` labels it in digitscan_rejected_requests_total."""

    def __init__(self, status_code: int, detail: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(status_code, detail, headers)
        self.reason = reason


# ---- response shapes (INTERFACE.md), for validation and the OpenAPI page; extra fields pass through -------------


class PredictResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    digit: int | None = Field(description="The digit; null exactly when is_digit is false.")
    confidence: float = Field(description="Calibrated probability of the top class, also when rejected.")
    is_digit: bool
    probabilities: list[float] = Field(description="One probability per class 0-9.")
    input_image: str | None = Field(None, description="With ?include_input=1: the 28x28 model input as a PNG data URL.")


class ReadDigit(BaseModel):
    model_config = ConfigDict(extra="allow")
    digit: int
    confidence: float
    box: list[int] = Field(description="[x, y, w, h] in the uploaded image's pixel coordinates.")


class ReadResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = Field(description='Only the characters 0-9, left to right; "" when no digit is found.')
    confidence: float
    digits: list[ReadDigit]


class PageFieldResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = Field(description="The field's digits 0-9.")
    raw: str = Field(description="The field as written, separators included.")
    confidence: float
    box: list[int] = Field(description="[x, y, w, h] in the uploaded page's pixel coordinates.")
    needs_review: bool = Field(description="A person should check this reading.")


class PageResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    fields: list[PageFieldResponse] | dict[str, PageFieldResponse] = Field(
        description="Without a template: every handwritten number found, top to bottom (with its kind: comb, "
                    "underline, box or free). With one: {NAME: field} in the template's order, each with value, "
                    "valid, alternatives and reason.")
    size: list[int] = Field(description="[width, height] of the uploaded page in pixels, which the boxes refer to.")


class ErrorResponse(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Upload or image too large"},
    415: {"model": ErrorResponse, "description": "Not a supported image format"},
    422: {"model": ErrorResponse, "description": "Unreadable image or invalid request"},
    503: {"model": ErrorResponse, "description": "Busy, timed out or not ready; see Retry-After"},
}


# ---- dependencies: everything comes from app.state, set up by the lifespan ----------------------------------------


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_pool(request: Request) -> InferencePool:
    return request.app.state.pool


def get_batcher(request: Request) -> Batcher:
    return request.app.state.batcher


def get_recognizer(request: Request) -> Recognizer:
    recognizer = request.app.state.recognizer
    if recognizer is None:
        raise ApiError(503, "the model is not loaded yet; retry shortly", "not_ready", {"Retry-After": "1"})
    return recognizer


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PoolDep = Annotated[InferencePool, Depends(get_pool)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
RecognizerDep = Annotated[Recognizer, Depends(get_recognizer)]
ImageUpload = Annotated[UploadFile, File(description="An image: PNG, JPEG, BMP, GIF, TIFF or WebP.")]
TemplateUpload = Annotated[UploadFile | None, File(description="Optional: a form template (FORM.json, "
                                                                 "docs/templates.md) naming the fields to read.")]
IncludeInput = Annotated[bool, Query(description="Add the 28x28 model input as input_image (a PNG data URL).")]

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], responses={503: ERRORS[503]})
async def readyz(recognizer: RecognizerDep) -> dict:
    """Readiness: the model is loaded and warmed up (503 before that and while shutting down)."""
    return {"status": "ready", "model": recognizer.name, "arch": recognizer.meta.get("arch")}


@router.get("/metrics", tags=["operations"], response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@router.post("/api/predict", tags=["recognition"], response_model=PredictResponse,
             response_model_exclude_unset=True, responses=ERRORS)
async def predict(file: ImageUpload, recognizer: RecognizerDep, pool: PoolDep, batcher: BatcherDep,
                  settings: SettingsDep, metrics: MetricsDep, include_input: IncludeInput = False) -> dict:
    """One digit in the image: the digit (or null when it is not a digit), its confidence and all ten probabilities."""
    data = await read_upload(file, settings.max_upload_bytes)
    with api_errors("predict"):
        model_input = await infer(pool, metrics, "predict", prepare_image, recognizer, data, settings.max_pixels)
        result = (await batcher.predict(model_input)).to_dict()
    if include_input:
        result["input_image"] = png_data_url(model_input)
    return result


@router.post("/api/read", tags=["recognition"], response_model=ReadResponse, responses=ERRORS)
async def read(file: ImageUpload, recognizer: RecognizerDep, pool: PoolDep, settings: SettingsDep,
               metrics: MetricsDep) -> dict:
    """A whole handwritten number, left to right: its text, confidence and one box per digit."""
    data = await read_upload(file, settings.max_upload_bytes)
    return await infer(pool, metrics, "read", read_image, recognizer, data, settings.max_pixels,
                       settings.read_time_limit_s)


@router.post("/api/page", tags=["recognition"], response_model=PageResponse, responses=ERRORS)
async def form_page(file: ImageUpload, recognizer: RecognizerDep, pool: PoolDep, settings: SettingsDep,
                    metrics: MetricsDep, template: TemplateUpload = None) -> dict:
    """Every handwritten number on a form page (comb boxes, underlines and boxes removed, printed text left out),
    or, with a template, the template's named fields: each with its reading, box and needs_review."""
    data = await read_upload(file, settings.max_upload_bytes)
    form = await read_template_upload(template) if template is not None else None
    return await infer(pool, metrics, "page", read_page_image, recognizer, data, form, settings.max_pixels,
                       settings.page_time_limit_s)


# ---- the work done on a pool thread -------------------------------------------------------------------------------


def prepare_image(recognizer: Recognizer, data: bytes, max_pixels: int) -> np.ndarray:
    """The upload's (28, 28) model input in [0, 1], ink bright; the model call is the batcher's."""
    # The byte limit was applied on upload; a big JPEG is decoded at the reduced scale one digit needs.
    return recognizer.prepare(data, max_pixels=max_pixels, max_bytes=len(data))


def read_image(recognizer: Recognizer, data: bytes, max_pixels: int, time_limit_s: float) -> dict:
    gray = decode_image(data, max_pixels=max_pixels, max_bytes=len(data))
    return recognizer.read(gray, time_limit_s=time_limit_s).to_dict()


def read_page_image(recognizer: Recognizer, data: bytes, template: Template | None, max_pixels: int,
                    time_limit_s: float) -> dict:
    gray = decode_image(data, max_pixels=max_pixels, max_bytes=len(data))
    if template is None:
        result = recognizer.read_page(gray, time_limit_s=time_limit_s).to_dict()
    else:  # the limit is the page's: each field gets what is left of it, at most
        fields = recognizer.read_template(gray, template, time_limit_s=time_limit_s, page_time_limit_s=time_limit_s)
        result = {"fields": {name: field.to_dict() for name, field in fields.items()}}
    return result | {"size": [gray.shape[1], gray.shape[0]]}


def png_data_url(image: np.ndarray) -> str:
    """A [0, 1] grayscale array as a data:image/png URL (what the page shows as 'what the model sees')."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), "L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes; 413 past `limit` (the body cap already stopped anything much bigger)."""
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"file is too large: more than {limit:,} bytes", "too_large")
    return data


async def read_template_upload(file: UploadFile) -> Template:
    """An uploaded FORM.json, checked like a template file; 413 past MAX_TEMPLATE_BYTES, 422 for anything wrong."""
    data = await file.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ApiError(413, f"template is too large: more than {MAX_TEMPLATE_BYTES // 2**10} KiB", "too_large")
    try:
        return parse_template(data, source="template")
    except TemplateError as exc:
        raise ApiError(422, str(exc), "bad_template") from None


async def infer(pool: InferencePool, metrics: Metrics, endpoint: str, work: Callable[..., Any], *args: Any) -> Any:
    """Run `work` on the pool and turn every way it can fail into a 4xx (the input's fault) or a 503 (ours)."""

    def timed() -> Any:
        start, outcome = time.perf_counter(), "error"
        try:
            result = work(*args)
            outcome = "ok"
            return result
        finally:
            metrics.inference.labels(endpoint, outcome).observe(time.perf_counter() - start)

    with api_errors(endpoint):
        return await pool.run(timed)


@contextmanager
def api_errors(endpoint: str) -> Iterator[None]:
    """The error mapping of the API: Saturated (pool, batcher, shutdown) is a 503, an ImageError its own 4xx,
    running out of memory a 503, anything else a logged 422; an ApiError raised inside passes unchanged."""
    try:
        yield
    except ApiError:
        raise
    except Saturated as exc:
        raise ApiError(exc.http_status, f"server is busy ({exc}); retry shortly", exc.reason,
                       {"Retry-After": "1"}) from None
    except ImageError as exc:  # 413 too large, 415 unsupported, 422 unreadable or too complex (digitscan.errors)
        raise ApiError(exc.http_status, str(exc), exc.reason) from None
    except MemoryError:
        log.error("out of memory on a %s request", endpoint)
        raise ApiError(503, "not enough memory for this image right now; retry later", "out_of_memory",
                       {"Retry-After": "5"}) from None
    except Exception as exc:
        # A decoder, preprocessing step or model call tripped over this particular input (or its batch) in a way
        # no rule above foresaw: log it for us, and tell the client its image could not be processed rather than
        # fail the server.
        log.exception("%s failed on an uploaded image", endpoint)
        raise ApiError(422, f"the image could not be processed ({type(exc).__name__})", "processing_error") from None


# ---- for benchmarks only (settings.benchmark_routes) ---------------------------------------------------------------

# A constant answer the size and shape of a prediction, so the bare route's JSON costs what a real one does.
BARE_ANSWER = {"digit": 0, "confidence": 1.0, "is_digit": True, "probabilities": [1.0] + [0.0] * 9}
bench_router = APIRouter(prefix="/bench", tags=["benchmark"])


@bench_router.post("/bare")
async def bare(file: ImageUpload, settings: SettingsDep) -> dict:
    """The HTTP stack's ceiling: the same upload as /api/predict, read and answered with a constant, never decoded."""
    await read_upload(file, settings.max_upload_bytes)
    return BARE_ANSWER
