"""Batch jobs end to end: `digitscan predict FOLDER --out results.csv` over 10,000 real-size photos.

Run: `.venv/bin/python benchmarks/batch_speed.py` (~4 min on 2 cores; needs DIGITSCAN_DATA). The files are MNIST
*test* digits photographed by digitscan.synthetic.photos ("mixed" conditions: ink, paper, light, pen, noise, blur)
as 640x480 JPEG files (quality 90), written into a temporary folder (deleted afterwards); `--kind mnist-png` uses
the 28x28 MNIST test images as PNG files instead. The CLI then runs as a fresh process for each backend
(onnxruntime, the default; PyTorch with --backend torch) and number of decoding workers. Reported: wall time of the
whole command (Python start-up, model loading and worker start-up included), images/s from that, the rows in the
CSV (one per file, in order) and their accuracy against the MNIST labels.

Before/after in one run: `--baseline REV` also runs each job with that git revision's src/digitscan (exported to a
temporary folder and put first on PYTHONPATH; the same virtual environment, model files of that revision),
interleaved with the current code on the same files.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from common import machine, machine_line, markdown_table, write_results
from digitscan.data.mnist import load_mnist
from digitscan.image.decode import decode_image
from digitscan.synthetic.photos import CONDITIONS, glyph_from_mnist, render

PHOTO_SIZE = (640, 480)  # (w, h)


def write_pngs(folder: Path, n: int) -> dict[str, int]:
    """The first n MNIST test images as 28x28 grayscale PNG files; path -> label."""
    images, labels = load_mnist("test")
    truth = {}
    for i in range(min(n, len(images))):
        path = folder / f"{i:05d}.png"
        Image.fromarray(images[i]).save(path)
        truth[str(path)] = int(labels[i])
    return truth


def write_photos(folder: Path, n: int, seed: int = 0) -> dict[str, int]:
    """The first n MNIST test digits photographed ("mixed" conditions) as 640x480 JPEG files; path -> label."""
    images, labels = load_mnist("test")
    rng = np.random.default_rng(seed)
    condition = replace(CONDITIONS["mixed"], image_height=(PHOTO_SIZE[1], PHOTO_SIZE[1]),
                        aspect=(PHOTO_SIZE[0] / PHOTO_SIZE[1],) * 2)
    truth = {}
    for i in range(min(n, len(images))):
        pixels, _ = render(glyph_from_mnist(images[i]), condition.draw(rng), rng)  # (480, 640, 3) RGB
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        path = folder / f"{i:05d}.jpg"
        path.write_bytes(buffer.getvalue())
        truth[str(path)] = int(labels[i])
    return truth


REPO = Path(__file__).resolve().parents[1]


def export_source(revision: str, into: Path) -> Path:
    """src/ of a git revision written under `into` (git archive); the folder to put on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def run_job(folder: Path, out: Path, workers: int, batch_size: int, *options: str,
            source: Path | None = None) -> float:
    """Wall seconds of `digitscan predict FOLDER --out OUT ...` as a fresh process (options: more flags); source:
    run that copy of the package instead of the installed one."""
    command = [sys.executable, "-m", "digitscan", "predict", str(folder), "--out", str(out), "--force",
               "--workers", str(workers), "--batch-size", str(batch_size), "--no-progress", *options]
    env = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="Number of MNIST test digits to write as files.")
    parser.add_argument("--kind", choices=["photos", "mnist-png"], default="photos",
                        help="640x480 JPEG photos (default) or the 28x28 MNIST images as PNG files")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"], choices=["onnx", "torch"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--baseline", metavar="REV", help="also run each job with this git revision's code")
    args = parser.parse_args()

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder, tmp_path = Path(tmp) / "files", Path(tmp)
        folder.mkdir()
        truth = write_photos(folder, args.n) if args.kind == "photos" else write_pngs(folder, args.n)
        size = decode_image(next(iter(truth))).shape
        mb = sum(Path(p).stat().st_size for p in truth) / 2**20
        print(f"{len(truth):,} files of {size[1]}x{size[0]} px, {mb:,.0f} MiB", flush=True)
        codes = [("current", None)]
        if args.baseline:
            codes.append((args.baseline, export_source(args.baseline, tmp_path)))
        for backend, workers, (code, source) in itertools.product(args.backends, args.workers, codes):
            out = tmp_path / f"{backend}-{workers}-{code}.csv"
            seconds = run_job(folder, out, workers, args.batch_size, "--backend", backend, source=source)
            with open(out, newline="") as f:
                table = list(csv.DictReader(f))
            correct = sum(r["digit"] == str(truth[r["path"]]) for r in table)
            errors = sum(bool(r["error"]) for r in table)
            paths_ok = [r["path"] for r in table] == sorted(truth)
            result = {"code": code, "backend": backend, "workers": workers, "batch_size": args.batch_size,
                      "seconds": seconds, "images_per_s": len(truth) / seconds, "rows": len(table),
                      "errors": errors, "accuracy": correct / len(table), "every_file_once_in_order": paths_ok}
            results.append(result)
            rows.append([code, {"onnx": "onnxruntime", "torch": "PyTorch"}[backend], workers, f"{seconds:.1f}",
                         f"{result['images_per_s']:,.0f}",
                         f"{len(table):,}" + ("" if paths_ok else " (NOT one per file)"),
                         f"{result['accuracy']:.2%}"])
            print(rows[-1], flush=True)
    info = machine()
    markdown = "\n".join([
        markdown_table(["code", "backend", "workers", "wall time (s)", "images/s end to end", "CSV rows",
                        "accuracy of the rows"], rows), "",
        (f"{len(truth):,} MNIST test digits photographed as {size[1]}×{size[0]} JPEG files ({mb:,.0f} MiB; synthetic "
         "photos, 'mixed' conditions)" if args.kind == "photos" else
         f"{len(truth):,} MNIST test images as 28×28 PNG files")
        + f"; `digitscan predict FOLDER --out results.csv --workers N --batch-size {args.batch_size} --backend B`, "
        "each run a fresh process (start-up, model loading and worker start-up included). Accuracy: the `digit` "
        "column against the MNIST labels (a rejected digit counts as wrong).",
        machine_line(info),
        f"Command: `.venv/bin/python benchmarks/batch_speed.py --kind {args.kind} --n {args.n} --workers "
        f"{' '.join(map(str, args.workers))} --backends {' '.join(args.backends)}"
        + (f" --baseline {args.baseline}`" if args.baseline else "`"),
    ])
    write_results("batch_speed" if args.kind == "photos" else "batch_speed_mnist_png",
                  {"machine": info, "kind": args.kind, "n": len(truth), "runs": results}, markdown)


if __name__ == "__main__":
    main()
