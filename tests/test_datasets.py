"""Other datasets: image folders (layout, errors, training, class names in predict), Fashion-MNIST, idx:DIR, --init."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from digitscan.data.datasets import FASHION_CLASSES, FASHION_SHA256, fashion_data_dir, folder_files, load_dataset
from digitscan.errors import DatasetError
from digitscan.models.architectures import build_model
from digitscan.models.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from digitscan.synthetic.strokes import render_digit
from digitscan.training.classifier import make_config

from helpers import REPO, run
from helpers.idx import write_split

FASHION_TEST_DIR = REPO.parent / "shared" / "data" / "fashion-mnist"  # the test split (shared/), not the Debian package
SHAPES = {"ring": 0, "bar": 1, "fork": 4}  # class name -> the synthetic pen digit drawn for it


def draw_shapes(root: Path, per_class: int, first_seed: int = 0) -> Path:
    for name, digit in SHAPES.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for seed in range(first_seed, first_seed + per_class):
            render_digit(digit, size=(56, 64), seed=seed, rotation_deg=8, noise=3).save(root / name / f"{seed:03d}.png")
    return root


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory) -> tuple[Path, Path]:
    """(a folder: dataset of 3 shape classes, a small CNN trained on it through `digitscan train`)."""
    root = draw_shapes(tmp_path_factory.mktemp("shapes"), per_class=12)
    out = tmp_path_factory.mktemp("runs") / "shapes.safetensors"
    result = run("train", "--arch", "easy", "--dataset", f"folder:{root}", "--epochs", 6, "--batch-size", 8,
                 "--val-split", 0.1, "--threads", 1, "--no-progress", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 6
    return root, out


# ---------------------------------------------------------------------------------------------- folder:DIR


def test_folder_model_stores_classes_and_predict_reports_them(shapes_model, tmp_path):
    root, model = shapes_model
    meta = load_checkpoint(model).meta
    assert meta["classes"] == ["bar", "fork", "ring"]  # subfolder names, sorted
    assert meta["preprocess"] == "robust" and meta["train_config"]["augment"] == "none"
    assert meta["data"]["dataset"] == f"folder:{root.resolve()}"
    assert meta["data"]["split_sizes"] == {"train": 30, "test": 6}  # 20 % of each class held out for testing
    assert set(meta["data"]["sha256"]) == {"train", "test"}

    # New drawings (other seeds) of each shape: predict names the class, never a digit.
    fresh = draw_shapes(tmp_path, per_class=2, first_seed=500)
    result = run("predict", "--json", "--model", model, fresh)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert row["digit"] is None and row["is_digit"] is False and len(row["probabilities"]) == 3
    right = [row["label"] == Path(row["path"]).parent.name for row in rows]
    assert sum(right) >= 5, rows

    image = fresh / "fork" / "500.png"
    label = next(row["label"] for row in rows if row["path"] == str(image))
    text = run("predict", "--model", model, image)
    assert text.exit_code == 0 and text.stdout.startswith(f"{image}: {label} (confidence ")


def test_evaluate_on_the_folders_held_out_split(shapes_model, tmp_path):
    root, model = shapes_model
    result = run("evaluate", "--json", "--model", model, "--dataset", f"folder:{root}", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 6 and [row["support"] for row in report["per_class"]] == [2, 2, 2]
    assert report["accuracy"] >= 0.5  # 3 classes: chance is 1/3

    mismatch = run("evaluate", "--dataset", f"folder:{root}", "--out", tmp_path)  # the shipped digit model
    assert mismatch.exit_code == 1 and "dataset folder:" in mismatch.stderr and "bar, fork, ring" in mismatch.stderr


def test_folder_held_out_split_is_fixed_and_digests_follow_the_files(tmp_path):
    root = draw_shapes(tmp_path / "shapes", per_class=5)
    first = load_dataset(f"folder:{root}", ["train", "test"])
    second = load_dataset(f"folder:{root}", ["train", "test"])
    assert [len(first.train.labels), len(first.test.labels)] == [12, 3]  # round(5 * 0.2) = 1 per class
    assert first.sha256 == second.sha256 and np.array_equal(first.test.images, second.test.images)
    assert first.train.images.dtype == np.uint8 and first.train.images.shape[1:] == (28, 28)
    assert np.bincount(first.train.labels).tolist() == [4, 4, 4]

    (root / "ring" / "000.png").write_bytes((root / "ring" / "001.png").read_bytes())  # one file edited
    changed = load_dataset(f"folder:{root}", ["train", "test"])
    assert changed.sha256 != first.sha256


def test_folder_held_out_files_stay_put(tmp_path):
    def test_files(root: Path) -> dict[str, set[str]]:
        return {name: {p.relative_to(root).as_posix() for p in paths}
                for name, paths in folder_files(root)["test"].items()}

    root = draw_shapes(tmp_path / "a", per_class=10)
    before = test_files(root)
    assert [len(names) for names in before.values()] == [2, 2, 2]
    moved = root.rename(tmp_path / "b")
    assert test_files(moved) == before  # the choice does not depend on where the folder lives
    for seed in range(20, 26):  # one ring more at a time: 11 .. 16 files, 2 .. 3 held out
        render_digit(0, size=(56, 64), seed=seed).save(moved / "ring" / f"{seed:03d}.png")
        after = test_files(moved)
        assert after["bar"] == before["bar"] and after["fork"] == before["fork"]
        old_files_moved = (before["ring"] ^ after["ring"]) - {f"ring/{seed:03d}.png"}
        assert len(old_files_moved) <= 1 and len(after["ring"]) == round((seed - 9) * 0.2)
        before = after


def test_folder_with_train_and_test_subfolders(tmp_path):
    draw_shapes(tmp_path / "train", per_class=3)
    draw_shapes(tmp_path / "test", per_class=2, first_seed=10)
    dataset = load_dataset(f"folder:{tmp_path}", ["train", "test"], preprocess_mode="paper")
    assert dataset.classes == ["bar", "fork", "ring"] and dataset.preprocess == "paper"
    assert np.bincount(dataset.train.labels).tolist() == [3, 3, 3]
    assert np.bincount(dataset.test.labels).tolist() == [2, 2, 2]
    # paper mode: grayscale + resize without inversion, so the white paper stays bright.
    assert dataset.test.images.mean() > 128


def layout(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A broken folder dataset and the words its error must contain."""
    if case == "one class":
        draw_shapes(tmp_path, per_class=1)
        shutil.rmtree(tmp_path / "bar")
        shutil.rmtree(tmp_path / "fork")
        return tmp_path, "at least 2 classes, found only 'ring'"
    draw_shapes(tmp_path, per_class=2)
    if case == "empty class":
        (tmp_path / "empty").mkdir()
        return tmp_path, f"{tmp_path / 'empty'}: class folder holds no image files"
    if case == "text file":
        (tmp_path / "fork" / "notes.txt").write_text("not an image")
        return tmp_path, f"{tmp_path / 'fork' / 'notes.txt'}: not a supported image"
    if case == "truncated png":
        png = tmp_path / "bar" / "000.png"
        png.write_bytes(png.read_bytes()[:60])
        return tmp_path, f"{png}: "
    if case == "train beside classes":
        draw_shapes(tmp_path / "train", per_class=1)
        return tmp_path, "only train/ and test/ may be beside it; found also bar, fork, ring"
    if case == "test classes differ":
        shutil.move(tmp_path, tmp_path.with_name("moved"))
        shutil.copytree(tmp_path.with_name("moved"), tmp_path / "train")
        shutil.copytree(tmp_path / "train", tmp_path / "test")
        shutil.rmtree(tmp_path / "test" / "ring")
        return tmp_path, "train/ and test/ must hold the same class folders"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["one class", "empty class", "text file", "truncated png", "train beside classes",
                                  "test classes differ"])
