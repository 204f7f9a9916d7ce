"""A study's setup on the driver: the workload, the base model, its prunable groups and the
reference numbers every trial is compared with.

Bad input is caught here, before anything is written: a model that does not fit the data or
the task, a model with nothing to prune, a base model at chance level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoprune import specs
from autoprune.config import Settings
from autoprune.errors import UserError
from autoprune.models import build_model
from autoprune.models.base import BaseModel, prepare_base_model
from autoprune.pruning import STRATEGIES, PrunableGroup, check_groups, find_groups, model_stats
from autoprune.search.objective import TrialSettings, calibration, prune_and_finetune
from autoprune.search.reference import Reference
from autoprune.tasks import Task, call_model
from autoprune.terminal import Meter
from autoprune.training import evaluate
from autoprune.workload import Workload

Say = Callable[[str], None]


@dataclass
class Prepared:
    """Everything the trials share, ready on the driver."""

    task: Task
    workload: Workload
    example: Any
    base: BaseModel
    groups: list[PrunableGroup]
    choices: dict[str, tuple[str, ...]]
    rejected: dict[str, str]
    stats: dict[str, float]
    metric: float  # the base model's metric on the validation (sub)set
    test_metric: float


def check_fits(model: nn.Module, workload: Workload) -> torch.Tensor:
    """Run `model` on two training items through the task (output, loss); returns the output.
    Raises UserError naming what does not fit."""
    task = workload.task
    batch = workload.items(2)
    try:
        with torch.no_grad():
            raw = call_model(model.eval(), task.inputs(batch))
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"the data's inputs do not fit the model: {type(exc).__name__}: "
                        f"{first}") from exc
    try:
        output = task.output(raw)
        with torch.no_grad():
            task.loss(output, batch)
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"the model's output does not fit task {task.name}: "
                        f"{type(exc).__name__}: {first}") from exc
    return output


def prunable_groups(model: nn.Module, settings: Settings, workload: Workload,
                    example: Any) -> list[PrunableGroup]:
    """The model's prunable groups after checking it takes the data; raises UserError."""
    check_fits(model, workload)
    groups = find_groups(model, example, settings.pruning.ignore)
    if not groups:
        raise UserError(f"model {settings.model.label} has no prunable groups "
                        "(Conv2d/Linear layers besides the output layer)")
    return groups


def base_model(settings: Settings, workload: Workload, say: Say) -> BaseModel:
    """The base model, trained first (with its progress shown) when nothing gives weights."""
    spec = specs.train_spec(settings, base=True)
    meter = Meter("training the base model", spec.steps)
    base = prepare_base_model(settings.model, settings.data, spec, workload,
                              settings.cache_dir, say, on_step=meter)
    meter.done()
    return base


def prepare(settings: Settings, say: Say = print) -> Prepared:
    """Build the workload and base model, find and check the groups, score the base model."""
    task = specs.build_task(settings.task)
    workload = specs.workload(settings, task)
    example = workload.example()
    if not (settings.model.checkpoint or settings.model.pretrained):
        # An untrained copy has the same architecture: catch a model that cannot work
        # before spending minutes training it.
        prunable_groups(build_model(settings.model), settings, workload, example)
    base = base_model(settings, workload, say)
    groups = prunable_groups(base.model, settings, workload, example)
    compute = specs.compute(settings.finetune)
    metrics = evaluate(base.model, workload, compute=compute)
    base.model.cpu()
    weak = task.weak(metrics, check_fits(base.model, workload))
    if weak and not settings.search.allow_weak_base:
        how = ("pass a trained model.checkpoint, drop model.pretrained to train it first, "
               if base.source in ("pretrained", "checkpoint") else
               "train it longer (finetune.base_steps, finetune.base_lr), ")
        raise UserError(f"the base model ({base.source}) is no better than chance: {weak}; "
                        f"{how}or set search.allow_weak_base=true to search anyway")
    test = evaluate(base.model, workload, "test", subset=False, compute=compute)
    base.model.cpu()
    choices, rejected = _choices(base.model, groups, settings, workload, example, say)
    return Prepared(task, workload, example, base, [g for g in groups if g.id in choices],
                    choices, rejected, model_stats(base.model, example), metrics[task.metric],
                    test[task.metric])


def _choices(model: nn.Module, groups: list[PrunableGroup], settings: Settings,
             workload: Workload, example: Any,
             say: Say) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    pruning = settings.pruning
    # The middle and both ends of the searched range: a cut that empties a branch or breaks
    # a head count shows up at one of them.
    extremes = sorted({pruning.ratio_min + pruning.ratio_step, 0.5, pruning.ratio_max})
    choices, rejected = check_groups(model, groups, pruning.strategies, example,
                                     specs.prune_settings(settings), extremes,
                                     calibration(workload))
    for key, reason in rejected.items():
        gid, _, strategy = key.rpartition("/")
        say(f"group {gid}: {strategy} is left out, it breaks the model ({reason})")
    if not choices:
        first = next(iter(rejected.values()), "no enabled strategy acts on its groups")
        raise UserError(f"no group of model {settings.model.label} can be pruned by "
                        f"{', '.join(pruning.strategies)} without breaking it; first: {first}")
    used = {name for names in choices.values() for name in names}
    for name in pruning.strategies:
        if name not in used:
            say(f"strategy {name} has nothing to act on in {settings.model.label} (it prunes "
                f"{', '.join(sorted(STRATEGIES[name].kinds))} groups)")
    return choices, rejected


def finetuned_reference(prepared: Prepared, settings: TrialSettings, say: Say) -> float:
    """The base model's metric after a trial's fine-tuning, unpruned (see Reference)."""
    from autoprune.pruning import Policy

    steps = settings.finetune.steps
    meter = Meter("fine-tuning the unpruned base like a trial (the like-for-like reference)",
                  steps)
    model = prune_and_finetune(Policy({}), prepared.base.model, prepared.groups,
                               prepared.workload, settings,
                               on_step=lambda _m, step, loss: meter(step, loss))
    meter.done()
    value = evaluate(model, prepared.workload, compute=settings.finetune.compute)
    return value[prepared.task.metric]


def reference(prepared: Prepared, latency_ms: float, finetuned: float | None) -> Reference:
    return Reference(prepared.task.objective, prepared.metric, latency_ms,
                     prepared.test_metric, finetuned)
