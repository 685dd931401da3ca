"""The HTTP service: routes, limits and errors through TestClient, then the real `digitscan serve` over a socket."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import pickle
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError

from digitscan import Recognizer
from digitscan.cli import main
from digitscan.errors import Saturated
from digitscan.serve import Settings, create_app, get_settings
from digitscan.serve.connections import GuardedProtocol, RepeatedLogFilter, fit_to_open_file_limit
from digitscan.serve.limits import InferencePool
from digitscan.serve.routes import get_recognizer
from digitscan.synthetic.strokes import render_number, stroke_digit

from helpers import EXAMPLES
from helpers.forms import iou, small_form
from helpers.live_server import live_server

EXPECTED = {"seven_ink_on_paper.png": 7, "three_blue_pen.png": 3, "zero_pencil_off_centre.png": 0,
            "five_canvas.png": 5, "two_transparent.png": 2, "eight_photo.jpg": 8, "four_28px.png": 4}
PREDICT_KEYS = {"digit", "confidence", "is_digit", "probabilities"}
READ_KEYS = {"text", "confidence", "digits", "raw", "symbols", "marks", "alternatives"}
# Small limits so the limit tests need only small bodies; torch_threads=None leaves this process's torch alone.
LIMITS = {"max_upload_bytes": 300_000, "max_pixels": 2_000_000, "torch_threads": None}


def png(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def number_image(text: str, seed: int = 0) -> bytes:
    image, _ = render_number([stroke_digit(int(c), seed=seed * 10 + i) for i, c in enumerate(text)], seed=seed)
    return png(image)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: a signature, IHDR and the first bytes of pixel data only."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000)))


def post(client, route: str, data: bytes, name: str = "image.png", **params) -> httpx.Response:
    return client.post(route, files={"file": (name, data, "application/octet-stream")}, params=params)


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body["detail"]


def metric(client, line_start: str) -> float:
    """The value of the first /metrics sample whose line starts with `line_start`."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line starting with {line_start!r}")


class BlockingRecognizer:
    """The real recognizer, except that preparing an image waits until the test releases it."""

    def __init__(self, real: Recognizer):
        self.real = real
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def prepare(self, image, **limits):
        self.calls += 1
        self.started.set()
        self.release.wait(10)
        return self.real.prepare(image)

    def predict_inputs(self, inputs):
        return self.real.predict_inputs(inputs)


class BrokenRecognizer:
    """A model whose preprocessing trips over something no rule foresaw."""

    def prepare(self, image):
        raise RuntimeError("unexpected failure deep inside preprocessing")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(**LIMITS))) as client:
        yield client


@pytest.fixture(scope="module")
def served_recognizer(client) -> Recognizer:
    """The recognizer the app loaded at start-up."""
    return client.app.state.recognizer


# ---- the routes ---------------------------------------------------------------------------------------------------


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["model"] == "shipped.onnx"  # onnxruntime, no torch


def test_not_ready_until_the_model_is_loaded():
    client = TestClient(create_app(Settings(**LIMITS)))  # no `with`: the lifespan has not run, no model yet
    assert client.get("/healthz").status_code == 200
    assert "not loaded" in assert_error(client.get("/readyz"), 503)
    response = post(client, "/api/predict", (EXAMPLES / "three_blue_pen.png").read_bytes())
    assert_error(response, 503)
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_predict_examples(client, name):
    response = post(client, "/api/predict", (EXAMPLES / name).read_bytes(), name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == PREDICT_KEYS
    assert body["digit"] == EXPECTED[name] and body["is_digit"] is True
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
    assert body["confidence"] == max(body["probabilities"])


def test_predict_matches_the_library(client, served_recognizer):
    data = (EXAMPLES / "eight_photo.jpg").read_bytes()
    assert post(client, "/api/predict", data).json() == served_recognizer.predict(data).to_dict()


def test_predict_can_return_the_model_input(client, served_recognizer):
    data = (EXAMPLES / "seven_ink_on_paper.png").read_bytes()
    body = post(client, "/api/predict", data, include_input=1).json()
    prefix = "data:image/png;base64,"
    assert body["input_image"].startswith(prefix)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["input_image"][len(prefix):]))))
    assert shown.shape == (28, 28)
    np.testing.assert_allclose(shown / 255, served_recognizer.prepare(data), atol=1 / 255)


