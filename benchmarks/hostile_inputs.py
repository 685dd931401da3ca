"""Resource bounds on hostile inputs: peak memory of preprocessing the largest accepted image in each pixel mode, and
the time `Recognizer.read` takes on pathological pages (thousands of specks, pages of dashes and scribbles).

Run: `.venv/bin/python benchmarks/hostile_inputs.py` (about a minute on 2 CPU cores); writes
benchmarks/results/hostile_inputs.{json,md}. docs/security.md quotes these numbers.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.constants import (
    MAX_PIXELS,  # noqa: E402
    READ_METHODS,
    READ_TIME_LIMIT_S,  # noqa: E402
)
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.strokes import render_number, stroke_digit  # noqa: E402

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


def main() -> None:
    info = machine()
    memory = peak_memory()
    times = read_times(Recognizer.load())
    markdown = "\n\n".join([
        f"Peak memory of `preprocess` on the largest accepted image ({WIDTH}x{HEIGHT} = {MAX_PIXELS:,} pixels), "
        "each in a fresh process (RSS after imports = baseline):",
        markdown_table(["image", "file", "baseline RSS", "peak RSS", "over baseline, per pixel", "time"],
                       [[r["image"], f"{r['file_bytes'] / 2**20:.1f} MiB", f"{r['baseline_mib']:.0f} MiB",
                         f"{r['peak_mib']:.0f} MiB", f"{r['bytes_per_pixel']:.1f} B", f"{r['seconds']:.2f} s"]
                        for r in memory]),
        f"`Recognizer.read` on pathological pages (median and worst of 3 after a warm-up; the limit is "
        f"{READ_TIME_LIMIT_S:g} s):",
        markdown_table(["page", "method", "median", "worst", "digits read"],
                       [[r["page"], r["method"], f"{r['median_s']:.2f} s", f"{r['max_s']:.2f} s", r["digits_read"]]
                        for r in times]),
        machine_line(info),
    ])
    write_results("hostile_inputs", {"machine": info, "peak_memory": memory, "read_times": times}, markdown)


if __name__ == "__main__":
    main()
