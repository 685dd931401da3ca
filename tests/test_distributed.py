"""Data-parallel training: 2 processes on CPU (gloo) under torchrun train one model, and rank 0 saves it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digitscan.models.checkpoint import load_checkpoint
from digitscan.recognize import Recognizer
from digitscan.training.distributed import state_sha256

from helpers import EXAMPLES

# dsnet has BatchNorm, whose running statistics each process computes from its own batches: the harder case.
# 512 images, per-process batch 32: each process takes 8 steps on its 256 images.
SHORT_RUN = ["--arch", "dsnet", "--epochs", "1", "--limit", "512", "--batch-size", "32", "--val-split", "0.01",
             "--threads", "1", "--no-progress", "--json"]


def run(command: list[str], mnist_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIGITSCAN_DATA": str(mnist_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def check_one_model_from_two_processes(result: subprocess.CompletedProcess, out: Path) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(epochs) == 1, result.stdout  # only rank 0 reports
    assert sorted(p.name for p in out.parent.iterdir()) == [out.with_suffix(".curves.png").name, out.name]

    checkpoint = load_checkpoint(out)
    parallel = checkpoint.meta["distributed"]
    assert parallel["world_size"] == 2 and parallel["backend"] == "gloo"
    # Both processes ended with the same weights and BatchNorm statistics, and those are what was saved
    # (one epoch: the best epoch is the last).
    rank0, rank1 = parallel["replica_sha256"]
    assert rank0 == rank1 == state_sha256(checkpoint.model)
    assert checkpoint.meta["history"][0]["train_loss"] == epochs[0]["train_loss"]

    prediction = Recognizer.load(out).predict(EXAMPLES / "seven_ink_on_paper.png")
    assert len(prediction.probabilities) == 10 and abs(sum(prediction.probabilities) - 1) < 1e-4


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model(mnist_dir, tmp_path):
    out = tmp_path / "ddp.safetensors"
    result = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                  "-m", "digitscan", "train", *SHORT_RUN, "--out", str(out)], mnist_dir)
    check_one_model_from_two_processes(result, out)


@pytest.mark.slow
def test_distributed_flag_launches_torchrun_itself(mnist_dir, tmp_path):
    out = tmp_path / "ddp.safetensors"
    result = run([sys.executable, "-m", "digitscan", "train", "--distributed", "--nproc-per-node", "2", *SHORT_RUN,
                  "--out", str(out)], mnist_dir)
    assert "torch.distributed.run --standalone --nproc_per_node=2 -m digitscan train --arch dsnet" in result.stderr
    check_one_model_from_two_processes(result, out)