def test_the_shipped_ensemble_can_be_served():
    with TestClient(create_app(Settings(**LIMITS, ensemble=True))) as client:
        assert client.get("/readyz").status_code == 200
        assert post(client, "/api/predict", (EXAMPLES / "three_blue_pen.png").read_bytes()).json()["digit"] == 3


@pytest.mark.parametrize("blank", [np.zeros((280, 280), np.uint8), np.full((280, 560), 255, np.uint8)],
                         ids=["black-canvas", "white-canvas"])
def test_an_empty_canvas_is_not_a_digit(client, blank):
    body = post(client, "/api/predict", png(blank)).json()
    assert body["is_digit"] is False and body["digit"] is None
    assert post(client, "/api/read", png(blank)).json() == {"text": "", "confidence": 0.0, "digits": [], "raw": "",
                                                            "symbols": [], "marks": [], "alternatives": []}


@pytest.mark.parametrize("text", ["42", "507", "1983"])
def test_read_a_number(client, text):
    response = post(client, "/api/read", number_image(text))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == READ_KEYS
    assert body["text"] == text
    assert [d["digit"] for d in body["digits"]] == [int(c) for c in text]
    assert all(len(d["box"]) == 4 and 0 < d["confidence"] <= 1 for d in body["digits"])


# The small form's fields (tests/helpers/forms.py) as a template on its 900 x 500 page; 8532 passes Luhn.
SMALL_FORM_TEMPLATE = {"name": "small form", "size": [900, 500], "fields": {
    "account": {"box": [150, 100, 310, 76], "units": "px", "kind": "comb", "pattern": "digits{6}"},
    "ref": {"box": [185, 215, 245, 68], "units": "px", "pattern": "digits{4}"},
    "code": {"box": [195, 335, 230, 80], "units": "px", "pattern": "digits{4}", "checksum": "luhn"},
}}


def post_page(client, page: bytes, template: bytes | None = None) -> httpx.Response:
    files = {"file": ("form.png", page, "image/png")}
    if template is not None:
        files["template"] = ("form.json", template, "application/json")
    return client.post("/api/page", files=files)


def test_page_gives_every_field_with_its_box(client):
    page, truth, _ = small_form()
    response = post_page(client, png(page))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["size"] == [900, 500]
    fields = {field["text"]: field for field in body["fields"]}
    assert set(fields) == set(truth)  # the labels "Form 1040", "Box 12", "Date 2024" are not fields
    for text, corners in truth.items():
        field = fields[text]
        assert iou(field["box"], corners) > 0.5
        assert {"raw", "confidence", "needs_review", "kind"} <= set(field)
    assert fields["407815"]["kind"] == "comb" and fields["8532"]["kind"] == "box"
    assert all((field["reason"] is None) == (not field["needs_review"]) for field in body["fields"])


def test_page_with_a_template_gives_its_named_fields(client):
    page, _, _ = small_form()
    response = post_page(client, png(page), json.dumps(SMALL_FORM_TEMPLATE).encode())
    assert response.status_code == 200, response.text
    fields = response.json()["fields"]
    assert list(fields) == ["account", "ref", "code"]
    assert [fields[name]["value"] for name in fields] == ["407815", "9316", "8532"]
    assert all(fields[name]["valid"] for name in fields)
    assert {"needs_review", "alternatives", "reason", "box", "confidence"} <= set(fields["code"])


@pytest.mark.parametrize("template, status, message", [
    (b"{not json", 422, "not valid JSON"),
    (json.dumps({"name": "x", "fields": {"zip": {"box": [0.1, 0.1, 0.2, 0.1], "colour": "red"}}}).encode(), 422,
     "field 'zip': unknown key 'colour'"),
    (b"\xff\xfe binary", 422, "not UTF-8"),
    (b" " * (2**20 + 1), 413, "too large"),  # past the body cap here; past MAX_TEMPLATE_BYTES under a larger one
])
def test_a_bad_template_is_a_clear_4xx(client, template, status, message):
    page, _, _ = small_form()
    assert message in assert_error(post_page(client, png(page), template), status)


# ---- limits and errors ----------------------------------------------------------------------------------------------


