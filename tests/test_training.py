"""Training and evaluation: masks stay applied, divergence fails the trial, BN stats refresh."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from autoprune.errors import TrialFailed
from autoprune.training import TrainSpec, apply_masks, evaluate, recalibrate_batchnorm, train

SPEC = TrainSpec(epochs=2, lr=0.05, batch_size=16)


@pytest.fixture(scope="module")
def xy() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 4
    # Learnable: the class shifts the mean of the image.
    x = torch.randn(96, 1, 8, 8, generator=generator) + y.view(-1, 1, 1, 1).float()
    return x, y


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --- train ------------------------------------------------------------------------------------

def test_training_lowers_the_loss_and_returns_it(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    model = _net()
    before = nn.functional.cross_entropy(model.eval()(x), y).item()
    loss = train(model, x, y, TrainSpec(epochs=5, lr=0.05, batch_size=16))
    assert loss < before
    assert not model.training


def test_same_spec_gives_identical_weights(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    first, second = _net(), _net()
    assert train(first, x, y, SPEC) == train(second, x, y, SPEC)
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_masked_weights_stay_zero(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    model = _net()
    weight = model[0].weight
    mask = (torch.arange(weight.numel()) % 2).view_as(weight).float()
    masks = {"0.weight": mask}
    apply_masks(model, masks)
    before = weight.detach().clone()
    train(model, x, y, SPEC, masks=masks)
    assert (weight[mask == 0] == 0).all()
    assert not torch.equal(weight[mask == 1], before[mask == 1]), "unmasked weights still learn"


def test_zero_epochs_leave_the_model_untouched(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    model = _net()
    state = _state(model)
    train(model, x, y, TrainSpec(epochs=0, lr=0.05))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_huge_learning_rate_fails_the_trial(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    with pytest.raises(TrialFailed, match="diverged"):
        train(_net(), x, y, TrainSpec(epochs=2, lr=1e30, batch_size=16))


def test_nan_inputs_fail_the_trial(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    with pytest.raises(TrialFailed, match="diverged"):
        train(_net(), torch.full_like(x, float("nan")), y, SPEC)


def test_training_runs_inside_the_guard(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    entered: list[bool] = []

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        entered.append(True)
        yield

    train(_net(), x, y, TrainSpec(epochs=1, lr=0.05, batch_size=16), guard=guard)
    assert len(entered) == len(x) // 16


# --- evaluate ---------------------------------------------------------------------------------

def test_accuracy_lies_in_unit_interval(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    model = _net()
    untrained = evaluate(model, x, y)
    train(model, x, y, TrainSpec(epochs=5, lr=0.05, batch_size=16))
    trained = evaluate(model, x, y, batch_size=10)
    assert 0.0 <= untrained <= 1.0
    assert 0.0 <= trained <= 1.0
    assert trained > 0.25, "better than chance on a learnable task"


def test_accuracy_counts_correct_predictions() -> None:
    class Echo(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    logits = torch.eye(4)
    assert evaluate(Echo(), logits, torch.tensor([0, 1, 2, 3])) == 1.0
    assert evaluate(Echo(), logits, torch.tensor([0, 1, 3, 2]), batch_size=3) == 0.5


def test_non_finite_outputs_fail_the_trial(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = xy
    with pytest.raises(TrialFailed):
        evaluate(_net(), torch.full_like(x, float("nan")), y)


# --- recalibrate_batchnorm --------------------------------------------------------------------

def test_recalibration_estimates_the_data_statistics() -> None:
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(bn)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 4, 4, generator=generator) * 2.0 + torch.tensor([5.0, -3.0, 1.0]
                                                                             ).view(1, 3, 1, 1)
    recalibrate_batchnorm(model, x, batches=2, batch_size=64)
    assert torch.allclose(bn.running_mean, x.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, x.var(dim=(0, 2, 3)), rtol=0.05)
    assert bn.momentum == 0.1, "the layer's own momentum is restored"
    assert not model.training


def test_recalibration_changes_stale_statistics(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, _ = xy
    model = _net()
    bn = model[1]
    stale_mean, stale_var = bn.running_mean.clone(), bn.running_var.clone()
    recalibrate_batchnorm(model, x, batches=3, batch_size=16)
    assert not torch.equal(bn.running_mean, stale_mean)
    assert not torch.equal(bn.running_var, stale_var)
    assert torch.equal(model[0].weight, _net()[0].weight), "only statistics change"


def test_zero_batches_leave_statistics_alone(xy: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, _ = xy
    model = _net()
    state = _state(model)
    recalibrate_batchnorm(model, x, batches=0)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
