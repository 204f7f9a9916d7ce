"""The shared suite: every registered strategy on every zoo model (and a hybrid) must keep the
output shape, shrink the model more at a higher ratio, repeat bit for bit, export to ONNX and
survive a save/load round trip.

A new strategy in STRATEGIES or a new model in MODELS is tested here for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

from autoprune.config import ModelConfig
from autoprune.export import export_onnx, load_pruned, onnx_difference, save_pruned
from autoprune.models import build_model
from autoprune.pruning import (
    STRATEGIES,
    Policy,
    PrunableGroup,
    PruneSettings,
    apply_policy,
    check_groups,
    find_groups,
    model_stats,
)
from autoprune.pruning.apply import Calibration
from autoprune.pruning.strategies import MASK
from autoprune.tasks import Classification

INPUT_SHAPE = (1, 16, 16)
NUM_CLASSES = 10
LOW, HIGH = 0.25, 0.75
SETTINGS = PruneSettings()

# name -> (factory, keyword arguments); small variants of the zoo configs, for speed.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "resnet": ("autoprune.models.resnet.ResNet", {"width": 8, "blocks_per_stage": 1}),
    "mobilenet": ("autoprune.models.mobilenet.MobileNetV2", {}),
    "vgg": ("autoprune.models.vgg.VGG", {}),
    "mlp": ("autoprune.models.mlp.MLP", {}),
    "vit": ("autoprune.models.vit.ViT", {"depth": 2}),
    "hybrid": ("tests.fixtures.hybrid.HybridNet", {}),
}

PAIRS = [pytest.param(s, m, id=f"{s}-{m}") for s in STRATEGIES for m in MODELS]


def model_config(name: str) -> ModelConfig:
    target, kwargs = MODELS[name]
    return ModelConfig(name=name, target=target, checkpoint=None,
                       kwargs={"num_classes": NUM_CLASSES, "in_channels": 1, **kwargs})


def randomise_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Give norm layers random affine parameters and statistics, as a trained model has."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.copy_(torch.randn(module.running_mean.shape,
                                                      generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape,
                                                    generator=generator) + 0.5)


@dataclass
class Case:
    """One base model with its groups and the strategies each group can safely take."""

    name: str
    model: nn.Module
    example: torch.Tensor
    groups: list[PrunableGroup]
    allowed: dict[str, tuple[str, ...]]
    pruned: dict[tuple[str, float], nn.Module] = field(default_factory=dict)

    def policy(self, strategy: str, ratio: float) -> Policy:
        ids = [g.id for g in self.groups if strategy in self.allowed.get(g.id, ())]
        if not ids:
            kinds = ", ".join(sorted(STRATEGIES[strategy].kinds))
            pytest.skip(f"{self.name} has no usable {kinds} group for {strategy}")
        return Policy.uniform(ids, strategy, ratio)

    def prune(self, strategy: str, ratio: float) -> nn.Module:
        """The base model pruned by `strategy` on every usable group (cached; do not mutate)."""
        key = (strategy, ratio)
        if key not in self.pruned:
            self.pruned[key] = fresh_prune(self, strategy, ratio)
        return self.pruned[key]


def ratios(strategy: str) -> tuple[float, float]:
    """Low and high ratio to compare; fixed-ratio strategies are compared with no pruning."""
    fixed = STRATEGIES[strategy].fixed_ratio
    return (0.0, fixed) if fixed is not None else (LOW, HIGH)


def fresh_prune(case: Case, strategy: str, ratio: float) -> nn.Module:
    policy = case.policy(strategy, ratio)
    calibration = Calibration(Classification(),
                              (case.example, torch.zeros(len(case.example), dtype=torch.long)))
    return apply_policy(case.model, policy, case.groups, case.example, SETTINGS,
                        calibration).model


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    """Base models, built once per module and filled lazily."""
    return {}


@pytest.fixture
def case(cases: dict[str, Case], request: pytest.FixtureRequest) -> Case:
    name = request.node.callspec.params["model_name"]
    if name not in cases:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1)
        model = build_model(model_config(name))
        randomise_norms(model, generator)
        model.eval()
        example = torch.randn(1, *INPUT_SHAPE, generator=generator)
        groups = find_groups(model, example)
        allowed, _ = check_groups(model, groups, list(STRATEGIES), example, SETTINGS)
        cases[name] = Case(name, model, example, groups, allowed)
    return cases[name]


def batch_of_two() -> torch.Tensor:
    return torch.randn(2, *INPUT_SHAPE, generator=torch.Generator().manual_seed(2))


def architecture(model: nn.Module) -> tuple[list, dict[str, torch.Size]]:
    return ([(n, type(m).__name__) for n, m in model.named_modules()],
            {k: v.shape for k, v in model.state_dict().items()})


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize(("strategy", "model_name"), PAIRS)
def test_output_shape_is_kept(strategy: str, model_name: str, case: Case) -> None:
    pruned = case.prune(strategy, ratios(strategy)[1])
    with torch.no_grad():
        out = pruned(batch_of_two())
    assert out.shape == (2, NUM_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("strategy", "model_name"), PAIRS)
def test_higher_ratio_gives_a_smaller_model(strategy: str, model_name: str, case: Case) -> None:
    low, high = ratios(strategy)
    # Masks keep shapes: what shrinks is the count of nonzero weights. Dynamic gating keeps
    # every weight: what shrinks is the work of one inference.
    key = "nonzero_params" if STRATEGIES[strategy].stage == MASK else "params"
    key = "macs" if strategy == "dynamic" else key
    small = model_stats(case.prune(strategy, high), case.example)[key]
    large = model_stats(case.prune(strategy, low) if low > 0 else case.model, case.example)[key]
    assert small < large


@pytest.mark.parametrize(("strategy", "model_name"), PAIRS)
def test_same_policy_gives_the_same_model(strategy: str, model_name: str, case: Case) -> None:
    ratio = ratios(strategy)[1]
    first, second = case.prune(strategy, ratio), fresh_prune(case, strategy, ratio)
    assert architecture(first) == architecture(second)
    assert_same_weights(first, second)


@pytest.mark.parametrize(("strategy", "model_name"), PAIRS)
def test_onnx_export_matches_pytorch(strategy: str, model_name: str, case: Case,
                                     tmp_path) -> None:
    pruned = case.prune(strategy, ratios(strategy)[1])
    path = tmp_path / "pruned.onnx"
    export_onnx(pruned, case.example, path)
    # Exported at batch 1, run at batch 2: the batch dimension must stay dynamic (a gated
    # model's file is fixed at batch 1, and run one example at a time).
    assert onnx_difference(path, pruned, batch_of_two()) < 1e-4


@pytest.mark.parametrize(("strategy", "model_name"), PAIRS)
def test_bundle_round_trip(strategy: str, model_name: str, case: Case, tmp_path) -> None:
    ratio = ratios(strategy)[1]
    policy = case.policy(strategy, ratio)
    pruned = case.prune(strategy, ratio)
    path = tmp_path / "pruned.pt"
    save_pruned(path, pruned, base_model=case.model, model_config=model_config(model_name),
                example=case.example, groups=case.groups, policy=policy, prune=SETTINGS)
    loaded = load_pruned(path)
    assert loaded.policy == policy
    assert torch.equal(loaded.example, case.example)
    assert architecture(loaded.model) == architecture(pruned)
    assert_same_weights(loaded.model, pruned)
    batch = batch_of_two()
    with torch.no_grad():
        assert torch.equal(loaded.model(batch), pruned(batch))
