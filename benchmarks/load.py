"""Load test of `digitscan serve`: a bounded run of real image uploads, then throughput, latency percentiles, errors.

Run: `.venv/bin/python benchmarks/load.py` (starts a server on a free port of 127.0.0.1; 2,000 requests at 32
concurrent, then predict alone at 1 and 4; under a minute on 2 cores) or add `--url http://127.0.0.1:8000` for a running
server. Writes benchmarks/results/load.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.synthetic.strokes import render_number, stroke_digit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NUMBERS = ["42", "507", "1983", "36", "250", "7104"]
TARGET_P99_MS = 50.0  # for single-digit predict (issue 5)


def image_files() -> dict[str, list[tuple[str, bytes]]]:
    """What the requests upload: the example photos and drawings for predict; for read, the example numbers and
    a few more written numbers rendered as PNG files."""
    predict = [(p.name, p.read_bytes()) for p in sorted(EXAMPLES.iterdir()) if p.suffix in (".png", ".jpg")]
    numbers = EXAMPLES / "numbers"
    read = [(p.name, p.read_bytes()) for p in sorted(numbers.glob("*")) if p.suffix in (".png", ".jpg")]
    for seed, text in enumerate(NUMBERS):
        image, _ = render_number([stroke_digit(int(c), seed=seed * 10 + i) for i, c in enumerate(text)], seed=seed)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        read.append((f"number_{text}.png", buffer.getvalue()))
    return {"predict": predict, "read": read}


async def run_load(url: str, kinds: list[str], files: dict, concurrency: int) -> list[dict]:
    """Send one request per entry of `kinds` ("predict" / "read"), `concurrency` at a time; one record per request."""
    records: list[dict] = []
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(kinds):
                index = next_index
                next_index += 1
                kind = kinds[index]
                name, data = files[kind][index % len(files[kind])]
                start = time.perf_counter()
                try:
                    response = await client.post(f"/api/{kind}", files={"file": (name, data)})
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                records.append({"kind": kind, "status": status, "seconds": time.perf_counter() - start})

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for record in records:
        record["wall"], record["client_cpu"] = wall, client_cpu
    return records


def summarize(records: list[dict], wall: float) -> dict:
    latencies = np.array([r["seconds"] for r in records]) * 1000
    errors = sum(r["status"] != 200 for r in records)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if len(latencies) else (float("nan"),) * 3
    return {"requests": len(records), "errors": errors, "throughput_rps": len(records) / wall,
            "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(latencies.max())}


def inference_totals(url: str) -> dict[str, tuple[float, float]]:
    """From the server's /metrics: per endpoint, (seconds spent in inference threads, inferences) so far."""
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name == "digitscan_inference_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")) and sample.labels.get("outcome") == "ok":
                    entry = totals.setdefault(sample.labels["endpoint"], [0.0, 0.0])
                    entry[sample.name.endswith("_count")] += sample.value
    return {endpoint: (total, count) for endpoint, (total, count) in totals.items()}


def scenario(url: str, files: dict, requests: int, concurrency: int, read_fraction: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    kinds = ["read" if r < read_fraction else "predict" for r in rng.random(requests)]
    asyncio.run(run_load(url, ["predict"] * min(2 * concurrency, 64), files, concurrency))  # warm up connections
    before = inference_totals(url)
    records = asyncio.run(run_load(url, kinds, files, concurrency))
    after = inference_totals(url)
    wall = records[0]["wall"]
    rows = {"all": summarize(records, wall)}
    for kind in ("predict", "read"):
        subset = [r for r in records if r["kind"] == kind]
        if subset:
            rows[kind] = summarize(subset, wall)
            total, count = (a - b for a, b in zip(after.get(kind, (0, 0)), before.get(kind, (0, 0)), strict=True))
            rows[kind]["server_inference_ms"] = 1000 * total / max(count, 1)  # mean time on a worker thread
    statuses: dict[str, int] = {}
    for record in records:
        statuses[str(record["status"])] = statuses.get(str(record["status"]), 0) + 1
    return {"requests": requests, "concurrency": concurrency, "read_fraction": read_fraction, "rows": rows,
            "statuses": statuses, "wall_s": wall, "client_cpu_s": records[0]["client_cpu"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(flags: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "digitscan", "serve", "--port", str(port), "--log-level", "warning", *flags]
    process = subprocess.Popen(command, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not become ready within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running server (default: start one on a free port).")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--read-fraction", type=float, default=0.25, help="Share of /api/read requests in the mix.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-flag", action="append", default=[],
                        help="Extra `digitscan serve` flag for the started server (repeatable), "
                             "e.g. --server-flag=--max-concurrency=1.")
    args = parser.parse_args()

    files = image_files()
    load_before = os.getloadavg()[0]  # other work on the machine (the benchmark shares the cores with it)
    process, url = (None, args.url) if args.url else start_server(args.server_flag)
    try:
        runs = [
            ("mixed", scenario(url, files, args.requests, args.concurrency, args.read_fraction, args.seed)),
            ("predict, 1 client", scenario(url, files, min(args.requests, 300), 1, 0.0, args.seed)),
            ("predict, 4 clients", scenario(url, files, min(args.requests, 600), 4, 0.0, args.seed)),
        ]
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)

    info = machine()
    info["torch_threads"] = 1  # the server's default (one PyTorch thread per inference), not this client's
    header = ["run", "requests", "concurrent", "kind", "throughput (req/s)", "p50 ms", "p95 ms", "p99 ms", "errors",
              "inference ms (server, mean)"]
    table = []
    for name, run in runs:
        for kind, row in run["rows"].items():
            table.append([name, row["requests"], run["concurrency"], kind, f"{row['throughput_rps']:.0f}",
                          f"{row['p50_ms']:.1f}", f"{row['p95_ms']:.1f}", f"{row['p99_ms']:.1f}", row["errors"],
                          f"{row['server_inference_ms']:.1f}" if "server_inference_ms" in row else ""])
    errors = sum(run["rows"]["all"]["errors"] for _, run in runs)
    client_share = runs[0][1]["client_cpu_s"] / runs[0][1]["wall_s"]
    server = f"the server at {url}" if args.url else " ".join(["`digitscan serve", *args.server_flag]) + "`"
    markdown = "\n".join([
        markdown_table(header, table), "",
        f"Server: {server} (defaults: 2 inference threads of 1 PyTorch thread, queue 64); "
        f"client: httpx.AsyncClient in a second process on the same machine (it used {client_share:.0%} of a core "
        f"during the mixed run). Predict uploads the {len(files['predict'])} "
        f"example images (28 px to 900x1200 JPEG), read uploads {len(files['read'])} written numbers of 2-5 digits. "
        f"Errors (any answer but 200): {errors}. Target for single-digit predict: p99 <= {TARGET_P99_MS:.0f} ms.",
        machine_line(info) + f"; load average {load_before:.1f} before the run",
    ])
    write_results("load", {"machine": info, "url": url, "runs": dict(runs)}, markdown)


if __name__ == "__main__":
    main()
