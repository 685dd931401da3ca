"""Reproduce the paper end to end: train its CNN with its defaults, test it, and run the SVM/ANN/CNN comparison.

Run: `.venv/bin/python benchmarks/reproduce_paper.py [--seeds 1] [--skip-compare] [--plots docs/img]`
(needs DIGITSCAN_DATA; about 2 min per seed plus about 5 min for the comparison on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import machine, machine_line, markdown_table, write_results
from digitscan.constants import PAPER_RESULTS
from digitscan.data.mnist import load_mnist
from digitscan.models.inference import infer
from digitscan.plots import save_comparison_bars, save_confusion_matrix, save_training_curves
from digitscan.training.classifier import make_config, train
from digitscan.training.compare import compare
from digitscan.training.evaluate import metrics

PAPER = PAPER_RESULTS  # the paper's Fig. 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=1, help="train the paper model with seeds 0..N-1")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--plots", type=Path, default=Path("benchmarks/results/paper"),
                        help="folder for training curves, confusion matrix and comparison chart")
    args = parser.parse_args()

    test_images, test_labels = load_mnist("test")
    runs = []
    for seed in range(args.seeds):
        start = time.perf_counter()
        result = train(make_config("paper", seed=seed), out=None, progress=False)
        seconds = time.perf_counter() - start
        test = metrics(infer(result.model, test_images), test_labels)
        runs.append({"seed": seed, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
                     "train_seconds": round(seconds, 1), "history": result.history})
        print(f"seed {seed}: test accuracy {test['accuracy']:.4f} in {seconds:.0f} s", flush=True)
        if seed == 0:
            save_training_curves(result.history, args.plots / "paper_curves.png",
                                 title="Paper CNN (defaults): training curves")
            save_confusion_matrix(test["confusion_matrix"], args.plots / "paper_confusion.png",
                                  title="Paper CNN on the MNIST test set")

    accuracies = np.array([r["test_accuracy"] for r in runs])
    rows = [["CNN test accuracy (paper model, defaults)", f"{PAPER['CNN']:.2%}",
             f"{accuracies.mean():.2%}" + (f" ± {accuracies.std():.2%} ({len(runs)} seeds)" if len(runs) > 1 else ""),
             f"{np.mean([r['train_seconds'] for r in runs]):.0f} s"]]
    comparison = None
    if not args.skip_compare:
        comparison = compare(log=lambda m: print(m, flush=True), progress=False)
        save_comparison_bars(comparison, args.plots / "comparison.png", reference=PAPER)
        rows += [[f"{r['model']} (comparison, same split)", f"{PAPER[r['model']]:.2%}", f"{r['accuracy']:.2%}",
                  f"{r['train_seconds']:.0f} s"] for r in comparison]
    info = machine()
    markdown = "\n".join([
        markdown_table(["measurement", "paper", "digitscan", "train time"], rows), "",
        machine_line(info),
        "Command: `.venv/bin/python benchmarks/reproduce_paper.py"
        + (f" --seeds {args.seeds}" if args.seeds > 1 else "") + "`",
    ])
    write_results("reproduce_paper", {"machine": info, "runs": runs, "comparison": comparison}, markdown)


if __name__ == "__main__":
    main()
