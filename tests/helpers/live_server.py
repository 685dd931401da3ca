"""A real `digitscan serve` process on a free port of 127.0.0.1, for the HTTP and browser tests.

`with live_server() as server: httpx.get(server.url + "/readyz")` — waits until ready, stops it (SIGINT) on exit.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen


STARTED = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@contextmanager
def live_server(*flags: str, env: dict[str, str] | None = None, startup_s: float = 60) -> Iterator[LiveServer]:
    """Start the CLI's server with --port 0 (the OS picks a free port: no race) and yield it once /readyz is 200.

    `flags` are extra `digitscan serve` options (keep the log level at info: the start-up line gives the port).
    The server's log is printed when start-up fails.
    """
    command = [sys.executable, "-m", "digitscan", "serve", "--host", "127.0.0.1", "--port", "0", *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:  # keep reading, so a chatty server never blocks on a full pipe
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = _wait_for_url(lines, log, time.monotonic() + startup_s)
        _wait_until_ready(url, time.monotonic() + startup_s)
        yield LiveServer(url, process)
    except Exception:
        _drain(lines, log)
        sys.stderr.write("server log:\n" + "".join(log))
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: lifespan end, then exit 0
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_url(lines: queue.Queue, log: list[str], deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            raise RuntimeError("the server exited during start-up")
        log.append(line)
        if match := STARTED.search(line):
            return match.group(1)
    raise TimeoutError("the server did not start in time")


def _wait_until_ready(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("/readyz did not turn ready in time")


def _drain(lines: queue.Queue, log: list[str]) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if line is not None:
            log.append(line)
