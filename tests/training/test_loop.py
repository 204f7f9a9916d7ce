"""The training loop: step budgets, masks stay applied, divergence fails the trial, the guard
holds every step, distillation pulls towards the teacher, precision and optimisers."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from autoprune.errors import TrialFailed
from autoprune.training import Compute, TrainSpec, apply_masks, evaluate, train
from tests.training.conftest import net

SPEC = TrainSpec(steps=12, lr=0.05)


def _loss(model: nn.Module, work) -> float:  # noqa: ANN001
    return evaluate(model, work)["cross_entropy"]


def test_training_lowers_the_loss_and_returns_it(work) -> None:  # noqa: ANN001
    model = net()
    before = _loss(model, work)
    loss = train(model, work, TrainSpec(steps=30, lr=0.05))
    assert loss < before and _loss(model, work) < before
    assert not model.training


def test_the_step_budget_is_exact_and_crosses_passes(work) -> None:  # noqa: ANN001
    steps: list[int] = []
    train(net(), work, dataclasses.replace(SPEC, steps=15), on_step=lambda s, _: steps.append(s))
    assert steps == list(range(1, 16)), "96 items at batch 16 are 6 steps a pass"


def test_same_spec_gives_identical_weights(work) -> None:  # noqa: ANN001
    first, second = net(), net()
    assert train(first, work, SPEC) == train(second, work, SPEC)
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_masked_weights_stay_zero(work) -> None:  # noqa: ANN001
    model = net()
    weight = model[0].weight
    mask = (torch.arange(weight.numel()) % 2).view_as(weight).float()
    masks = {"0.weight": mask}
    apply_masks(model, masks)
    before = weight.detach().clone()
    train(model, work, SPEC, masks=masks)
    assert (weight[mask == 0] == 0).all()
    assert not torch.equal(weight[mask == 1], before[mask == 1]), "unmasked weights still learn"


def test_zero_steps_leave_the_model_untouched(work) -> None:  # noqa: ANN001
    model = net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, work, TrainSpec(steps=0, lr=0.05))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_huge_learning_rate_fails_the_trial(work) -> None:  # noqa: ANN001
    with pytest.raises(TrialFailed, match="diverged"):
        train(net(), work, TrainSpec(steps=12, lr=1e30))


def test_training_runs_inside_the_guard(work) -> None:  # noqa: ANN001
    entered: list[bool] = []

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        entered.append(True)
        yield

    train(net(), work, TrainSpec(steps=7, lr=0.05), guard=guard)
    assert len(entered) == 7


def test_distillation_pulls_the_student_towards_the_teacher(work) -> None:  # noqa: ANN001
    teacher = net(seed=3)
    train(teacher, work, TrainSpec(steps=30, lr=0.05))
    batch = work.items(32)

    def gap(student: nn.Module) -> float:
        with torch.no_grad():
            return float((student.eval()(batch[0]) - teacher.eval()(batch[0])).abs().mean())

    alone, taught = net(seed=1), net(seed=1)
    train(alone, work, SPEC)
    train(taught, work, dataclasses.replace(SPEC, distill_alpha=1.0), teacher=teacher)
    assert gap(taught) < gap(alone)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_every_optimizer_and_schedule_learns(work, optimizer, schedule) -> None:  # noqa: ANN001
    model = net()
    before = _loss(model, work)
    lr = 0.05 if optimizer == "sgd" else 0.01
    train(model, work, TrainSpec(steps=30, lr=lr, optimizer=optimizer, schedule=schedule,
                                 warmup=0.1, weight_decay=0.01))
    assert _loss(model, work) < 0.8 * before


def test_bf16_autocast_trains_and_keeps_float_weights(work) -> None:  # noqa: ANN001
    model = net()
    before = _loss(model, work)
    train(model, work, TrainSpec(steps=30, lr=0.05, compute=Compute("cpu", "bf16")))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert _loss(model, work) < before


def test_gradient_clipping_bounds_each_step(work) -> None:  # noqa: ANN001
    free, clipped = net(), net()
    start = {k: v.clone() for k, v in free.state_dict().items()}
    spec = TrainSpec(steps=1, lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant",
                     warmup=0.0)
    train(free, work, spec)
    train(clipped, work, dataclasses.replace(spec, grad_clip=1e-3))

    def moved(model: nn.Module) -> float:
        return sum(float((p.detach() - start[n]).norm() ** 2)
                   for n, p in model.named_parameters()) ** 0.5

    assert moved(clipped) == pytest.approx(1e-3, rel=0.01) and moved(free) > 1e-2


def test_a_fine_tune_resumed_from_a_checkpoint_ends_where_the_uninterrupted_one_does():
    """Full-batch training (one batch holds the whole split, so the data order does not
    matter): stopped after step 8 and resumed from what the checkpoint handed out, the
    model ends with the weights of the run that was never interrupted."""
    import copy

    from torch.utils.data import TensorDataset

    from autoprune.data import DataSplits
    from autoprune.training import Checkpoints
    from tests.conftest import classification
    from tests.training.conftest import images

    x, y = images(32)
    data = DataSplits(TensorDataset(x, y), TensorDataset(x, y), TensorDataset(x, y), "full")
    full = classification(data, batch_size=32)
    spec = TrainSpec(steps=16, lr=0.05, optimizer="sgd", schedule="onecycle")
    saved: dict[int, tuple] = {}

    def keep(state) -> None:  # noqa: ANN001 - written away at once, as a trial does
        saved[state.step] = (copy.deepcopy(uninterrupted), copy.deepcopy(state))

    uninterrupted = net()
    train(uninterrupted, full, spec, checkpoints=Checkpoints((4, 8, 16), keep))
    assert sorted(saved) == [4, 8]  # never after the last step
    at_eight, state = saved[8]
    model, fresh = copy.deepcopy(at_eight), copy.deepcopy(at_eight)
    steps: list[int] = []
    train(model, full, spec, resume=state, on_step=lambda s, _: steps.append(s))
    assert steps == list(range(9, 17))
    for mine, theirs in zip(model.state_dict().values(),
                            uninterrupted.state_dict().values(), strict=True):
        assert torch.allclose(mine.float(), theirs.float(), atol=1e-5)
    # Without the optimiser's and the schedule's state it would not: the momentum and the
    # learning rate start over.
    train(fresh, full, dataclasses.replace(spec, steps=8))
    assert not all(torch.allclose(a.float(), b.float(), atol=1e-5) for a, b in zip(
        fresh.state_dict().values(), uninterrupted.state_dict().values(), strict=True))
