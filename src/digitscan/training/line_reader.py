"""Training the line reader (digitscan.reading.line_reader): photographed numbers made from MNIST digits, CTC loss.

`make_lines(images, labels, count, seed)` photographs numbers composed from these digits and turns each photo into
the strip the reader sees (cached on disk; ~50 lines/s on 2 cores); `train_reader(config)` is the training loop.
Training lines come from MNIST's *training* split minus the validation images; the lines read after every epoch to
report progress come from the validation images. The test split is never used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import platform
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn
from tqdm import tqdm

from digitscan.constants import MARK, SEPARATORS
from digitscan.data.mnist import default_cache_dir, load_mnist, mnist_digests, train_val_split
from digitscan.files import atomic_write
from digitscan.image.decode import decode_image
from digitscan.models.architectures import LineReader
from digitscan.models.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from digitscan.models.shipped import READER_NAME, weights_dir
from digitscan.reading.line_reader import LINE_HEIGHT, STRIDE, decode, line_input
from digitscan.synthetic.fields import FIELD_KINDS, field_tokens, render_field
from digitscan.synthetic.photos import PATTERNS, Condition, photograph
from digitscan.synthetic.strokes import render_number

LINES_VERSION = 3  # bump when the generator or the strip changes (3: dots no longer dust in long lines)
ARCH = "line-reader"
TRUNK_ARCH = "dsnet"  # the classifier whose first layers are the reader's trunk (models.LineReader)
# Digits, the separators kept in `raw`, one class for every mark around a number, and CTC's blank last.
CLASSES = [str(d) for d in range(10)] + list(SEPARATORS) + [MARK] + ["blank"]
BLANK = len(CLASSES) - 1
MAX_DIGITS = 12  # digits in a plain number
MAX_LABEL = 32  # classes in one line's target
FIELD_SHARE = 0.5  # lines that are amounts, dates or IDs with separators and marks; the rest are plain numbers
# Photos of numbers: every nuisance of digitscan.synthetic.photos, each with probability 0.5, in photos of at most
# 260 px
# (the ink finder works at <= 512 px on the longer side, and a 12-digit line is ~8x wider than tall).
LINE_CONDITION = Condition(
    "a number on one line, photographed (training)", inks=("black", "black", "blue", "pencil", "red"),
    papers=("white", "tinted", "grey", "blue-lined"), height_fraction=(0.25, 0.85), image_height=(60, 260),
    rotation_deg=3.0, lighting=0.5, noise=(0.0, 12.0), blur=(0.0, 0.5), jpeg_quality=(40, 95),
    encodings=("png", "jpeg"), texture=0.03, each=0.5)
# Fields (amounts, dates, IDs) are photographed the same way, and one in three on a cheque's printed background.
FIELD_CONDITION = dataclasses.replace(
    LINE_CONDITION, description="an amount, date or ID on one line, photographed (training)",
    papers=LINE_CONDITION.papers + tuple(PATTERNS) * 2, height_fraction=(0.3, 0.85), image_height=(100, 320))
# (larger than plain numbers' photos: at under ~20 px a digit, a decimal point is lost in the ink finder, and a
# target with a dot the strip does not show teaches the reader to invent dots)
# How numbers are written (digitscan.synthetic.strokes.render_number options) and how often: touching digits are common.
LINE_STYLES = ((0.35, dict(spacing=(0.05, 0.6))),
               (0.35, dict(spacing=(-0.12, 0.2), baseline_drift=0.25, scale_jitter=0.12)),
               (0.15, dict(spacing=(0.0, 0.4), underline=True, specks=8)),
               (0.15, dict(spacing=(0.0, 0.4), baseline_drift=0.4, scale_jitter=0.15)))


@dataclass
class Lines:
    strips: list[np.ndarray]  # (LINE_HEIGHT, W_i) uint8, ink x 255
    texts: list[str]


@dataclass(frozen=True)
class ReaderConfig:
    lines: int = 60_000
    val_lines: int = 1_000
    epochs: int = 6
    batch_size: int = 64
    lr: float = 0.003
    weight_decay: float = 1e-4
    seed: int = 0
    stretch: float = 0.15  # each epoch, every line is stretched or squeezed horizontally by up to this share
    slant: float = 0.2  # ... and sheared by up to this many columns per row (other writers' slant)
    dropout: float = 0.1  # before the reader's last layer
    # What the reader starts from: "shipped-reader" (the shipped line reader, every layer), a checkpoint path (a
    # line reader, or a dsnet classifier: its trunk), or None (from scratch).
    init: str | None = "shipped-reader"


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------

_digits: tuple[np.ndarray, np.ndarray] | None = None  # a worker's MNIST images and labels


def _init_worker(images: np.ndarray, labels: np.ndarray) -> None:
    global _digits
    _digits = (images, labels)


def _line_job(seed: int) -> tuple[np.ndarray, str] | None:
    """Worker: one photographed number or field -> (strip as uint8, its target); None when the photo shows no
    ink."""
    images, labels = _digits
    rng = np.random.default_rng([seed, 31])
    if rng.random() < FIELD_SHARE:
        field = field_tokens(str(rng.choice(FIELD_KINDS)), rng)
        coverage = render_field(field, images, labels, rng, digit_height=int(rng.integers(28, 64)))
        line = line_input(decode_image(photograph(coverage, FIELD_CONDITION, rng)), small_marks=True)
        return None if line is None else (np.round(line.strip * 255).astype(np.uint8), field.label)
    chosen = rng.choice(len(images), int(rng.integers(1, MAX_DIGITS + 1)), replace=False)
    shares = np.array([share for share, _ in LINE_STYLES])
    style = LINE_STYLES[rng.choice(len(LINE_STYLES), p=shares / shares.sum())][1]
    image, _ = render_number([images[i] for i in chosen], seed=int(rng.integers(2**31)),
                             digit_height=int(rng.integers(28, 64)), ink=(255, 255, 255), paper=(0, 0, 0),
                             margin=0.1, **style)
    coverage = np.asarray(image.convert("L"), np.float32) / 255
    line = line_input(decode_image(photograph(coverage, LINE_CONDITION, rng)), small_marks=True)
    if line is None:
        return None
    return np.round(line.strip * 255).astype(np.uint8), "".join(str(labels[i]) for i in chosen)


def make_lines(images: np.ndarray, labels: np.ndarray, count: int, seed: int, *, workers: int | None = None,
               cache: bool = True, progress: bool = True) -> Lines:
    """`count` photographed numbers made from these digits, as strips; cached on disk by content and settings."""
    key = hashlib.sha256(json.dumps([LINES_VERSION, count, seed]).encode() + images.tobytes()
                         + labels.tobytes()).hexdigest()[:16]
    path = default_cache_dir().parent / "lines" / f"lines-{key}.safetensors"
    if cache and path.is_file():
        saved = load_file(str(path))
        return _unpack(saved["strips"], saved["widths"], saved["digits"])
    with get_context("spawn").Pool(workers or os.cpu_count(), _init_worker, (images, labels)) as pool:
        jobs = pool.imap(_line_job, [seed * 1_000_003 + k for k in range(count)], chunksize=16)
        results = [r for r in tqdm(jobs, total=count, desc="photographed numbers", unit="line", disable=not progress)
                   if r is not None]
    strips, widths, digits = _pack([s for s, _ in results], [t for _, t in results])
    if cache:
        with atomic_write(path) as temporary:
            save_file({"strips": strips, "widths": widths, "digits": digits}, str(temporary))
    return _unpack(strips, widths, digits)


def _pack(strips: list[np.ndarray], texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    digits = np.full((len(texts), MAX_LABEL), -1, np.int8)  # class indices
    for row, text in zip(digits, texts):
        row[: len(text)] = [CLASSES.index(c) for c in text[:MAX_LABEL]]
    return np.concatenate(strips, axis=1), np.array([s.shape[1] for s in strips], np.int64), digits


def _unpack(strips: np.ndarray, widths: np.ndarray, digits: np.ndarray) -> Lines:
    edges = np.concatenate([[0], np.cumsum(widths)])
    return Lines([strips[:, a:b] for a, b in itertools.pairwise(edges)],
                 ["".join(CLASSES[d] for d in row if d >= 0) for row in digits])


def _batches(lines: Lines, size: int, rng: np.random.Generator | None):
    """(indices, (B, 1, LINE_HEIGHT, W) float tensor, frames per line) in batches of similar width; shuffled with
    an rng. Widths are rounded up to 32 columns so the convolutions meet few distinct shapes."""
    widths = np.array([s.shape[1] for s in lines.strips], np.float64)
    order = np.argsort(widths + (rng.uniform(0, 16, len(widths)) if rng is not None else 0), kind="stable")
    groups = [order[i: i + size] for i in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(groups)
    for group in groups:
        width = -(-int(widths[group].max()) // 32) * 32
        x = np.zeros((len(group), 1, LINE_HEIGHT, width), np.float32)
        for row, i in zip(x, group):
            row[0, :, : lines.strips[i].shape[1]] = lines.strips[i] / 255.0
        yield group, torch.from_numpy(x), [lines.strips[i].shape[1] // STRIDE for i in group]


def _distort(lines: Lines, stretch: float, slant: float, rng: np.random.Generator) -> Lines:
    """The lines, each stretched or squeezed horizontally by up to `stretch` and slanted by a shear of up to
    `slant` (columns per row), as other writers would write them; widths kept whole numbers of frames."""
    if stretch <= 0 and slant <= 0:
        return lines
    factors = rng.uniform(1 - stretch, 1 + stretch, len(lines.strips))
    shears = rng.uniform(-slant, slant, len(lines.strips))
    distorted = []
    for strip, factor, shear in zip(lines.strips, factors, shears):
        width = max(STRIDE, round(strip.shape[1] * factor / STRIDE) * STRIDE)
        matrix = np.float32([[width / strip.shape[1], shear, -shear * LINE_HEIGHT / 2], [0, 1, 0]])
        distorted.append(cv2.warpAffine(strip, matrix, (width, LINE_HEIGHT), flags=cv2.INTER_LINEAR))
    return Lines(distorted, lines.texts)


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A batch-wide vertical shift of up to 2 px and a fainter or full ink per line."""
    x = torch.roll(x, int(rng.integers(-2, 3)), dims=2)
    return x * torch.from_numpy(rng.uniform(0.7, 1.0, (len(x), 1, 1, 1)).astype(np.float32))


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def evaluate(model: nn.Module, lines: Lines, batch_size: int = 64) -> tuple[float, float]:
    """(mean CTC loss, share of lines read exactly) of a line reader on these lines."""
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    model.eval()
    total, exact = 0.0, 0
    with torch.no_grad():
        for group, x, frames in _batches(lines, batch_size, None):
            log_probs = model(x)  # (B, T, 11)
            total += float(_ctc_loss(ctc, log_probs, [lines.texts[i] for i in group], frames)) * len(group)
            exact += sum("".join(e.symbol for e in decode(lp[:n].numpy(), CLASSES)) == lines.texts[i]
                         for lp, n, i in zip(log_probs, frames, group))
    return total / len(lines.texts), exact / len(lines.texts)


