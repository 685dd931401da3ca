"""Accuracy of the shipped model, each member of the shipped ensemble, and the ensemble, on the MNIST test set.

Run: `.venv/bin/python benchmarks/accuracy.py` (needs DIGITSCAN_DATA; ~20 s). The weights were produced in two
stages: `digitscan train --arch dsnet-l --seed S` (S = 0 for the shipped model, 1.. for the other members), then
fine-tuning from those weights with `--init STAGE1 --realworld --seed S` (docs/model-card.md); each checkpoint
records its own command line settings.
"""

from __future__ import annotations

from common import machine, machine_line, markdown_table, write_results
from digitscan.constants import PAPER_RESULTS
from digitscan.data.mnist import load_mnist
from digitscan.models.checkpoint import load_checkpoint, load_ensemble, shipped_ensemble_paths
from digitscan.models.inference import infer
from digitscan.training.evaluate import metrics

PAPER_CNN = PAPER_RESULTS["CNN"]


def main() -> None:
    images, labels = load_mnist("test")
    rows, results = [], []
    for path in shipped_ensemble_paths():
        checkpoint = load_checkpoint(path)
        result = metrics(infer(checkpoint.model, images), labels)
        config = checkpoint.meta["train_config"]
        results.append({"model": path.name, "accuracy": result["accuracy"], "loss": result["loss"],
                        "seed": config["seed"], "epoch": checkpoint.meta["metrics"]["epoch"],
                        "val_accuracy": checkpoint.meta["metrics"]["val_accuracy"]})
        made_by = f"`digitscan train --arch {config['arch']} --seed {config['seed']}`"
        if config.get("init"):
            weight = f" --real-weight {config['real_weight']:g}" if "real_weight" in config else ""
            made_by += (f", then `--init` it `--realworld --epochs {config['epochs']} --lr {config['lr']}{weight}`"
                        " (docs/model-card.md)")
        rows.append([path.name, made_by,
                     f"{checkpoint.meta['metrics']['epoch']}/{config['epochs']}",
                     f"{checkpoint.meta['metrics']['val_accuracy']:.2%}", f"{result['accuracy']:.2%}",
                     f"{10_000 - round(result['accuracy'] * 10_000)}"])
    ensemble = metrics(infer(load_ensemble().model, images), labels)
    rows.append([f"ensemble of {len(results)} (`--ensemble`)", "mean of the members × 5 one-pixel shifts", "—", "—",
                 f"{ensemble['accuracy']:.2%}", f"{10_000 - round(ensemble['accuracy'] * 10_000)}"])
    rows.append(["the paper's CNN", "(reported)", "5/5", "—", f"{PAPER_CNN:.2%}", f"{round((1 - PAPER_CNN) * 10_000)}"])
    info = machine()
    markdown = "\n".join([
        markdown_table(["model", "made by", "epoch kept", "validation accuracy",
                        "MNIST test accuracy", "test errors"], rows), "",
        machine_line(info),
        "Command: `.venv/bin/python benchmarks/accuracy.py`",
    ])
    write_results("accuracy", {"machine": info, "members": results, "ensemble": ensemble["accuracy"]}, markdown)


if __name__ == "__main__":
    main()
