"""Load test of `digitscan serve`: the photo mix on /api/predict beside the bare endpoint, at 1, 8 and 32 clients.

Run: `.venv/bin/python benchmarks/load.py` (needs MNIST in $DIGITSCAN_DATA; starts `digitscan serve
--benchmark-routes` on a free port of 127.0.0.1; 5,000 requests at 32 and at 8 concurrent, 500 at 1, each to the
photo mix and to the bare endpoint, then 300 to /api/read; minutes, most of them the photo mix) with `--workers N` for
N server processes, `--requests` to size it, or `--url` for a running server started with --benchmark-routes.
Writes benchmarks/results/load.{json,md}.

The photo mix: the example images (examples/*.png, *.jpg) and photos of MNIST test digits taken under the 'mixed'
conditions of digitscan.synthetic.photos at 200-520 px. The bare endpoint (POST /bench/bare) receives the same
uploads through the same middleware and answers a constant JSON without decoding them: the HTTP stack's ceiling in
the same server, which the photo mix is compared with. The client is a minimal HTTP/1.1 keep-alive client on asyncio
streams with the requests' bytes built beforehand, so that it takes as little as possible of the cores it shares with
the server (its CPU use is reported); it runs in this process, the server in its own.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.data.mnist import load_mnist  # noqa: E402
from digitscan.synthetic.photos import CONDITIONS, glyph_from_mnist, photograph  # noqa: E402
from digitscan.synthetic.strokes import render_number, stroke_digit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NUMBERS = ["42", "507", "1983", "36", "250", "7104"]
PHOTO_CONDITION = replace(CONDITIONS["mixed"], image_height=(200, 520))
TARGET_RPS, TARGET_P99_MS, TARGET_BARE_SHARE = 500.0, 50.0, 0.5  # issue 17, photo mix at 32 concurrent


# ---- what the requests upload --------------------------------------------------------------------------------------


def photo_mix(photos: int, seed: int) -> list[tuple[str, bytes]]:
    """The example images plus `photos` photographs of MNIST test digits (mixed conditions, 200-520 px)."""
    files = [(p.name, p.read_bytes()) for p in sorted(EXAMPLES.iterdir()) if p.suffix in (".png", ".jpg")]
    images, _ = load_mnist("test")
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(images), photos, replace=False):
        files.append((f"mnist_test_{i}", photograph(glyph_from_mnist(images[i]), PHOTO_CONDITION, rng)))
    return files


def numbers() -> list[tuple[str, bytes]]:
    """For /api/read: the example numbers and a few more written numbers rendered as PNG files."""
    files = [(p.name, p.read_bytes()) for p in sorted((EXAMPLES / "numbers").glob("*")) if p.suffix in (".png", ".jpg")]
    for seed, text in enumerate(NUMBERS):
        image, _ = render_number([stroke_digit(int(c), seed=seed * 10 + i) for i, c in enumerate(text)], seed=seed)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        files.append((f"number_{text}.png", buffer.getvalue()))
    return files


def upload_request(host: str, path: str, name: str, data: bytes) -> bytes:
    """The complete bytes of a multipart POST of `data` as the field `file`, keep-alive."""
    boundary = secrets.token_hex(16)
    while boundary.encode() in data:
        boundary = secrets.token_hex(16)
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


# ---- the client ----------------------------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request's bytes, read the answer's status and body."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {key.strip().lower(): value.strip().lower() for key, value in headers.items()}
        await self.reader.readexactly(int(headers.get("content-length", "0")))  # every answer of ours has one
        if headers.get("connection") == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(url: str, requests: list[bytes], concurrency: int) -> dict:
    """Send every request, `concurrency` at a time on as many connections; latencies, statuses, wall and CPU time."""
    parts = urlsplit(url)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        connection = Connection(parts.hostname, parts.port)
        while next_index < len(requests):
            request = requests[next_index]
            next_index += 1
            start = time.perf_counter()
            try:
                status = str(await connection.send(request))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status = type(exc).__name__
                connection.close()
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
        connection.close()

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    milliseconds = np.array(latencies) * 1000
    p50, p95, p99 = np.percentile(milliseconds, [50, 95, 99])
    return {"requests": len(requests), "concurrency": concurrency, "throughput_rps": len(requests) / wall,
            "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(milliseconds.max()),
            "errors": len(requests) - statuses.get("200", 0), "statuses": statuses, "wall_s": wall,
            "client_cpu_share": client_cpu / wall}


# ---- the server's side ---------------------------------------------------------------------------------------------


def server_totals(url: str) -> dict[str, float]:
    """From /metrics (every worker's, added up): seconds and counts of preparing predict inputs, batch sizes."""
    totals: dict[str, float] = {}
    wanted = {"digitscan_inference_duration_seconds", "digitscan_batch_size"}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name in wanted:
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")) and sample.labels.get("outcome", "ok") == "ok":
                    key = sample.name + sample.labels.get("endpoint", "")
                    totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its children (the worker processes), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def scenario(url: str, path: str, files: list[tuple[str, bytes]], count: int, concurrency: int, seed: int,
             server_pid: int | None) -> dict:
    host = urlsplit(url).netloc
    rng = np.random.default_rng(seed)
    prebuilt = [upload_request(host, path, name, data) for name, data in files]
    requests = [prebuilt[i] for i in rng.integers(len(prebuilt), size=count)]
    asyncio.run(run_load(url, requests[: min(2 * concurrency, 64)], concurrency))  # warm up connections, caches
    before = server_totals(url)
    cpu_before = process_tree_cpu_s(server_pid) if server_pid else 0.0
    result = asyncio.run(run_load(url, requests, concurrency))
    if server_pid:
        result["server_cpu_cores"] = (process_tree_cpu_s(server_pid) - cpu_before) / result["wall_s"]
    after = server_totals(url)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    endpoint = path.rsplit("/", 1)[1]
    if delta(f"digitscan_inference_duration_seconds_count{endpoint}"):
        result["server_work_ms"] = 1000 * delta(f"digitscan_inference_duration_seconds_sum{endpoint}") / delta(
            f"digitscan_inference_duration_seconds_count{endpoint}")
    if path == "/api/predict" and delta("digitscan_batch_size_count"):
        result["mean_batch"] = delta("digitscan_batch_size_sum") / delta("digitscan_batch_size_count")
    return result


def onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(flags: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "digitscan", "serve", "--port", str(port), "--log-level", "warning",
               "--benchmark-routes", *flags]
    process = subprocess.Popen(command, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                time.sleep(1.0 if "--workers" in flags else 0)  # /readyz answered by one worker: give the rest time
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not become ready within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running server started with --benchmark-routes (default: start one).")
    parser.add_argument("--requests", type=int, default=5000, help="Requests at 32 and at 8 concurrent (default "
                                                                   "5000); a tenth of them, at least 100, at 1.")
    parser.add_argument("--workers", type=int, default=1, help="`digitscan serve --workers` of the started server.")
    parser.add_argument("--photos", type=int, default=64, help="MNIST photos in the mix, beside the examples.")
    parser.add_argument("--read-requests", type=int, default=300, help="/api/read requests at 8 concurrent; 0: none.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-flag", action="append", default=[],
                        help="Extra `digitscan serve` flag for the started server (repeatable), "
                             "e.g. --server-flag=--batch-window-ms=0.")
    args = parser.parse_args()

    photos, written = photo_mix(args.photos, args.seed), numbers()
    flags = [*(["--workers", str(args.workers)] if args.workers != 1 else []), *args.server_flag]
    load_before = os.getloadavg()[0]  # other work on the machine (the benchmark shares the cores with it)
    process, url = (None, args.url) if args.url else start_server(flags)
    pid = process.pid if process else None
    model = httpx.get(f"{url}/readyz").json()["model"]
    runs = []
    try:
        for concurrency in (1, 8, 32):
            count = args.requests if concurrency > 1 else max(100, args.requests // 10)
            for name, path in (("photo mix", "/api/predict"), ("bare", "/bench/bare")):
                runs.append((name, scenario(url, path, photos, count, concurrency, args.seed, pid)))
        if args.read_requests:
            runs.append(("read", scenario(url, "/api/read", written, args.read_requests, 8, args.seed, pid)))
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)

    bare = {run["concurrency"]: run["throughput_rps"] for name, run in runs if name == "bare"}
    header = ["run", "requests", "concurrent", "req/s", "of bare", "p50 ms", "p95 ms", "p99 ms", "errors",
              "mean batch", "server prep ms", "server CPU (cores)", "client CPU (cores)"]
    table = []
    for name, run in runs:
        share = run["throughput_rps"] / bare[run["concurrency"]] if name == "photo mix" else None
        table.append([name, run["requests"], run["concurrency"], f"{run['throughput_rps']:.0f}",
                      f"{share:.0%}" if share is not None else "", f"{run['p50_ms']:.1f}", f"{run['p95_ms']:.1f}",
                      f"{run['p99_ms']:.1f}", run["errors"],
                      f"{run['mean_batch']:.1f}" if "mean_batch" in run else "",
                      f"{run['server_work_ms']:.1f}" if "server_work_ms" in run else "",
                      f"{run['server_cpu_cores']:.2f}" if "server_cpu_cores" in run else "",
                      f"{run['client_cpu_share']:.2f}"])
    at_32 = next(run for name, run in runs if name == "photo mix" and run["concurrency"] == 32)
    share_32 = at_32["throughput_rps"] / bare[32]
    verdict = (f"Targets at 32 concurrent (issue 17): >= {TARGET_RPS:.0f} req/s: {at_32['throughput_rps']:.0f}; "
               f"p99 <= {TARGET_P99_MS:.0f} ms: {at_32['p99_ms']:.1f}; 0 errors: {at_32['errors']}; "
               f">= {TARGET_BARE_SHARE:.0%} of bare: {share_32:.0%}.")
    server = f"the server at {url}" if args.url else " ".join(["`digitscan serve --benchmark-routes", *flags]) + "`"
    server += f", model {model}" + (f" on onnxruntime {onnxruntime_version()}" if model.endswith(".onnx") else "")
    info = machine()
    info["torch_threads"] = 1  # the server's default (one PyTorch thread per inference), not this client's
    markdown = "\n".join([
        markdown_table(header, table), "",
        verdict, "",
        f"Server: {server}. Photo mix: {len(photos)} files, the example images and {args.photos} photos of MNIST test "
        f"digits ('mixed' conditions, 200-520 px); bare: the same uploads to POST /bench/bare. Read: {len(written)} "
        f"written numbers of 2-5 digits. 'mean batch' and 'server prep ms' (decode + prepare per predict; the whole "
        f"reading for read) come from the server's /metrics (every worker's, added up). "
        f"CPU in cores: seconds of CPU per second of the run, the server's processes and this client's (a raw "
        f"asyncio HTTP/1.1 client in the benchmark's own process, on the same cores).",
        machine_line(info) + f"; load average {load_before:.1f} before the run",
    ])
    write_results("load", {"machine": info, "url": url, "model": model, "workers": args.workers, "flags": flags,
                           "runs": [{"name": name, **run} for name, run in runs]}, markdown)


if __name__ == "__main__":
    main()
