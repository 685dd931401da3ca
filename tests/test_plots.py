"""Each plot function writes one readable PNG, handles its edge cases and leaves no temporary file behind.

Synthetic data only: the point is the code path, not the numbers.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitscan import plots

# Matplotlib layout or glyph warnings mean a figure that reads badly; fail on them.
pytestmark = pytest.mark.filterwarnings("error")


def _synthetic_digits(labels: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """(N, 28, 28) squares whose side depends on the label: ink high, background zero, like MNIST."""
    images = np.zeros((len(labels), 28, 28), dtype=np.float32)
    for i, label in enumerate(labels):
        half = 3 + int(label)
        images[i, 14 - half : 14 + half, 14 - half : 14 + half] = 1.0
    return (images * 255).astype(np.uint8) if dtype == np.uint8 else images.astype(dtype)


def _assert_png(path: Path, *, min_width: int = 300, min_height: int = 150) -> np.ndarray:
    """The file is the only one in its folder, a complete PNG of a sensible size, and not a blank canvas."""
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "temporary file left behind"
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode in {"RGB", "RGBA"}
        assert image.width >= min_width and image.height >= min_height
        pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 100 and pixels.max() > 200, "figure looks blank"
    return pixels


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_sample_grid_accepts_uint8_and_float_images(tmp_path, dtype):
    labels = np.repeat(np.arange(10), 3)
    path = tmp_path / "nested" / "folder" / "samples.png"  # parent folders are created

    written = plots.save_sample_grid(_synthetic_digits(labels, dtype), labels, path, per_class=3)

    assert written == path
    _assert_png(path, min_width=150, min_height=300)


def test_sample_grid_leaves_missing_classes_empty_and_takes_names_and_channel_axis(tmp_path):
    labels = np.array([0, 2, 2, 0])
    images = _synthetic_digits(labels, np.float32)[:, None] * 4 - 2  # (N, 1, 28, 28), normalized-looking
    path = plots.save_sample_grid(images, labels, str(tmp_path / "s.png"), classes=["a", "b", "c"], title="abc")

    assert isinstance(path, Path)
    _assert_png(path)


def test_sample_grid_rejects_labels_that_do_not_match_images(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        plots.save_sample_grid(np.zeros((3, 28, 28), np.uint8), np.array([0, 1]), tmp_path / "s.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("splits", [("train", "test"), ("train", "val", "test")])
def test_class_distribution_groups_any_number_of_splits(tmp_path, splits):
    rng = np.random.default_rng(0)
    counts = {split: rng.integers(800, 7000, size=10).tolist() for split in splits}

    _assert_png(plots.save_class_distribution(counts, tmp_path / "dist.png"))


def test_class_distribution_checks_lengths(tmp_path):
    with pytest.raises(ValueError, match="one count per class"):
        plots.save_class_distribution({"train": [1, 2, 3], "test": [1, 2]}, tmp_path / "d.png")
    with pytest.raises(ValueError, match="class names"):
        plots.save_class_distribution({"train": [1, 2, 3]}, tmp_path / "d.png", classes=["a", "b"])
    assert list(tmp_path.iterdir()) == []


def _epoch(epoch, *, val=True, test=None):
    return {
        "epoch": epoch,
        "train_loss": 1.0 / epoch,
        "train_accuracy": 1 - 0.1 / epoch,
        "val_loss": 0.8 / epoch if val else None,
        "val_accuracy": 1 - 0.08 / epoch if val else None,
        **({"test_accuracy": test} if test is not None else {}),
    }


def test_training_curves_with_validation_and_test(tmp_path):
    history = [_epoch(e) for e in range(1, 6)] + [_epoch(6, test=0.99)]
    _assert_png(plots.save_training_curves(history, tmp_path / "curves.png", title="paper_cnn"))


def test_training_curves_single_epoch_without_validation(tmp_path):
    _assert_png(plots.save_training_curves([_epoch(1, val=False)], tmp_path / "one.png"))


def test_training_curves_skip_none_values_in_the_middle(tmp_path):
    history = [_epoch(1), _epoch(2, val=False), _epoch(3)]
    _assert_png(plots.save_training_curves(history, tmp_path / "gaps.png"))


def test_training_curves_refuse_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plots.save_training_curves([], tmp_path / "none.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_matrix_counts_and_normalized(tmp_path, normalize):
    matrix = np.diag([980, 1135, 1032]) + np.array([[0, 3, 1], [0, 0, 12], [0, 0, 0]])
    path = plots.save_confusion_matrix(matrix, tmp_path / "cm.png", classes=["0", "1", "2"], normalize=normalize)
    _assert_png(path)


def test_confusion_matrix_accepts_a_list_with_an_empty_row(tmp_path):
    # A class absent from the evaluated set has a zero row; it must not divide by zero.
    matrix = [[5, 1, 0], [0, 0, 0], [2, 0, 7]]
    _assert_png(plots.save_confusion_matrix(matrix, tmp_path / "cm.png"))


def test_confusion_matrix_must_be_square(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plots.save_confusion_matrix(np.ones((2, 3)), tmp_path / "cm.png")
    assert list(tmp_path.iterdir()) == []


def test_misclassified_grid_with_confidences_is_capped(tmp_path):
    rng = np.random.default_rng(1)
    true = rng.integers(0, 10, size=20)
    pred = (true + 1) % 10
    path = plots.save_misclassified_grid(
        _synthetic_digits(true), true, pred, tmp_path / "errors.png",
        confidences=rng.uniform(0.3, 1.0, size=20), max_images=12,
    )  # fmt: skip
    pixels = _assert_png(path)
    # 12 images in rows of 8 is two rows; all 20 would have been three.
    assert pixels.shape[0] < 2.8 * 1.75 * plots.DPI


def test_misclassified_grid_without_confidences_takes_float_images(tmp_path):
    true, pred = np.array([4, 7]), np.array([9, 1])
    path = plots.save_misclassified_grid(_synthetic_digits(true, np.float64), true, pred, tmp_path / "e.png")
    _assert_png(path, min_width=150, min_height=150)


def test_misclassified_grid_with_no_errors_says_so(tmp_path):
    empty = np.zeros((0, 28, 28), np.uint8)
    path = plots.save_misclassified_grid(empty, np.array([]), np.array([]), tmp_path / "none.png")
    _assert_png(path)


def test_comparison_bars_with_paper_reference(tmp_path):
    results = [
        {"model": "paper_cnn", "accuracy": 0.9921},
        {"model": "lenet5", "accuracy": 0.9903},
        {"model": "mlp", "accuracy": 0.9812},
    ]
    reference = {"paper_cnn": 0.9925, "model_only_in_paper": 0.996}
    _assert_png(plots.save_comparison_bars(results, tmp_path / "cmp.png", reference=reference))


def test_comparison_bars_single_model_without_reference(tmp_path):
    _assert_png(plots.save_comparison_bars([{"model": "paper_cnn", "accuracy": 1.0}], tmp_path / "one.png"))


def test_a_failed_render_keeps_the_previous_png_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "cm.png"
    path.write_bytes(b"previous figure")
    # An invalid mathtext class name only fails while the figure is drawn, i.e. halfway through saving.
    with pytest.raises(ValueError):
        plots.save_confusion_matrix(np.eye(2), path, classes=[r"$\notacommand$", "b"])

    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png"]
    assert path.read_bytes() == b"previous figure"


def test_plot_functions_print_nothing(tmp_path, capsys):
    labels = np.arange(10)
    plots.save_sample_grid(_synthetic_digits(labels), labels, tmp_path / "a.png", per_class=1)
    plots.save_training_curves([_epoch(1)], tmp_path / "b.png")
    plots.save_misclassified_grid(np.zeros((0, 28, 28)), [], [], tmp_path / "c.png")

    assert capsys.readouterr() == ("", "")
