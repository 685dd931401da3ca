"""Line readers side by side on photographed numbers made from MNIST *validation* digits: for choosing one.

The numbers are made like benchmarks/realworld.py's (its number_samples: four writing styles, 1-12 digits,
photographed), but from the validation digits that no reader or classifier trains on, so a choice made here does
not touch the test split. Every reader reads the same photos through `Recognizer.read` (the whole `digitscan read`
path: ink finder, strip, network, decoding); `segments` stands for cutting into digits with the shipped classifier.

Run: `.venv/bin/python benchmarks/compare_readers.py shipped runs/reader.safetensors` (1,500 numbers by default:
about 4 minutes to make the photos, then 30 s per line reader and 50 s for segments on 2 CPU cores). Writes
benchmarks/results/compare_readers.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.data.mnist import load_mnist, train_val_split  # noqa: E402
from digitscan.recognize import Recognizer  # noqa: E402
from realworld import NUMBER_STYLES, margin_95, number_samples  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("readers", nargs="+", metavar="READER",
                        help="line reader checkpoints; 'shipped' for the shipped one, 'segments' for cutting")
    parser.add_argument("--numbers", type=int, default=1500, help="numbers to read (default 1500)")
    parser.add_argument("--seed", type=int, default=7,
                        help="seed of the numbers (default 7; realworld.py --dev uses 0, --tune-reading 1)")
    args = parser.parse_args()

    images, labels = load_mnist("train")
    _, val_idx = train_val_split(len(images), 0.1, 0)  # the classifier's and the readers' validation digits
    samples = number_samples(images[val_idx], labels[val_idx], args.numbers, args.seed)
    styles = [*NUMBER_STYLES, None]
    rows, summary, first = [], {}, None
    for name in args.readers:
        if name == "segments":
            recognizer, method = Recognizer.load(), "segments"
        else:
            recognizer, method = Recognizer.load(reader=None if name == "shipped" else name), "sequence"
        hits = [recognizer.read(data, method=method).text == truth
                for data, truth, _, _ in tqdm(samples, desc=name, unit="number")]
        by_style = {style or "all": float(np.mean([h for h, s in zip(hits, samples) if style in (None, s[3])]))
                    for style in styles}
        first = hits if first is None else first
        # Paired with the first reader (same photos): numbers only this one reads, and only the first one reads.
        gained = sum(h and not f for h, f in zip(hits, first))
        lost = sum(f and not h for h, f in zip(hits, first))
        summary[name] = {"read_exact": by_style["all"], "margin_95": margin_95(hits), "by_style": by_style,
                         "misread": int(len(hits) - sum(hits)), "gained_vs_first": gained, "lost_vs_first": lost}
        rows.append([name, f"{by_style['all']:.4f} ± {margin_95(hits):.4f}", len(hits) - sum(hits),
                     f"+{gained} -{lost}", *(f"{by_style[s]:.3f}" for s in NUMBER_STYLES)])
        print(rows[-1], flush=True)

    info = machine()
    markdown = "\n\n".join([
        f"{args.numbers} photographed numbers from MNIST validation digits, seed {args.seed}. {machine_line(info)}.",
        markdown_table(["reader", "read exactly (± 95 % interval)", "misread", f"vs {args.readers[0]}",
                        *NUMBER_STYLES], rows),
    ])
    write_results("compare_readers", {"machine": info, "summary": summary, "args": vars(args)}, markdown)


if __name__ == "__main__":
    main()
