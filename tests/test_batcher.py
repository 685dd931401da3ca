"""The batcher of /api/predict: alone (asyncio), then inside the app through TestClient with a counting recognizer."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from digitscan import Recognizer
from digitscan.errors import Saturated
from digitscan.serve import Settings, create_app
from digitscan.serve.batcher import Batcher
from digitscan.serve.routes import get_batcher, get_recognizer

from helpers import EXAMPLES

LIMITS = {"torch_threads": None}  # leaves this process's torch alone
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))


def inputs(count: int) -> list[np.ndarray]:
    """`count` distinct (28, 28) inputs: input i is filled with i / 100."""
    return [np.full((28, 28), i / 100, np.float32) for i in range(count)]


class Model:
    """A model stand-in: answers each input with its first pixel, records every call's batch, and can block or
    fail a call (a call fails when one of its inputs is `poison`)."""

    def __init__(self, poison: float | None = None, held: bool = False):
        self.batches: list[list[float]] = []
        self.poison = poison
        self.release = threading.Event()  # held: every call waits until the test sets it
        if not held:
            self.release.set()
        self.entered = threading.Event()

    def __call__(self, stack: np.ndarray) -> list[float]:
        assert stack.shape[1:] == (28, 28)
        self.batches.append([float(x[0, 0]) for x in stack])
        self.entered.set()
        self.release.wait(10)
        if self.poison is not None and any(np.isclose(x[0, 0], self.poison) for x in stack):
            raise RuntimeError("the model call failed")
        return [float(x[0, 0]) for x in stack]


async def settle(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def test_inputs_that_arrive_together_share_a_call():
    model = Model()

    async def scenario():
        batcher = Batcher(model, max_batch=4, window_s=1.0, max_pending=100)
        answers = await asyncio.gather(*(batcher.predict(x) for x in inputs(10)))
        batcher.close()
        return answers

    answers = asyncio.run(scenario())
    assert answers == pytest.approx([i / 100 for i in range(10)])  # each request gets its own input's answer
    # Full batches close at once (no waiting for the 1 s window); the last two wait out the window together.
    assert [len(batch) for batch in model.batches] == [4, 4, 2]


def test_window_zero_does_not_wait_but_batches_what_queued_meanwhile():
    model = Model()

    async def scenario():
        batcher = Batcher(model, max_batch=32, window_s=0.0, max_pending=100)
        start = time.perf_counter()
        assert await batcher.predict(inputs(1)[0]) == 0.0
        alone = time.perf_counter() - start
        model.entered.clear()
        model.release.clear()  # the next call blocks: what arrives meanwhile waits for the one after
        first = asyncio.ensure_future(batcher.predict(np.full((28, 28), 0.5, np.float32)))
        await settle(model.entered.is_set)
        later = [asyncio.ensure_future(batcher.predict(x)) for x in inputs(3)]
        await settle(lambda: batcher.pending == 4)
        model.release.set()
        results = await asyncio.gather(first, *later)
        batcher.close()
        return alone, results

    alone, results = asyncio.run(scenario())
    assert alone < 0.5
    assert results == pytest.approx([0.5, 0.0, 0.01, 0.02])
    assert [len(batch) for batch in model.batches] == [1, 1, 3]


def test_a_failing_model_call_fails_only_its_batch():
    model = Model(poison=0.01)

    async def scenario():
        batcher = Batcher(model, max_batch=2, window_s=1.0, max_pending=100)
        outcomes = await asyncio.gather(*(batcher.predict(x) for x in inputs(4)), return_exceptions=True)
        after = await batcher.predict(inputs(1)[0])  # and the batcher carries on
        batcher.close()
        return outcomes, after

    outcomes, after = asyncio.run(scenario())
    assert model.batches[:2] == [pytest.approx([0.0, 0.01]), pytest.approx([0.02, 0.03])]
    assert [type(o) for o in outcomes[:2]] == [RuntimeError, RuntimeError]
    assert outcomes[2:] == pytest.approx([0.02, 0.03])
    assert after == 0.0


def test_closing_answers_every_pending_input_and_refuses_new_ones():
    model = Model(held=True)

    async def scenario():
        batcher = Batcher(model, max_batch=1, window_s=0.0, max_pending=100)
        pending = [asyncio.ensure_future(batcher.predict(x)) for x in inputs(3)]
        await settle(model.entered.is_set)  # one in the model call, two waiting
        batcher.close()
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        with pytest.raises(Saturated, match="shutting down"):
            await batcher.predict(inputs(1)[0])
        return outcomes

    outcomes = asyncio.run(scenario())
    model.release.set()
    assert [type(o) for o in outcomes] == [Saturated] * 3
    assert all("shutting down" in str(o) for o in outcomes)


def test_a_full_waiting_line_is_saturated_and_given_up_inputs_are_skipped():
    model = Model(held=True)

    async def scenario():
        batcher = Batcher(model, max_batch=8, window_s=0.0, max_pending=2)
        running = asyncio.ensure_future(batcher.predict(np.full((28, 28), 0.9, np.float32)))
        await settle(model.entered.is_set)
        waiting = [asyncio.ensure_future(batcher.predict(x)) for x in inputs(2)]
        await settle(lambda: batcher.pending == 3)
        with pytest.raises(Saturated, match="already waiting"):
            await batcher.predict(inputs(1)[0])
        waiting[0].cancel()  # its client gave up: it must not reach the model
        model.release.set()
        results = await asyncio.gather(running, waiting[1])
        batcher.close()
        return results

    assert asyncio.run(scenario()) == pytest.approx([0.9, 0.01])
    assert model.batches == [[pytest.approx(0.9)], [pytest.approx(0.01)]]


# ---- in the app ----------------------------------------------------------------------------------------------------


class CountingRecognizer:
    """The real recognizer, counting its model calls and the inputs in each."""

    def __init__(self, real: Recognizer):
        self.real = real
        self.batch_sizes: list[int] = []
        self.fail = False
        self.block = threading.Event()
        self.block.set()
        self.entered = threading.Event()

    def prepare(self, image, **limits):
        return self.real.prepare(image, **limits)

    def predict_inputs(self, stack):
        self.batch_sizes.append(len(stack))
        self.entered.set()
        self.block.wait(10)
        if self.fail:
            raise RuntimeError("the model call failed")
        return self.real.predict_inputs(stack)


@pytest.fixture(scope="module")
def real() -> Recognizer:
    recognizer = Recognizer.load()
    recognizer.warm_up()
    return recognizer


def app_with(counting: CountingRecognizer, **settings):
    """The app with `counting` as its recognizer and a batcher over it, as the lifespan builds them."""
    settings = Settings(**LIMITS, **settings)
    app = create_app(settings)
    batcher = Batcher(counting.predict_inputs, settings.max_batch, settings.batch_window_ms / 1000, max_pending=64)
    app.dependency_overrides[get_recognizer] = lambda: counting
    app.dependency_overrides[get_batcher] = lambda: batcher
    return app, batcher


def post(client, path, data: bytes, **params):
    return client.post("/api/predict", files={"file": (path.name, data)}, params=params)


def test_concurrent_requests_share_model_calls_and_get_the_unbatched_answers(real):
    counting = CountingRecognizer(real)
    app, _ = app_with(counting, batch_window_ms=500, max_batch=8)
    photos = [PHOTOS[i % len(PHOTOS)] for i in range(8)]
    with TestClient(app) as client, ThreadPoolExecutor(8) as clients:
        answers = list(clients.map(lambda p: post(client, p, p.read_bytes()), photos))
        single = post(client, photos[0], photos[0].read_bytes(), include_input=1)
    assert [a.status_code for a in answers] == [200] * 8
    assert sum(counting.batch_sizes[:-1]) == 8 and len(counting.batch_sizes) - 1 < 8
    for photo, answer in zip(photos, answers, strict=True):
        alone = real.predict(photo.read_bytes())
        assert answer.json()["digit"] == alone.digit
        assert answer.json()["probabilities"] == pytest.approx(alone.probabilities, abs=1e-5)
    assert single.json()["input_image"].startswith("data:image/png;base64,")  # include_input still works


def test_the_app_counts_batch_sizes_in_its_metrics():
    photo = PHOTOS[0]
    with TestClient(create_app(Settings(**LIMITS, batch_window_ms=0))) as client:
        assert post(client, photo, photo.read_bytes()).status_code == 200
        metrics = client.get("/metrics").text
    assert "digitscan_batch_size_count 1.0" in metrics and "digitscan_batch_size_sum 1.0" in metrics
    assert "digitscan_model_call_duration_seconds_count 1.0" in metrics


def test_window_zero_in_the_app_answers_one_request_per_call(real):
    counting = CountingRecognizer(real)
    app, _ = app_with(counting, batch_window_ms=0)
    with TestClient(app) as client:
        for photo in PHOTOS[:3]:
            assert post(client, photo, photo.read_bytes()).json()["digit"] == real.predict(photo.read_bytes()).digit
    assert counting.batch_sizes == [1, 1, 1]


def test_a_failing_model_call_is_a_422_and_the_next_request_is_served(real):
    counting = CountingRecognizer(real)
    app, _ = app_with(counting, batch_window_ms=0)
    photo = PHOTOS[0]
    with TestClient(app) as client:
        counting.fail = True
        failed = post(client, photo, photo.read_bytes())
        counting.fail = False
        served = post(client, photo, photo.read_bytes())
    assert failed.status_code == 422 and "could not be processed (RuntimeError)" in failed.json()["detail"]
    assert served.status_code == 200


def test_shutting_down_answers_pending_requests_503(real):
    counting = CountingRecognizer(real)
    counting.block.clear()
    app, batcher = app_with(counting, batch_window_ms=0, max_batch=1)
    photo = PHOTOS[0]
    with TestClient(app) as client, ThreadPoolExecutor(2) as clients:
        pending = [clients.submit(post, client, photo, photo.read_bytes()) for _ in range(2)]
        assert counting.entered.wait(10)  # one request in the model call, the other waiting for the next
        deadline = time.monotonic() + 10
        while batcher.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        client.portal.call(batcher.close)  # what the lifespan does at shutdown, in the app's event loop
        answers = [future.result(timeout=10) for future in pending]
        counting.block.set()
    for answer in answers:
        assert answer.status_code == 503 and "shutting down" in answer.json()["detail"]
        assert answer.headers["retry-after"] == "1"


def test_the_lifespan_closes_its_batcher():
    app = create_app(Settings(**LIMITS))
    with TestClient(app):
        batcher = app.state.batcher
        assert not batcher.closed
    assert batcher.closed
