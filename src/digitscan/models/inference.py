"""PyTorch inference, as the torch backend, training and evaluation share it: `to_input` makes the network's input,
`infer` returns logits (digitscan.models.backends.softmax turns them into probabilities)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from digitscan.constants import INFER_BATCH


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 in 0..255 or float in [0, 1] -> (N, 1, 28, 28) float32 in [0, 1], channels-last."""
    x = torch.as_tensor(images)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def infer(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = INFER_BATCH) -> torch.Tensor:
    """Logits (N, classes) for a stack of 28x28 images, in evaluation mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = [model(to_input(images[i:i + batch_size]).to(device)).float().cpu()
               for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)
