"""Real handwriting by other people: scanned digits that nobody on this project wrote, and MNIST digits cropped tight.

Per source, the shipped model (Recognizer.load()) through the robust preprocessing and, beside it, through the
paper's pipeline (preprocess="paper"): exact accuracy (a rejection counts as an error), the share accepted as a
digit, accuracy among the accepted, balanced exact accuracy (the mean over the ten classes; USPS is imbalanced),
and n. Sources:
- the TEST split of each realdev set (digitscan.data.realdev: writer-disjoint; fine-tuning learns from the train
  split and chooses its not-a-digit threshold on the validation split, never on this one): USPS 16x16 grey, CVL
  28x28 dark on light, optdigits 32x32 binary;
- tight crops of MNIST *test* digits: each digit cropped to its ink's bounding box, scaled 1-6x (nearest or area
  resize), light on dark or dark on light, grey or binarized, one variant per digit drawn with the seed;
- the same tight crops of the CVL test writers' digits (their paper subtracted first, binarized at Otsu's threshold:
  CVL's 28x28 images have a margin, unlike USPS's and optdigits', which fill their box already);
- scikit-learn's bundled `load_digits` (8x8, 0..16): EVALUATION ONLY, never tune on it;
- and, to show what the rejection rule does to things that are not digits in the same form: Fashion-MNIST *test*
  pictures cropped tight the same way, and letters in the *evaluation* handwriting fonts (never trained on) scanned
  by digitscan.synthetic.scans (tight, tiny, box-normalised, binarized) -- "accepted" is the share wrongly taken for
  a digit.
Photos (synthetic nuisances, desks, non-digits) are benchmarks/realworld.py's job and are not repeated here.

Run: `.venv/bin/python benchmarks/real_handwriting.py` (about a minute on 2 CPU cores with the default --n 1000 per
source, subsampled with --seed). Needs MNIST ($DIGITSCAN_DATA) and realdev ($DIGITSCAN_REALDEV or
../shared/data/realdev). Writes benchmarks/results/real_handwriting.{json,md}; `--failures K` prints K rejected or
misread tight crops per variant (for diagnosis); `--errors K` draws the model inputs of K failures per source
in benchmarks/results/real_handwriting_errors.png (the model card's picture of typical errors).
`--ensemble` measures the shipped ensemble instead of the shipped model (results named real_handwriting[-validation]
-ensemble). Beside each realdev set's figures the markdown lists its most common failures (true digit read as
which), the sign of a writing style the training writers lack.
`--split validation` reads what choices are made on instead (such as `train --real-weight` and the grey edges
given to black-and-white patches): the realdev validation writers, tight crops of MNIST *validation* digits (the
validation part of the training split), letters in the *development* fonts; load_digits and the Fashion-MNIST test
crops do not change. It writes benchmarks/results/real_handwriting-validation.{json,md}. `--raw-binary` feeds
black-and-white patches to the model without the grey edges the preprocessing gives them (as before commit
4d445ba), to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.data.datasets import load_fashion_mnist  # noqa: E402
from digitscan.data.mnist import load_mnist, train_val_split  # noqa: E402
from digitscan.data.realdev import REALDEV_SETS, load_realdev  # noqa: E402
from digitscan.image import prepare  # noqa: E402
from digitscan.image.prepare import to_model_input  # noqa: E402
from digitscan.plots import save_misclassified_grid  # noqa: E402
from digitscan.recognize import Recognizer  # noqa: E402
from digitscan.synthetic.nondigits import letter_glyph  # noqa: E402
from digitscan.synthetic.photos import font_split  # noqa: E402
from digitscan.synthetic.scans import ink_glyph, scan, tight_crop  # noqa: E402

SCALES = (1, 2, 3, 4, 5, 6)
POLARITIES = ("light on dark", "dark on light")
INKS = ("grey", "binarized")


def tight_crops(n: int, seed: int, split: str = "test") -> tuple[list[np.ndarray], np.ndarray, list[tuple]]:
    """(images, labels, variants): n MNIST test digits (split "validation": the validation part of the training
    split), each in one variant (scale, polarity, ink) drawn with seed."""
    if split == "test":
        images, labels = load_mnist("test")
    else:
        images, labels = load_mnist("train")
        _, val = train_val_split(len(images), 0.1, 0)
        images, labels = images[val], labels[val]
    rng = np.random.default_rng([seed, 15])
    chosen = rng.choice(len(images), n, replace=False)
    crops, variants = [], []
    for i in chosen:
        scale, polarity, ink = int(rng.choice(SCALES)), str(rng.choice(POLARITIES)), str(rng.choice(INKS))
        resize = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_AREA
        crops.append(tight_crop(images[i], scale, polarity, ink, resize))
        variants.append((scale, polarity, ink))
    return crops, labels[chosen], variants


def realdev_tight_crops(images: list, seed: int) -> list[np.ndarray]:
    """Realdev scans (float, 1.0 = white paper) cropped tight like tight_crops: the ink measured against the
    paper (digitscan.synthetic.scans.ink_glyph), then cropped, scaled, maybe inverted, and binarized the way a
    scanner does it, at Otsu's threshold (CVL's pen is faint and uneven: a fixed half-way cut erases strokes)."""
    rng = np.random.default_rng([seed, 17])
    crops = []
    for image in images:
        scale, polarity, ink = int(rng.choice(SCALES)), str(rng.choice(POLARITIES)), str(rng.choice(INKS))
        resize = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_AREA
        crop = tight_crop(np.round(255 * ink_glyph(image)).astype(np.uint8), scale, polarity, "grey", resize)
        if ink == "binarized":
            crop = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]
        crops.append(crop)
    return crops


def nondigit_crops(n: int, seed: int, split: str = "test") -> dict[str, list[np.ndarray]]:
    """Non-digits in the form of the digit sources: tight crops of Fashion-MNIST test pictures (as tight_crops
    makes them) and scans of letters in the evaluation fonts (split "validation": the development fonts)."""
    fashion = load_fashion_mnist(["test"]).test.images
    rng = np.random.default_rng([seed, 16])
    crops = []
    for i in rng.choice(len(fashion), n, replace=False):
        resize = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_AREA
        crops.append(tight_crop(fashion[i], int(rng.choice(SCALES)), str(rng.choice(POLARITIES)),
                                str(rng.choice(INKS)), resize))
    fonts = font_split().evaluation if split == "test" else font_split().dev
    letters = [scan(letter_glyph(rng, fonts), rng) for _ in range(n)]
    family = "evaluation" if split == "test" else "development"
    return {"Fashion-MNIST test, tight crops": crops, f"letters ({family} fonts), scanned": letters}


def sklearn_digits() -> tuple[list[np.ndarray], np.ndarray]:
    """scikit-learn's bundled 8x8 digits, 0..16 with ink high: float32 in [0, 1], ink bright (evaluation only)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return [(image / 16).astype(np.float32) for image in digits.images], digits.target.astype(np.int64)


