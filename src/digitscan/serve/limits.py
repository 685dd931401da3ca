"""Back-pressure for the server: a bounded pool for inferences, and a body-size and deadline guard for API requests.

`pool = InferencePool(workers=2, queue=64)`; `await pool.run(fn, *args)` runs fn on a worker thread or raises Saturated.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitscan.errors import Saturated
from digitscan.json_output import strict_json

# The upload routes: the API, and /bench/ (benchmark_routes), which must pay what the API pays to be its ceiling.
LIMITED_PREFIXES = ("/api/", "/bench/")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file; the file itself is checked exactly later


class BodyTooLarge(HTTPException):
    """The request body grew past the limit while it streamed in (or its Content-Length already said so)."""

    def __init__(self, max_upload_bytes: int):
        super().__init__(413, f"upload is too large: the limit is {max_upload_bytes:,} bytes")


class InferencePool:
    """`workers` threads run inferences; at most `queue` more wait for one; anything beyond is refused at once.

    A request that gives up (its deadline passed) cancels its work if the work has not started yet; work already
    running finishes on its thread and keeps its slot until then, so `admitted` always counts the real load and a
    storm of timed-out requests cannot pile up unbounded work behind the server's back.
    """

    def __init__(self, workers: int, queue: int, on_change: Callable[[int], None] = lambda admitted: None):
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="digitscan-inference")
        self._admitted = 0
        self._lock = threading.Lock()  # slots are released on worker threads
        self._on_change = on_change  # told the new count of admitted inferences (a gauge), under the lock

    @property
    def admitted(self) -> int:
        """Inferences running or waiting for a worker."""
        return self._admitted

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._admitted >= self.capacity:
                raise Saturated(f"{self._admitted} requests are already running or waiting")
            self._admitted += 1
            self._on_change(self._admitted)
        try:
            future = self._executor.submit(fn, *args)
        except RuntimeError:  # the executor is shut down: the server is stopping
            self._release()
            raise Saturated("the server is shutting down") from None
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)  # fires when the work really ends (or is cancelled before it starts)
        # Cancelling this await (deadline, client gone) cancels the thread's future if it is still waiting.
        return await asyncio.wrap_future(future)

    def _release(self, _future: Future | None = None) -> None:
        with self._lock:
            self._admitted -= 1
            self._on_change(self._admitted)

    def close(self) -> None:
        """Drop waiting work and let running work finish on its own; does not block the caller."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class RequestLimits:
    """ASGI middleware for API routes: cap the request body while it streams in, and give each request a deadline.

    The body may hold `max_upload_bytes` plus the multipart framing (the route then checks the file exactly). The
    cap does not trust Content-Length alone: the bytes are counted as they arrive (a declared length
    over the cap is refused before reading anything). Past the deadline the request is cancelled and answered
    with 503; `on_reject(reason)` is told about both kinds of refusal that happen here.
    """

    def __init__(self, app: ASGIApp, max_upload_bytes: int, timeout_s: float,
                 on_reject: Callable[[str], None] = lambda reason: None):
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_upload_bytes + MULTIPART_OVERHEAD
        self.timeout_s = timeout_s
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > self.max_body_bytes:
                raise BodyTooLarge(self.max_upload_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_upload_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                await self.app(scope, limited_receive, tracking_send)
        except TimeoutError:
            if not deadline.expired() or started:
                raise  # not our deadline, or too late to answer: let the server close the connection
            self.on_reject("timeout")
            await send_json(send, 503, {"detail": f"request timed out after {self.timeout_s:g} s; retry later"},
                            {"retry-after": "1"})
        except BodyTooLarge as exc:  # normally answered by the app's handler; this covers reads outside a route
            if started:
                raise
            self.on_reject("too_large")
            await send_json(send, exc.status_code, {"detail": exc.detail})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def send_json(send: Send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    """A complete JSON response written straight to the ASGI `send` (for middleware, outside FastAPI's handlers)."""
    payload = strict_json(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
