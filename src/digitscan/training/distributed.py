"""Data-parallel training with torch.distributed: join the process group torchrun sets up, and the few collectives
training needs. Launch with `torchrun --nproc_per_node=N -m digitscan train ...`; outside torchrun all are no-ops.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn


def launched_by_torchrun() -> bool:
    """torchrun (torch.distributed.run) gives each process RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, Gloo between CPU processes (NCCL cannot move CPU tensors)."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(device: torch.device):
    """Under torchrun: join the job's process group for the duration of the block, then wait for every process
    (so none exits while another still needs it) and leave. Otherwise, or when a group exists already: nothing."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(local_device(device))
    # The env:// rendezvous: torchrun's agents already agreed on MASTER_ADDR:MASTER_PORT, RANK and WORLD_SIZE.
    dist.init_process_group(backend_for(device))
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """This process's GPU (cuda:LOCAL_RANK) when training on CUDA under torchrun; the device unchanged otherwise."""
    if device.type == "cuda" and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _collective_device() -> torch.device:
    # NCCL only reduces tensors that live on this process's GPU; Gloo takes CPU tensors.
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_over_ranks(*values: float) -> list[float]:
    """The sums of each value over all processes (the values themselves in a single process)."""
    if world_size() == 1:
        return list(values)
    totals = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(totals)
    return totals.tolist()


def average_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over all processes, in place.

    DDP keeps parameters identical by averaging gradients, but each process updates its BatchNorm statistics from
    its own batches (SyncBatchNorm would fix that, but only on GPUs). Averaging them at the end of an epoch makes
    every replica identical again and bases the statistics on all processes' data.
    """
    if world_size() == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world_size())


def state_sha256(model: nn.Module) -> str:
    """sha256 of every tensor in the state dict (names, dtypes, shapes and values), independent of memory format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def gather(value) -> list:
    """[value of rank 0, value of rank 1, ...] on every process ([value] in a single process)."""
    if world_size() == 1:
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values
