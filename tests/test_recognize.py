"""The Python API: Recognizer.load().predict(...) on paths, bytes, PIL images and arrays; blanks are not digits."""


import numpy as np
import pytest
from PIL import Image

from digitscan.errors import UnreadableImageError
from digitscan.synthetic.strokes import render_digit

from helpers import EXAMPLES


def test_every_kind_of_source_gives_the_same_answer(recognizer):
    path = EXAMPLES / "three_blue_pen.png"
    image = Image.open(path)
    results = [recognizer.predict(source) for source in (path, str(path), path.read_bytes(), image, np.asarray(image))]
    assert {r.digit for r in results} == {3}
    assert all(r.is_digit and 0.5 < r.confidence <= 1 for r in results)


@pytest.mark.parametrize("digit", range(10))
def test_synthetic_pen_digits(recognizer, digit):
    image = render_digit(digit, seed=100 + digit, rotation_deg=5, noise=3)
    assert recognizer.predict(image).digit == digit


@pytest.mark.parametrize("blank", [
    np.zeros((28, 28), np.uint8),
    np.full((300, 200), 255, np.uint8),
    np.full((64, 64, 3), (200, 30, 30), np.uint8),
])
def test_blank_images_are_never_digits(recognizer, blank):
    result = recognizer.predict(blank)
    assert result.digit is None and result.is_digit is False
    assert result.to_dict()["digit"] is None and len(result.probabilities) == 10


def test_mnist_arrays_pass_through(recognizer, mnist_test):
    images, labels = mnist_test
    predictions = [recognizer.predict(images[i]).digit for i in range(50)]
    assert np.mean(np.array(predictions) == labels[:50]) >= 0.98


def test_bad_input_raises_image_error(recognizer):
    with pytest.raises(UnreadableImageError):
        recognizer.predict(b"")


def test_to_dict_has_the_interface_fields(recognizer):
    data = recognizer.predict(EXAMPLES / "five_canvas.png").to_dict()
    assert set(data) == {"digit", "confidence", "is_digit", "probabilities"}


def test_the_not_a_digit_rule_reads_the_top_logit_when_the_model_has_one():
    """--realworld models (pools v9 on) reject by their top logit; ensembles and older models by the probability."""
    from digitscan.recognize import Recognizer

    logits = np.array([[4.0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # sure and strong
                       [0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # a weak top logit
                       [2.0, 1.8, 1.8, 1.8, 1.8, 1.8, 1.8, 1.8, 1.8, 1.8]])  # strong but unsure
    inputs = np.ones((3, 28, 28), np.float32)
    meta = {"classes": [str(d) for d in range(10)], "temperature": 1.0, "reject_threshold": 0.3}
    by_probability = Recognizer(lambda x: logits, meta, "model.safetensors").predict_inputs(inputs)
    assert [p.is_digit for p in by_probability] == [True, False, False]
    by_logit = Recognizer(lambda x: logits, {**meta, "reject_logit_threshold": 1.5}, "m").predict_inputs(inputs)
    assert [p.is_digit for p in by_logit] == [True, False, True]
    assert by_logit[2].confidence == by_probability[2].confidence  # confidence is the probability either way


def test_the_shipped_ensemble_rejects_by_probability():
    from digitscan.models.checkpoint import load_checkpoint, load_ensemble

    assert "reject_logit_threshold" in load_checkpoint().meta
    meta = load_ensemble().meta
    assert "reject_logit_threshold" not in meta and 0 < meta["reject_threshold"] < 1