def truncated_png() -> bytes:
    data = (EXAMPLES / "seven_ink_on_paper.png").read_bytes()
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "empty": (b"", 422),
    "text": (b"hello, this is not an image", 415),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", 415),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', 415),
    "truncated-png": (truncated_png(), 422),
    "corrupt-jpeg": (b"\xff\xd8\xff\xe0" + bytes(200), 422),
    "header-claims-10-gigapixels": (png_claiming(100_000, 100_000), 413),
    "over-max-pixels": (png(np.zeros((1500, 1500), np.uint8)), 413),  # 2.25 MP > 2 MP, a tiny file
    "over-max-upload-bytes": (b"\x89PNG\r\n\x1a\n" + bytes(LIMITS["max_upload_bytes"]), 413),
    "far-over-the-body-cap": (bytes(3_000_000), 413),
}


@pytest.mark.parametrize("route", ["/api/predict", "/api/read", "/api/page"])
@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_are_4xx_json(client, route, case):
    data, status = BAD_UPLOADS[case]
    assert_error(post(client, route, data), status)


def test_a_body_without_content_length_is_still_capped(client):
    def chunks():  # a generator body is sent without Content-Length: the cap counts the bytes as they come
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(20):
            yield bytes(50_000)
        yield b"\r\n--b--\r\n"

    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = client.post("/api/predict", content=chunks(), headers=headers)
    assert "too large" in assert_error(response, 413)


def test_request_errors_are_json(client):
    detail = assert_error(client.post("/api/predict"), 422)  # no `file` field
    assert "file" in detail
    assert "file" in assert_error(client.post("/api/read", data={"image": "x"}), 422)
    assert "file" in assert_error(client.post("/api/read", data={"file": "a text field, not a file"}), 422)
    assert_error(client.get("/api/predict"), 405)
    assert_error(client.get("/no/such/page"), 404)
    broken = client.post("/api/predict", content=b"--x\r\ngarbage", headers={"content-type": "multipart/form-data"})
    assert 400 <= broken.status_code < 500 and isinstance(broken.json()["detail"], str)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF blocks some of these carry
def test_garbage_never_gets_a_5xx(client):
    rng = np.random.default_rng(0)
    real = [(EXAMPLES / name).read_bytes() for name in sorted(EXPECTED)]
    magics = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
              b"RIFF\x00\x00\x00\x00WEBP"]
    inputs = [rng.bytes(int(n)) for n in rng.integers(1, 4000, 10)]
    inputs += [magic + rng.bytes(int(rng.integers(0, 600))) for magic in magics]
    for data in real:
        inputs.append(data[: int(rng.integers(1, len(data)))])  # cut anywhere
        flipped = bytearray(data)
        for at in rng.integers(0, len(data), 8):  # a few damaged bytes
            flipped[at] ^= 0xFF
        inputs.append(bytes(flipped))
    for data in inputs:
        response = post(client, "/api/predict" if len(data) % 2 else "/api/read", data)
        assert response.status_code in (200, 413, 415, 422), (response.status_code, data[:16])
        if response.status_code != 200:
            assert isinstance(response.json()["detail"], str)
    assert client.get("/healthz").status_code == 200


def test_unforeseen_processing_failures_are_422():
    app = create_app(Settings(**LIMITS))
    app.dependency_overrides[get_recognizer] = BrokenRecognizer
    with TestClient(app) as client:
        detail = assert_error(post(client, "/api/predict", png(np.zeros((28, 28), np.uint8))), 422)
        assert "could not be processed" in detail
        assert metric(client, 'digitscan_rejected_requests_total{reason="processing_error"}') == 1


def test_the_last_line_of_defence_answers_json():
    app = create_app(Settings(**LIMITS))

    @app.get("/bug")
    async def bug():
        raise RuntimeError("a bug of ours")

    with TestClient(app, raise_server_exceptions=False) as client:
        assert assert_error(client.get("/bug"), 500) == "internal server error"


def test_a_saturated_server_answers_503_at_once(served_recognizer):
    blocking = BlockingRecognizer(served_recognizer)
    app = create_app(Settings(**LIMITS, max_concurrency=1, max_queue=0))
    app.dependency_overrides[get_recognizer] = lambda: blocking
    data = (EXAMPLES / "three_blue_pen.png").read_bytes()
    with TestClient(app) as client, ThreadPoolExecutor(1) as background:
        first = background.submit(post, client, "/api/predict", data)
        assert blocking.started.wait(10)
        start = time.perf_counter()
        refused = post(client, "/api/predict", data)
        assert time.perf_counter() - start < 2  # refused at once, not after waiting
        assert "busy" in assert_error(refused, 503)
        assert refused.headers["retry-after"] == "1"
        blocking.release.set()
        assert first.result(timeout=10).json()["digit"] == 3
        assert metric(client, 'digitscan_rejected_requests_total{reason="saturated"}') == 1


