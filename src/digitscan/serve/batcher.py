"""Dynamic batching: prepared inputs of requests that arrive together share one model call.

`batcher = Batcher(recognizer.predict_inputs, max_batch=32, window_s=0.002, max_pending=66)`, then
`await batcher.predict(model_input)` per request (the first call starts its loop in the running event loop), and
`batcher.close()` at shutdown. Decoding and
preparing an image (milliseconds) runs per request on the inference pool's threads; the model itself takes a few
hundred microseconds for one input and hardly more for 32, so one call per batch, on one model thread, saves most of
its fixed cost per call (the framework's dispatch, the calibration) at high load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from digitscan.errors import Saturated

SHUTTING_DOWN = "the server is shutting down"


@dataclass
class Waiting:
    model_input: np.ndarray  # (28, 28)
    answer: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Collects inputs and runs `predict_inputs(stack)` once per batch on its own thread.

    A batch starts with the oldest waiting input and closes when it holds `max_batch` inputs or that input has
    waited `window_s` (0: at once, with whatever else is already waiting: inputs that queued while the model was
    busy still share the next call). At most `max_pending` inputs wait; beyond that `predict` raises Saturated, as
    it does once the batcher is closed. An exception of the model call is raised to every request of that batch, and
    to no other. `on_batch(size, seconds)` is told about every model call.
    """

    def __init__(self, predict_inputs: Callable[[np.ndarray], list], max_batch: int, window_s: float,
                 max_pending: int, on_batch: Callable[[int, float], None] = lambda size, seconds: None):
        self.predict_inputs = predict_inputs
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_pending = max_pending
        self.on_batch = on_batch
        self._waiting: list[Waiting] = []
        self._in_call: list[Waiting] = []  # the batch the model is working on
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None  # the batch loop, started by the first predict
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="digitscan-model")
        self.closed = False

    @property
    def pending(self) -> int:
        """Inputs waiting for a model call or in the current one."""
        return len(self._waiting) + len(self._in_call)

    async def predict(self, model_input: np.ndarray):
        """The prediction for one prepared (28, 28) input, from the next batch it fits in."""
        if self.closed:
            raise Saturated(SHUTTING_DOWN)
        if len(self._waiting) >= self.max_pending:
            raise Saturated(f"{len(self._waiting)} inputs are already waiting for the model")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(), name="digitscan-batcher")
        waiting = Waiting(model_input, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._arrived.set()
        return await waiting.answer  # cancelled (deadline, client gone): the batch loop skips it

    def close(self) -> None:
        """Stop batching: every request still waiting, or in the model call under way, is answered Saturated (503);
        the call itself finishes on its thread. Does not block."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        for waiting in self._waiting + self._in_call:
            if not waiting.answer.done():
                waiting.answer.set_exception(Saturated(SHUTTING_DOWN))
        self._waiting, self._in_call = [], []
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._next_batch_ready()
            batch = self._take_batch()
            if not batch:
                continue
            self._in_call = batch
            stack = np.stack([waiting.model_input for waiting in batch])  # (B, 28, 28)
            start = time.perf_counter()
            try:
                predictions = await loop.run_in_executor(self._executor, self.predict_inputs, stack)
            except Exception as exc:  # noqa: BLE001  (raised to this batch's requests, each mapped by the route)
                self._answer(batch, exception=exc)
            else:
                self._answer(batch, predictions)
            finally:
                self.on_batch(len(batch), time.perf_counter() - start)
                self._in_call = []

    async def _next_batch_ready(self) -> None:
        """Return once an input waits and the batch is full or its oldest input's window has passed."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._waiting[0].arrived + self.window_s
        while len(self._waiting) < self.max_batch and (left := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take_batch(self) -> list[Waiting]:
        """Up to max_batch of the oldest inputs whose requests still wait for an answer."""
        live = [waiting for waiting in self._waiting if not waiting.answer.done()]
        batch, self._waiting = live[: self.max_batch], live[self.max_batch:]
        return batch

    @staticmethod
    def _answer(batch: list[Waiting], predictions: list | None = None, exception: Exception | None = None) -> None:
        for index, waiting in enumerate(batch):
            if waiting.answer.done():  # gave up meanwhile, or the batcher was closed
                continue
            if exception is not None:
                waiting.answer.set_exception(exception)
            else:
                waiting.answer.set_result(predictions[index])