def _ctc_loss(ctc: nn.CTCLoss, log_probs: torch.Tensor, texts: list[str], frames: list[int]) -> torch.Tensor:
    targets = torch.tensor([CLASSES.index(c) for text in texts for c in text], dtype=torch.long)
    return ctc(log_probs.transpose(0, 1), targets, torch.tensor(frames), torch.tensor([len(t) for t in texts]))


def _initialize(model: LineReader, init: str) -> dict:
    """Start from another model's weights: a line reader's (every layer; the last layer's rows by class name, so
    the digits and the blank keep what they learnt and new classes start fresh) or a digit classifier's
    convolutional trunk (a dsnet's: the reader's trunk is dsnet's first layers). init: "shipped-reader" or a
    checkpoint path."""
    if init == "shipped":
        raise ValueError("--init shipped: the shipped digit model is dsnet-l, whose layers are not the reader's "
                         "trunk; start from 'shipped-reader', another line reader or a dsnet checkpoint")
    path = weights_dir() / READER_NAME if init == "shipped-reader" else Path(init)
    checkpoint = load_checkpoint(path)
    state = checkpoint.model.state_dict()
    if checkpoint.meta["arch"] not in (ARCH, TRUNK_ARCH):
        raise ValueError(f"{path}: a line reader starts from a line reader or a {TRUNK_ARCH} checkpoint (its "
                         f"trunk), not from {checkpoint.meta['arch']!r}")
    if checkpoint.meta["arch"] == ARCH:
        own = model.state_dict()
        head = {name: t for name, t in state.items() if name.startswith("head.")}
        model.load_state_dict({name: t for name, t in state.items() if name not in head}, strict=False)
        with torch.no_grad():
            for row, name in enumerate(checkpoint.meta["classes"]):
                if name in CLASSES:
                    own["head.weight"][CLASSES.index(name)] = head["head.weight"][row]
                    own["head.bias"][CLASSES.index(name)] = head["head.bias"][row]
        layers = "all (last layer by class)"
    else:
        trunk = {name: t for name, t in state.items()
                 if int(name.split(".")[0]) < len(model.trunk)}  # dsnet's first layers are the reader's trunk
        model.trunk.load_state_dict(trunk)
        layers = "trunk"
    return {"checkpoint": str(path), "sha256": sha256_file(path), "layers": layers}