def test_requests_time_out_and_give_back_their_slots(served_recognizer):
    blocking = BlockingRecognizer(served_recognizer)
    app = create_app(Settings(**LIMITS, max_concurrency=1, max_queue=4, request_timeout_s=0.5))
    app.dependency_overrides[get_recognizer] = lambda: blocking
    data = (EXAMPLES / "three_blue_pen.png").read_bytes()
    with TestClient(app) as client:
        for _ in range(2):  # the first one runs (and stays stuck), the second waits behind it
            assert "timed out" in assert_error(post(client, "/api/predict", data), 503)
        assert blocking.started.is_set()
        assert metric(client, 'digitscan_rejected_requests_total{reason="timeout"}') == 2
        assert metric(client, "digitscan_inference_admitted ") == 1  # the stuck one still holds its thread
        blocking.release.set()
        deadline = time.monotonic() + 10
        while metric(client, "digitscan_inference_admitted ") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metric(client, "digitscan_inference_admitted ") == 0
        assert blocking.calls == 1  # the waiting request was cancelled before it started
        assert post(client, "/api/predict", data).json()["digit"] == 3


def test_a_closed_pool_refuses_work():
    pool = InferencePool(workers=1, queue=0)
    assert asyncio.run(pool.run(sum, [1, 2])) == 3
    pool.close()
    with pytest.raises(Saturated, match="shutting down"):
        asyncio.run(pool.run(sum, [1, 2]))
    assert pool.admitted == 0


# ---- metrics, page, docs, settings, CLI ----------------------------------------------------------------------------


def test_metrics(client):
    post(client, "/api/predict", (EXAMPLES / "three_blue_pen.png").read_bytes())
    post(client, "/api/predict", b"not an image")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    ok = 'method="POST",route="/api/predict",status="200"'
    assert metric(client, f"digitscan_http_requests_total{{{ok}}}") >= 1
    assert metric(client, f'digitscan_http_request_duration_seconds_bucket{{le="10.0",{ok}}}') >= 1
    assert metric(client, 'digitscan_http_requests_total{method="POST",route="/api/predict",status="415"}') >= 1
    assert metric(client, 'digitscan_inference_duration_seconds_count{endpoint="predict",outcome="ok"}') >= 1
    assert metric(client, 'digitscan_rejected_requests_total{reason="unsupported"}') >= 1
    assert metric(client, "digitscan_model_ready ") == 1
    client.get("/no/such/page/42")
    assert metric(client, 'digitscan_http_requests_total{method="GET",route="unmatched",status="404"}') >= 1


def test_clients_cannot_grow_the_metrics():
    # Made-up methods and random URLs: before the labels came from fixed sets, each one added a series, and 20,000
    # such requests made /metrics 45 MB. A fresh app has its own registry, so the series below are only these; its
    # model is not needed (no lifespan), as no request reaches the API.
    http = TestClient(create_app(Settings(**LIMITS)))
    rng = np.random.default_rng(18)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    for _ in range(2_000):
        method = "".join(rng.choice(letters, rng.integers(3, 12))) if rng.random() < 0.7 else "GET"
        path = f"/{rng.integers(1 << 62):x}/{rng.integers(1 << 62):x}" if rng.random() < 0.7 else "/healthz"
        http.request(method, path, params={"q": str(rng.integers(1 << 62))})
    text = http.get("/metrics").text  # counted once answered, so not in its own text
    assert len(text) < 100_000
    series = [line for line in text.splitlines() if line.startswith("digitscan_http_requests_total{")]
    labels = [dict(pair.split("=") for pair in line[line.index("{") + 1 : line.index("}")].split(","))
              for line in series]
    assert {label["method"] for label in labels} <= {'"GET"', '"other"'}
    assert {label["route"] for label in labels} <= {'"/healthz"', '"unmatched"'}
    assert len(series) <= 8  # 2 methods x 2 routes x a status or two each, whatever the clients sent
    assert sum(float(line.rsplit(" ", 1)[1]) for line in series) == 2_000  # every request was still counted


