"""Training speed: the paper model with its defaults vs the shipped recipe run until it reaches 99.5 % test accuracy.

Run: `.venv/bin/python benchmarks/train_speed.py [--epochs 3] [--target 0.995]` (needs DIGITSCAN_DATA; ~2 min).
Both runs happen in this one process on this machine; test accuracy is measured after every epoch (--eval-test,
not counted in the elapsed time and never used to choose anything). Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse

from common import machine, machine_line, markdown_table, write_results
from digitscan.models.architectures import SHIPPED_ARCH
from digitscan.training.classifier import make_config, train


def run(config) -> list[dict]:
    history = []
    train(config, out=None, progress=False, on_epoch=lambda r: (history.append(r), print(r, flush=True)))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="epoch budget of the shipped recipe for this race")
    parser.add_argument("--target", type=float, default=0.995)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    paper = run(make_config("paper", seed=args.seed, eval_test=True))
    recipe = run(make_config("shipped", epochs=args.epochs, seed=args.seed, eval_test=True))
    paper_seconds = paper[-1]["elapsed_s"]
    reached = next((r for r in recipe if r["test_accuracy"] >= args.target), None)

    rows = [["paper (defaults: Adam, batch 32, 5 epochs)", len(paper), f"{paper[-1]['test_accuracy']:.2%}",
             f"{paper_seconds:.1f} s", "1.00"]]
    if reached:
        rows.append([f"{SHIPPED_ARCH} recipe, --epochs {args.epochs}, to {args.target:.1%}", reached["epoch"],
                     f"{reached['test_accuracy']:.2%}", f"{reached['elapsed_s']:.1f} s",
                     f"{reached['elapsed_s'] / paper_seconds:.2f}"])
    else:
        rows.append([f"{SHIPPED_ARCH} recipe, --epochs {args.epochs}: did not reach {args.target:.1%}", len(recipe),
                     f"{recipe[-1]['test_accuracy']:.2%}", f"{recipe[-1]['elapsed_s']:.1f} s", "—"])
    info = machine()
    markdown = "\n".join([
        markdown_table(["run", "epochs", "test accuracy", "train time", "time ÷ paper"], rows), "",
        machine_line(info),
        f"Command: `.venv/bin/python benchmarks/train_speed.py --epochs {args.epochs}` "
        "(train time = training + per-epoch validation; test evaluation excluded)",
    ])
    write_results("train_speed", {
        "machine": info, "target": args.target, "paper": paper, "recipe": recipe,
        "ratio": reached["elapsed_s"] / paper_seconds if reached else None,
    }, markdown)


if __name__ == "__main__":
    main()