def test_bad_folder_layouts_give_a_clear_error(tmp_path, case):
    root, message = layout(tmp_path / "data", case)
    with pytest.raises(DatasetError) as info:
        load_dataset(f"folder:{root}", ["train", "test"])
    assert message in str(info.value)
    result = run("train", "--arch", "easy", "--dataset", f"folder:{root}", "--epochs", 1, "--out", tmp_path / "m.st")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_hidden_files_are_not_part_of_a_class(tmp_path):
    draw_shapes(tmp_path, per_class=2)
    (tmp_path / "ring" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / ".git").mkdir()
    dataset = load_dataset(f"folder:{tmp_path}", ["train", "test"])
    assert dataset.classes == ["bar", "fork", "ring"] and len(dataset.train.labels) + len(dataset.test.labels) == 6


def test_dataset_spec_errors():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="needs a folder"):
        load_dataset("folder:")
    with pytest.raises(ValueError, match="--data names the folder"):
        load_dataset("folder:/tmp", data="/tmp")


def test_handwriting_augmentation_only_for_mnist_unless_asked():
    assert make_config("dsnet").augment == "handwriting"
    assert make_config("dsnet", dataset="fashion-mnist").augment == "none"
    assert make_config("dsnet", dataset="folder:x", augment="handwriting").augment == "handwriting"