def test_page_static_files_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ('<canvas id="canvas"', "/static/app.js", "/static/style.css", 'id="file"'):
        assert asset in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    for route in ("/api/predict", "/api/read"):
        body = schema["paths"][route]["post"]["requestBody"]["content"]
        assert "multipart/form-data" in body
    assert {"/healthz", "/readyz", "/metrics"} <= set(schema["paths"])


def test_settings_from_environment_and_overrides(monkeypatch):
    monkeypatch.setenv("DIGITSCAN_MAX_UPLOAD_BYTES", "12345")
    monkeypatch.setenv("DIGITSCAN_PORT", "9001")
    settings = Settings()
    assert (settings.max_upload_bytes, settings.port, settings.host) == (12345, 9001, "127.0.0.1")
    assert Settings(port=9002).port == 9002  # explicit values (CLI flags) win over the environment
    monkeypatch.setenv("DIGITSCAN_MAX_QUEUE", "-1")
    with pytest.raises(ValidationError):
        Settings()
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("DIGITSCAN_MAX_QUEUE", "7")
        assert get_settings() is get_settings() and get_settings().max_queue == 7
    finally:
        get_settings.cache_clear()


def test_cli_serve_passes_flags_to_settings(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "9100", "--max-upload-mb", "1.5",
                                       "--max-pixels", "1000000", "--max-concurrency", "3", "--max-queue", "5",
                                       "--timeout", "2.5", "--torch-threads", "2", "--preprocess", "paper",
                                       "--ensemble", "--log-level", "warning"])
    assert result.exit_code == 0, result.output
    app, kwargs = calls[0]
    settings = app.state.settings
    assert (kwargs["host"], kwargs["port"], kwargs["log_level"]) == ("0.0.0.0", 9100, "warning")
    assert settings.max_upload_bytes == 1_572_864 and settings.max_pixels == 1_000_000
    assert (settings.max_concurrency, settings.max_queue, settings.request_timeout_s) == (3, 5, 2.5)
    assert (settings.torch_threads, settings.preprocess, settings.ensemble) == (2, "paper", True)
    assert (kwargs["timeout_keep_alive"], kwargs["limit_concurrency"], kwargs["h11_max_incomplete_event_size"]) == (
        settings.keep_alive_timeout_s, settings.max_connections + 1, settings.max_header_bytes)
    assert (kwargs["http"].header_timeout_s, kwargs["http"].max_connections) == (10.0, fit_to_open_file_limit(1000))
    result = CliRunner().invoke(main, ["serve", "--header-timeout", "3", "--keep-alive-timeout", "2",
                                       "--max-connections", "50", "--max-header-bytes", "4096"])
    assert result.exit_code == 0, result.output
    app, kwargs = calls[1]
    assert (kwargs["http"].header_timeout_s, kwargs["http"].max_connections) == (3.0, 50)
    assert (kwargs["timeout_keep_alive"], kwargs["limit_concurrency"], kwargs["h11_max_incomplete_event_size"]) == (
        2.0, 51, 4096)
    calls.clear()
    CliRunner().invoke(main, ["serve"])
    assert calls[0][0].state.settings == Settings()  # no flags: the environment's (here the default) settings


def test_worker_and_batching_settings(monkeypatch):
    assert (Settings().workers, Settings().batch_window_ms, Settings().max_batch) == (1, 2.0, 32)
    for bad in ({"workers": 0}, {"workers": 65}, {"batch_window_ms": -1}, {"max_batch": 0}, {"max_concurrency": 0}):
        with pytest.raises(ValidationError):
            Settings(**bad)
    monkeypatch.setattr("digitscan.serve.settings.usable_cores", lambda: 8)
    # The default inference threads share the cores among the workers: never more threads than cores.
    assert [Settings(workers=n).inference_threads for n in (1, 2, 4, 8, 16)] == [8, 4, 2, 1, 1]
    assert Settings(workers=4, max_concurrency=3).inference_threads == 3


