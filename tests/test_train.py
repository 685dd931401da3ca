"""Training: recipes resolve, a short run on real MNIST learns, checkpoints describe themselves, seeds reproduce."""

import json

import pytest
import torch
from click.testing import CliRunner

from digitscan.cli import main
from digitscan.models.checkpoint import load_checkpoint
from digitscan.training.classifier import make_config, train


def test_flags_override_the_recipe():
    config = make_config("paper", epochs=2, lr=None, limit=100)
    assert (config.arch, config.epochs, config.lr, config.batch_size, config.limit) == ("paper", 2, 1e-3, 32, 100)
    assert make_config("shipped").arch != "shipped"


@pytest.mark.slow
def test_short_run_learns_and_is_reproducible(mnist_dir, tmp_path):
    config = make_config("easy", epochs=2, limit=2000, seed=3, data=str(mnist_dir))
    records = []
    first = train(config, tmp_path / "a.safetensors", progress=False, on_epoch=records.append)
    second = train(config, None, progress=False)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["val_accuracy"] > 0.8  # 2,000 images, 2 epochs: well above chance (0.1)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    meta = load_checkpoint(first.checkpoint).meta
    assert meta["train_config"]["seed"] == 3 and meta["train_config"]["epochs"] == 2
    assert meta["data"]["sha256"]["t10k-images-idx3-ubyte"].startswith("0fa7898d")
    assert meta["metrics"]["epoch"] == first.best_epoch


def test_train_command_prints_json_lines_and_writes_curves(mnist_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(main, ["train", "--arch", "easy", "--epochs", "1", "--data", str(mnist_dir),
                                       "--out", str(out), "--json", "--eval-test", "--no-progress", "--limit", "500"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 1
    assert set(lines[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "elapsed_s",
                             "test_accuracy"}
    assert out.exists() and out.with_suffix(".curves.png").exists()


def test_train_with_missing_data_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "nowhere"), "--epochs", "1"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_temperature_scaling_recovers_a_known_temperature():
    from digitscan.training.evaluate import fit_temperature

    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 10, generator=generator) * 3
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=generator).squeeze(1)
    # A model whose logits are 2.5x too sharp should be calibrated by T ~ 2.5.
    assert abs(fit_temperature(true_logits * 2.5, labels) - 2.5) < 0.25


def test_one_cycle_schedule_runs_for_any_number_of_steps():
    from digitscan.training.classifier import make_scheduler

    for steps in range(1, 10):  # 4 steps used to divide by zero inside OneCycleLR
        config = make_config("shipped", epochs=1)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
        scheduler = make_scheduler(optimizer, config, steps_per_epoch=steps)
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
        assert optimizer.param_groups[0]["lr"] < config.lr  # annealed by the end


@pytest.mark.slow
def test_realworld_fine_tuning_keeps_the_last_epoch(mnist_dir, tmp_path, monkeypatch):
    """MNIST validation accuracy does not measure what --realworld trains for: its run keeps the last epoch.

    The pools and the threshold search are stood in for (their own tests are in test_realworld.py)."""
    import numpy as np

    import digitscan.training.classifier as train_module
    from digitscan.training.finetune import Pools

    rng = np.random.default_rng(0)
    pools = Pools(rng.integers(0, 255, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64),
                  rng.integers(0, 255, (32, 28, 28), dtype=np.uint8), rng.integers(0, 8, 64).astype(np.uint8),
                  np.full(32, 10, np.uint8))
    monkeypatch.setattr(train_module, "build_pools", lambda *args, **kwargs: pools)
    def rule(scores, images, labels, **kwargs):  # the threshold search, given the run's own scores function
        probability, logit = scores(images[:8])
        assert probability.shape == logit.shape == (8,) and ((probability > 0) & (probability <= 1)).all()
        return {"threshold": 0.5, "logit_threshold": 1.5, "score": "top logit"}

    monkeypatch.setattr(train_module, "choose_reject_threshold", rule)
    scores = iter([(0.1, 0.99), (0.2, 0.98), (0.3, 0.97)])  # validation gets worse every epoch
    monkeypatch.setattr(train_module, "loss_and_accuracy", lambda model, x, y: next(scores))
    weights_asked, original_draw_weights = [], train_module.draw_weights

    def draw_weights(pools, real_weight):
        weights_asked.append(real_weight)
        return original_draw_weights(pools, real_weight)

    monkeypatch.setattr(train_module, "draw_weights", draw_weights)
    config = make_config("easy", epochs=3, limit=600, data=str(mnist_dir), realworld=True, real_weight=5.0)
    result = train(config, tmp_path / "r.safetensors", progress=False)
    assert result.best_epoch == 3  # by validation accuracy it would be epoch 1
    meta = load_checkpoint(result.checkpoint).meta
    assert (meta["reject_threshold"], meta["reject_logit_threshold"]) == (0.5, 1.5)
    assert weights_asked == [5.0] * 3 and meta["train_config"]["real_weight"] == 5.0  # --real-weight, recorded
