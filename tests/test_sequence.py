"""The line reader (digitscan.reading.line_reader, digitscan.training.line_reader): strips, CTC decoding, the
shipped reader on
photographed numbers of MNIST test digits, and a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitscan.errors import CheckpointError
from digitscan.image.decode import decode_image
from digitscan.models.architectures import LineReader, build_model
from digitscan.models.checkpoint import load_checkpoint, save_checkpoint, shipped_path
from digitscan.reading.line_reader import (
    BLANK,
    DIGIT_PIXELS,
    LINE_HEIGHT,
    STRIDE,
    decode,
    line_input,
    load_reader,
    read_line,
    reader_backend,
)
from digitscan.synthetic.photos import Condition, photograph
from digitscan.synthetic.strokes import render_number, stroke_digit
from digitscan.training.line_reader import (
    CLASSES,
    Lines,
    ReaderConfig,
    _batches,
    _distort,
    _initialize,
    evaluate,
    train_reader,
)

# Like the benchmark's numbers (benchmarks/realworld.py), from MNIST test digits.
PHOTO = Condition("a number photographed", inks=("black", "blue", "pencil"), papers=("white", "tinted", "grey"),
                  height_fraction=(0.3, 0.8), image_height=(120, 400), rotation_deg=2.0, lighting=0.4,
                  noise=(0.0, 8.0), blur=(0.0, 0.3), jpeg_quality=(60, 95), encodings=("png", "jpeg"), each=0.5)


@pytest.fixture(scope="module")
def reader():
    return reader_backend()  # the shipped ONNX export on onnxruntime, what `digitscan read` runs


def photographed_numbers(images, labels, count: int, seed: int, **style):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        chosen = rng.choice(len(images), int(rng.integers(1, 13)), replace=False)
        image, _ = render_number([images[i] for i in chosen], seed=int(rng.integers(2**31)), digit_height=40,
                                     ink=(255, 255, 255), paper=(0, 0, 0), margin=0.1, **style)
        coverage = np.asarray(image.convert("L"), np.float32) / 255
        yield photograph(coverage, PHOTO, rng), "".join(str(labels[i]) for i in chosen)


def test_the_strip_holds_digits_as_tall_as_mnist_ones():
    image, _ = render_number([stroke_digit(d, seed=d) for d in (3, 1, 4)], seed=0, digit_height=90)
    line = line_input(decode_image(image))
    assert line.strip.shape[0] == LINE_HEIGHT and line.strip.shape[1] % STRIDE == 0
    assert line.strip.dtype == np.float32 and line.strip.max() == pytest.approx(1.0)
    rows = np.flatnonzero(line.strip.max(axis=1) > 0.3)
    assert abs((rows[-1] - rows[0] + 1) - DIGIT_PIXELS) <= 3
    assert line_input(np.ones((60, 200), np.float32)) is None  # no ink


def test_decoding_merges_repeats_and_drops_blanks():
    frames = [BLANK, 1, 1, BLANK, 1, 7, 7, BLANK]  # "1", "1", "7": a blank between the two 1s keeps them apart
    probs = np.full((len(frames), BLANK + 1), 0.01)
    for t, label in enumerate(frames):
        probs[t, label] = 0.9
    probs[2, 1] = 0.95
    emitted = decode(np.log(probs))
    assert [e.symbol for e in emitted] == ["1", "1", "7"]
    assert (emitted[0].first, emitted[0].last, emitted[2].first, emitted[2].last) == (1, 2, 5, 6)
    assert emitted[0].confidence == pytest.approx(0.95)


@pytest.mark.slow
def test_the_shipped_reader_reads_photographed_test_numbers(reader, mnist_test):
    images, labels = mnist_test
    samples = list(photographed_numbers(images, labels, 40, seed=11))
    read = ["".join(s.symbol for s in read_line(reader, decode_image(data))) for data, _ in samples]
    exact = sum(r == truth for r, (_, truth) in zip(read, samples))
    assert exact >= 36, [(r, truth) for r, (_, truth) in zip(read, samples) if r != truth]


def test_touching_test_digits_are_read(reader, mnist_test):
    images, labels = mnist_test
    samples = list(photographed_numbers(images, labels, 20, seed=12, spacing=(-0.1, 0.0)))
    exact = sum("".join(s.symbol for s in read_line(reader, decode_image(data))) == truth
                for data, truth in samples)
    assert exact >= 16


def test_each_digit_gets_the_box_of_its_own_ink(reader, mnist_test):
    images, labels = mnist_test
    picks = [3, 2, 1, 18, 4]  # 0, 1, 2, 3, 4
    image, boxes = render_number([images[i] for i in picks], seed=1, digit_height=48, spacing=(0.3, 0.5))
    found = read_line(reader, decode_image(image))
    assert "".join(s.symbol for s in found) == "".join(str(labels[i]) for i in picks)
    for digit, (x, y, w, h) in zip(found, boxes):
        fx, fy, fw, fh = digit.box
        assert fx <= x + w / 2 <= fx + fw and fy <= y + h / 2 <= fy + fh  # the true centre is inside
        assert fw <= 1.6 * w and fh <= 1.3 * h
        assert 0 < digit.confidence <= 1


def test_a_classifier_is_not_a_line_reader():
    with pytest.raises(CheckpointError, match="not a line reader"):
        load_reader(shipped_path())


def test_a_tiny_training_run_saves_a_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITSCAN_CACHE", str(tmp_path / "mnist"))
    config = ReaderConfig(lines=24, val_lines=8, epochs=1, batch_size=8)
    model, meta = train_reader(config, tmp_path / "reader.safetensors", workers=1, progress=False)
    assert list((tmp_path / "lines").glob("lines-*.safetensors"))  # the lines are cached
    loaded = load_reader(tmp_path / "reader.safetensors")
    assert loaded.meta["arch"] == "line-reader" and len(loaded.meta["history"]) == 1
    assert loaded.meta["init"]["layers"] == "all (last layer by class)"
    assert loaded.meta["classes"] == CLASSES and loaded.meta["input"]["small_marks"] is True
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name])
    assert 0.0 <= meta["metrics"]["val_lines_exact"] <= 1.0


def test_a_reader_starts_from_the_shipped_reader_with_its_digits_and_blank_in_place(tmp_path):
    shipped = load_reader()
    model = LineReader(num_classes=len(CLASSES))
    fresh = model.state_dict()["head.weight"].clone()
    init = _initialize(model, "shipped-reader")
    assert init["layers"] == "all (last layer by class)"
    head, old = model.state_dict()["head.weight"], shipped.model.state_dict()["head.weight"]
    for row, name in enumerate(shipped.meta["classes"]):
        assert torch.equal(head[CLASSES.index(name)], old[row])  # "blank" moves from row 10 to the last row
    for name in set(CLASSES) - set(shipped.meta["classes"]):
        assert torch.equal(head[CLASSES.index(name)], fresh[CLASSES.index(name)])  # new classes start fresh
    assert torch.equal(model.state_dict()["context.0.weight"], shipped.model.state_dict()["context.0.weight"])
    dsnet = build_model("dsnet")
    path = save_checkpoint(tmp_path / "dsnet.safetensors", dsnet, {**load_checkpoint(shipped_path()).meta,
                                                                    "arch": "dsnet"})
    classifier = LineReader(num_classes=len(CLASSES))
    assert _initialize(classifier, str(path))["layers"] == "trunk"  # a dsnet's first layers are the trunk
    assert torch.equal(classifier.state_dict()["trunk.0.0.weight"], dsnet.state_dict()["0.0.weight"])
    with pytest.raises(ValueError, match="not the reader's trunk"):
        _initialize(LineReader(num_classes=len(CLASSES)), "shipped")  # the shipped digit model is dsnet-l
    with pytest.raises(ValueError, match="not from 'dsnet-l'"):
        _initialize(LineReader(num_classes=len(CLASSES)), str(shipped_path()))


def test_batches_pad_to_a_few_widths_and_count_frames():
    strips = [np.full((LINE_HEIGHT, w), 200, np.uint8) for w in (40, 44, 100, 128)]
    lines = Lines(strips, ["1", "2", "34", "567"])
    seen = []
    for group, x, frames in _batches(lines, 2, None):
        assert x.shape[3] % 32 == 0 and x.shape[2] == LINE_HEIGHT
        assert frames == [strips[i].shape[1] // STRIDE for i in group]
        seen += list(group)
    assert sorted(seen) == [0, 1, 2, 3]
    loss, exact = evaluate(load_reader().model, lines)  # blocks of ink are no digits
    assert np.isfinite(loss) and exact <= 0.5


def test_training_distortion_stretches_and_slants_whole_frames():
    bar = np.zeros((LINE_HEIGHT, 40), np.uint8)
    bar[6:26, 18:21] = 255  # an upright stroke
    lines = Lines([bar] * 50, ["1"] * 50)
    assert _distort(lines, 0.0, 0.0, np.random.default_rng(0)) is lines
    distorted = _distort(lines, 0.2, 0.25, np.random.default_rng(0))
    assert distorted.texts == lines.texts
    widths = {strip.shape[1] for strip in distorted.strips}
    assert all(w % STRIDE == 0 and 32 <= w <= 48 for w in widths) and len(widths) > 1
    leans = [np.nonzero(s[25])[0].mean() - np.nonzero(s[6])[0].mean() for s in distorted.strips]
    assert min(leans) < -2 and max(leans) > 2  # slanted both ways, top and bottom rows moved apart


def test_a_recognizer_reads_with_the_line_reader_unless_a_digit_model_was_chosen():
    from digitscan.recognize import Recognizer

    assert Recognizer.load().read_method == "sequence"
    assert Recognizer.load(shipped_path()).read_method == "segments"  # your model reads your numbers
    assert Recognizer.load(ensemble=True).read_method == "segments"
    with pytest.raises(ValueError, match="unknown reading method"):
        Recognizer.load().read(np.ones((20, 20), np.float32), method="magic")


