"""Fine-tuning for real-world input: the extra training data that makes the model and the preprocessing work together.

`build_pools(images, labels)` makes, from MNIST *training* digits only (never the validation or test split):
- photo digits: digits photographed under random conditions (digitscan.synthetic.photos), then prepared by the same
  robust
  preprocessing every entry point uses, so the model learns what that preprocessing really hands it;
- segmented digits: the true digits of numbers composed from training digits, as the reading step cuts them out;
- negatives (not a digit): Fashion-MNIST *training* pictures (as files and photographed), letters and scribbles in
  the training font families, and the wrong cuts of the reading step (half a digit, two digits merged).
`digitscan.training.classifier` mixes them into each batch when `TrainConfig.realworld` is set (`train --realworld`):
digits with
their labels, negatives pulled towards the uniform distribution (outlier exposure), which is what makes a confidence
threshold work.
Pools take a few minutes to make and are cached (~/.cache/digitscan/pools) keyed by their settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from digitscan.data.datasets import load_fashion_mnist
from digitscan.data.mnist import default_cache_dir
from digitscan.files import atomic_write
from digitscan.image.decode import decode_image
from digitscan.image.prepare import to_model_input
from digitscan.reading.segments import candidate_pieces
from digitscan.synthetic.nondigits import BLANK_PAGES, blank_glyph, letter_glyph, scribble_glyph
from digitscan.synthetic.photos import CONDITIONS, Condition, font_split, glyph_from_font, glyph_from_mnist, photograph
from digitscan.synthetic.strokes import render_number

FASHION_TRAIN_USED = 50_000  # negatives come from the first 50,000 Fashion training images; --dev uses the rest
POOL_VERSION = 7  # bump when the generators change, so stale caches are not reused
NEGATIVE = -1  # label of a not-a-digit example

# The benchmark's mixed condition, in smaller photos (the preprocessing works on <= 512 px anyway; faster to make).
PHOTO_CONDITION = replace(CONDITIONS["mixed"], image_height=(28, 400))
FONT_CONDITION = replace(PHOTO_CONDITION, height_fraction=(0.2, 0.85), image_height=(40, 400))
# Numbers for cutting: touching digits are where the reading step errs, so they are over-represented here.
NUMBER_STYLES = (dict(spacing=(-0.12, 0.1)), dict(spacing=(-0.05, 0.3), baseline_drift=0.25, scale_jitter=0.1),
                 dict(spacing=(0.0, 0.4), underline=True, specks=6))
MIN_CUT_WIDTH = 10  # wrong cuts narrower than this (of 28 px) look like a "1": not taught as non-digits
TRUE_CUT_IOU = 0.75  # a candidate this close to a true digit's box is that digit
WRONG_CUT_IOU = 0.45  # one this far from every true box is not a digit (in between: ambiguous, not used)


@dataclass(frozen=True)
class PoolSizes:
    photo_digits: int = 6_000
    font_digits: int = 3_000  # 13 font families, digits and letters in each: a letter is told apart by shape
    numbers: int = 1_200  # composed numbers, each giving several segmented digits and wrong cuts
    fashion_files: int = 3_000
    fashion_photos: int = 1_500
    letters: int = 4_000
    scribbles: int = 1_500
    pages: int = 1_500  # blank, textured and noisy pages: only those where the preprocessing sees "ink" are kept


@dataclass
class Pools:
    digits: np.ndarray  # (N, 28, 28) uint8, prepared inputs x 255
    labels: np.ndarray  # (N,) int64
    negatives: np.ndarray  # (M, 28, 28) uint8


def build_pools(images: np.ndarray, labels: np.ndarray, sizes: PoolSizes = PoolSizes(), *, seed: int = 0,
                held_out: bool = False, workers: int | None = None, cache: bool = True,
                progress: bool = True) -> Pools:
    """The fine-tuning pools from these (training) digits; cached on disk by content and settings.

    held_out: validation sets: Fashion-MNIST pictures from the training images fine-tuning does not use, and the
    digits photographed under each named condition in turn (as users send them) rather than all at once."""
    key = hashlib.sha256(json.dumps([POOL_VERSION, asdict(sizes), seed, held_out]).encode()
                         + images.tobytes() + labels.tobytes()).hexdigest()[:16]
    path = default_cache_dir().parent / "pools" / f"finetune-{key}.safetensors"
    if cache and path.is_file():
        saved = load_file(str(path))
        return Pools(saved["digits"], saved["labels"], saved["negatives"])

    jobs = _jobs(images, labels, sizes, seed, held_out)
    digits, digit_labels, negatives = [], [], []
    with get_context("spawn").Pool(workers or os.cpu_count()) as pool:
        results = pool.imap(_run_job, jobs, chunksize=16)
        for pieces in tqdm(results, total=len(jobs), desc="fine-tuning data", unit="job", disable=not progress):
            for image, label in pieces:
                (negatives if label == NEGATIVE else digits).append(image)
                if label != NEGATIVE:
                    digit_labels.append(label)
    pools = Pools(np.stack(digits), np.array(digit_labels, np.int64), np.stack(negatives))
    if cache:
        with atomic_write(path) as temporary:
            save_file({"digits": pools.digits, "labels": pools.labels, "negatives": pools.negatives}, str(temporary))
    return pools


def _jobs(images: np.ndarray, labels: np.ndarray, sizes: PoolSizes, seed: int, held_out: bool) -> list[tuple]:
    rng = np.random.default_rng([seed, 7])
    fonts = font_split().train
    fashion = load_fashion_mnist(["train"]).train.images  # $DIGITSCAN_FASHION_DATA or the Debian package
    fashion = fashion[FASHION_TRAIN_USED:] if held_out else fashion[:FASHION_TRAIN_USED]
    jobs: list[tuple] = []
    named = [name for name in CONDITIONS if name != "mixed"]
    for k, i in enumerate(rng.choice(len(images), sizes.photo_digits, replace=False)):
        condition = named[k % len(named)] if held_out else "mixed"
        jobs.append(("photo", glyph_from_mnist(images[i]), condition, int(rng.integers(2**31)), int(labels[i])))
    for _ in range(sizes.font_digits):
        digit = int(rng.integers(10))
        jobs.append(("photo", glyph_from_font(str(digit), str(rng.choice(fonts))), "font",
                     int(rng.integers(2**31)), digit))
    for _ in range(sizes.numbers):
        chosen = rng.choice(len(images), int(rng.integers(2, 7)), replace=False)
        jobs.append(("number", images[chosen], labels[chosen], int(rng.integers(2**31))))
    for i in rng.choice(len(fashion), sizes.fashion_files + sizes.fashion_photos, replace=False)[:sizes.fashion_files]:
        jobs.append(("array", fashion[i]))
    for i in rng.choice(len(fashion), sizes.fashion_photos, replace=False):
        jobs.append(("photo", glyph_from_mnist(fashion[i]), "mixed", int(rng.integers(2**31)), NEGATIVE))
    for _ in range(sizes.letters):
        jobs.append(("photo", letter_glyph(rng, fonts), "font", int(rng.integers(2**31)), NEGATIVE))
    for _ in range(sizes.scribbles):
        jobs.append(("photo", scribble_glyph(rng), "mixed", int(rng.integers(2**31)), NEGATIVE))
    for _ in range(sizes.pages):
        jobs.append(("photo", blank_glyph(), str(rng.choice(list(BLANK_PAGES))), int(rng.integers(2**31)), NEGATIVE))
    return jobs


def _as_uint8(prepared: np.ndarray) -> np.ndarray:
    return np.round(prepared * 255).astype(np.uint8)


def _run_job(job: tuple) -> list[tuple[np.ndarray, int]]:
    """Worker: one job -> [(prepared input as uint8, label or NEGATIVE)]; inputs without ink are left out."""
    kind = job[0]
    if kind == "array":
        pieces = [(to_model_input(job[1]), NEGATIVE)]
    elif kind == "photo":
        _, glyph, condition, seed, label = job
        condition = {"font": FONT_CONDITION, "mixed": PHOTO_CONDITION}.get(condition) or BLANK_PAGES.get(condition) \
            or _smaller(CONDITIONS[condition])
        pieces = [(to_model_input(decode_image(photograph(glyph, condition, np.random.default_rng(seed)))), label)]
    else:
        pieces = _number_pieces(*job[1:])
    return [(_as_uint8(x), label) for x, label in pieces if x.max() > 0]


def _smaller(condition: Condition) -> Condition:
    """The condition in photos of at most 600 px (faster to make; the preprocessing works on <= 512 px anyway)."""
    return replace(condition, image_height=(min(condition.image_height[0], 600), min(condition.image_height[1], 600)))


def _number_pieces(digits: np.ndarray, labels: np.ndarray, seed: int) -> list[tuple[np.ndarray, int]]:
    """Compose a number, cut it like the reading step does, and label each candidate by its overlap with the truth."""
    rng = np.random.default_rng(seed)
    style = NUMBER_STYLES[int(rng.integers(len(NUMBER_STYLES)))]
    image, boxes = render_number(list(digits), seed=seed, digit_height=int(rng.integers(28, 64)),
                                 noise=float(rng.uniform(0, 6)), **style)
    pieces = []
    for box, prepared in candidate_pieces(decode_image(image)):
        overlaps = [_iou(box, truth) for truth in boxes]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= TRUE_CUT_IOU:
            pieces.append((prepared, int(labels[best])))
        elif overlaps[best] < WRONG_CUT_IOU and np.ptp(np.nonzero(prepared.max(axis=0))[0]) >= MIN_CUT_WIDTH:
            pieces.append((prepared, NEGATIVE))
    return pieces


def _iou(a: list[int], b: list[int]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


# Validation sets for the threshold: real-looking digits and non-digits, no pieces of numbers.
THRESHOLD_SIZES = PoolSizes(photo_digits=2_000, font_digits=500, numbers=0, fashion_files=1_000, fashion_photos=500,
                            letters=700, scribbles=500, pages=500)
# The share of validation digits the threshold lets through. Chosen with `benchmarks/realworld.py --dev`: these
# validation digits are photographed under the named conditions and written in the training fonts; a user's digits
# also come in unseen hands, which are less sure, so 98.5 % here let 98.0 % of the --dev digits through (and 5.8 %
# of the non-digits), and 97 % here would let fewer than 97 % through.
DIGITS_ACCEPTED = 0.985


def choose_reject_threshold(confidence, images: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                            progress: bool = True) -> dict:
    """The not-a-digit rule, chosen on validation data: accept when the calibrated top probability reaches the
    threshold that lets DIGITS_ACCEPTED of photographed validation digits through.

    confidence((N, 28, 28) uint8 inputs) -> (N,) calibrated top probabilities. images, labels: validation digits
    (never the test split). Returns the threshold and what it does on these validation sets.
    """
    pools = build_pools(images, labels, THRESHOLD_SIZES, seed=seed + 1, held_out=True, progress=progress)
    digits, negatives = confidence(pools.digits), confidence(pools.negatives)
    threshold = float(np.quantile(digits, 1 - DIGITS_ACCEPTED))
    return {"threshold": threshold, "score": "calibrated top probability",
            "validation": {"digits": len(digits), "digits_accepted": float((digits >= threshold).mean()),
                           "nondigits": len(negatives),
                           "nondigits_accepted": float((negatives >= threshold).mean())}}