def test_settings_survive_the_trip_to_a_worker_process(monkeypatch):
    for name in list(os.environ):
        if name.startswith("DIGITSCAN_"):
            monkeypatch.delenv(name)
    settings = Settings(workers=3, port=9123, model=None, torch_threads=None, max_batch=7, batch_window_ms=0.5,
                        benchmark_routes=True, preprocess="paper", request_timeout_s=2.5)
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings  # what create_app() in each worker reads (None included: "none")


def test_the_connection_guard_pickles_for_spawned_workers():
    guard = GuardedProtocol(3.0, 50)
    rebuilt = pickle.loads(pickle.dumps(guard))
    assert (rebuilt.header_timeout_s, rebuilt.max_connections) == (3.0, 50)


def test_cli_serve_with_workers_passes_an_import_string(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    with mock.patch.dict(os.environ):  # run() exports the settings; put the environment back afterwards
        result = CliRunner().invoke(main, ["serve", "--workers", "2", "--batch-window-ms", "0", "--max-batch", "4",
                                           "--header-timeout", "3", "--benchmark-routes"])
        assert result.exit_code == 0, result.output
        settings = Settings()  # what each worker reads from the environment run() set
    app, kwargs = calls[0]
    assert app == "digitscan.serve.app:create_app" and kwargs["factory"] is True and kwargs["workers"] == 2
    assert (kwargs["http"].header_timeout_s, kwargs["http"].max_connections) == (3.0, fit_to_open_file_limit(1000))
    assert (settings.workers, settings.batch_window_ms, settings.max_batch) == (2, 0.0, 4)
    assert (settings.header_timeout_s, settings.benchmark_routes) == (3.0, True)


def test_the_bare_benchmark_route_is_mounted_only_when_asked(client):
    data = (EXAMPLES / "three_blue_pen.png").read_bytes()
    assert post(client, "/bench/bare", data).status_code == 404
    assert "/bench/bare" not in client.get("/openapi.json").json()["paths"]
    with TestClient(create_app(Settings(**LIMITS, benchmark_routes=True))) as bench:
        answer = post(bench, "/bench/bare", data)
        assert answer.status_code == 200 and set(answer.json()) == PREDICT_KEYS
        assert post(bench, "/bench/bare", b"not even an image").json() == answer.json()  # never looks at the image
        assert_error(post(bench, "/bench/bare", bytes(400_000)), 413)  # the upload limits apply as on /api/
        assert metric(bench, 'digitscan_http_requests_total{method="POST",route="/bench/bare",status="200"}') == 2


def test_cli_serve_rejects_bad_settings():
    result = CliRunner().invoke(main, ["serve", "--max-queue", "-3"])
    assert result.exit_code == 2 and "max_queue" in result.output
    result = CliRunner().invoke(main, ["serve", "--workers", "0"])
    assert result.exit_code == 2 and "workers" in result.output
    result = CliRunner().invoke(main, ["serve", "--model", "no/such/model.safetensors"])
    assert result.exit_code == 1 and "no such model file" in result.output


# ---- the real thing: `digitscan serve` in its own process ---------------------------------------------------------


def test_real_server():
    with live_server("--max-upload-mb", "1") as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/readyz").json()["status"] == "ready"
            assert "<canvas" in http.get("/").text

            digit = post(http, "/api/predict", (EXAMPLES / "seven_ink_on_paper.png").read_bytes()).json()
            assert digit["digit"] == 7 and set(digit) == PREDICT_KEYS
            assert post(http, "/api/read", number_image("36")).json()["text"] == "36"
            assert_error(post(http, "/api/predict", b"GIF89a" + bytes(40)), 422)
            assert_error(post(http, "/api/read", b"{}"), 415)

            # Oversized bodies over a real socket, declared and chunked: a clean 413, and the server carries on.
            assert_error(post(http, "/api/predict", bytes(3 * 2**20)), 413)

            def chunks():
                yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
                for _ in range(40):
                    yield bytes(64 * 1024)
                yield b"\r\n--b--\r\n"

            chunked = http.post("/api/predict", content=chunks(),
                                headers={"content-type": "multipart/form-data; boundary=b"})
            assert_error(chunked, 413)

            # Concurrent clients: all answered, none refused (the waiting line is far longer than 12).
            files = [(EXAMPLES / name).read_bytes() for name in sorted(EXPECTED)]
            with ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(lambda i: post(http, "/api/predict", files[i % len(files)]), range(36)))
            assert [a.status_code for a in answers] == [200] * 36
            assert {a.json()["digit"] for a in answers} == set(EXPECTED.values())

            metrics = http.get("/metrics").text
            assert 'digitscan_http_requests_total{method="POST",route="/api/predict",status="200"} 37.0' in metrics
    assert server.process.returncode == 0  # SIGINT: graceful shutdown through the lifespan


