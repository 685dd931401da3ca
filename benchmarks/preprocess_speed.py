"""Preprocessing speed: milliseconds per image from the file's bytes to the model's 28x28 input, by image size.

Run: `.venv/bin/python benchmarks/preprocess_speed.py` (about 2 minutes on 2 cores; needs DIGITSCAN_DATA). Images
are MNIST *test* digits photographed by digitscan.synthetic.photos ("mixed" conditions; "huge-image" for 12 MP),
encoded as the condition draws (PNG, JPEG, ...): 28x28 PNG files of the digits themselves, ~200 px and 520 px
photos, and 4000x3000 JPEG photos. Each image is timed as decode (`decode_for_digit`, as `predict` decodes a file) and
prepare (`to_model_input`) separately, the best of --repeats runs each (the least disturbed by other processes),
and the median over the images is reported.

Before/after in one run: `--baseline REV` (default: the commit before the fast path, 576076d) loads that revision's
src/digitscan/image/ modules from git into a private package and times them on the same images, interleaved with
the current code (its decode is always at full size, as 576076d's predict decoded: for a later revision, whose
predict decoded big JPEGs reduced, compare the prepare columns only); the paper pipeline (grayscale + bilinear
resize, no ink finding) is the floor. Also reported: how often the current and the baseline inputs give the shipped
model the same answer on these images.
Writes benchmarks/results/preprocess_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

from common import baseline_image_package, machine, machine_line, markdown_table, write_results
from digitscan.constants import PREDICT_DECODE_SIDE
from digitscan.data.mnist import load_mnist
from digitscan.image.prepare import decode_for_digit, to_model_input
from digitscan.recognize import Recognizer
from digitscan.synthetic.photos import CONDITIONS, glyph_from_mnist, photograph

BASELINE = "576076d"  # main just before the coarse-to-fine ink finder (issue 17)
SIZES = {"28 px": (28, "mixed"), "~200 px": (200, "mixed"), "520 px": (520, "mixed"), "12 MP": (3000, "huge-image")}


def photos(label: str, n: int, rng: np.random.Generator) -> list[bytes]:
    images, _ = load_mnist("test")
    height, condition = SIZES[label]
    chosen = rng.choice(len(images), n, replace=False)
    if label == "28 px":
        import io

        from PIL import Image

        files = []
        for i in chosen:
            buffer = io.BytesIO()
            Image.fromarray(images[i]).save(buffer, "PNG")
            files.append(buffer.getvalue())
        return files
    drawn = replace(CONDITIONS[condition], image_height=(height, height))
    if label == "12 MP":  # 4000 x 3000, the size of a phone camera's photo
        drawn = replace(drawn, height_fraction=(0.2, 0.6))
    return [photograph(glyph_from_mnist(images[i]), drawn, rng) for i in chosen]


def best_ms(function, argument, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(argument)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=60, help="images per size (12 MP: a tenth of it, at least 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per image; the best one counts")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the code to compare with")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    old = baseline_image_package(args.baseline)
    recognizer = Recognizer.load()
    rng = np.random.default_rng(args.seed)
    rows, results = [], []
    for label in SIZES:
        files = photos(label, args.n if label != "12 MP" else max(4, args.n // 10), rng)
        times = {key: [] for key in ("decode", "prepare", "old_decode", "old_prepare", "paper")}
        same = 0
        shapes = []
        for data in files:
            ms, gray = best_ms(decode_for_digit, data, args.repeats)
            times["decode"].append(ms)
            ms, new_input = best_ms(to_model_input, gray, args.repeats)
            times["prepare"].append(ms)
            ms, old_gray = best_ms(old["decode"].decode_image, data, args.repeats)
            times["old_decode"].append(ms)
            ms, old_input = best_ms(old["prepare"].to_model_input, old_gray, args.repeats)
            times["old_prepare"].append(ms)
            ms, _ = best_ms(lambda g: to_model_input(g, "paper"), old_gray, args.repeats)
            times["paper"].append(ms)
            a, b = recognizer.predict_inputs(np.stack([new_input, old_input]))
            same += (a.digit, a.is_digit) == (b.digit, b.is_digit)
            shapes.append(old_gray.shape)
        median = {key: statistics.median(values) for key, values in times.items()}
        total, old_total = median["decode"] + median["prepare"], median["old_decode"] + median["old_prepare"]
        height, width = (int(statistics.median(s[i] for s in shapes)) for i in (0, 1))
        result = {"size": label, "median_shape": [height, width], "images": len(files), "median_ms": median,
                  "total_ms": total, "baseline_total_ms": old_total, "speedup": old_total / total,
                  "same_answer": same / len(files)}
        results.append(result)
        rows.append([label, f"{width}×{height}", len(files), f"{median['decode']:.2f}", f"{median['prepare']:.2f}",
                     f"**{total:.2f}**", f"{median['old_decode']:.2f}", f"{median['old_prepare']:.2f}",
                     f"{old_total:.2f}", f"×{old_total / total:.1f}", f"{median['paper']:.2f}",
                     f"{same}/{len(files)}"])
        print(rows[-1], flush=True)
    info = machine()
    markdown = "\n".join([
        markdown_table(["images", "median size", "n", "decode ms", "prepare ms", "total ms",
                        f"{args.baseline} decode", f"{args.baseline} prepare", f"{args.baseline} total", "speed-up",
                        "paper pipeline ms", "same answer"], rows), "",
        "Median over the images of the best of "
        f"{args.repeats} runs, in milliseconds, from the file's bytes: decode = `decode_for_digit` as `predict` "
        f"calls it (a JPEG at the smallest DCT scale that keeps {PREDICT_DECODE_SIDE} px), prepare = "
        "`to_model_input` (robust). The "
        f"baseline columns run the image modules of {args.baseline} on the same files in the same run, decoding at "
        "full size; the paper "
        "pipeline (grey + resize, no ink finding) is the floor. Same answer: the shipped model's digit and "
        "accept/reject agree on the two inputs.",
        machine_line(info),
        f"Command: `.venv/bin/python benchmarks/preprocess_speed.py --n {args.n} --repeats {args.repeats}`",
    ])
    write_results("preprocess_speed", {"machine": info, "args": vars(args), "sizes": results}, markdown)


if __name__ == "__main__":
    main()
