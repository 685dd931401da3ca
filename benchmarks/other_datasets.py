"""The shipped architecture trained on Fashion-MNIST: test accuracy, per-class numbers, and what `predict` makes of it.

Run: `.venv/bin/python benchmarks/other_datasets.py [--epochs 15] [--reuse]` (needs the Debian package
dataset-fashion-mnist or $DIGITSCAN_FASHION_DATA; 15 epochs take ~2 min on 2 idle cores). Trains
`digitscan train --arch dsnet --dataset fashion-mnist` with the dsnet recipe (no augmentation: the handwriting one is
for digits), keeping the epoch with the best validation accuracy (10 % of the training split); then tests on the
10,000 test images, which choose nothing. Last, the first 1,000 test images go through `Recognizer` as `digitscan
predict` would, with each preprocessing mode: as they are (28x28, bright on dark) and drawn as 112x112 photos of dark
clothes on white. --reuse evaluates the checkpoint a previous run left in benchmarks/results/ instead of training.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from common import RESULTS, machine, machine_line, markdown_table, write_results
from digitscan.constants import PREPROCESS_MODES
from digitscan.data.datasets import load_dataset
from digitscan.models.architectures import SHIPPED_ARCH
from digitscan.models.checkpoint import load_checkpoint
from digitscan.models.inference import infer
from digitscan.recognize import Recognizer
from digitscan.training.classifier import make_config, train
from digitscan.training.evaluate import metrics

CHECKPOINT = RESULTS / "fashion-dsnet.safetensors"
THROUGH_PREDICT = 1000
PHOTO_SIDE = 112


def as_photo(image: np.ndarray) -> Image.Image:
    """A 28x28 bright-on-dark test image as a product photo: dark garment on white, 4x larger."""
    return Image.fromarray(255 - image).resize((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.BICUBIC)


def predict_accuracy(mode: str, inputs: list, labels: np.ndarray) -> float:
    recognizer = Recognizer.load(CHECKPOINT, preprocess=mode)
    return float(np.mean([recognizer.predict(x).label == recognizer.classes[y] for x, y in zip(inputs, labels)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, help="epochs (default: the dsnet recipe's 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="evaluate the checkpoint of a previous run")
    args = parser.parse_args()

    if args.reuse:
        meta = load_checkpoint(CHECKPOINT).meta
        config, history, best_epoch = meta["train_config"], meta["history"], meta["metrics"]["epoch"]
    else:
        run_config = make_config(SHIPPED_ARCH, dataset="fashion-mnist", epochs=args.epochs, seed=args.seed)
        result = train(run_config, CHECKPOINT, progress=False, on_epoch=lambda r: print(r, flush=True))
        config, history, best_epoch = run_config.__dict__, result.history, result.best_epoch
    model = load_checkpoint(CHECKPOINT).model

    fashion = load_dataset("fashion-mnist", ["test"])
    images, labels = fashion.test.images, fashion.test.labels
    test = metrics(infer(model, images), labels)
    n = THROUGH_PREDICT
    forms = {"the test images as they are (28x28, bright on dark)": list(images[:n]),
             f"drawn as {PHOTO_SIDE}x{PHOTO_SIDE} photos, dark on white": [as_photo(x) for x in images[:n]]}
    through_predict = {form: {mode: predict_accuracy(mode, inputs, labels[:n]) for mode in PREPROCESS_MODES}
                       for form, inputs in forms.items()}

    best = history[best_epoch - 1]
    info = machine()
    command = f"`.venv/bin/python benchmarks/other_datasets.py --epochs {config['epochs']}`"
    markdown = "\n".join([
        f"dsnet on Fashion-MNIST, {config['epochs']} epochs (epoch {best_epoch} kept by validation accuracy "
        f"{best['val_accuracy']:.2%}): **test accuracy {test['accuracy']:.2%}** "
        f"({round((1 - test['accuracy']) * len(labels))} errors in {len(labels):,}), trained in "
        f"{history[-1]['elapsed_s']:.0f} s.", "",
        markdown_table(["class", "precision", "recall", "F1", "test images"],
                       [[fashion.classes[row["class"]], f"{row['precision']:.2%}", f"{row['recall']:.2%}",
                         f"{row['f1']:.2%}", row["support"]] for row in test["per_class"]]), "",
        f"Through `Recognizer` (as `digitscan predict`), the first {n:,} test images:", "",
        markdown_table(["input", *(f"`--preprocess {mode}`" for mode in PREPROCESS_MODES)],
                       [[form, *(f"{acc:.2%}" for acc in accuracy.values())]
                        for form, accuracy in through_predict.items()]), "",
        machine_line(info),
        f"Command: {command}" + (" (evaluation rerun with `--reuse`)" if args.reuse else ""),
    ])
    write_results("other_datasets", {"machine": info, "config": config, "history": history, "best_epoch": best_epoch,
                                     "test": test, "through_predict": through_predict}, markdown)


if __name__ == "__main__":
    main()