def test_real_server_with_two_workers():
    flags = ("--workers", "2", "--header-timeout", "2", "--max-concurrency", "1")
    names = sorted(EXPECTED)
    with live_server(*flags) as server:
        assert len(worker_processes(server.process.pid)) == 2
        # /readyz is answered by the first worker that is up; the other may still be loading its model (it takes
        # connections only once it has): wait for both, as a load balancer's health checks would.
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while metric(http, "digitscan_model_ready") < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert metric(http, "digitscan_model_ready") == 2
            files = [(EXAMPLES / name).read_bytes() for name in names]
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda i: post(http, "/api/predict", files[i % len(files)]), range(24)))
            assert [a.status_code for a in answers] == [200] * 24
            assert [a.json()["digit"] for a in answers] == [EXPECTED[names[i % len(names)]] for i in range(24)]
            # /metrics adds up both workers, whichever of them answers (each connection may reach either).
            for _ in range(4):
                with httpx.Client(base_url=server.url, timeout=30) as fresh:
                    assert metric(fresh, 'digitscan_http_requests_total{method="POST",route="/api/predict",'
                                         'status="200"}') == 24
                    assert metric(fresh, "digitscan_model_ready") == 2
        with httpx.Client(base_url=server.url, timeout=30) as kept_alive:  # answers on one connection do not wait
            seconds = [timed_call(lambda: kept_alive.get("/healthz")) for _ in range(12)]  # for a delayed ACK
            assert min(seconds[1:]) < 0.025, seconds  # ~0.042 each before TCP_NODELAY was set (connections.py)
        # The connection guard holds in every worker: connections that send nothing are closed at the deadline.
        host, port = server.url.removeprefix("http://").split(":")
        silent = open_slowly((host, int(port)), 6)
        assert all(closed_by_server(connection, 5) for connection in silent)
        for connection in silent:
            connection.close()
    assert server.process.returncode == 0  # SIGINT to the parent: each worker shuts down through its lifespan


def timed_call(call) -> float:
    start = time.perf_counter()
    assert call().status_code == 200
    return time.perf_counter() - start


def worker_processes(parent: int) -> list[int]:
    """The uvicorn worker processes of `parent`: its children started by multiprocessing's spawn."""
    workers = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            command = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
            workers.append(int(entry))
    return workers


HEADER_TIMEOUT_S = 3.0  # short, so the slow connections' end is seen within the test


def open_slowly(address: tuple[str, int], count: int) -> list[socket.socket]:
    """`count` connections that each send the start of a request and never finish its headers."""
    connections = []
    for _ in range(count):
        connection = socket.create_connection(address, timeout=5)
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        connections.append(connection)
    return connections


def read_response(connection: socket.socket) -> bytes:
    """One whole response with a Content-Length body (what /healthz sends), read from a raw socket."""
    data = b""
    deadline = time.monotonic() + 5
    while b"\r\n\r\n" not in data and time.monotonic() < deadline and len(data) < 65536:
        data += connection.recv(1024)
    head, _, body = data.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(body) < length and time.monotonic() < deadline:
        body += connection.recv(1024)
    return head + b"\r\n\r\n" + body


def closed_by_server(connection: socket.socket, within_s: float) -> bool:
    connection.settimeout(within_s)
    try:
        return connection.recv(1024) == b""
    except TimeoutError:
        return False


def timed_get(url: str) -> tuple[int, float]:
    start = time.perf_counter()
    status = httpx.get(url, timeout=5).status_code
    return status, time.perf_counter() - start


