"""Real-world inputs: synthetic photos of digits, numbers and non-digits, generated deterministically on demand.

Single digits: MNIST *test* digits photographed under each condition of digitscan.synthetic.photos.CONDITIONS (ink,
paper,
light, size and place in the frame, rotation, pen, noise, blur, JPEG, file formats), plus digits written in the
held-out handwriting fonts. Each is read with the shipped model through the robust preprocessing and, beside it,
through the paper's pipeline (grayscale + resize). Not a digit: Fashion-MNIST *test* pictures (as 28x28 files and
photographed), letters in the held-out fonts, scribbles and shapes, blank and textured pages, noise; the AUROC of
the calibrated confidence, and how many digits and non-digits pass the shipped rejection threshold. Whole numbers:
1-12 digit numbers composed from MNIST test digits, photographed, read with `Recognizer.read` by both methods (the
line reader, the default, and cutting into digits).

Run: `.venv/bin/python benchmarks/realworld.py` (about 5 minutes on 2 CPU cores; needs the Debian handwriting font
packages listed in digitscan.synthetic.photos.FONT_PACKAGES and dataset-fashion-mnist, or $DIGITSCAN_FASHION_DATA).
`--dev` builds the same sets from data that fine-tuning never trains on but that is not the test split either
(MNIST validation digits, Fashion-MNIST training images past FASHION_TRAIN_USED, the development font families,
which fine-tuning never writes with either): use it for any choice; the test sets are only for the report.
Writes benchmarks/results/realworld[-dev].{json,md}. `--tune-reading` searches the reading step's penalties on
numbers from validation digits.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import time
from dataclasses import fields
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.constants import READ_METHODS
from digitscan.data.datasets import load_fashion_mnist  # noqa: E402
from digitscan.data.mnist import load_mnist, train_val_split  # noqa: E402
from digitscan.image.decode import decode_image
from digitscan.image.prepare import decode_for_digit, to_model_input  # noqa: E402
from digitscan.reading.layout import find_atoms  # noqa: E402
from digitscan.reading.segments import Penalties, best_partition, read_candidates
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.nondigits import BLANK_PAGES, blank_glyph, letter_glyph, scribble_glyph  # noqa: E402
from digitscan.synthetic.photos import CONDITIONS, Condition, font_split, glyph_from_font, glyph_from_mnist, photograph  # noqa: E402
from digitscan.synthetic.strokes import render_number  # noqa: E402
from digitscan.training.finetune import FASHION_TRAIN_USED  # noqa: E402
from read_numbers import digit_accuracy  # noqa: E402

SINGLE_CONDITIONS = [name for name in CONDITIONS if name != "mixed"]
FEW = {"huge-image": 0.2}  # 3000-4000 px photos take ~1 s each to make and read: fewer of them
FONT_CONDITION = Condition("handwriting fonts, photographed with mixed conditions", **{
    k: getattr(CONDITIONS["mixed"], k) for k in ("inks", "papers", "rotation_deg", "lighting", "noise", "blur",
                                                 "jpeg_quality", "encodings", "texture", "each")},
    height_fraction=(0.2, 0.85), image_height=(40, 600))
NUMBER_CONDITION = Condition("a number on one line, photographed", inks=("black", "blue", "pencil"),
                             papers=("white", "tinted", "grey"), height_fraction=(0.3, 0.8),
                             image_height=(120, 600), rotation_deg=2.0, lighting=0.4, noise=(0.0, 8.0),
                             blur=(0.0, 0.3), jpeg_quality=(60, 95), encodings=("png", "jpeg"), each=0.5)
# How people write numbers: mostly spaced, often touching, sometimes on a ruled line; lengths of real IDs.
NUMBER_STYLES = {  # name: (share, render_number options)
    "spaced": (0.45, dict(spacing=(0.05, 0.5))),
    "close or touching": (0.25, dict(spacing=(-0.08, 0.25), baseline_drift=0.2, scale_jitter=0.1)),
    "ruled line and specks": (0.15, dict(spacing=(0.0, 0.4), underline=True, specks=8)),
    "wandering baseline": (0.15, dict(spacing=(0.0, 0.4), baseline_drift=0.35, scale_jitter=0.15)),
}
NUMBER_LENGTHS = [1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9, 10, 11, 12]  # ZIP codes (5) are the most common


def prepared(source) -> tuple[np.ndarray, np.ndarray]:
    """A photo's bytes -> the (28, 28) inputs of the robust and of the paper preprocessing (one decode, as
    `predict` decodes a file)."""
    gray = decode_for_digit(source)
    return to_model_input(gray, "robust"), to_model_input(gray, "paper")


def photo_job(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Worker: (glyph, condition, seed) -> prepared inputs of its photo; (bytes,) -> prepared inputs of the file."""
    if len(job) == 1:
        return prepared(job[0])
    glyph, condition, seed = job
    return prepared(photograph(glyph, condition, np.random.default_rng(seed)))


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def digit_jobs(images, labels, n: int, seed: int, fonts: list[str]) -> dict[str, tuple[list, np.ndarray]]:
    """condition -> (jobs, true digits); each condition draws its own digits, all deterministic in seed."""
    sets = {}
    for index, name in enumerate(SINGLE_CONDITIONS + ["handwriting-fonts"]):
        rng = np.random.default_rng([seed, index])
        count = max(10, round(n * FEW.get(name, 1.0)))
        if name == "handwriting-fonts":
            truth = rng.integers(0, 10, count)
            jobs = [(glyph_from_font(str(d), str(rng.choice(fonts))), FONT_CONDITION, int(rng.integers(2**31)))
                    for d in truth]
        else:
            chosen = rng.choice(len(images), count, replace=False)
            truth = labels[chosen]
            jobs = [(glyph_from_mnist(images[i]), CONDITIONS[name], int(rng.integers(2**31))) for i in chosen]
        sets[name] = (jobs, np.asarray(truth))
    return sets


