"""Model registry: every architecture is a plain nn.Module built by name, with its own training recipe.

Use `build_model("paper")`, `recipe_for("paper")`, `layer_table(model)`; `SHIPPED_ARCH` names the shipped model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from digitscan.constants import IMAGE_SIZE, NUM_CLASSES


@dataclass(frozen=True)
class Recipe:
    """An architecture's default training recipe; CLI flags override single fields."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    val_split: float = 0.3
    optimizer: str = "adam"  # "adam" | "adamw" | "sgd"
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" | "onecycle"
    label_smoothing: float = 0.0
    augment: str = "none"  # "none" | "handwriting" (see digitscan.data.augment)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; used only where the CPU or GPU has native bfloat16)


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., nn.Module]
    recipe: Recipe
    description: str
    kwargs: dict = field(default_factory=dict)


REGISTRY: dict[str, Architecture] = {}


def register(name: str, recipe: Recipe, description: str) -> Callable:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        REGISTRY[name] = Architecture(fn, recipe, description)
        return fn

    return wrap


@register(
    "paper",
    Recipe(),  # the paper: Adam 1e-3, batch 32, 5 epochs, validation split 0.3
    "The paper's Fig. 10 CNN: three valid 3x3 convs of 64 with max pooling, dense 64-32-10 (81,066 parameters).",
)
def paper_cnn(num_classes: int = NUM_CLASSES) -> nn.Module:
    # Keras Conv2D has its ReLU built in; here each conv is followed by an explicit ReLU module.
    return nn.Sequential(
        nn.Conv2d(1, 64, 3), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 26, 26) -> (B, 64, 13, 13)
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 11, 11) -> (B, 64, 5, 5)
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 3, 3) -> (B, 64, 1, 1)
        nn.Flatten(),  # (B, 64)
        nn.Linear(64, 64), nn.ReLU(),
        nn.Linear(64, 32), nn.ReLU(),
        nn.Linear(32, num_classes),  # logits; the paper's softmax lives in the loss and in predict
    )


@register(
    "easy",
    Recipe(),
    "The paper's Sec. V.B 'Easy CNN': conv 32 5x5, max pool, dropout 0.2, dense 128, dense 10.",
)
def easy_cnn(num_classes: int = NUM_CLASSES) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 24, 24) -> (B, 32, 12, 12)
        nn.Dropout(0.2),
        nn.Flatten(),  # (B, 4608)
        nn.Linear(32 * 12 * 12, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@register(
    "mlp",
    Recipe(epochs=15, batch_size=128),  # 5 epochs stop at ~97.6 %, just under the paper's ANN; 15 reach ~98.0 %
    "The comparison's ANN: a multi-layer perceptron 784-512-256-10 with dropout.",
)
def mlp(num_classes: int = NUM_CLASSES, hidden: tuple[int, int] = (512, 256)) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),  # (B, 784)
        nn.Linear(IMAGE_SIZE * IMAGE_SIZE, hidden[0]), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(hidden[1], num_classes),
    )


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


# dsnet's recipe, also dsnet-l's (stage 1 of the shipped model).
DSNET_RECIPE = Recipe(
    epochs=15,
    batch_size=256,
    lr=0.01,
    val_split=0.1,
    optimizer="adamw",
    weight_decay=5e-4,
    schedule="onecycle",
    label_smoothing=0.1,
    augment="handwriting",
    precision="bf16",
)


@register(
    "dsnet",
    DSNET_RECIPE,
    "digitscan's net: a small VGG-style CNN with batch norm (a stride-2 stem, conv-bn-relu at 14 and 7 px), "
    "global max pooling, trained with handwriting augmentation, label smoothing and a one-cycle schedule.",
)
def dsnet(num_classes: int = NUM_CLASSES, widths: tuple[int, int, int] = (32, 64, 96)) -> nn.Module:
    w1, w2, w3 = widths
    return nn.Sequential(
        # A stride-2 stem: a 28x28 map of w1 channels would cost more memory traffic than all later layers.
        conv_bn(1, w1, stride=2),  # (B, w1, 14, 14)
        conv_bn(w1, w2), nn.MaxPool2d(2),  # (B, w2, 7, 7)
        conv_bn(w2, w3), conv_bn(w3, w3),  # (B, w3, 7, 7)
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),  # (B, w3): the strongest response anywhere, shift-tolerant
        nn.Linear(w3, num_classes),
    )


