"""Figures for the README and reports: sample images, class counts, training curves, confusion matrix, errors.

Each `save_*` function takes plain data (arrays, lists, dicts), writes one PNG to `path` and returns its Path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digitscan.constants import NUM_CLASSES
from digitscan.files import atomic_write

DPI = 120
# MNIST stores ink as high values on a black background; "gray_r" draws high values dark, so digits look
# like ink on paper.
IMAGE_CMAP = "gray_r"
GRID_GAP_COLOR = "#d0d0d0"  # gaps between tiles, so white paper backgrounds do not run into each other
MISCLASSIFIED_COLUMNS = 8


def save_sample_grid(
    images: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    per_class: int = 10,
    classes: list[str] | None = None,
    title: str = "Sample images per class",
) -> Path:
    """One row per class with its first `per_class` images; rows with fewer images leave the rest blank."""
    images = _image_stack(images)
    labels = np.asarray(labels).astype(int).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    # Default to all ten digits so a class missing from the sample shows as an empty row.
    class_count = int(labels.max()) + 1 if len(labels) else 0
    if classes is None:
        class_count = max(NUM_CLASSES, class_count)
    names = _class_names(classes, class_count, at_least=True)

    # One mosaic drawn with a single imshow instead of rows x per_class axes: faster, and the row labels
    # become ordinary y tick labels. NaN marks the gaps and empty tiles, drawn in GRID_GAP_COLOR.
    height, width = images.shape[1:]
    gap = 2
    mosaic = np.full(
        (len(names) * (height + gap) + gap, per_class * (width + gap) + gap), np.nan, dtype=np.float32
    )
    for row in range(len(names)):
        for col, index in enumerate(np.flatnonzero(labels == row)[:per_class]):
            top, left = gap + row * (height + gap), gap + col * (width + gap)
            mosaic[top : top + height, left : left + width] = images[index]

    fig = _new_figure((0.55 * per_class + 1.0, 0.55 * len(names) + 0.9))
    ax = fig.add_subplot()
    cmap = colormaps[IMAGE_CMAP].with_extremes(bad=GRID_GAP_COLOR)  # a new colormap; the registered one is shared
    ax.imshow(mosaic, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks([gap + row * (height + gap) + height / 2 - 0.5 for row in range(len(names))], labels=names)
    ax.set_xticks([])
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_ylabel("Class")
    ax.set_title(title)
    return _save(fig, path)


def save_class_distribution(
    counts: dict[str, Sequence[int]],
    path: str | os.PathLike,
    *,
    classes: list[str] | None = None,
) -> Path:
    """Grouped bars, one group per class and one bar per split (e.g. {"train": [...], "test": [...]})."""
    if not counts:
        raise ValueError("counts is empty")
    lengths = {len(values) for values in counts.values()}
    if len(lengths) != 1:
        raise ValueError(f"every split needs one count per class, got lengths {sorted(lengths)}")
    names = _class_names(classes, lengths.pop())

    fig = _new_figure((max(6.0, 0.75 * len(names) + 2.0), 4.2))
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    bar_width = 0.8 / len(counts)
    for i, (split, values) in enumerate(counts.items()):
        offset = (i - (len(counts) - 1) / 2) * bar_width
        bars = ax.bar(positions + offset, values, bar_width, label=f"{split} ({sum(values):,})")
        ax.bar_label(bars, fontsize=6, padding=1, rotation=90 if len(counts) > 2 else 0)
    ax.set_xticks(positions, labels=names)
    ax.set_xlabel("Class")
    ax.set_ylabel("Images")
    ax.set_title("Images per class")
    ax.margins(y=0.08)  # headroom for the labels above the tallest bars
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside, clear of the bars
    return _save(fig, path)


def save_training_curves(
    history: list[dict],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Loss and accuracy per epoch in two panels; missing or None values are left out of their line."""
    if not history:
        raise ValueError("history is empty: nothing to plot")
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]

    fig = _new_figure((10.0, 4.0))
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    panels = [
        (loss_ax, "Loss", [("train", "train_loss", "o"), ("val", "val_loss", "s")]),
        (
            accuracy_ax,
            "Accuracy",
            [("train", "train_accuracy", "o"), ("val", "val_accuracy", "s"), ("test", "test_accuracy", "^")],
        ),
    ]
    for ax, quantity, series in panels:
        for label, key, marker in series:
            points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker=marker, markersize=4, label=label)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(quantity)
        ax.set_title(quantity)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if min(epochs) == max(epochs):
            ax.set_xlim(min(epochs) - 1, max(epochs) + 1)  # one epoch: keep whole-number ticks around it
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def save_confusion_matrix(
    matrix: np.ndarray | list,
    path: str | os.PathLike,
    *,
    classes: list[str] | None = None,
    title: str = "Confusion matrix",
    normalize: bool = False,
) -> Path:
    """Rows are true classes, columns predictions; colour is the row fraction, text the count (% if normalize)."""
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {counts.shape}")
    n = counts.shape[0]
    names = _class_names(classes, n)
    row_totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)

    # On a linear scale a 99% diagonal washes every error out to white. A symmetric log scale keeps 0 at the
    # bottom and gives 0.1%, 1%, 10% and 100% equal steps, so single-digit error counts still show.
    norm = SymLogNorm(linthresh=1e-3, linscale=1.0, vmin=0.0, vmax=1.0, base=10)
    size = max(5.0, 0.5 * n + 2.0)
    fig = _new_figure((size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", norm=norm)
    colorbar = fig.colorbar(image, ax=ax, shrink=0.85)
    colorbar.set_ticks([0, 1e-3, 1e-2, 1e-1, 1], labels=["0", "0.1%", "1%", "10%", "100%"])
    colorbar.set_label("Fraction of the true class")

    fontsize = max(5, min(9, int(90 / n)))
    for true_index in range(n):
        for pred_index in range(n):
            fraction = fractions[true_index, pred_index]
            count = counts[true_index, pred_index]
            if count == 0:
                text = "0"
                color = "#b0b0b0"  # zeros recede so the errors stand out
            else:
                text = f"{100 * fraction:.1f}" if normalize else _format_count(count)
                color = "white" if norm(fraction) > 0.6 else "black"
            ax.text(pred_index, true_index, text, ha="center", va="center", fontsize=fontsize, color=color)

    ax.set_xticks(range(n), labels=names)
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(f"{title} (% of each row)" if normalize else title)
    return _save(fig, path)


def save_misclassified_grid(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    path: str | os.PathLike,
    *,
    confidences: np.ndarray | None = None,
    max_images: int = 64,
    classes: list[str] | None = None,
    captions: Sequence[str] | None = None,
    title: str = "Misclassified images",
) -> Path:
    """Up to `max_images` of the given errors, titled "true 4 → pred 9 (0.87)"; a notice when there are none.

    captions: one line per image put above that title (e.g. where it comes from, "rejected"); title: the figure's.
    """
    true = np.asarray(true).astype(int).reshape(-1)
    pred = np.asarray(pred).astype(int).reshape(-1)
    total = len(true)
    if len(pred) != total or len(images) != total:
        raise ValueError(f"got {len(images)} images, {total} true and {len(pred)} predicted labels")
    if confidences is not None and len(confidences) != total:
        raise ValueError(f"got {total} images but {len(confidences)} confidences")
    if captions is not None and len(captions) != total:
        raise ValueError(f"got {total} images but {len(captions)} captions")

    if total == 0:
        fig = _new_figure((5.0, 2.0))
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=14)
        return _save(fig, path)

    shown = min(total, max_images)
    images = _image_stack(np.asarray(images)[:shown])
    names = _class_names(classes, int(max(true.max(), pred.max())) + 1, at_least=True)
    columns = min(MISCLASSIFIED_COLUMNS, shown)
    rows = math.ceil(shown / columns)

    fig = _new_figure((1.6 * columns, 1.75 * rows + 0.5))
    axes = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= shown:
            continue
        ax.imshow(images[i], cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
        caption = f"true {names[true[i]]} → pred {names[pred[i]]}"
        if confidences is not None:
            caption += f" ({float(confidences[i]):.2f})"
        if captions is not None:
            caption = f"{captions[i]}\n{caption}"
        ax.set_title(caption, fontsize=7.5)
    fig.suptitle(f"{title} ({shown} of {total} shown)" if shown < total else title)
    return _save(fig, path)


def save_comparison_bars(
    results: list[dict],
    path: str | os.PathLike,
    *,
    reference: dict[str, float] | None = None,
) -> Path:
    """Accuracy per model on a zoomed y-axis; `reference` adds hatched "paper" bars beside the matching models."""
    reference = dict(reference or {})
    if not results and not reference:
        raise ValueError("no results and no reference values to plot")
    ours = [(str(r["model"]), float(r["accuracy"])) for r in results]
    # Paper-only models still get a slot, after ours, so a missing reproduction is visible.
    models = [name for name, _ in ours] + [name for name in reference if name not in {m for m, _ in ours}]

    fig = _new_figure((max(5.0, 1.1 * len(models) + 2.0), 4.2))
    ax = fig.add_subplot()
    positions = np.arange(len(models))
    has_reference = bool(reference)
    bar_width = 0.38 if has_reference else 0.6
    offset = bar_width / 2 if has_reference else 0.0

    values = []
    if ours:
        our_positions = [i - offset for i, _ in enumerate(ours)]
        our_values = [accuracy for _, accuracy in ours]
        bars = ax.bar(our_positions, our_values, bar_width, label="this run", color="tab:blue")
        ax.bar_label(bars, labels=[f"{100 * v:.2f}" for v in our_values], fontsize=7, padding=2)
        values += our_values
    if has_reference:
        ref_positions = [i + offset for i, name in enumerate(models) if name in reference]
        ref_values = [float(reference[name]) for name in models if name in reference]
        bars = ax.bar(
            ref_positions, ref_values, bar_width, label="paper",
            color="white", edgecolor="tab:orange", hatch="///",
        )  # fmt: skip
        ax.bar_label(bars, labels=[f"{100 * v:.2f}" for v in ref_values], fontsize=7, padding=2)
        values += ref_values

    # Zoom in: models within a few tenths of a percent look identical on a 0-1 axis.
    low = max(0.0, math.floor((min(values) - 0.01) * 100) / 100)
    high = max(values)
    ax.set_ylim(low, high + 0.15 * (high - low) + 1e-3)
    ax.yaxis.set_major_formatter(lambda y, _: f"{100 * y:.1f}%")
    long_names = len(models) > 5 or max(len(m) for m in models) > 10
    ax.set_xticks(
        positions, labels=models, rotation=25 if long_names else 0, ha="right" if long_names else "center"
    )
    ax.set_xlabel("Model")
    ax.set_ylabel("Accuracy")
    ax.set_title("Accuracy per model (y-axis zoomed)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # outside, clear of the bar labels
    return _save(fig, path)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    # A Figure with its own Agg canvas instead of pyplot: no global figure registry or backend switch, so this
    # works headless, in threads, and leaves no figures open after a run.
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as PNG through a temporary file beside `path`, so no half-written PNG remains."""
    with atomic_write(path) as temporary:
        fig.savefig(temporary, format="png", dpi=DPI, facecolor="white")
    return Path(path)


def _image_stack(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W), uint8 0-255 or float, as float32 in [0, 1] with ink high."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]  # (N, 1, H, W) -> (N, H, W), the layout the model takes
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W), got {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    images = images.astype(np.float32)
    low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 1.0)
    if low >= 0.0 and high <= 1.0:
        return images
    # Normalized (mean/std) or 0-255 floats: stretch to [0, 1] over the whole batch, keeping relative contrast.
    return (images - low) / (high - low) if high > low else np.zeros_like(images)


def _class_names(classes: list[str] | None, count: int, *, at_least: bool = False) -> list[str]:
    """`classes` checked against `count` (exactly, or as a minimum for label-indexed data), else "0", "1", ..."""
    if classes is None:
        return [str(i) for i in range(count)]  # equals DIGIT_CLASSES for MNIST's 10 classes
    if len(classes) < count or (len(classes) != count and not at_least):
        raise ValueError(f"{len(classes)} class names given for {count} classes")
    return [str(name) for name in classes]


def _format_count(count: float) -> str:
    return str(int(count)) if float(count).is_integer() else f"{count:.1f}"