# ---------------------------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_test_split_is_verified_and_named():
    dataset = load_dataset("fashion-mnist", ["test"], data=FASHION_TEST_DIR)
    assert dataset.classes[:2] == ["T-shirt/top", "Trouser"] and len(dataset.classes) == 10
    assert dataset.preprocess == "paper"  # the garments fill the frame: no digit-style re-framing
    assert dataset.test.images.shape == (10_000, 28, 28)
    assert np.bincount(dataset.test.labels).tolist() == [1000] * 10
    assert dataset.record()["sha256"] == FASHION_SHA256


def test_fashion_mnist_without_its_training_split_says_where_to_get_it():
    with pytest.raises(DatasetError, match="missing file train-images.*Debian package dataset-fashion-mnist"):
        load_dataset("fashion-mnist", ["train"], data=FASHION_TEST_DIR)


def test_fashion_mnist_copy_with_a_changed_byte_is_refused(tmp_path):
    images = load_dataset("fashion-mnist", ["test"], data=FASHION_TEST_DIR).test
    labels = images.labels.astype(np.uint8)
    labels[0] = (labels[0] + 1) % 10
    write_split(tmp_path, "test", images.images, labels)
    with pytest.raises(DatasetError, match="wrong digest"):
        load_dataset("fashion-mnist", ["test"], data=tmp_path)


def test_fashion_mnist_folder_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITSCAN_FASHION_DATA", str(tmp_path))
    assert fashion_data_dir("given") == Path("given")
    assert fashion_data_dir() == tmp_path
    monkeypatch.delenv("DIGITSCAN_FASHION_DATA")
    assert fashion_data_dir() == Path("/usr/share/datasets/fashion-mnist")


def test_evaluate_a_fashion_model_on_the_fashion_test_split(tmp_path):
    torch.manual_seed(0)
    model = save_checkpoint(tmp_path / "untrained.safetensors", build_model("mlp").eval(),
                            {"arch": "mlp", "arch_kwargs": {}, "classes": FASHION_CLASSES, "preprocess": "robust"})
    result = run("evaluate", "--model", model, "--dataset", "fashion-mnist", "--data", FASHION_TEST_DIR,
                 "--out", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    assert "n=10000" in result.stdout and "Ankle boot" in result.stdout
    assert (tmp_path / "plots" / "confusion_matrix.png").exists()


# ---------------------------------------------------------------------------------------------- idx:DIR


def test_idx_folder_with_class_names(tmp_path):
    rng = np.random.default_rng(0)
    write_split(tmp_path, "train", rng.integers(0, 256, (9, 28, 28), dtype=np.uint8), np.arange(9, dtype=np.uint8) % 3)
    write_split(tmp_path, "test", rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.arange(3, dtype=np.uint8))
    assert load_dataset(f"idx:{tmp_path}", ["train"]).classes == ["0", "1", "2"]  # no classes.txt: 0..max label

    (tmp_path / "classes.txt").write_text("alpha\nbeta\ngamma\n")
    dataset = load_dataset(f"idx:{tmp_path}", ["train", "test"])
    assert dataset.classes == ["alpha", "beta", "gamma"] and dataset.test.labels.tolist() == [0, 1, 2]
    assert set(dataset.sha256) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                   "t10k-labels-idx1-ubyte"}

    (tmp_path / "classes.txt").write_text("alpha\nbeta\n")
    with pytest.raises(DatasetError, match="label 2 out of range 0..1"):
        load_dataset(f"idx:{tmp_path}", ["train"])


# ---------------------------------------------------------------------------------------------- --init


def test_init_starts_from_the_checkpoint_and_records_it(shapes_model, tmp_path):
    root, model = shapes_model
    out = tmp_path / "tuned.safetensors"
    # lr 0: the weights cannot move, so the result must be the --init checkpoint's own weights.
    result = run("train", "--arch", "easy", "--dataset", f"folder:{root}", "--epochs", 1, "--lr", 0, "--init", model,
                 "--threads", 1, "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    tuned, source = load_checkpoint(out), load_checkpoint(model)
    for name, tensor in source.model.state_dict().items():
        assert torch.equal(tuned.model.state_dict()[name], tensor), name
    assert tuned.meta["init"] == {"checkpoint": str(model), "sha256": sha256_file(model), "classes": source.classes}


@pytest.mark.parametrize("args, message", [
    (["--arch", "paper"], "--init needs a 'paper' checkpoint (this run's --arch), this one is 'easy'"),
    (["--arch", "easy", "--dataset", "mnist"], "--init checkpoint has 3 classes, dataset mnist has 10"),
])
def test_init_must_match_arch_and_class_count(shapes_model, mnist_dir, tmp_path, args, message):
    _, model = shapes_model
    result = run("train", *args, "--init", model, "--data", mnist_dir, "--epochs", 1, "--limit", 64,
                 "--out", tmp_path / "m.safetensors")
    assert result.exit_code == 1 and message in result.stderr, result.output
