"""Batched data augmentation that models real handwriting variation, applied to whole (B, 1, 28, 28) batches.

`augment_batch(x, generator)` returns a new batch; there are no per-image Python loops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEG = 12.0  # people slant digits, rarely by more than this
SCALE_RANGE = (0.85, 1.12)  # digit size relative to MNIST's 20x20 box
MAX_SHEAR = 0.25  # italic-like slant
MAX_SHIFT = 0.12  # in normalized coordinates: 0.12 * 14 px ~ 1.7 px off-centre
ELASTIC_ALPHA = 0.06  # amplitude of the smooth random displacement field (normalized coordinates)
ELASTIC_GRID = 4  # coarse grid the displacement is drawn on, upsampled: smooth, wobbly strokes
THICKNESS_PROB = 0.3  # fraction of images whose strokes are made thicker, and again thinner


def uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def random_affine(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine matrices mapping output to input coordinates: rotation, scale, shear, shift."""
    angle = uniform(generator, n, -MAX_ROTATION_DEG, MAX_ROTATION_DEG) * math.pi / 180
    scale = uniform(generator, n, *SCALE_RANGE)
    shear = uniform(generator, n, -MAX_SHEAR, MAX_SHEAR)
    shift = uniform(generator, 2 * n, -MAX_SHIFT, MAX_SHIFT).view(n, 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # sampling grid: inverse scale enlarges
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin + shear * cos
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = cos + shear * sin
    theta[:, :, 2] = shift
    return theta


def elastic_field(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n, size, size, 2) smooth random displacement, added to an affine sampling grid."""
    coarse = torch.randn(n, 2, ELASTIC_GRID, ELASTIC_GRID, generator=generator) * ELASTIC_ALPHA
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return field.permute(0, 2, 3, 1)


def change_thickness(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dilate some images (thicker pen) and erode others (thinner pen) with 3x3 grey morphology."""
    n = x.shape[0]
    pick = torch.rand(n, generator=generator)
    thicker = (pick < THICKNESS_PROB).view(n, 1, 1, 1)
    thinner = (pick > 1 - THICKNESS_PROB).view(n, 1, 1, 1)
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    # Blend half-way: a full 3x3 step changes a 2 px MNIST stroke too much.
    x = torch.where(thicker, 0.5 * (x + dilated), x)
    x = torch.where(thinner, 0.5 * (x + eroded), x)
    return x


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x: (B, 1, H, W) float in [0, 1], ink = 1. Returns an augmented batch of the same shape."""
    n, _, h, w = x.shape
    grid = F.affine_grid(random_affine(n, generator), [n, 1, h, w], align_corners=False)
    grid = grid + elastic_field(n, h, generator)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return change_thickness(x, generator).clamp_(0.0, 1.0)
