"""Batch jobs end to end: `digitscan predict FOLDER --out results.csv` over the 10,000 MNIST test images as PNG files.

Run: `.venv/bin/python benchmarks/batch_speed.py` (~2 min on 2 cores; needs DIGITSCAN_DATA). The images are written
into a temporary folder (deleted afterwards), then the CLI runs as a fresh process for each backend (PyTorch, and
onnxruntime on the exported .onnx file) and number of decoding workers. Reported: wall time of the whole command
(Python start-up, model loading and worker start-up included), images/s from that, the rows in the CSV (must be
10,000) and their accuracy against the MNIST labels.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from common import machine, machine_line, markdown_table, write_results
from digitscan.data.mnist import load_mnist
from digitscan.models.checkpoint import load_checkpoint
from digitscan.models.export import export_onnx


def write_pngs(folder: Path, n: int) -> dict[str, int]:
    """The first n MNIST test images as 28x28 grayscale PNG files; path -> label."""
    images, labels = load_mnist("test")
    truth = {}
    for i in range(min(n, len(images))):
        path = folder / f"{i:05d}.png"
        Image.fromarray(images[i]).save(path)
        truth[str(path)] = int(labels[i])
    return truth


def run_job(folder: Path, out: Path, workers: int, batch_size: int, model: Path | None) -> float:
    command = [sys.executable, "-m", "digitscan", "predict", str(folder), "--out", str(out), "--force",
               "--workers", str(workers), "--batch-size", str(batch_size), "--no-progress"]
    if model is not None:
        command += ["--model", str(model)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="Number of MNIST test images to write as PNG.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder, tmp_path = Path(tmp) / "png", Path(tmp)
        folder.mkdir()
        truth = write_pngs(folder, args.n)
        onnx_file = export_onnx(load_checkpoint(), tmp_path / "shipped.onnx").path
        for backend, model in [("PyTorch", None), ("onnxruntime", onnx_file)]:
            for workers in args.workers:
                out = tmp_path / f"{backend}-{workers}.csv"
                seconds = run_job(folder, out, workers, args.batch_size, model)
                with open(out, newline="") as f:
                    table = list(csv.DictReader(f))
                correct = sum(r["digit"] == str(truth[r["path"]]) for r in table)
                errors = sum(bool(r["error"]) for r in table)
                paths_ok = [r["path"] for r in table] == sorted(truth)
                result = {"backend": backend, "workers": workers, "batch_size": args.batch_size, "seconds": seconds,
                          "images_per_s": len(truth) / seconds, "rows": len(table), "errors": errors,
                          "accuracy": correct / len(table), "every_file_once_in_order": paths_ok}
                results.append(result)
                rows.append([backend, workers, f"{seconds:.1f}", f"{result['images_per_s']:,.0f}",
                             f"{len(table):,}" + ("" if paths_ok else " (NOT one per file)"),
                             f"{result['accuracy']:.2%}"])
                print(rows[-1], flush=True)
    info = machine()
    markdown = "\n".join([
        markdown_table(["backend", "workers", "wall time (s)", "images/s end to end", "CSV rows",
                        "accuracy of the rows"], rows), "",
        f"{len(truth):,} MNIST test images as 28×28 PNG files; `digitscan predict FOLDER --out results.csv "
        f"--workers N --batch-size {args.batch_size}`, each run a fresh process (start-up, model loading and worker "
        f"start-up included). onnxruntime runs `--model shipped.onnx` from `digitscan export`. Accuracy: the `digit` "
        f"column against the MNIST labels, after the robust preprocessing of the PNG files (a rejected digit counts "
        f"as wrong).",
        machine_line(info),
        f"Command: `.venv/bin/python benchmarks/batch_speed.py --n {args.n} --workers "
        f"{' '.join(map(str, args.workers))}`",
    ])
    write_results("batch_speed", {"machine": info, "n": len(truth), "runs": results}, markdown)


if __name__ == "__main__":
    main()
