"""Reading whole numbers: exact match and per-digit accuracy of `Recognizer.read` on numbers composed from MNIST
*test* digits drawn as ink on paper, per condition: the line reader (the default), then cutting into digits with
each segmentation variant, side by side.

Run: `.venv/bin/python benchmarks/read_numbers.py` (about 3 minutes on 2 CPU cores); writes
benchmarks/results/read_numbers.{json,md}. The reading step's penalties are chosen elsewhere, on validation digits
(`benchmarks/realworld.py --tune-reading`); the test split is never used for choosing anything.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.data.mnist import load_mnist  # noqa: E402
from digitscan.image.decode import decode_image  # noqa: E402
from digitscan.reading.segments import METHODS, Penalties, segment_number  # noqa: E402
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.strokes import render_number  # noqa: E402

# name -> (description, render_number options, JPEG quality or None). Spacing is in digit heights.
CONDITIONS = {
    "clean": ("gaps of 0.15-0.5 digit heights, black ink", dict(spacing=(0.15, 0.5)), None),
    "touching": ("gaps of -0.1-0 digit heights: most neighbours touch or overlap slightly",
                 dict(spacing=(-0.1, 0.0)), None),
    "drift": ("gaps of 0-0.4, baseline wandering by up to 0.35 digit heights, sizes +-15 %",
              dict(spacing=(0.0, 0.4), baseline_drift=0.35, scale_jitter=0.15), None),
    "underline+specks": ("gaps of 0.05-0.4, a ruled line under (sometimes touching) the digits, 25 specks of dirt",
                         dict(spacing=(0.05, 0.4), underline=True, specks=25), None),
    "blue+JPEG": ("gaps of 0.05-0.4, blue ink on tinted paper, pixel noise, JPEG quality 70",
                  dict(spacing=(0.05, 0.4), ink=(30, 50, 160), paper=(235, 240, 225), noise=8), 70),
}
MAX_DIGITS = 12
VARIANTS = ("sequence", *METHODS)  # the line reader (`read`'s default), then the ways of cutting into digits
READ_VIA = {"sequence": "sequence", "recognition": "segments"}  # variant -> Recognizer.read method


def compose(images: np.ndarray, labels: np.ndarray, condition: str, count: int, seed: int) -> list[tuple]:
    """`count` numbers of 1-12 digits for one condition: [(encoded image bytes, true text)], deterministic."""
    _, options, jpeg = CONDITIONS[condition]
    rng = np.random.default_rng([seed, list(CONDITIONS).index(condition)])
    samples = []
    for _ in range(count):
        chosen = rng.choice(len(images), int(rng.integers(1, MAX_DIGITS + 1)), replace=False)
        image, _ = render_number([images[i] for i in chosen], seed=int(rng.integers(2**31)),
                                 digit_height=int(rng.integers(32, 65)), **options)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=jpeg) if jpeg else image.save(buffer, "PNG")
        samples.append((buffer.getvalue(), "".join(str(labels[i]) for i in chosen)))
    return samples


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def digit_accuracy(truths: list[str], texts: list[str]) -> float:
    """1 - (edits to turn the readings into the truths) / true digits: a wrong, missed or extra digit costs one."""
    edits = sum(edit_distance(truth, text) for truth, text in zip(truths, texts))
    return max(0.0, 1 - edits / sum(len(truth) for truth in truths))


def read_texts(recognizer: Recognizer, samples: list[tuple], method: str) -> tuple[list[str], list[float], float]:
    """(texts, confidences, seconds per number); "sequence" (the line reader) and "recognition" go through
    Recognizer.read, the public path; the other segmentation variants through segment_number."""
    texts, confidences = [], []
    start = time.perf_counter()
    for source, _ in samples:
        if method in READ_VIA:
            result = recognizer.read(source, method=READ_VIA[method])
            texts.append(result.text)
            confidences.append(result.confidence)
        else:
            segments = segment_number(decode_image(source), recognizer.digit_probabilities, method,
                                      keep_rejected_specks=True)  # the baselines count every piece they cut
            texts.append("".join(str(s.digit) for s in segments))
    return texts, confidences, (time.perf_counter() - start) / len(samples)


def score(samples: list[tuple], texts: list[str]) -> dict:
    truths = [truth for _, truth in samples]
    return {"n": len(samples), "exact_match": float(np.mean([t == r for t, r in zip(truths, texts)])),
            "digit_accuracy": digit_accuracy(truths, texts)}


def benchmark(args) -> None:
    recognizer = Recognizer.load(args.model)
    images, labels = load_mnist("test", args.data)
    sets = {name: compose(images, labels, name, args.count, args.seed) for name in CONDITIONS}
    recognizer.read(sets["clean"][0][0])  # warm-up: the first torch call is slow

    results: dict = {"conditions": {}, "variants": {}}
    for method in VARIANTS:
        per_condition, all_samples, all_texts = {}, [], []
        for name, samples in sets.items():
            texts, confidences, seconds = read_texts(recognizer, samples, method)
            per_condition[name] = {**score(samples, texts), "ms_per_number": 1000 * seconds}
            if confidences:
                per_condition[name]["mean_confidence"] = float(np.mean(confidences))
            print(f"{method:12s} {name:18s} exact {per_condition[name]['exact_match']:.3f}", file=sys.stderr)
            all_samples += samples
            all_texts += texts
        per_condition["overall"] = score(all_samples, all_texts)
        results["variants"][method] = per_condition
    results["conditions"] = results["variants"]["sequence"]
    results["machine"] = machine()
    results["model"] = recognizer.name
    results["command"] = " ".join(["benchmarks/read_numbers.py"] + sys.argv[1:])
    results["penalties"] = asdict(Penalties())

    main_rows = []
    for name in [*CONDITIONS, "overall"]:
        row = results["conditions"][name]
        main_rows.append([name, row["n"], f"{row['exact_match']:.3f}", f"{row['digit_accuracy']:.4f}",
                          f"{row['mean_confidence']:.3f}" if "mean_confidence" in row else "",
                          f"{row['ms_per_number']:.0f}" if "ms_per_number" in row else ""])
    variant_rows = [[method] + [f"{results['variants'][method][name]['exact_match']:.3f}"
                                for name in [*CONDITIONS, "overall"]] for method in VARIANTS]
    markdown = "\n\n".join([
        f"Numbers of 1-{MAX_DIGITS} digits composed from MNIST test digits, {args.count} per condition "
        f"(seed {args.seed}), read by the line reader (`read`'s default):",
        markdown_table(["condition", "numbers", "exact match", "per-digit accuracy", "mean confidence", "ms / number"],
                       main_rows),
        "Exact match by method (sequence: the line reader; the others cut the line into digits first):",
        markdown_table(["method", *CONDITIONS, "overall"], variant_rows),
        machine_line(results["machine"]) + f". Command: `.venv/bin/python {results['command']}`.",
    ])
    write_results("read_numbers", results, markdown)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="numbers per condition (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--data", help="MNIST folder (default: $DIGITSCAN_DATA)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    benchmark(parse_args())
