"""Reading a whole line at once: a convolutional network trained with CTC, no cutting into digits first.

`read_line(model, gray)` -> [Symbol(symbol, confidence, box, ...)], left to right; `load_reader()` loads the shipped
line reader (digitscan.models.architectures.LineReader, trained by digitscan.training.line_reader). Inside:
`line_input(gray)` makes the (LINE_HEIGHT, W) strip the network reads, the network gives log-probabilities of
blank and the digits 0-9 for every STRIDE columns, and `decode` turns those into digits with their column spans and
confidences.

The strip is made from the reading step's own ink (digitscan.reading.layout.find_atoms: rules erased, specks
dropped) and scaled so a digit is as tall as in MNIST's 20 px box; the network's convolutional trunk is the digit
classifier's (dsnet) and starts from the shipped classifier's weights.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from digitscan.constants import LINE_HEIGHT, READ_TIME_LIMIT_S
from digitscan.constants import LINE_STRIDE as STRIDE
from digitscan.errors import CheckpointError
from digitscan.models.backends import OnnxLineBackend, TorchLineBackend, is_onnx_path
from digitscan.models.shipped import READER_NAME, READER_ONNX, weights_dir
from digitscan.reading.layout import (
    Layout,
    Symbol,
    check_time,
    find_atoms,
    merge_overlapping,
    to_input_box,
    union_box,
)
from digitscan.reading.text import is_symbol

DIGIT_PIXELS = 20  # a digit's height in the strip, as in MNIST's box
MAX_LINE_WIDTH = 640  # wider strips (more than ~20 digits) are shrunk to this
SIDE_PAD = 6  # empty columns left and right of the ink
BLANK = 10  # CTC's blank is the last class: the digits keep their own indices (a digits-only reader's blank)
DIGIT_CLASSES = [str(d) for d in range(10)] + ["blank"]  # a reader checkpoint without "classes" in its meta


@dataclass
class Line:
    """A strip and how to map its columns back to the input image."""

    strip: np.ndarray  # (LINE_HEIGHT, W) float32, ink bright, max 1
    layout: Layout  # the reading step's ink and atoms (working-image pixels)
    x0: int  # working-image column of the strip's first ink column
    y0: int  # working-image row of the ink's top
    factor: float  # strip pixels per working-image pixel


def line_input(gray: np.ndarray, *, small_marks: bool = False) -> Line | None:
    """The strip the line reader sees for a decoded image (None when there is no ink). small_marks: keep the
    speck-sized pieces in the line's band (dots, commas, dashes), for a reader trained to tell them from dirt."""
    # The reader needs the ink, not candidate cuts (same ink either way).
    layout = find_atoms(gray, cut=False, small_marks=small_marks)
    if not layout.atoms:
        return None
    ink = np.where(layout.atom_map > 0, layout.ink, 0.0).astype(np.float32)
    rows, cols = np.nonzero(ink)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    crop = ink[y0:y1, x0:x1]
    factor = DIGIT_PIXELS / max(layout.digit_height, 1.0)
    factor = min(factor, LINE_HEIGHT / crop.shape[0], (MAX_LINE_WIDTH - 2 * SIDE_PAD) / crop.shape[1])
    size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))  # (w, h)
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    scaled = np.clip(cv2.resize(crop, size, interpolation=interpolation), 0, None)
    width = -(-(size[0] + 2 * SIDE_PAD) // STRIDE) * STRIDE  # a whole number of frames
    strip = np.zeros((LINE_HEIGHT, width), np.float32)
    top = (LINE_HEIGHT - size[1]) // 2
    strip[top: top + size[1], SIDE_PAD: SIDE_PAD + size[0]] = scaled
    strip /= max(float(strip.max()), 1e-6)
    return Line(strip, layout, int(x0), int(y0), factor)


@dataclass
class Emitted:
    symbol: str  # a class name: "0"-"9", a separator or MARK
    confidence: float  # the highest probability of this symbol over its frames
    first: int  # frames
    last: int
    peak: int  # the frame of that highest probability
    runner_up: str  # the second most likely class there ("" for the blank: the symbol may not be there at all)
    runner_up_probability: float


def decode(log_probs: np.ndarray, classes: list[str] = DIGIT_CLASSES) -> list[Emitted]:
    """Greedy CTC decoding of one line's (T, classes) log-probabilities (the blank last): the best class per
    frame, repeats merged, blanks dropped."""
    probs = np.exp(log_probs)
    best = probs.argmax(axis=1)
    blank = probs.shape[1] - 1
    emitted: list[Emitted] = []
    previous = blank
    for t, label in enumerate(best):
        if label != blank:
            if label == previous:
                emitted[-1].last = t
                if probs[t, label] > emitted[-1].confidence:
                    emitted[-1].confidence, emitted[-1].peak = float(probs[t, label]), t
            else:
                emitted.append(Emitted(classes[label], float(probs[t, label]), t, t, t, "", 0.0))
        previous = label
    for e in emitted:
        order = np.argsort(probs[e.peak])
        second = int(order[-2])
        e.runner_up = "" if second == blank else classes[second]
        e.runner_up_probability = float(probs[e.peak, second])
    return emitted


def shipped_reader_path() -> Path:
    return weights_dir() / READER_NAME


def load_reader(path: str | os.PathLike | None = None):
    """The shipped line reader's checkpoint, or one saved by digitscan.training.line_reader (never a digit
    classifier), as a models.checkpoint.Checkpoint: PyTorch, for training and --backend torch."""
    from digitscan.models.architectures import LINE_READERS
    from digitscan.models.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(shipped_reader_path() if path is None else path)
    if checkpoint.meta["arch"] not in LINE_READERS:
        raise CheckpointError(f"{checkpoint.path}: a {checkpoint.meta['arch']} digit classifier, not a line reader")
    return checkpoint


def reader_backend(path: str | os.PathLike | None = None, backend: str | None = None,
                   threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The line reader as a strip -> log-probabilities callable: the shipped ONNX export on onnxruntime (no
    PyTorch) unless backend="torch"; a .onnx path runs on onnxruntime, any other path (a checkpoint) on PyTorch."""
    if path is None and backend != "torch":
        reader = OnnxLineBackend(weights_dir() / READER_ONNX, threads)
    elif is_onnx_path(path):
        reader = OnnxLineBackend(path, threads)
    else:
        checkpoint = load_reader(path)
        return _described(TorchLineBackend(checkpoint.model), checkpoint.meta, str(checkpoint.path))
    meta = reader.metadata(str(path or weights_dir() / READER_ONNX))
    if meta.get("arch") != "line-reader":
        raise CheckpointError(f"{path}: a {meta.get('arch')} digit classifier, not a line reader")
    return _described(reader, meta, str(path or weights_dir() / READER_ONNX))


def _described(reader, meta: dict, where: str):
    """The reader with what read_line needs from its self-description: its classes (the blank last) and
    whether its strips keep the small marks in the line's band (readers of separators) or drop them as specks."""
    classes = meta.get("classes", DIGIT_CLASSES)
    unknown = [c for c in classes[:-1] if not is_symbol(c)]
    if unknown or len(set(classes)) != len(classes):
        raise CheckpointError(f"{where}: a line reader with classes digitscan cannot read ({unknown[:5] or classes})")
    reader.classes = list(classes)
    reader.small_marks = bool(meta.get("input", {}).get("small_marks", False))
    return reader


def read_line(reader: Callable[[np.ndarray], np.ndarray], gray: np.ndarray, *,
              time_limit_s: float = READ_TIME_LIMIT_S) -> list[Symbol]:
    """The symbols of a one-line number in a decoded image, left to right ([] when there is no ink): digits, and
    separators and marks when the reader knows them (see digitscan.reading.text for what they make).

    reader: the network, a strip (32, W) -> log-probabilities (W / 4, classes) callable with `classes` and
    `small_marks` attributes (see reader_backend; a bare callable reads digits only, specks dropped).

    time_limit_s: checked once the ink is found (the network's pass is bounded by MAX_LINE_WIDTH); past it the
    reading stops with ImageTooComplexError.
    """
    deadline = time.monotonic() + time_limit_s
    line = line_input(gray, small_marks=getattr(reader, "small_marks", False))
    check_time(deadline, time_limit_s)
    if line is None:
        return []
    log_probs = reader(line.strip)  # (T, classes)
    emitted = decode(log_probs, getattr(reader, "classes", DIGIT_CLASSES))
    return [Symbol(e.symbol, e.confidence, box, e.runner_up, e.runner_up_probability)
            for e, box in zip(emitted, _boxes(line, emitted))]


def _boxes(line: Line, emitted: list[Emitted]) -> list[list[int]]:
    """Each digit's box in input pixels. When the ink falls into as many separate pieces as there are digits (pieces
    that share most of their columns count as one: a 5 with a detached bar), the k-th digit gets the k-th piece;
    otherwise (touching digits) the ink between the midpoints to its neighbours' frames, cut straight across."""
    layout = line.layout
    pieces = _pieces(layout)
    if len(pieces) == len(emitted):
        return [to_input_box(box, layout.scale, layout.ink.shape) for box in pieces]
    ink = layout.atom_map > 0  # (h, w) working image
    centres = [line.x0 + ((e.first + e.last + 1) / 2 * STRIDE - SIDE_PAD) / line.factor for e in emitted]
    bounds = [0] + [round((a + b) / 2) for a, b in itertools.pairwise(centres)] + [ink.shape[1]]
    boxes = []
    for left, right in itertools.pairwise(bounds):
        rows, cols = np.nonzero(ink[:, left:right])
        if rows.size == 0:  # the network saw a digit where the ink map has none: the whole span, the ink's rows
            rows, cols = np.nonzero(ink)
            cols = np.array([0, max(0, right - left - 1)])
        boxes.append(to_input_box((left + int(cols.min()), int(rows.min()), left + int(cols.max()) + 1,
                                    int(rows.max()) + 1), layout.scale, ink.shape))
    return boxes


def _pieces(layout: Layout) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) of the ink's connected components, left to right, those sharing half the columns of the
    narrower one merged."""
    by_component: dict[int, list[tuple[int, int, int, int]]] = {}
    for atom in layout.atoms:
        by_component.setdefault(atom.component, []).append((atom.x0, atom.y0, atom.x1, atom.y1))
    boxes = sorted(union_box(parts) for parts in by_component.values())
    return [union_box([boxes[i] for i in group]) for group in merge_overlapping(boxes)]
