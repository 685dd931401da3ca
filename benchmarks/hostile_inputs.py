"""Resource bounds on hostile inputs: peak memory of preprocessing the largest accepted image in each pixel mode, the
time `Recognizer.read` takes on pathological pages (thousands of specks, pages of dashes and scribbles), what a JPEG
scan bomb would cost and what refusing it costs, and a live server under attack (JPEG bombs and slow-header
connections together) while /healthz and a good /api/predict are timed every 100 ms.

Run: `.venv/bin/python benchmarks/hostile_inputs.py` (about two minutes on 2 CPU cores), or `--only jpeg` /
`--only attack` / `--only metrics` for one part; writes benchmarks/results/hostile_inputs[_PART].{json,md}.
docs/security.md quotes these numbers. Everything stays on 127.0.0.1 and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))  # the JPEG scan bomb is built by the hostile-input corpus's helper
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.constants import (  # noqa: E402
    MAX_JPEG_SCAN_PIXELS,
    MAX_JPEG_SCANS,
    MAX_PIXELS,
    READ_METHODS,
    READ_TIME_LIMIT_S,
)
from digitscan.errors import ImageTooCostlyError  # noqa: E402
from digitscan.image.decode import decode_image  # noqa: E402
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.strokes import render_number, stroke_digit  # noqa: E402
from load import start_server  # noqa: E402

from helpers.hostile import jpeg_scan_bomb  # noqa: E402

WIDTH, HEIGHT = 8000, 5000  # exactly MAX_PIXELS
# The child's own high-water mark (VmHWM), not ru_maxrss, which Linux carries over from the parent (see
# tests/test_resources.py).
MEASURE = """
import sys, time
from digitscan.image.prepare import preprocess

def high_water() -> int:
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))