@register(
    "dsnet-l",
    DSNET_RECIPE,
    "the shipped net: dsnet, larger (3x the parameters): a full-resolution first layer, wider, one more layer at "
    "7 px, and a 3x3 pooled head that keeps where in the digit each stroke is. It tells non-digits from digits "
    "better than dsnet (docs/model-card.md).",
)
def dsnet_l(num_classes: int = NUM_CLASSES) -> nn.Module:
    return nn.Sequential(
        conv_bn(1, 32),  # (B, 32, 28, 28)
        conv_bn(32, 48, stride=2),  # (B, 48, 14, 14)
        conv_bn(48, 64), nn.MaxPool2d(2),  # (B, 64, 7, 7)
        conv_bn(64, 128), conv_bn(128, 128), conv_bn(128, 192),  # (B, 192, 7, 7)
        # 3x3 windows at stride 2 over the 7x7 map: rows and columns 0-2, 2-4, 4-6 (AdaptiveMaxPool2d(3)'s windows,
        # which ONNX cannot export).
        nn.MaxPool2d(3, stride=2), nn.Flatten(),  # (B, 192 * 9)
        nn.Dropout(0.2),
        nn.Linear(192 * 9, num_classes),
    )


SHIPPED_ARCH = "dsnet-l"


class LineReader(nn.Module):
    """Reads a whole line (digitscan.reading.line_reader): dsnet's convolutional trunk run along the strip, 1-D
    convolutions
    across its columns (each frame sees about two digits' width on either side), then log-probabilities of the
    classes per frame of 4 columns (CTC: the last class is the blank)."""

    def __init__(self, num_classes: int = NUM_CLASSES + 1, widths: tuple[int, int, int] = (32, 64, 96),
                 hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        w1, w2, w3 = widths
        self.trunk = nn.Sequential(  # the same layers (and names) as digitscan.models.architectures.dsnet's first five
            conv_bn(1, w1, stride=2), conv_bn(w1, w2), nn.MaxPool2d(2), conv_bn(w2, w3), conv_bn(w3, w3),
        )
        self.context = nn.Sequential(
            nn.Conv1d(w3, hidden, 5, padding=2, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, hidden, 5, padding=2, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, hidden, 5, padding=2, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)  # training only; no weights, so checkpoints without it load alike
        self.head = nn.Conv1d(hidden, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, 32, W), a strip of reading.line_reader.line_input
        features = self.trunk(x).amax(dim=2)  # (B, w3, W / 4): the strongest response in each column
        return self.head(self.dropout(self.context(features))).transpose(1, 2).log_softmax(-1)  # (B, W / 4, classes)


LINE_READERS: dict[str, Callable[..., nn.Module]] = {"line-reader": LineReader}  # checkpoint arch -> builder


def resolve_arch(name: str) -> str:
    """'shipped' is an alias for the shipped model's architecture."""
    name = SHIPPED_ARCH if name == "shipped" else name
    if name not in REGISTRY:
        raise ValueError(f"unknown architecture {name!r}; choose from: shipped, {', '.join(REGISTRY)}")
    return name


def build_model(name: str, **kwargs) -> nn.Module:
    return REGISTRY[resolve_arch(name)].build(**kwargs)


def recipe_for(name: str) -> Recipe:
    return REGISTRY[resolve_arch(name)].recipe


class Ensemble(nn.Module):
    """Averages class probabilities over several models and input shifts; returns log-probabilities (softmax = mean).

    Shifts roll the image by whole pixels; the 28x28 inputs have an empty border, so nothing wraps into view.
    """

    def __init__(self, members: list[nn.Module], shifts: tuple[tuple[int, int], ...] = ((0, 0),),
                 temperatures: list[float] | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.shifts = shifts
        self.temperatures = temperatures or [1.0] * len(members)  # each member's calibration

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, H, W)
        probs = torch.stack([
            (member(torch.roll(x, shifts=shift, dims=(2, 3))).float() / temperature).softmax(dim=1)
            for member, temperature in zip(self.members, self.temperatures) for shift in self.shifts
        ]).mean(dim=0)  # (B, classes)
        return probs.clamp_min(1e-12).log()


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into the Conv2d before it (eval mode), in place; returns the model, channels-last.

    The folded conv computes the same function with one op instead of two, which is what inference wants.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for parent in model.modules():
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                setattr(parent, name_a, fuse_conv_bn_eval(a, b))
                setattr(parent, name_b, nn.Identity())
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Layers that only apply an activation or regularization: Keras folds them into the layer before.
_FOLDED = (nn.ReLU, nn.BatchNorm2d)


def layer_table(model: nn.Module) -> list[dict]:
    """One row per leaf layer (ReLU/BN folded into the preceding layer, as Keras's summary shows it).

    Output shapes are given channels-last like the paper's Keras summary (26x26x64).
    """
    rows: list[dict] = []
    hooks = []

    def record(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        shape = tuple(output.shape[1:])
        if len(shape) == 3:  # (C, H, W) -> H x W x C
            shape = (shape[1], shape[2], shape[0])
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, _FOLDED) and rows:
            rows[-1]["params"] += params
            return
        rows.append({"name": f"{type(module).__name__.lower()}_{len(rows)}", "type": type(module).__name__,
                     "output_shape": shape, "params": params})

    for module in model.modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE))
    model.train(was_training)
    for hook in hooks:
        hook.remove()
    return rows