def test_slow_header_clients_cannot_lock_the_server_out():
    flags = ("--header-timeout", str(HEADER_TIMEOUT_S), "--max-connections", "60", "--keep-alive-timeout", "30")
    with live_server(*flags) as server:
        host, port = server.url.removeprefix("http://").split(":")
        address = (host, int(port))
        opened = time.monotonic()
        slow = open_slowly(address, 50)
        trickling = socket.create_connection(address, timeout=5)
        for _ in range(3):  # healthy while 50 connections hang, each answered quickly
            status, seconds = timed_get(f"{server.url}/healthz")
            assert status == 200 and seconds < 1.0
        # A connection whose first request was answered, then sends half of a second one: held to the deadline too.
        kept = socket.create_connection(address, timeout=5)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(kept).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /healthz HTTP/1.1\r\n")
        second_started = time.monotonic()
        # A request answered without reading its body (405), whose body then trickles in: held to the deadline too.
        unread = socket.create_connection(address, timeout=5)
        unread.sendall(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n")
        assert read_response(unread).startswith(b"HTTP/1.1 405")
        # Headers past max_header_bytes (16 KiB by default): a 400 at once.
        with socket.create_connection(address, timeout=5) as big:
            big.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
            assert big.recv(1024).startswith(b"HTTP/1.1 400")
        # 53 open now (50 slow, trickling, kept and unread; healthz's are closed): 7 more fill the cap of 60, and the
        # next one is answered 503 at once, without sending anything.
        slow += open_slowly(address, 7)
        time.sleep(0.3)  # the closed connections above are gone from the server's count
        assert time.monotonic() - opened < HEADER_TIMEOUT_S - 0.5, "too slow to see the cap before the deadline"
        with socket.create_connection(address, timeout=5) as refused:
            assert refused.recv(1024).startswith(b"HTTP/1.1 503")
        # Trickling one byte at a time does not extend the deadline: it is counted from the connection's start (for
        # the unread body, from the answer).
        trickled = 0
        while time.monotonic() - opened < HEADER_TIMEOUT_S + 3 and trickled < 40:
            try:
                trickling.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: "[trickled % 10 : trickled % 10 + 1])
                unread.sendall(b"x")
            except OSError:
                break  # the server closed one
            trickled += 1
            time.sleep(0.1)
        assert closed_by_server(trickling, 1.0) and closed_by_server(unread, 1.0)
        assert all(closed_by_server(connection, HEADER_TIMEOUT_S + 3) for connection in slow)
        assert HEADER_TIMEOUT_S - 0.5 < time.monotonic() - opened < HEADER_TIMEOUT_S + 5
        assert closed_by_server(kept, max(0.1, second_started + HEADER_TIMEOUT_S + 2 - time.monotonic()))
        for connection in [*slow, trickling, kept, unread]:
            connection.close()
        time.sleep(0.3)
        assert timed_get(f"{server.url}/healthz")[0] == 200  # and new connections are welcome again
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'route="/healthz",status="200"' in metrics
    assert server.process.returncode == 0


def test_a_flood_of_the_same_log_line_is_one_line_per_interval():
    bounded = RepeatedLogFilter(interval_s=0.2)
    error = OSError(24, "Too many open files")

    def record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, (),
                                 (type(exc), exc, None) if exc else None)

    flood = [record("socket.accept() out of system resource\nsocket: <socket fd=9>", error) for _ in range(5_000)]
    passed = [item for item in flood if bounded.filter(item)]
    assert len(passed) == 1 and passed[0].exc_info is None  # one line, without its traceback
    assert passed[0].getMessage() == "socket.accept() out of system resource: [Errno 24] Too many open files"
    time.sleep(0.25)
    later = record("socket.accept() out of system resource", error)
    assert bounded.filter(later) and "(4,999 more like it in the last 0.2 s not logged)" in later.getMessage()
    other = record("model dsnet loaded")
    assert all(bounded.filter(other) for _ in range(3)) and other.getMessage() == "model dsnet loaded"


def test_the_connection_cap_fits_under_the_open_file_limit(monkeypatch, caplog):
    import resource

    limits = {"soft": 150, "hard": 150}

    def set_limit(kind, values):
        if values[0] > limits["hard"]:
            raise ValueError("not allowed to raise the hard limit")
        limits["soft"] = values[0]

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(resource, "setrlimit", set_limit)
    with caplog.at_level(logging.WARNING, logger="digitscan.serve"):
        assert fit_to_open_file_limit(1000) == 150 - 64  # the hard limit allows no more: the cap comes down
    assert "max_connections lowered from 1000 to 86" in caplog.text
    limits.update(soft=1024, hard=4096)
    assert fit_to_open_file_limit(1000) == 1000 and limits["soft"] == 1064  # the soft limit goes up instead
