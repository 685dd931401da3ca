"""Training: a flat config resolved from the architecture's recipe, and a training loop you can read top to bottom.

`train(make_config("paper", epochs=1), out="runs/paper.safetensors")` trains, saves a checkpoint and returns the history.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from digitscan.augment import augment_batch
from digitscan.checkpoint import load_checkpoint, save_checkpoint
from digitscan.constants import DIGIT_CLASSES, IMAGE_SIZE
from digitscan.data import load_mnist, mnist_digests, train_val_split
from digitscan.evaluate import fit_temperature, infer, to_input
from digitscan.finetune import build_pools, choose_reject_threshold
from digitscan.models import Recipe, build_model, recipe_for, resolve_arch


@dataclass(frozen=True)
class TrainConfig(Recipe):
    """Every setting of a run: the architecture's recipe fields (models.Recipe) plus the run's own settings.

    `make_config` fills it from the architecture's recipe; flags override single fields.
    """

    arch: str = "paper"
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    eval_test: bool = False
    data: str | None = None
    limit: int | None = None  # train on only the first N images of the training split (quick runs, smoke tests)
    init: str | None = None  # start from this checkpoint's weights (fine-tuning)
    realworld: bool = False  # mix photo-like digits and non-digits into every batch (digitscan.finetune)
    outlier_weight: float = 0.5  # weight of the non-digits' pull towards the uniform distribution


def make_config(arch: str, **overrides) -> TrainConfig:
    """The recipe of `arch` ('shipped' allowed) with every non-None override applied."""
    arch = resolve_arch(arch)
    fields = {**dataclasses.asdict(recipe_for(arch)), "arch": arch}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**fields)


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict]
    best_epoch: int
    config: TrainConfig
    checkpoint: Path | None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but PyTorch sees no CUDA device")
    return torch.device(name)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":  # Keras's Adam: lr 1e-3, eps 1e-7
        return torch.optim.Adam(model.parameters(), lr=config.lr, eps=1e-7, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "constant":
        return None
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast only where the hardware computes in bfloat16 natively; elsewhere it would be slower."""
    if precision == "fp32":
        return False
    if precision != "bf16":
        raise ValueError(f"unknown precision {precision!r}; use fp32 or bf16")
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def train_one_epoch(model, x_train, y_train, optimizer, scheduler, config, generator, device, bf16, progress, epoch,
                    pools=None):
    """One pass over the training split in shuffled batches; returns (mean loss, accuracy) on what it saw.

    With pools (digitscan.finetune.Pools), every batch also gets half as many real-world digits and a quarter as
    many non-digits; the non-digits' loss is their cross-entropy to the uniform distribution (outlier exposure)."""
    model.train()
    order = torch.randperm(len(x_train), generator=generator)
    total_loss, correct, seen = 0.0, 0, 0
    batches = range(0, len(order), config.batch_size)
    bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False, disable=not progress)
    for start in bar:
        idx = order[start:start + config.batch_size]
        xb = to_input(x_train[idx])  # uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1]
        if config.augment == "handwriting":
            xb = augment_batch(xb, generator).contiguous(memory_format=torch.channels_last)
        yb = y_train[idx]
        negatives = xb[:0]
        if pools is not None:
            picks = torch.randint(len(pools.digits), (len(idx) // 2,), generator=generator)
            xb = torch.cat([xb, to_input(pools.digits[picks.numpy()])])
            yb = torch.cat([yb, torch.from_numpy(pools.labels[picks.numpy()])])
            negatives = to_input(pools.negatives[torch.randint(len(pools.negatives), (len(idx) // 4,),
                                                               generator=generator).numpy()])
        n = len(xb)
        xb, yb = torch.cat([xb, negatives]).to(device), yb.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
            loss = F.cross_entropy(logits[:n], yb, label_smoothing=config.label_smoothing)
            if len(negatives):
                loss = loss - config.outlier_weight * F.log_softmax(logits[n:].float(), dim=1).mean()
        logits = logits[:n]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == yb).sum().item()
        seen += n
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    return total_loss / seen, correct / seen


def loss_and_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    logits = infer(model, images)
    return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())


def train(config: TrainConfig, out: str | Path | None = None, *, progress: bool = True, on_epoch=None) -> TrainResult:
    """Train `config.arch` on MNIST's training split; keep the epoch with the best validation accuracy.

    on_epoch(record) is called after each epoch with the INTERFACE.md per-epoch dict (the CLI prints it).
    The test split is only touched when config.eval_test is set, and never for choosing the checkpoint.
    """
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)

    images, labels = load_mnist("train", config.data)
    train_idx, val_idx = train_val_split(len(images), config.val_split, config.seed)
    train_idx = train_idx[:config.limit]
    x_train, y_train = torch.from_numpy(images[train_idx]), torch.from_numpy(labels[train_idx]).long()
    x_val, y_val = torch.from_numpy(images[val_idx]), torch.from_numpy(labels[val_idx]).long()
    if config.eval_test:
        test_images, test_labels = load_mnist("test", config.data)
        x_test, y_test = torch.from_numpy(test_images), torch.from_numpy(test_labels).long()

    model = build_model(config.arch)
    if config.init:
        start = load_checkpoint(config.init)
        if start.meta["arch"] != config.arch or len(start.classes) != len(DIGIT_CLASSES):
            raise ValueError(f"--init {config.init}: a {start.meta['arch']!r} model with {len(start.classes)} "
                             f"classes cannot start a {config.arch!r} run on the digits")
        model.load_state_dict(start.model.state_dict())
    model = model.to(device, memory_format=torch.channels_last)
    # Real-world pools come from this run's training digits only (the validation split stays unseen).
    pools = build_pools(images[train_idx], labels[train_idx], seed=config.seed, progress=progress) \
        if config.realworld else None
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=math.ceil(len(x_train) / config.batch_size))
    generator = torch.Generator().manual_seed(config.seed)
    bf16 = use_bf16(config.precision, device)

    history: list[dict] = []
    best_state, best_epoch, best_val = None, 0, -1.0
    elapsed = 0.0  # training + validation time; test evaluation (benchmark only) is not counted
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc = train_one_epoch(model, x_train, y_train, optimizer, scheduler, config,
                                                generator, device, bf16, progress, epoch, pools)
        val_loss, val_acc = loss_and_accuracy(model, x_val, y_val) if len(x_val) else (None, None)
        elapsed += time.perf_counter() - start
        record = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                  "val_loss": val_loss, "val_accuracy": val_acc, "elapsed_s": round(elapsed, 3)}
        if config.eval_test:
            record["test_accuracy"] = loss_and_accuracy(model, x_test, y_test)[1]  # reported, never used to select
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        score = val_acc if val_acc is not None else epoch  # without validation: keep the last epoch
        if score >= best_val:
            best_val, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())

    model.load_state_dict(best_state)
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    # Calibrate confidences on the validation split (label smoothing leaves the raw softmax under-confident).
    temperature = fit_temperature(infer(model, x_val), y_val) if len(x_val) else 1.0
    meta = checkpoint_meta(config, history, best_epoch, temperature)
    if config.realworld and len(x_val):
        def confidence(inputs: np.ndarray) -> np.ndarray:
            return torch.softmax(infer(model, inputs) / temperature, dim=1).max(dim=1).values.numpy()

        rule = choose_reject_threshold(confidence, images[val_idx], labels[val_idx], seed=config.seed,
                                       progress=progress)
        meta["reject_threshold"] = rule.pop("threshold")
        meta["reject_rule"] = rule
    path = None
    if out is not None:
        path = save_checkpoint(out, model, meta)
    return TrainResult(model=model, history=history, best_epoch=best_epoch, config=config, checkpoint=path)


def checkpoint_meta(config: TrainConfig, history: list[dict], best_epoch: int, temperature: float) -> dict:
    best = history[best_epoch - 1]
    return {
        "arch": config.arch,
        "arch_kwargs": {},
        "classes": DIGIT_CLASSES,
        "input": {"size": IMAGE_SIZE, "channels": 1, "range": [0.0, 1.0], "ink": "bright on dark (MNIST)"},
        "preprocess": "robust",
        "temperature": temperature,  # softmax(logits / temperature) is calibrated on the validation split
        "train_config": dataclasses.asdict(config),
        "metrics": {"epoch": best_epoch, "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"]},
        "history": history,
        "data": {"dataset": "mnist", "sha256": mnist_digests()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "software": {"torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__},
    }