def train_reader(config: ReaderConfig = ReaderConfig(), out: str | Path | None = None, *, workers: int | None = None,
                 progress: bool = True) -> tuple[nn.Module, dict]:
    """Make the lines, train a LineReader for config.epochs, save it (with `out`); returns (model, meta)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    images, labels = load_mnist("train")
    train_idx, val_idx = train_val_split(len(images), 0.1, 0)  # the classifier's split: its validation digits
    train = make_lines(images[train_idx], labels[train_idx], config.lines, config.seed, workers=workers,
                       progress=progress)
    val = make_lines(images[val_idx], labels[val_idx], config.val_lines, config.seed + 1, workers=workers,
                     progress=progress)

    model = LineReader(num_classes=len(CLASSES), dropout=config.dropout)
    init = None if config.init is None else _initialize(model, config.init)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * -(-len(train.texts) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)

    history = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        lines = _distort(train, config.stretch, config.slant, rng)  # a fresh distortion every epoch
        batches = tqdm(_batches(lines, config.batch_size, rng), total=steps // config.epochs,
                       desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not progress, leave=False)
        for group, x, frames in batches:
            loss = _ctc_loss(ctc, model(_augment(x, rng)), [train.texts[i] for i in group], frames)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            total, seen = total + loss.item() * len(group), seen + len(group)
            batches.set_postfix(loss=f"{total / seen:.4f}")
        val_loss, val_exact = evaluate(model, val)
        history.append({"epoch": epoch, "train_loss": total / seen, "val_loss": val_loss, "val_accuracy": val_exact,
                        "seconds": time.perf_counter() - started})
        if progress:
            print(f"epoch {epoch:2d}/{config.epochs}  loss {total / seen:.4f}  val_loss {val_loss:.4f}  "
                  f"val lines read exactly {val_exact:.4f}  {history[-1]['seconds']:.0f}s", flush=True)

    model.eval()
    meta = {
        "arch": ARCH,
        "arch_kwargs": {"dropout": config.dropout},
        "classes": CLASSES,
        "input": {"height": LINE_HEIGHT, "channels": 1, "range": [0.0, 1.0], "ink": "bright",
                  "frames": f"one per {STRIDE} columns", "small_marks": True},
        "train_config": dataclasses.asdict(config),
        "metrics": {"epoch": config.epochs, "val_lines_exact": history[-1]["val_accuracy"],
                    "val_loss": history[-1]["val_loss"], "val_lines": len(val.texts)},
        "history": history,
        "data": {"mnist_sha256": mnist_digests(), "lines": len(train.texts), "lines_version": LINES_VERSION},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "software": {"torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__},
    }
    if init is not None:
        meta["init"] = init
    if out is not None:
        save_checkpoint(out, model, meta)
    return model, meta