def nondigit_jobs(fashion: np.ndarray, n: int, seed: int, fonts: list[str]) -> dict[str, list]:
    sets = {}
    rng = np.random.default_rng([seed, 100])
    picks = rng.choice(len(fashion), 2 * n, replace=False)
    sets["fashion-mnist (28x28 files)"] = [(png_bytes(fashion[i]),) for i in picks[:n]]
    sets["fashion-mnist (photographed)"] = [(glyph_from_mnist(fashion[i]), CONDITIONS["mixed"],
                                             int(rng.integers(2**31))) for i in picks[n:]]
    sets["letters"] = [(letter_glyph(rng, fonts), FONT_CONDITION, int(rng.integers(2**31))) for _ in range(n)]
    sets["scribbles and shapes"] = [(scribble_glyph(rng), CONDITIONS["mixed"], int(rng.integers(2**31)))
                                    for _ in range(n)]
    for name, condition in BLANK_PAGES.items():
        sets[name] = [(blank_glyph(), condition, int(rng.integers(2**31))) for _ in range(max(10, n // 4))]
    return sets


def run_jobs(jobs: list, pool) -> tuple[np.ndarray, np.ndarray]:
    results = pool.map(photo_job, jobs, chunksize=8)
    return np.stack([r[0] for r in results]), np.stack([r[1] for r in results])


def number_samples(images, labels, n: int, seed: int) -> list[tuple[bytes, str, np.ndarray, str]]:
    """[(photo's bytes, true text, indices of its digits in images, style)], deterministic in seed."""
    rng = np.random.default_rng([seed, 200])
    names = list(NUMBER_STYLES)
    weights = np.array([share for share, _ in NUMBER_STYLES.values()])
    samples = []
    for _ in range(n):
        chosen = rng.choice(len(images), int(rng.choice(NUMBER_LENGTHS)), replace=False)
        style = names[rng.choice(len(names), p=weights / weights.sum())]
        image, _ = render_number([images[i] for i in chosen], seed=int(rng.integers(2**31)), digit_height=40,
                                 ink=(255, 255, 255), paper=(0, 0, 0), margin=0.1, **NUMBER_STYLES[style][1])
        coverage = np.asarray(image.convert("L"), np.float32) / 255
        samples.append((photograph(coverage, NUMBER_CONDITION, rng), "".join(str(labels[i]) for i in chosen),
                        chosen, style))
    return samples


def tune_reading(recognizer: Recognizer, images: np.ndarray, labels: np.ndarray, count: int, seed: int) -> None:
    """Grid search of the reading step's penalties (digitscan.reading.segments.Penalties) on numbers composed like the
    benchmark's, from MNIST *validation* digits, which the model never trained on; prints the best settings, and
    what the line reader reads of the same numbers.

    Each number is cut and its candidates go through the model once; only the partition is redone per setting.
    """
    prepared, sequence_hits = [], []
    for data, truth, _, _ in tqdm(number_samples(images, labels, count, seed), desc="candidates", unit="number"):
        sequence_hits.append(recognizer.read(data, method="sequence").text == truth)  # the line reader, for scale
        layout = find_atoms(decode_image(data))
        candidates = read_candidates(layout, recognizer.digit_probabilities) if layout.atoms else None
        layout.ink = layout.atom_map = None  # the search needs only the atoms' boxes: keep memory small
        prepared.append((truth, layout, candidates))

    def exact_match(penalties: Penalties) -> float:
        return float(np.mean([truth == "".join(str(d) for _, d in best_partition(layout, candidates, penalties))
                              if candidates else truth == "" for truth, layout, candidates in prepared]))

    grid = {"digit_bonus": [-0.2, 0.0, 0.1], "cut": [0.1, 0.3, 0.6], "gap": [1.0, 4.0], "wide": [1.0, 2.0],
            "wide_from": [1.1], "short": [1.0, 2.0, 4.0], "short_from": [0.8], "skip": [1.0, 2.0, 3.0, np.inf]}
    names = [f.name for f in fields(Penalties)]
    trials = sorted(((exact_match(Penalties(**dict(zip(names, values)))), values)
                     for values in itertools.product(*(grid[n] for n in names))), key=lambda t: -t[0])
    print(f"{len(prepared)} numbers; current defaults: {exact_match(Penalties()):.4f}; "
          f"the line reader (read's default method): {np.mean(sequence_hits):.4f}")
    for exact, values in trials[:8]:
        print(f"{exact:.4f}  " + "  ".join(f"{n}={v}" for n, v in zip(names, values)))


def margin_95(hits: list[bool]) -> float:
    """Half-width of the normal-approximation 95 % confidence interval of a share (its sampling error)."""
    share = float(np.mean(hits))
    return 1.96 * float(np.sqrt(share * (1 - share) / len(hits)))


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a random digit scores above a random non-digit), ties counted half: the Mann-Whitney statistic."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
                 / (len(positive) * len(negative)))


def confidences(recognizer: Recognizer, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top digit, calibrated confidence, accepted) per prepared input."""
    predictions = recognizer.predict_inputs(inputs)
    top = np.array([int(np.argmax(p.probabilities)) for p in predictions])
    return top, np.array([p.confidence for p in predictions]), np.array([p.is_digit for p in predictions])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="photos per condition (default 200)")
    parser.add_argument("--numbers", type=int, default=1000,
                        help="whole numbers to read (default 1000: with 300 the sampling error of a share near 95 %% "
                             "is +-2.5 points)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="checkpoint to evaluate (default: the shipped model)")
    parser.add_argument("--ensemble", action="store_true", help="evaluate the shipped ensemble instead")
    parser.add_argument("--reader", help="line reader checkpoint to evaluate (default: the shipped one)")
    parser.add_argument("--dev", action="store_true",
                        help="build the sets from validation data, not the test splits (for making choices)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--tune-reading", action="store_true",
                        help="search the reading step's penalties on validation numbers (seed + 1) and stop")
    args = parser.parse_args()
    if args.numbers < 1:
        parser.error("--numbers must be at least 1: the report's whole-number rows and summary need some")

    fonts = font_split()
    if args.dev or args.tune_reading:
        images, labels = load_mnist("train")
        _, val_idx = train_val_split(len(images), 0.1, 0)
        images, labels = images[val_idx], labels[val_idx]
        fashion = load_fashion_mnist(["train"]).train.images[FASHION_TRAIN_USED:]
        fonts = fonts.dev
    else:
        images, labels = load_mnist("test")
        fashion = load_fashion_mnist(["test"]).test.images
        fonts = fonts.evaluation
    recognizer = Recognizer.load(args.model, ensemble=args.ensemble, reader=args.reader)
    if args.tune_reading:
        return tune_reading(recognizer, images, labels, args.numbers, args.seed + 1)
    paper = Recognizer.load(args.model, preprocess="paper", ensemble=args.ensemble)
    start = time.perf_counter()

    digit_rows, positives, accepted_digits, correct_all = [], [], [], []
    with get_context("spawn").Pool(args.workers) as pool:
        for name, (jobs, truth) in digit_jobs(images, labels, args.n, args.seed, fonts).items():
            robust_inputs, paper_inputs = run_jobs(jobs, pool)
            top, confidence, accepted = confidences(recognizer, robust_inputs)
            paper_top, _, _ = confidences(paper, paper_inputs)
            correct = top == truth
            positives.append(confidence)
            accepted_digits.append(accepted)
            correct_all.append(correct)
            digit_rows.append([name, len(truth), f"{correct.mean():.3f}", f"{(correct & accepted).mean():.3f}",
                               f"{accepted.mean():.3f}", f"{(paper_top == truth).mean():.3f}"])
            print(digit_rows[-1], flush=True)
        negative_rows, negatives, accepted_negatives = [], [], []
        for name, jobs in nondigit_jobs(fashion, args.n, args.seed, fonts).items():
            robust_inputs, _ = run_jobs(jobs, pool)
            _, confidence, accepted = confidences(recognizer, robust_inputs)
            negatives.append(confidence)
            accepted_negatives.append(accepted)
            negative_rows.append([name, len(jobs), f"{accepted.mean():.3f}", f"{np.median(confidence):.3f}"])
            print(negative_rows[-1], flush=True)

    samples = number_samples(images, labels, args.numbers, args.seed)
    read_by, read_seconds = {}, {}
    for method in READ_METHODS:
        read_start = time.perf_counter()
        read_by[method] = [recognizer.read(sample[0], method=method).text for sample in samples]
        read_seconds[method] = (time.perf_counter() - read_start) / len(samples)
    texts = read_by["sequence"]  # what `digitscan read` does by default
    truths = [sample[1] for sample in samples]
    # The model's own limit: numbers holding a digit it gets wrong even alone, as the plain 28x28 MNIST image.
    chosen = np.concatenate([sample[2] for sample in samples])
    alone = np.array([int(np.argmax(p.probabilities))
                      for p in recognizer.predict_inputs(images[chosen].astype(np.float32) / 255)])
    wrong_alone = np.split(alone != labels[chosen], np.cumsum([len(sample[2]) for sample in samples])[:-1])
    number_rows = []
    for style in [*NUMBER_STYLES, None]:
        hits = {method: [t == truth for t, truth, sample in zip(read_by[method], truths, samples)
                         if style is None or sample[3] == style] for method in READ_METHODS}
        number_rows.append([style or "all", len(hits["sequence"]),
                            *(f"{np.mean(hits[method]):.3f}" for method in READ_METHODS)])

    correct_all = np.concatenate(correct_all)
    accepted_digits = np.concatenate(accepted_digits)
    per_condition = [float(row[2]) for row in digit_rows]
    summary = {
        "digit_accuracy": float(correct_all.mean()),
        "worst_condition": min(per_condition),
        "auroc": auroc(np.concatenate(positives), np.concatenate(negatives)),
        "reject_threshold": recognizer.reject_threshold,
        "reject_logit_threshold": recognizer.reject_logit_threshold,  # when set, it decides (the top logit)
        "digits_accepted": float(accepted_digits.mean()),
        "nondigits_accepted": float(np.concatenate(accepted_negatives).mean()),
        "read_exact": float(np.mean([t == truth for t, truth in zip(texts, truths)])),
        "read_exact_margin_95": margin_95([t == truth for t, truth in zip(texts, truths)]),
        "read_digit_accuracy": digit_accuracy(truths, texts),
        "read_exact_segments": float(np.mean([t == truth for t, truth in zip(read_by["segments"], truths)])),
        "read_digit_accuracy_segments": digit_accuracy(truths, read_by["segments"]),
        # Of the misread numbers, the share read with the right number of digits (a digit misread, not a bad cut).
        "read_errors_right_length": float(np.mean([len(t) == len(truth) for t, truth in zip(texts, truths)
                                                   if t != truth] or [0.0])),
        # Of the misread numbers, the share with a digit the model misreads even alone (plain MNIST image).
        "read_errors_digit_wrong_alone": float(np.mean([w.any() for t, truth, w in zip(texts, truths, wrong_alone)
                                                        if t != truth] or [0.0])),
        "numbers_with_a_digit_wrong_alone": float(np.mean([w.any() for w in wrong_alone])),
        "read_seconds_per_number": read_seconds["sequence"],
        "read_seconds_per_number_segments": read_seconds["segments"],
    }
    info = machine()
    which = "validation data (--dev)" if args.dev else "MNIST and Fashion-MNIST test splits, held-out fonts"
    markdown = "\n\n".join([
        f"Sets built from {which}, seed {args.seed}; model: {recognizer.name}. {machine_line(info)}. "
        f"Total {time.perf_counter() - start:.0f} s.",
        markdown_table(["condition", "n", "accuracy", "correct and accepted", "accepted", "paper pipeline"],
                       digit_rows),
        markdown_table(["not a digit", "n", "accepted", "median confidence"], negative_rows),
        markdown_table(["whole numbers", "n", "read exactly (line reader, the default)", "read exactly (segments)"],
                       number_rows),
        markdown_table(["summary", "value"], [[k, f"{v:.4f}" if isinstance(v, float) else v]
                                              for k, v in summary.items()]),
    ])
    write_results(("realworld-dev" if args.dev else "realworld") + ("-ensemble" if args.ensemble else ""),
                  {"machine": info, "summary": summary, "digits": digit_rows, "nondigits": negative_rows,
                   "numbers": number_rows,
                   "args": vars(args)}, markdown)


if __name__ == "__main__":
    main()
