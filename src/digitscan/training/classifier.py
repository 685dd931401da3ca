"""Training: a flat config resolved from the architecture's recipe, and a training loop you can read top to bottom.

`train(make_config("paper", epochs=1), out="runs/paper.safetensors")` trains, saves a checkpoint and returns the
history.
`torchrun --nproc_per_node=N -m digitscan train [options]` trains data-parallel (digitscan.training.distributed).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from digitscan.constants import IMAGE_SIZE
from digitscan.data.augment import augment_batch
from digitscan.data.datasets import Dataset, load_dataset
from digitscan.data.mnist import train_val_split
from digitscan.models.architectures import Recipe, build_model, recipe_for, resolve_arch
from digitscan.models.checkpoint import load_checkpoint, save_checkpoint, sha256_file, shipped_path
from digitscan.models.inference import infer, to_input
from digitscan.training import distributed
from digitscan.training.evaluate import fit_temperature
from digitscan.training.finetune import REAL_WEIGHT, build_pools, choose_reject_threshold, draw_weights

# What the model's input looks like, by preprocessing mode (recorded in the checkpoint's "input").
INPUT_INK = {"robust": "bright on dark (MNIST)", "paper": "the image's own gray levels, resized (no inversion)"}


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
    dataset: str = "mnist"  # mnist | fashion-mnist | idx:DIR | folder:DIR (digitscan.data.datasets)
    data: str | None = None  # folder of mnist or fashion-mnist
    preprocess: str | None = None  # robust | paper: decodes folder: images, tells predict what to do (None: dataset's)
    init: str | None = None  # start from this checkpoint's weights ('shipped' allowed): fine-tuning
    limit: int | None = None  # train on only the first N images of the training split (quick runs, smoke tests)
    realworld: bool = False  # mix photo-like digits and non-digits into every batch (digitscan.training.finetune)
    outlier_weight: float = 0.5  # weight of the non-digits' pull towards the uniform distribution
    realdev: str | None = None  # --realworld: the realdev folder (None: $DIGITSCAN_REALDEV or ../shared/data/realdev)
    real_weight: float = REAL_WEIGHT  # --realworld: how much more often a realdev digit is drawn than a synthetic one


def make_config(arch: str, **overrides) -> TrainConfig:
    """The recipe of `arch` ('shipped' allowed) with every non-None override applied.

    The handwriting augmentation of a recipe (rotation, shear, stroke thickness) is about digits: on any other
    dataset it is off unless asked for (augment="handwriting").
    """
    arch = resolve_arch(arch)
    fields = {**dataclasses.asdict(recipe_for(arch)), "arch": arch}
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("dataset", "mnist") != "mnist" and "augment" not in given:
        fields["augment"] = "none"
    fields.update(given)
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
        # OneCycleLR divides by the warm-up's length in steps minus one: a one-step warm-up (a run of exactly 4
        # steps, e.g. a tiny --limit or one process's share under DDP) would divide by zero.
        pct_start = 0.5 if config.epochs * steps_per_epoch == 4 else 0.25
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start)
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
                    sampler=None, pools=None):
    """One pass over the training split in shuffled batches; returns (mean loss, accuracy) on what it saw.

    Data-parallel (a DistributedSampler given): this process's share of the epoch's shuffle; the returned
    numbers are over all processes. With pools (digitscan.training.finetune.Pools), every batch also gets half as many
    real-world digits (drawn with finetune.draw_weights: real scans more often) and a quarter as many non-digits;
    the non-digits' loss is their cross-entropy to the uniform distribution (outlier exposure).
    """
    model.train()
    if sampler is None:
        order = torch.randperm(len(x_train), generator=generator)
    else:
        sampler.set_epoch(epoch)  # every process draws the same shuffle for this epoch and takes its own slice
        order = torch.tensor(list(sampler))
    total_loss, correct, seen = 0.0, 0, 0
    pool_weights = torch.from_numpy(draw_weights(pools, config.real_weight)) if pools is not None else None
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
            picks = torch.multinomial(pool_weights, len(idx) // 2, replacement=True, generator=generator)
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
    total_loss, correct, seen = distributed.sum_over_ranks(total_loss, correct, seen)  # all processes
    return total_loss / seen, correct / seen


def loss_and_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    logits = infer(model, images)
    return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).float().mean())


def train(config: TrainConfig, out: str | Path | None = None, *, progress: bool = True, on_epoch=None) -> TrainResult:
    """Train `config.arch` on the training split of `config.dataset`; keep the epoch with the best validation accuracy.

    on_epoch(record) is called after each epoch with the INTERFACE.md per-epoch dict (the CLI prints it).
    The test split is only touched when config.eval_test is set, and never for choosing the checkpoint.
    Inside a torch.distributed process group (distributed.process_group under torchrun) every process runs this
    on its share of each epoch through DistributedDataParallel; only rank 0 validates, reports and saves.
    """
    rank, world_size = distributed.rank(), distributed.world_size()
    is_main = rank == 0
    torch.manual_seed(config.seed)  # the same initial weights in every process
    if config.threads:
        torch.set_num_threads(config.threads)
    device = distributed.local_device(pick_device(config.device))

    dataset = load_dataset(config.dataset, ["train", "test"] if config.eval_test else ["train"], data=config.data,
                           preprocess_mode=config.preprocess)
    images, labels = dataset.train.images, dataset.train.labels
    train_idx, val_idx = train_val_split(len(images), config.val_split, config.seed)
    train_idx = train_idx[:config.limit]
    x_train, y_train = torch.from_numpy(images[train_idx]), torch.from_numpy(labels[train_idx])
    x_val, y_val = torch.from_numpy(images[val_idx]), torch.from_numpy(labels[val_idx])
    if config.eval_test:
        x_test, y_test = torch.from_numpy(dataset.test.images), torch.from_numpy(dataset.test.labels)

    model = build_model(config.arch, num_classes=len(dataset.classes))
    init = load_initial_weights(model, config, dataset) if config.init else None
    model = model.to(device, memory_format=torch.channels_last)
    sampler, trained = None, model
    if world_size > 1:
        # DDP averages gradients across processes in backward; `model` stays the plain module for validation.
        # BatchNorm statistics are not broadcast from rank 0 at every step: each process keeps its own and
        # average_buffers pools them once per epoch.
        sampler = DistributedSampler(range(len(x_train)), num_replicas=world_size, rank=rank, seed=config.seed)
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          forward_sync_buffers=False)
    if config.realworld and dataset.name != "mnist":
        raise ValueError("--realworld fine-tunes a digit reader: it needs --dataset mnist")
    # Real-world pools come from this run's training digits only (the validation split stays unseen).
    pools = build_pools(images[train_idx], labels[train_idx], seed=config.seed, realdev=config.realdev,
                        progress=progress and is_main) if config.realworld else None
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil((len(x_train) if sampler is None else len(sampler)) / config.batch_size)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed + rank)  # augmentation differs between processes
    bf16 = use_bf16(config.precision, device)

    history: list[dict] = []
    best_state, best_epoch, best_val = None, 0, -1.0
    elapsed = 0.0  # training + validation time; test evaluation (benchmark only) is not counted
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc = train_one_epoch(trained, x_train, y_train, optimizer, scheduler, config,
                                                generator, device, bf16, progress and is_main, epoch, sampler,
                                                pools)
        distributed.average_buffers(model)  # the same BatchNorm statistics in every process
        if not is_main:
            continue
        val_loss, val_acc = loss_and_accuracy(model, x_val, y_val) if len(x_val) else (None, None)
        elapsed += time.perf_counter() - start
        record = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                  "val_loss": val_loss, "val_accuracy": val_acc, "elapsed_s": round(elapsed, 3)}
        if config.eval_test:
            record["test_accuracy"] = loss_and_accuracy(model, x_test, y_test)[1]  # reported, never used to select
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        # Keep the epoch with the best validation accuracy. Without validation, or when fine-tuning for real-world
        # input (whose aim, photos and non-digits, the MNIST validation split does not measure), keep the last one:
        # one-cycle ends there, and an early epoch has barely learnt to reject (it kept epoch 1 of 5 for one seed).
        score = epoch if val_acc is None or config.realworld else val_acc
        if score >= best_val:
            best_val, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())

    # Every process should end with the same weights; the checkpoint records each one's digest to show it.
    replicas = distributed.gather(distributed.state_sha256(model))
    if not is_main:
        return TrainResult(model=model, history=history, best_epoch=best_epoch, config=config, checkpoint=None)
    if len(set(replicas)) > 1:
        warnings.warn(f"data-parallel processes ended with different weights: {replicas}", stacklevel=2)
    model.load_state_dict(best_state)
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    # Calibrate confidences on the validation split (label smoothing leaves the raw softmax under-confident).
    temperature = fit_temperature(infer(model, x_val), y_val) if len(x_val) else 1.0
    data_parallel = {"world_size": world_size, "backend": distributed.backend_for(device),
                     "replica_sha256": replicas} if world_size > 1 else None
    meta = checkpoint_meta(config, dataset, history, best_epoch, temperature, init=init, data_parallel=data_parallel)
    if config.realworld and len(x_val):
        meta.update(reject_rule(model, temperature, images[val_idx], labels[val_idx], seed=config.seed,
                                realdev=config.realdev, progress=progress))
    path = save_checkpoint(out, model, meta) if out is not None else None
    return TrainResult(model=model, history=history, best_epoch=best_epoch, config=config, checkpoint=path)


def reject_rule(model: nn.Module, temperature: float, images: np.ndarray, labels: np.ndarray, *, seed: int,
                realdev: str | None = None, progress: bool = True) -> dict:
    """The checkpoint fields of the not-a-digit rule (finetune.choose_reject_threshold), chosen for `model` on
    validation data made from these (validation) digits: reject_threshold, reject_logit_threshold, reject_rule."""
    def scores(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = infer(model, inputs)
        return (torch.softmax(logits / temperature, dim=1).max(dim=1).values.numpy(),
                logits.max(dim=1).values.numpy())

    rule = choose_reject_threshold(scores, images, labels, seed=seed, realdev=realdev, progress=progress)
    return {"reject_threshold": rule.pop("threshold"), "reject_logit_threshold": rule.pop("logit_threshold"),
            "reject_rule": rule}


def rechoose_reject_rule(path: str | Path, out: str | Path, *, realdev: str | None = None,
                         progress: bool = True) -> dict:
    """Choose the not-a-digit rule again for a --realworld checkpoint (weights and temperature unchanged), on the
    validation split its own run held out; writes the checkpoint with the new rule to `out`. Returns the fields."""
    checkpoint = load_checkpoint(path)
    config = checkpoint.meta["train_config"]
    if not config.get("realworld") or config.get("dataset", "mnist") != "mnist":
        raise ValueError(f"{path}: the not-a-digit rule is chosen for --realworld fine-tuned digit models only")
    dataset = load_dataset("mnist", ["train"], data=config.get("data"))
    _, val_idx = train_val_split(len(dataset.train.images), config["val_split"], config["seed"])
    model = checkpoint.model.eval()
    fields = reject_rule(model, float(checkpoint.meta["temperature"]), dataset.train.images[val_idx],
                         dataset.train.labels[val_idx], seed=config["seed"], realdev=realdev, progress=progress)
    fields["reject_rule"]["chosen"] = {"by": "digitscan choose-threshold", "after_training": True,
                                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_checkpoint(out, model, {**checkpoint.meta, **fields})
    return fields


def load_initial_weights(model: nn.Module, config: TrainConfig, dataset: Dataset) -> dict:
    """Copy the weights of the checkpoint config.init ('shipped': the shipped model) into `model` (fine-tuning).

    The checkpoint must be of the same architecture with as many classes as the dataset; returns its record.
    """
    path = shipped_path() if config.init == "shipped" else Path(config.init)
    source = load_checkpoint(path)
    if source.meta["arch"] != config.arch:
        raise ValueError(f"{path}: --init needs a {config.arch!r} checkpoint (this run's --arch), "
                         f"this one is {source.meta['arch']!r}")
    if source.meta.get("arch_kwargs"):
        raise ValueError(f"{path}: --init checkpoint was built with arguments {source.meta['arch_kwargs']}; "
                         f"this run builds {config.arch!r} with its defaults")
    if len(source.classes) != len(dataset.classes):
        raise ValueError(f"{path}: --init checkpoint has {len(source.classes)} classes, "
                         f"dataset {dataset.name} has {len(dataset.classes)}")
    model.load_state_dict(source.model.state_dict())
    return {"checkpoint": str(path), "sha256": sha256_file(path), "classes": source.classes}


def checkpoint_meta(config: TrainConfig, dataset: Dataset, history: list[dict], best_epoch: int, temperature: float,
                    *, init: dict | None = None, data_parallel: dict | None = None) -> dict:
    best = history[best_epoch - 1]
    meta = {
        "arch": config.arch,
        "arch_kwargs": {},
        "classes": dataset.classes,
        "input": {"size": IMAGE_SIZE, "channels": 1, "range": [0.0, 1.0], "ink": INPUT_INK.get(dataset.preprocess)},
        "preprocess": dataset.preprocess,  # what predict does to a user's image before the model sees it
        "temperature": temperature,  # softmax(logits / temperature) is calibrated on the validation split
        "train_config": dataclasses.asdict(config),
        "metrics": {"epoch": best_epoch, "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"]},
        "history": history,
        "data": dataset.record(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "software": {"torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__},
    }
    if init is not None:
        meta["init"] = init  # the weights training started from
    if data_parallel is not None:
        meta["distributed"] = data_parallel  # world size, backend and each process's final weights digest
    return meta

