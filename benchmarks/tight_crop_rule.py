"""The ink finder's tight-crop rule, an older revision's against today's, on TRAINING data only (what chose it).

Two sets, each prepared by the image modules of --baseline REV (loaded from git, as preprocess_speed.py does) and by
today's, in one run, and read by one model (default: the shipped one):
- photos of MNIST *training* digits, N per photo condition (digitscan.synthetic.photos; synthetic): how often the
  rule fires, and how many are read right and accepted;
- tight crops of MNIST *training* digits made like benchmarks/real_handwriting.py's (scale 1-6x, either polarity,
  grey or binarized): exact, and inputs where no ink was found.
The real-handwriting figures (realdev test writers, MNIST test crops) are benchmarks/real_handwriting.py's. The
default baseline is caeebc3, before narrow frames ("1"s) and faint or thresholded outer ink got their own rules;
session 7's guards were measured the same way against d3303d1's constants (docs/real-world.md).

Run: `.venv/bin/python benchmarks/tight_crop_rule.py [--n 60] [--baseline REV] [--model CKPT]` (about 2 minutes on
2 cores). Writes benchmarks/results/tight_crop_rule.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import baseline_image_package, machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.constants import WORK_SIDE  # noqa: E402
from digitscan.data.mnist import load_mnist  # noqa: E402
from digitscan.image import ink, prepare  # noqa: E402
from digitscan.image.decode import decode_image  # noqa: E402
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.photos import CONDITIONS, glyph_from_mnist, photograph  # noqa: E402
from digitscan.synthetic.scans import tight_crop  # noqa: E402

BASELINE = "caeebc3"


def fires(ink_module, gray: np.ndarray) -> bool:
    work = ink_module._downscale(gray, WORK_SIDE)[0]
    return ink_module._tight_crop_ground(work, max(work.shape) < ink_module._TINY_SIDE) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="photos per condition (default 60)")
    parser.add_argument("--crops", type=int, default=1000, help="tight crops (default 1000)")
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    args = parser.parse_args()
    old = baseline_image_package(args.baseline)
    recognizer = Recognizer.load(args.model)
    images, labels = load_mnist("train")

    photos = {}
    for k, (name, condition) in enumerate(CONDITIONS.items()):
        if name == "huge-image":  # 3000-4000 px: the rule works on the downscaled copy anyway
            condition = replace(condition, image_height=(600, 600))
        rng = np.random.default_rng([1, k])
        chosen = rng.choice(50_000, args.n, replace=False)
        photos[name] = ([decode_image(photograph(glyph_from_mnist(images[i]), condition, rng)) for i in chosen],
                        labels[chosen])
    rng = np.random.default_rng([5, 15])
    chosen = rng.choice(50_000, args.crops, replace=False)
    crops = [tight_crop(images[i], int(rng.integers(1, 7)), str(rng.choice(["light on dark", "dark on light"])),
                        str(rng.choice(["grey", "binarized"])), cv2.INTER_NEAREST if rng.random() < 0.5 else
                        cv2.INTER_AREA) for i in chosen]

    rows, results = [], {}
    for tag, ink_module, prepare_module in ((args.baseline, old["ink"], old["prepare"]), ("current", ink, prepare)):
        fired = right = total = 0
        for grays, truth in photos.values():
            fired += sum(fires(ink_module, gray) for gray in grays)
            inputs = np.stack([prepare_module.to_model_input(gray) for gray in grays])
            predictions = recognizer.predict_inputs(inputs)
            right += sum(p.is_digit and p.digit == t for p, t in zip(predictions, truth))
            total += len(grays)
        inputs = np.stack([prepare_module.to_model_input(crop) for crop in crops])
        predictions = recognizer.predict_inputs(inputs)
        exact = float(np.mean([p.is_digit and p.digit == t for p, t in zip(predictions, labels[chosen])]))
        empty = float((inputs.reshape(len(inputs), -1).max(axis=1) == 0).mean())
        results[tag] = {"photos": total, "rule_fired": int(fired), "photos_right": int(right), "crops_exact": exact,
                        "crops_no_ink": empty}
        rows.append([tag, f"{fired} of {total}", f"{right} of {total}", f"{exact:.3f}", f"{empty:.3f}"])
        print(rows[-1], flush=True)
    info = machine()
    markdown = "\n\n".join([
        f"Tight-crop rule, MNIST training digits (synthetic photos: {args.n} per condition; {args.crops} tight crops); "
        f"model: {recognizer.name}. {machine_line(info)}.",
        markdown_table(["code", "photos where the rule fires", "photos read right and accepted",
                        "tight crops exact", "tight crops without ink found"], rows)])
    write_results("tight_crop_rule", {"machine": info, "args": vars(args), "results": results}, markdown)


if __name__ == "__main__":
    main()
