"""How much of each realdev set the not-a-digit rule should keep: the trade-off, measured on --dev data only.

For a checkpoint (default: the shipped model), the rule of digitscan.training.finetune.choose_reject_threshold is
computed on its validation sets with several values of SCANS_ACCEPTED (the share of each realdev set's validation
writers let through; photographed and font digits keep DIGITS_ACCEPTED), on the top logit. Each threshold is then
applied to benchmarks/realworld.py's --dev sets (MNIST validation digits photographed under every condition, digits
in the development fonts; Fashion-MNIST training pictures 50,000+, letters in the development fonts, scribbles,
blank pages): digits and non-digits accepted. This is how SCANS_ACCEPTED was chosen; no test split is read.

Run: `.venv/bin/python benchmarks/reject_rule.py [--model CKPT] [--n 100]` (about 4 minutes on 2 cores).
Writes benchmarks/results/reject_rule.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realworld  # noqa: E402
from common import machine, machine_line, markdown_table, write_results  # noqa: E402
from digitscan.data.datasets import load_fashion_mnist  # noqa: E402
from digitscan.data.mnist import load_mnist, train_val_split  # noqa: E402
from digitscan.data.realdev import REALDEV_SETS  # noqa: E402
from digitscan.models.checkpoint import load_checkpoint  # noqa: E402
from digitscan.models.inference import infer  # noqa: E402
from digitscan.synthetic.photos import font_split  # noqa: E402
from digitscan.training.finetune import (  # noqa: E402
    DIGITS_ACCEPTED,
    FASHION_TRAIN_USED,
    PHOTO_SOURCES,
    SOURCES,
    THRESHOLD_SIZES,
    build_pools,
)

SHARES = (0.95, 0.97, 0.98, 0.985, 0.99)


def top_logits(model, inputs: np.ndarray) -> np.ndarray:
    """(N,) top logit; an input without ink is never a digit, whatever the network says (-inf)."""
    logits = infer(model, inputs).max(dim=1).values.numpy().astype(np.float64)
    return np.where(np.asarray(inputs).reshape(len(inputs), -1).max(axis=1) > 0, logits, -np.inf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--n", type=int, default=100, help="--dev photos per condition and non-digits per kind")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.model)
    model, config = checkpoint.model.eval(), checkpoint.meta["train_config"]
    images, labels = load_mnist("train")
    _, val_idx = train_val_split(len(images), config["val_split"], config["seed"])
    pools = build_pools(images[val_idx], labels[val_idx], THRESHOLD_SIZES, seed=config["seed"] + 1, held_out=True)
    validation, sources = top_logits(model, pools.digits), np.array(SOURCES)[pools.digit_sources]

    # The --dev sets of benchmarks/realworld.py (its seed 0 and the validation split of seed 0).
    _, dev_idx = train_val_split(len(images), 0.1, 0)
    fashion = load_fashion_mnist(["train"]).train.images[FASHION_TRAIN_USED:]
    fonts = font_split().dev
    with get_context("spawn").Pool(args.workers) as pool:
        digit_sets = realworld.digit_jobs(images[dev_idx], labels[dev_idx], args.n, 0, fonts)
        dev_digits = np.concatenate([realworld.run_jobs(jobs, pool)[0] for jobs, _ in digit_sets.values()])
        dev_negatives = {name: realworld.run_jobs(jobs, pool)[0]
                         for name, jobs in realworld.nondigit_jobs(fashion, args.n, 0, fonts).items()}
    digit_scores = top_logits(model, dev_digits)
    negative_scores = {name: top_logits(model, inputs) for name, inputs in dev_negatives.items()}

    rows, results = [], []
    for share in SHARES:
        quantiles = [np.quantile(validation[np.isin(sources, PHOTO_SOURCES)], 1 - DIGITS_ACCEPTED)]
        quantiles += [np.quantile(validation[sources == name], 1 - share) for name in REALDEV_SETS]
        threshold = float(min(quantiles))
        every_negative = np.concatenate(list(negative_scores.values()))
        result = {"realdev_share": share, "threshold": threshold,
                  "validation_realdev_accepted": {name: float((validation[sources == name] >= threshold).mean())
                                                  for name in REALDEV_SETS},
                  "dev_digits_accepted": float((digit_scores >= threshold).mean()),
                  "dev_nondigits_accepted": float((every_negative >= threshold).mean()),
                  "dev_nondigits_by_kind": {name: float((scores >= threshold).mean())
                                            for name, scores in negative_scores.items()}}
        results.append(result)
        rows.append([f"{share:.1%}", f"{threshold:.3f}",
                     " / ".join(f"{v:.3f}" for v in result["validation_realdev_accepted"].values()),
                     f"{result['dev_digits_accepted']:.3f}", f"{result['dev_nondigits_accepted']:.3f}",
                     f"{result['dev_nondigits_by_kind']['letters']:.3f}"])
        print(rows[-1], flush=True)
    info = machine()
    markdown = "\n\n".join([
        f"The not-a-digit rule (top logit) by the share of each realdev set's validation writers it keeps; photo and "
        f"font digits keep {DIGITS_ACCEPTED:.1%}. Applied to the --dev sets of benchmarks/realworld.py ({args.n} "
        f"per condition and kind). Model: {checkpoint.path.name}. {machine_line(info)}.",
        markdown_table(["realdev share asked", "top-logit threshold",
                        "validation accepted: " + " / ".join(REALDEV_SETS), "--dev digits accepted",
                        "--dev non-digits accepted", "--dev letters accepted"], rows),
    ])
    write_results("reject_rule", {"machine": info, "args": vars(args), "results": results}, markdown)


if __name__ == "__main__":
    main()
