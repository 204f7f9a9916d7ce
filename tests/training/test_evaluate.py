"""Evaluation through the task, the fixed validation subset, and BatchNorm recalibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoprune.data import DataSplits
from autoprune.errors import TrialFailed
from autoprune.training import TrainSpec, evaluate, recalibrate_batchnorm, train
from tests.conftest import classification
from tests.training.conftest import images, net


class Echo(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _logits_work(labels: list[int], eval_batches: int | None = None, batch: int = 3):  # noqa: ANN202
    logits = torch.eye(4)[: len(labels)]
    split = TensorDataset(logits, torch.tensor(labels))
    return classification(DataSplits(split, split, split, "eye"), batch_size=2,
                          eval_batch_size=batch, eval_batches=eval_batches)


def test_accuracy_counts_correct_predictions() -> None:
    assert evaluate(Echo(), _logits_work([0, 1, 2, 3]))["accuracy"] == 1.0
    assert evaluate(Echo(), _logits_work([0, 1, 3, 2]))["accuracy"] == 0.5


def test_training_beats_chance_and_untrained_does_not(work) -> None:  # noqa: ANN001
    model = net()
    untrained = evaluate(model, work)["accuracy"]
    train(model, work, TrainSpec(steps=30, lr=0.05))
    assert untrained < 0.4 < evaluate(model, work)["accuracy"]  # chance is 0.25


def test_the_validation_subset_is_fixed_and_the_whole_split_is_kept(work) -> None:  # noqa: ANN001
    x, y = images()
    data = DataSplits(*(TensorDataset(x, y),) * 3, "images")
    few = classification(data, eval_batch_size=10, eval_batches=2)
    assert sum(len(b[1]) for b in few.eval_loader()) == 20
    first = [b[1] for b in few.eval_loader()]
    assert all(torch.equal(a, b) for a, b in zip(first, [b[1] for b in few.eval_loader()],
                                                  strict=True))
    assert sum(len(b[1]) for b in few.eval_loader(subset=False)) == 96
    assert sum(len(b[1]) for b in few.eval_loader("test")) == 20


def test_non_finite_outputs_fail_the_trial(work) -> None:  # noqa: ANN001
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((len(x), 4), float("nan"))

    with pytest.raises(TrialFailed, match="NaN"):
        evaluate(Broken(), work)


def test_recalibration_estimates_the_data_statistics() -> None:
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(bn)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 4, 4, generator=generator) * 2.0 + torch.tensor(
        [5.0, -3.0, 1.0]).view(1, 3, 1, 1)
    split = TensorDataset(x, torch.zeros(128, dtype=torch.long))
    work = classification(DataSplits(split, split, split, "x"), batch_size=64)
    recalibrate_batchnorm(model, work, batches=2)
    assert torch.allclose(bn.running_mean, x.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, x.var(dim=(0, 2, 3)), rtol=0.05)
    assert bn.momentum == 0.1, "the layer's own momentum is restored"
    assert not model.training


def test_recalibration_changes_only_statistics(work) -> None:  # noqa: ANN001
    model = net()
    bn = model[1]
    stale_mean, stale_var = bn.running_mean.clone(), bn.running_var.clone()
    recalibrate_batchnorm(model, work, batches=3)
    assert not torch.equal(bn.running_mean, stale_mean)
    assert not torch.equal(bn.running_var, stale_var)
    assert torch.equal(model[0].weight, net()[0].weight), "only statistics change"


def test_zero_batches_leave_statistics_alone(work) -> None:  # noqa: ANN001
    model = net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, work, batches=0)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
