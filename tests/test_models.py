"""The model registry: the paper's architecture exactly, every registered model builds and runs."""

import pytest
import torch
from click.testing import CliRunner

from digitscan.cli import main
from digitscan.models.architectures import (
    REGISTRY,
    SHIPPED_ARCH,
    build_model,
    count_parameters,
    fuse_for_inference,
    layer_table,
    recipe_for,
)

PAPER_SHAPES = [(26, 26, 64), (13, 13, 64), (11, 11, 64), (5, 5, 64), (3, 3, 64), (1, 1, 64),
                (64,), (64,), (32,), (10,)]
PAPER_PARAMS = [640, 0, 36_928, 0, 36_928, 0, 0, 4_160, 2_080, 330]


def test_paper_model_matches_fig10():
    model = build_model("paper")
    rows = layer_table(model)
    assert [r["output_shape"] for r in rows] == PAPER_SHAPES
    assert [r["params"] for r in rows] == PAPER_PARAMS
    assert count_parameters(model) == 81_066


def test_paper_recipe_is_the_papers():
    recipe = recipe_for("paper")
    recipe_fields = (recipe.epochs, recipe.batch_size, recipe.lr, recipe.val_split, recipe.optimizer)
    assert recipe_fields == (5, 32, 1e-3, 0.3, "adam")
    assert recipe.augment == "none" and recipe.schedule == "constant"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_architecture_builds_and_predicts(name):
    model = build_model(name).eval()
    with torch.no_grad():
        logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    assert build_model(name, num_classes=4)(torch.rand(2, 1, 28, 28)).shape == (2, 4)


def test_shipped_alias_and_unknown_name():
    assert type(build_model("shipped")) is type(build_model(SHIPPED_ARCH))
    assert recipe_for("shipped") == recipe_for(SHIPPED_ARCH)
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        build_model("nope")


def test_summary_command_prints_the_layer_table():
    result = CliRunner().invoke(main, ["summary", "--arch", "paper"])
    assert result.exit_code == 0, result.output
    for text in ["26×26×64", "13×13×64", "11×11×64", "5×5×64", "3×3×64", "1×1×64", "36,928", "4,160", "2,080", "330",
                 "Total params: 81,066"]:
        assert text in result.output


def test_summary_rejects_unknown_arch():
    result = CliRunner().invoke(main, ["summary", "--arch", "resnet9000"])
    assert result.exit_code == 1
    assert "unknown architecture" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_fusing_batchnorm_keeps_the_function(name):
    torch.manual_seed(0)
    model = build_model(name)
    model.train()
    for _ in range(3):  # move the BN running statistics away from their initial values
        model(torch.rand(16, 1, 28, 28) * 2)
    model.eval()
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        fused = fuse_for_inference(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), expected, atol=1e-4, rtol=1e-4)


def test_dsnet_l_head_pools_the_windows_of_an_adaptive_3x3_pool():
    """Its head is MaxPool2d(3, stride=2) because ONNX cannot export AdaptiveMaxPool2d(3): on the 7x7 map they
    must be the same function, or weights trained with one would not mean the same in the other."""
    pool = next(m for m in build_model("dsnet-l") if isinstance(m, torch.nn.MaxPool2d) and m.kernel_size == 3)
    x = torch.randn(4, 192, 7, 7)
    torch.testing.assert_close(pool(x), torch.nn.AdaptiveMaxPool2d(3)(x), rtol=0, atol=0)