baseline = high_water()
start = time.perf_counter()
preprocess(sys.argv[1])
seconds = time.perf_counter() - start
print(baseline, high_water(), seconds)
"""
# name -> (Pillow mode, format, save options)
MODES = {
    "8-bit grey PNG": ("L", "PNG", {"compress_level": 1}),
    "RGB JPEG": ("RGB", "JPEG", {"quality": 85}),
    "RGBA PNG": ("RGBA", "PNG", {"compress_level": 1}),
    "16-bit grey PNG": ("I;16", "PNG", {"compress_level": 1}),
    "CMYK JPEG": ("CMYK", "JPEG", {"quality": 85}),
    "32-bit float TIFF": ("F", "TIFF", {"compression": "tiff_deflate"}),
}


def largest_image(mode: str) -> Image.Image:
    page = Image.new("L", (WIDTH, HEIGHT), 255)
    ImageDraw.Draw(page).line([(2400, 1000), (5600, 1000), (3600, 4200)], fill=0, width=300)
    if mode == "F":
        return Image.fromarray(np.asarray(page, np.float32) / 255, "F")
    if mode == "I;16":
        return Image.fromarray(np.asarray(page, np.uint16) * 257)
    return page.convert(mode)


def peak_memory() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (mode, fmt, options) in MODES.items():
            path = Path(folder) / f"largest.{fmt.lower()}"
            largest_image(mode).save(path, fmt, **options)
            run = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                                 check=True)
            baseline, peak, seconds = (float(v) for v in run.stdout.split())
            rows.append({"image": name, "file_bytes": path.stat().st_size, "baseline_mib": baseline / 2**20,
                         "peak_mib": peak / 2**20, "bytes_per_pixel": (peak - baseline) / MAX_PIXELS,
                         "seconds": seconds})
            print(rows[-1], flush=True)
    return rows


def pathological_pages() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)

    def specks(count: int, size: int) -> np.ndarray:
        page = np.full((2000, 2000), 245, np.uint8)
        for y, x in rng.integers(0, 2000 - size, (count, 2)):
            page[y : y + size, x : x + size] = 20
        return page

    dashes = np.full((600, 2000), 245, np.uint8)
    for y in range(0, 600, 12):
        for x in range(0, 2000, 60):
            dashes[y : y + 3, x : x + 40] = 20
    zigzags = np.full((500, 1820), 245, np.uint8)
    for row in range(5):
        for column in range(5):
            x0, y0 = 10 + column * 360, 10 + row * 96
            points = [(x0 + k * 12, y0 + (60 if k % 2 else 0)) for k in range(24)]
            cv2.polylines(zigzags, [np.array(points, np.int32)], False, 20, 5)
    lines = []
    for row in range(10):
        digits = [stroke_digit(int(c), seed=10 * row + i) for i, c in enumerate("98765432109876543210")]
        image, _ = render_number(digits, seed=row)
        lines.append(np.asarray(image.convert("L")))
    width = max(line.shape[1] for line in lines)
    rows_of_digits = np.vstack([np.pad(line, ((0, 0), (0, width - line.shape[1])), constant_values=255)
                                for line in lines])
    walk = np.full((1000, 1000), 245, np.uint8)
    point = np.array([500.0, 500.0])
    for _ in range(20_000):
        step = np.clip(point + rng.normal(0, 6, 2), 0, 999)
        cv2.line(walk, tuple(int(v) for v in point), tuple(int(v) for v in step), 20, 2)
        point = step
    return {
        "5,000 specks of 2x2 px, 2000x2000 page": specks(5000, 2),
        "5,000 specks of 6x6 px, 2000x2000 page": specks(5000, 6),
        "20,000 specks of 4x4 px, 2000x2000 page": specks(20_000, 4),
        "1,650 dashes, 2000x600 page": dashes,
        "25 zigzag scribbles, 1820x500 page": zigzags,
        "10 lines of 20 digits (200 digits)": rows_of_digits,
        "random-walk scribble, 20,000 strokes": walk,
        "uniform noise, 2000x2000": rng.integers(0, 256, (2000, 2000), dtype=np.uint8),
    }


def read_times(recognizer: Recognizer, repeats: int = 3) -> list[dict]:
    """Per page and reading method (READ_METHODS): median and worst time of `repeats` reads after a warm-up."""
    rows = []
    for name, page in pathological_pages().items():
        for method in READ_METHODS:
            recognizer.read(page, method=method)  # warm-up
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                result = recognizer.read(page, method=method)
                seconds.append(time.perf_counter() - start)
            rows.append({"page": name, "method": method, "median_s": statistics.median(seconds),
                         "max_s": max(seconds), "digits_read": len(result.digits)})
            print(rows[-1], flush=True)
    return rows


# ---- JPEG scan bombs: what decoding would cost, what refusing costs ---------------------------------------------

BOMB_SIDE = 5000  # 25 megapixels: at the server's pixel limit
BOMBS = {"5.2 MB bomb (120,000 repeats)": 120_000, "1 MB bomb (22,000 repeats)": 22_000}


def jpeg_costs(repeats: int = 5) -> dict:
    """Pillow's time per scan of a 25-megapixel image (from 6 and 46 scans), the bombs' refusal time (median of
    `repeats`), and the slowest JPEGs the scan limit still lets through, decoded by decode_image."""

    def pillow_seconds(data: bytes) -> float:
        start = time.perf_counter()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        return time.perf_counter() - start

    load_before = os.getloadavg()[0]  # other work on the shared cores slows every scan alike
    base_scans, extra = 6, 40
    plain = min(pillow_seconds(jpeg_scan_bomb(BOMB_SIDE, 0)) for _ in range(2))
    more = min(pillow_seconds(jpeg_scan_bomb(BOMB_SIDE, extra)) for _ in range(2))
    per_scan = (more - plain) / extra
    megapixels = BOMB_SIDE**2 / 1e6
    result = {"pillow_seconds_6_scans": plain, "pillow_seconds_46_scans": more, "seconds_per_scan": per_scan,
              "ms_per_scan_megapixel": 1000 * per_scan / megapixels, "load_before": load_before, "bombs": [],
              "accepted": []}
    for name, count in BOMBS.items():
        bomb = jpeg_scan_bomb(BOMB_SIDE, count)
        times, message = [], "decoded: not refused"
        for _ in range(repeats):
            start = time.perf_counter()
            try:
                decode_image(bomb)
            except ImageTooCostlyError as error:
                message = str(error)
            times.append(time.perf_counter() - start)
        result["bombs"].append({"bomb": name, "bytes": len(bomb), "scans": base_scans + count,
                                "estimated_decode_s": plain + per_scan * count,
                                "refusal_s": statistics.median(times), "message": message})
        print(result["bombs"][-1], flush=True)
    for width, height in ((BOMB_SIDE, BOMB_SIDE), (8000, 5000)):
        allowed = min(MAX_JPEG_SCANS, MAX_JPEG_SCAN_PIXELS // (width * height))
        worst = jpeg_scan_bomb(width, allowed - base_scans, height)
        start = time.perf_counter()
        decode_image(worst, max_pixels=MAX_PIXELS)
        result["accepted"].append({"image": f"{width}x{height}", "scans": allowed,
                                   "decode_image_s": time.perf_counter() - start})
        print(result["accepted"][-1], flush=True)
    return result


def jpeg_markdown(costs: dict) -> list[str]:
    return [
        f"JPEG scan bombs of {BOMB_SIDE}x{BOMB_SIDE} white pixels (one scan of a Pillow progressive JPEG repeated). "
        f"Pillow decodes one scan of this image in {costs['seconds_per_scan'] * 1000:.0f} ms "
        f"({costs['ms_per_scan_megapixel']:.2f} ms per megapixel; {costs['pillow_seconds_6_scans']:.2f} s for its "
        f"6 scans, {costs['pillow_seconds_46_scans']:.2f} s for 46; load average {costs['load_before']:.1f} before), "
        "so decoding the bombs would take:",
        markdown_table(["bomb", "size", "scans", "decoding (estimated)", "refused in", "message"],
                       [[b["bomb"], f"{b['bytes'] / 1e6:.1f} MB", f"{b['scans']:,}",
                         f"{b['estimated_decode_s']:.0f} s", f"{b['refusal_s'] * 1000:.1f} ms", b["message"]]
                        for b in costs["bombs"]]),
        "The slowest JPEGs the scan limit still accepts (white pages with as many scans as allowed), "
        "through `decode_image`:",
        markdown_table(["image", "scans", "decode_image"],
                       [[a["image"], a["scans"], f"{a['decode_image_s']:.2f} s"] for a in costs["accepted"]]),
    ]


# ---- a live server under attack ------------------------------------------------------------------------------------

ATTACK_S = 30.0  # three header timeouts: the slow connections are dropped and come back three times
PROBE_INTERVAL_S = 0.1
BOMB_CLIENTS = 4  # each uploads a bomb, waits for the answer, uploads the next
SLOW_CONNECTIONS = 200  # held open at all times, each with an unfinished request line
MAX_OPENED = 5_000  # slow connections opened in all, at most
GOOD = REPO / "examples" / "seven_ink_on_paper.png"


async def probe(url: str, route: str, stop: float, records: list) -> None:
    """Every PROBE_INTERVAL_S until `stop`: one request on a new connection (an attacker's target is the accept
    queue as much as the app), its latency and status."""
    good = GOOD.read_bytes()
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http:
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                if route == "/healthz":
                    response = await http.get(route)
                else:
                    response = await http.post(route, files={"file": (GOOD.name, good, "image/png")})
                status = response.status_code
                if route != "/healthz" and status == 200 and response.json()["digit"] != 7:
                    status = "wrong digit"
            except httpx.HTTPError as error:
                status = type(error).__name__
            seconds = time.perf_counter() - start
            records.append({"s": seconds, "status": status})
            await asyncio.sleep(max(0.0, PROBE_INTERVAL_S - seconds))


async def bomber(url: str, bombs: list[bytes], stop: float, records: list) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for turn in range(100_000):
            if time.monotonic() >= stop:
                return
            start = time.perf_counter()
            try:
                response = await http.post("/api/predict", files={"file": ("scans.jpg", bombs[turn % len(bombs)])})
                status = response.status_code
            except httpx.HTTPError as error:
                status = type(error).__name__
            records.append({"s": time.perf_counter() - start, "status": status})


async def slow_client(host: str, port: int, stop: float, records: list, opened: list) -> None:
    """Keep one connection with an unfinished request open; when the server closes it, open the next."""
    while time.monotonic() < stop and len(opened) < MAX_OPENED:
        opened.append(1)
        start = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:
            records.append({"held_s": 0.0, "closed_by": type(error).__name__})
            await asyncio.sleep(0.1)
            continue
        writer.write(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-")
        try:
            answer = await asyncio.wait_for(reader.read(1024), timeout=max(0.01, stop - time.monotonic()))
            closed_by = "server: 503" if answer.startswith(b"HTTP/1.1 503") else "server"
        except (TimeoutError, OSError):
            closed_by = "end of the run"
        records.append({"held_s": time.monotonic() - start, "closed_by": closed_by})
        writer.close()


async def attack(url: str, seconds: float) -> dict:
    """Probe /healthz and /api/predict for `seconds`, first alone, then under bombs and slow connections."""
    host, port = url.removeprefix("http://").split(":")
    quiet = {"/healthz": [], "/api/predict": []}
    stop = time.monotonic() + 5
    await asyncio.gather(*(probe(url, route, stop, records) for route, records in quiet.items()))
    bombs = [jpeg_scan_bomb(BOMB_SIDE, count) for count in BOMBS.values()]
    probes = {"/healthz": [], "/api/predict": []}
    bombed, held, opened = [], [], []
    stop = time.monotonic() + seconds
    await asyncio.gather(
        *(slow_client(host, int(port), stop, held, opened) for _ in range(SLOW_CONNECTIONS)),
        *(bomber(url, bombs, stop, bombed) for _ in range(BOMB_CLIENTS)),
        *(probe(url, route, stop, records) for route, records in probes.items()),
    )
    return {"seconds": seconds, "quiet": quiet, "probes": probes, "bombs": bombed, "slow": held}


def latency_row(name: str, records: list[dict]) -> list:
    seconds = sorted(r["s"] for r in records)
    failed = sum(r["status"] != 200 for r in records)
    return [name, len(records), f"{1000 * statistics.median(seconds):.0f} ms",
            f"{1000 * seconds[int(0.99 * (len(seconds) - 1))]:.0f} ms", f"{1000 * seconds[-1]:.0f} ms", failed]


def under_attack() -> dict:
    load_before = os.getloadavg()[0]
    process, url = start_server([])  # the defaults: header timeout 10 s, 1000 connections, 5 MiB uploads
    try:
        result = asyncio.run(attack(url, ATTACK_S))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    result["load_before"] = load_before
    statuses: dict[str, int] = {}
    for record in result["bombs"]:
        statuses[str(record["status"])] = statuses.get(str(record["status"]), 0) + 1
    result["bomb_statuses"] = statuses
    closed: dict[str, int] = {}
    for record in result["slow"]:
        closed[record["closed_by"]] = closed.get(record["closed_by"], 0) + 1
    result["slow_closed_by"] = closed
    by_server = [r["held_s"] for r in result["slow"] if r["closed_by"] == "server"]
    result["slow_held_s"] = {"median": statistics.median(by_server), "max": max(by_server)} if by_server else {}
    print({k: v for k, v in result.items() if k not in ("quiet", "probes", "bombs", "slow")}, flush=True)
    return result


def attack_markdown(result: dict) -> list[str]:
    rows = [latency_row(f"{route}, quiet (5 s)", records) for route, records in result["quiet"].items()]
    rows += [latency_row(f"{route}, under attack ({result['seconds']:.0f} s)", records)
             for route, records in result["probes"].items()]
    bombs = result["bombs"]
    bomb_ms = 1000 * statistics.median(r["s"] for r in bombs) if bombs else float("nan")
    held = result["slow_held_s"]
    return [
        f"A live `digitscan serve` (default settings) under attack for {result['seconds']:.0f} s: {BOMB_CLIENTS} "
        f"clients uploading the 5.2 MB and 1 MB JPEG bombs back to back ({len(bombs)} uploads, answered "
        f"{result['bomb_statuses']}, median {bomb_ms:.0f} ms each, upload included) and {SLOW_CONNECTIONS} "
        f"connections held open with an unfinished request ({len(result['slow'])} in all; closed by "
        f"{result['slow_closed_by']}; held {held.get('median', 0):.1f} s median, {held.get('max', 0):.1f} s at "
        f"most), while /healthz and a good /api/predict are each sent every {1000 * PROBE_INTERVAL_S:.0f} ms on a "
        f"new connection. Load average before the run: {result['load_before']:.1f}.",
        markdown_table(["probe", "requests", "median", "p99", "max", "failed"], rows),
    ]


METRICS_REQUESTS = 20_000


def metrics_growth(requests: int = METRICS_REQUESTS) -> dict:
    """/metrics after `requests` requests with made-up methods and random paths (in-process, no network): before
    the labels came from fixed sets, 20,000 of them made it 45 MB."""
    from fastapi.testclient import TestClient

    from digitscan.serve import Settings, create_app

    http = TestClient(create_app(Settings()))  # no lifespan: no request here reaches the model
    rng = np.random.default_rng(18)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    start = time.perf_counter()
    for _ in range(requests):
        method = "".join(rng.choice(letters, rng.integers(3, 12))) if rng.random() < 0.7 else "GET"
        path = f"/{rng.integers(1 << 62):x}/{rng.integers(1 << 62):x}" if rng.random() < 0.7 else "/healthz"
        http.request(method, path)
    seconds = time.perf_counter() - start
    scrape_start = time.perf_counter()
    text = http.get("/metrics").text
    scrape_ms = 1000 * (time.perf_counter() - scrape_start)
    series = sum(1 for line in text.splitlines() if line.startswith("digitscan_http_requests_total{"))
    return {"requests": requests, "seconds": seconds, "metrics_bytes": len(text.encode()), "request_series": series,
            "scrape_ms": scrape_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["memory", "read", "jpeg", "attack", "metrics"], help="Run one part only.")
    args = parser.parse_args()
    parts = [args.only] if args.only else ["memory", "read", "jpeg", "attack", "metrics"]
    info = machine()
    data: dict = {"machine": info}
    sections: list[str] = []
    if "memory" in parts:
        memory = data["peak_memory"] = peak_memory()
        sections += [
            f"Peak memory of `preprocess` on the largest accepted image ({WIDTH}x{HEIGHT} = {MAX_PIXELS:,} pixels), "
            "each in a fresh process (RSS after imports = baseline):",
            markdown_table(["image", "file", "baseline RSS", "peak RSS", "over baseline, per pixel", "time"],
                           [[r["image"], f"{r['file_bytes'] / 2**20:.1f} MiB", f"{r['baseline_mib']:.0f} MiB",
                             f"{r['peak_mib']:.0f} MiB", f"{r['bytes_per_pixel']:.1f} B", f"{r['seconds']:.2f} s"]
                            for r in memory]),
        ]
    if "read" in parts:
        times = data["read_times"] = read_times(Recognizer.load())
        sections += [
            f"`Recognizer.read` on pathological pages (median and worst of 3 after a warm-up; the limit is "
            f"{READ_TIME_LIMIT_S:g} s):",
            markdown_table(["page", "method", "median", "worst", "digits read"],
                           [[r["page"], r["method"], f"{r['median_s']:.2f} s", f"{r['max_s']:.2f} s",
                             r["digits_read"]] for r in times]),
        ]
    if "jpeg" in parts:
        data["jpeg"] = jpeg_costs()
        sections += jpeg_markdown(data["jpeg"])
    if "attack" in parts:
        data["attack"] = under_attack()
        sections += attack_markdown(data["attack"])
    if "metrics" in parts:
        growth = data["metrics"] = metrics_growth()
        sections.append(
            f"/metrics after {growth['requests']:,} requests with made-up methods and random paths: "
            f"{growth['metrics_bytes'] / 1000:.1f} KB, {growth['request_series']} request series, scraped in "
            f"{growth['scrape_ms']:.1f} ms.")
    sections.append(machine_line(info))
    write_results("hostile_inputs" + (f"_{args.only}" if args.only else ""), data, "\n\n".join(sections))


if __name__ == "__main__":
    main()
