"""Batch jobs on Ray against the local engine: `digitscan predict FOLDER --out results.csv [--engine ray]` over photos.

Run: `.venv/bin/python benchmarks/ray_scaling.py` (~3 min on 2 cores at the default 2,000 images; needs
DIGITSCAN_DATA and the ray extra). The first N MNIST test digits are photographed as 640x480 JPEG files, as
benchmarks/batch_speed.py makes them ("mixed" conditions), into a temporary folder deleted afterwards. Then the
CLI runs as a fresh process for each engine and number of decoding workers: the local engine (worker processes) and
Ray (a local instance with one CPU per worker plus one for the model actor). Reported: wall time of the whole command
(Python and Ray start-up, model loading included), images/s from it, whether the CSV is byte for byte the first run's
(same rows, order and values), and the accuracy of the rows against the MNIST labels.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import ray

from batch_speed import run_job, write_photos
from common import machine, machine_line, markdown_table, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2_000, help="Number of MNIST test digits to photograph.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        truth = write_photos(folder, args.n)
        load_before = os.getloadavg()[0]  # the machine may be shared: how busy it was around the runs
        reference = None
        for engine in ["local", "ray"]:
            for workers in args.workers:
                out = Path(tmp) / f"{engine}-{workers}.csv"
                seconds = run_job(folder, out, workers, args.batch_size, "--engine", engine)
                data = out.read_bytes()
                reference = reference or data
                with open(out, newline="") as f:
                    table = list(csv.DictReader(f))
                correct = sum(r["digit"] == str(truth[r["path"]]) for r in table)
                result = {"engine": engine, "workers": workers, "batch_size": args.batch_size, "seconds": seconds,
                          "images_per_s": len(truth) / seconds, "rows": len(table),
                          "identical_to_first_run": data == reference, "accuracy": correct / len(table)}
                results.append(result)
                rows.append([engine, workers, f"{seconds:.1f}", f"{result['images_per_s']:,.0f}", f"{len(table):,}",
                             "yes" if result["identical_to_first_run"] else "NO", f"{result['accuracy']:.2%}"])
                print(rows[-1], flush=True)
    load = (load_before, os.getloadavg()[0])
    info = {**machine(), "ray": ray.__version__, "load_average_before_after": load}
    markdown = "\n".join([
        markdown_table(["engine", "workers", "wall time (s)", "images/s end to end", "CSV rows",
                        "CSV identical to the first run's", "accuracy of the rows"], rows), "",
        f"{len(truth):,} MNIST test digits photographed as 640×480 JPEG files ('mixed' conditions); "
        f"`digitscan predict FOLDER --out results.csv --engine E --workers N --batch-size {args.batch_size}`, each "
        f"run a fresh process (Python start-up, model loading, worker and Ray start-up included). Ray: a local "
        f"instance with N + 1 CPUs (N decoding tasks at once, one model actor), Ray {info['ray']}. Load average "
        f"(1 min) {load[0]:.1f} before the first run, {load[1]:.1f} after the last.",
        machine_line(info),
        f"Command: `.venv/bin/python benchmarks/ray_scaling.py --n {args.n} --workers "
        f"{' '.join(map(str, args.workers))}`",
    ])
    write_results("ray_scaling", {"machine": info, "n": len(truth), "runs": results}, markdown)


if __name__ == "__main__":
    main()