def subsample(images: list, labels: np.ndarray, n: int, seed: int, salt: int) -> tuple[list, np.ndarray]:
    if len(images) <= n:
        return images, labels
    chosen = np.sort(np.random.default_rng([seed, salt]).choice(len(images), n, replace=False))
    return [images[i] for i in chosen], labels[chosen]


def outcomes(recognizer: Recognizer, images: list, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(top digit, accepted, confidence, model input) per image, through preprocessing `mode`."""
    inputs = np.stack([to_model_input(image, mode) for image in images])
    predictions = recognizer.predict_inputs(inputs)
    return (np.array([int(np.argmax(p.probabilities)) for p in predictions]),
            np.array([p.is_digit for p in predictions]), np.array([p.confidence for p in predictions]), inputs)


def error_grid(failures: list[tuple], path: Path) -> Path:
    """A PNG of the model inputs of failed reads (source, true, top, confidence, accepted, input), per source."""
    return save_misclassified_grid(
        np.stack([f[5] for f in failures]), np.array([f[1] for f in failures]), np.array([f[2] for f in failures]),
        path, confidences=np.array([f[3] for f in failures]), max_images=len(failures),
        captions=[f"{f[0]}{'' if f[4] else ', rejected'}" for f in failures],
        title="Real handwriting: misread or rejected (the model's input)")


def scores(top: np.ndarray, accepted: np.ndarray, labels: np.ndarray) -> dict:
    exact = (top == labels) & accepted
    return {"n": int(len(labels)), "exact": float(exact.mean()), "accepted": float(accepted.mean()),
            "accuracy_accepted": float((top == labels)[accepted].mean()) if accepted.any() else 0.0,
            "balanced_exact": float(np.mean([exact[labels == d].mean() for d in np.unique(labels)]))}


def row(name: str, robust: dict, paper: dict) -> list:
    return [name, robust["n"], f"{robust['exact']:.3f}", f"{robust['accepted']:.3f}",
            f"{robust['accuracy_accepted']:.3f}", f"{robust['balanced_exact']:.3f}", f"{paper['exact']:.3f}",
            f"{paper['accepted']:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per source (default 1000; fixed seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--realdev", help="realdev folder (default $DIGITSCAN_REALDEV or ../shared/data/realdev)")
    parser.add_argument("--model", help="checkpoint to measure (default: the shipped model)")
    parser.add_argument("--ensemble", action="store_true",
                        help="measure the shipped ensemble (3 seeds averaged over one-pixel shifts) instead")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="the realdev split read (default test, what is reported; validation is what choices "
                             "are made on; the other sources do not change)")
    parser.add_argument("--failures", type=int, default=0, help="print this many failed tight crops per variant")
    parser.add_argument("--errors", type=int, default=8,
                        help="failures per source drawn in benchmarks/results/real_handwriting_errors.png")
    parser.add_argument("--raw-binary", action="store_true",
                        help="black-and-white patches without the grey edges preprocessing gives them (to compare)")
    args = parser.parse_args()
    if args.raw_binary:
        prepare._soften_binary = lambda patch: patch  # the step 4d445ba added, left out

    if args.ensemble and args.model:
        parser.error("--ensemble measures the shipped ensemble: leave out --model")
    robust_model = Recognizer.load(args.model, ensemble=args.ensemble)
    paper_model = Recognizer.load(args.model, preprocess="paper", ensemble=args.ensemble)
    start = time.perf_counter()
    sources, writers = {}, {}
    for salt, name in enumerate(REALDEV_SETS):
        data = load_realdev(name, args.split, args.realdev)
        pairs, labels = subsample(list(zip(data.images, data.groups)), data.labels, args.n, args.seed, salt)
        sources[f"{name} ({args.split} writers)"] = ([image for image, _ in pairs], labels)
        if name == "cvl_train":  # the only set whose groups are writers
            writers[f"{name} ({args.split} writers)"] = np.array([group for _, group in pairs])
    cvl_images, cvl_labels = sources[f"cvl_train ({args.split} writers)"]
    sources[f"cvl_train ({args.split} writers), tight crops"] = (realdev_tight_crops(cvl_images, args.seed), cvl_labels)
    crops, crop_labels, variants = tight_crops(args.n, args.seed, args.split)
    sources[f"MNIST {args.split}, tight crops"] = (crops, crop_labels)
    sources["sklearn load_digits 8x8"] = subsample(*sklearn_digits(), args.n, args.seed, 10)

    rows, results, crop_outcomes, failures = [], {}, None, []
    for name, (images, labels) in sources.items():
        robust = outcomes(robust_model, images, "robust")
        paper = outcomes(paper_model, images, "paper")
        results[name] = {"robust": scores(*robust[:2], labels), "paper": scores(*paper[:2], labels)}
        top, accepted, confidence, inputs = robust
        if name in writers:  # are the failures spread over the writers or a few writers' hands?
            counts = sorted(Counter(writers[name][~(accepted & (top == labels))].tolist()).items(),
                            key=lambda item: -item[1])
            results[name]["failures_by_writer"] = dict(counts)
            print(f"{name}: failures by writer {counts}", flush=True)
        if name.startswith(REALDEV_SETS):  # which digits are read as which: a style the training writers lack
            wrong = ~(accepted & (top == labels))
            results[name]["confusions"] = dict(Counter(
                f"{truth} read {read}" if ok else f"{truth} rejected"
                for truth, read, ok in zip(labels[wrong], top[wrong], accepted[wrong])).most_common(5))
        failed = np.flatnonzero(~(accepted & (top == labels)))[: args.errors]
        short = name.split(" ")[0].removesuffix("_train").replace("MNIST", "tight crop").replace("sklearn", "8x8")
        short += " crop" if short == "cvl" and name.endswith("tight crops") else ""
        failures += [(short, labels[i], top[i], confidence[i], accepted[i], inputs[i]) for i in failed]
        rows.append(row(name, results[name]["robust"], results[name]["paper"]))
        print(rows[-1], flush=True)
        if name.startswith("MNIST"):
            crop_outcomes = robust

    nondigit_rows, nondigits = [], {}
    for name, images in nondigit_crops(args.n, args.seed, args.split).items():
        accepted = outcomes(robust_model, images, "robust")[1]
        nondigits[name] = {"n": len(images), "accepted": float(accepted.mean())}
        nondigit_rows.append([name, len(images), f"{accepted.mean():.3f}"])
        print(nondigit_rows[-1], flush=True)

    # Tight crops by variant: which scales, polarities and inks lose digits.
    top, accepted = crop_outcomes[:2]
    variant_rows, by_variant = [], {}
    for key, pick in [*((p, [v[1] == p for v in variants]) for p in POLARITIES),
                      *((k, [v[2] == k for v in variants]) for k in INKS),
                      *((f"scale {s}x", [v[0] == s for v in variants]) for s in SCALES)]:
        pick = np.array(pick)
        by_variant[key] = scores(top[pick], accepted[pick], crop_labels[pick])
        variant_rows.append([key, by_variant[key]["n"], f"{by_variant[key]['exact']:.3f}",
                             f"{by_variant[key]['accepted']:.3f}", f"{by_variant[key]['accuracy_accepted']:.3f}"])
    if args.failures:
        for variant in sorted(set(variants)):
            failed = [i for i, v in enumerate(variants) if v == variant
                      and not (accepted[i] and top[i] == crop_labels[i])][: args.failures]
            for i in failed:
                print(f"{variant}: digit {crop_labels[i]} shape {crops[i].shape} -> top {top[i]}, "
                      f"accepted {accepted[i]}")

    info = machine()
    markdown = "\n\n".join([
        f"Real handwriting, seed {args.seed}, at most {args.n} per source; model: "
        f"{'the shipped ensemble' if args.ensemble else robust_model.name}. "
        f"{machine_line(info)}. Total {time.perf_counter() - start:.0f} s.",
        markdown_table(["source", "n", "exact (robust)", "accepted", "accuracy among accepted", "balanced exact",
                        "exact (paper pipeline)", "accepted (paper)"], rows),
        markdown_table(["tight crops by variant (robust)", "n", "exact", "accepted", "accuracy among accepted"],
                       variant_rows),
        markdown_table(["not digits, in the same forms", "n", "accepted as a digit"], nondigit_rows),
        *(f"{name}: {sum(r['failures_by_writer'].values())} failures over {len(r['failures_by_writer'])} of "
          f"{len(set(writers[name].tolist()))} writers; the 3 with most: "
          + ", ".join(f"{w} ({c})" for w, c in list(r["failures_by_writer"].items())[:3])
          for name, r in results.items() if "failures_by_writer" in r),
        "Most common failures: " + "; ".join(
            f"{name}: " + ", ".join(f"{pair} ({count})" for pair, count in r["confusions"].items())
            for name, r in results.items() if r.get("confusions")) + ".",
    ])
    report = "real_handwriting" + ("" if args.split == "test" else "-validation")
    report += "-ensemble" if args.ensemble else ""
    if failures:
        RESULTS.mkdir(parents=True, exist_ok=True)
        print(f"wrote {error_grid(failures, RESULTS / f'{report}_errors.png')}")
    write_results(report, {"machine": info, "args": vars(args), "sources": results, "tight_crop_variants": by_variant,
                           "nondigits": nondigits}, markdown)


if __name__ == "__main__":
    main()
