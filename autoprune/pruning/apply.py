"""Apply a policy to a model: plan from data, then change the model."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from autoprune.errors import UserError
from autoprune.pruning.criteria import NEEDS_GRADIENTS
from autoprune.pruning.groups import PrunableGroup, build_graph
from autoprune.pruning.policy import Decision, Policy
from autoprune.pruning.strategies import GRAPH, MASK, STRATEGIES, PruneContext, get_strategy


@dataclass
class PrunedModel:
    """A pruned model and the weight masks that fine-tuning must keep applied."""

    model: nn.Module
    masks: dict[str, torch.Tensor]


@dataclass(frozen=True)
class PruneSettings:
    """What pruning needs besides the policy: shared by every trial of a study."""

    alignment: int = 1
    criterion: str = "l1"
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class Calibration:
    """A fixed training batch and the task that scores it: what gradient-based criteria
    (taylor) take their gradients from."""

    task: Any  # autoprune.tasks.Task
    batch: Any

    def backward(self, model: nn.Module) -> None:
        """Fill `model`'s gradients with those of the task's loss on the batch."""
        from autoprune.tasks import call_model

        model.zero_grad(set_to_none=True)
        output = self.task.output(call_model(model, self.task.inputs(self.batch)))
        self.task.loss(output, self.batch).backward()


def _gradients(model: nn.Module, calibration: Calibration | None) -> None:
    if calibration is None:
        raise UserError("the taylor criterion needs a calibration batch of training data")
    calibration.backward(model)


def apply_policy(
    model: nn.Module,
    policy: Policy,
    groups: Sequence[PrunableGroup],
    example_input: Any,
    settings: PruneSettings = PruneSettings(),  # noqa: B008 - frozen, never mutated
    calibration: Calibration | None = None,
    fraction: float = 1.0,
    inplace: bool = False,
) -> PrunedModel:
    """Return `model` pruned by `policy`: a deep copy, or `model` itself when `inplace`.

    `fraction` < 1 is one step of an iterative schedule: ratios of strategies that ramp are
    scaled by it, the others wait for the last step (fraction 1). Graph strategies run first,
    then module surgery, then masks, so masks match the final shapes. Same model, policy and
    groups give the same result, bit for bit. `calibration` is needed only by gradient-based
    criteria.
    """
    known = {g.id: g for g in groups}
    unknown = sorted(set(policy.decisions) - set(known))
    if unknown:
        raise UserError(f"policy names unknown group {unknown[0]!r}; groups: {', '.join(known)}")
    for gid, decision in policy.decisions.items():
        strategy = get_strategy(decision.strategy)
        if known[gid].kind not in strategy.kinds:
            raise UserError(f"strategy {strategy.name} cannot prune {known[gid].kind} group "
                            f"{gid!r}; it acts on {', '.join(sorted(strategy.kinds))} groups")
    if policy.quantize == "int8" and any(d.strategy == "dynamic" and d.ratio > 0
                                         for d in policy.decisions.values()):
        raise UserError("a policy with dynamic gating cannot be quantised to int8 (int8 "
                        "quantisation cannot trace the gates); use quantize: none")
    pruned = model if inplace else copy.deepcopy(model)
    pruned.eval()
    final = fraction >= 1.0
    plan: dict[str, list[tuple[PrunableGroup, float]]] = {}
    for gid, decision in policy.decisions.items():
        strategy = STRATEGIES[decision.strategy]
        if decision.ratio <= 0 or not (strategy.ramps or final):
            continue
        ratio = decision.ratio * fraction if strategy.ramps else decision.ratio
        plan.setdefault(strategy.name, []).append((known[gid], ratio))
    graph = None
    if any(STRATEGIES[name].stage == GRAPH for name in plan):
        if settings.criterion in NEEDS_GRADIENTS:
            _gradients(pruned, calibration)
        graph, _ = build_graph(pruned, example_input, settings.ignored)
    context = PruneContext(pruned, graph, settings.alignment, settings.criterion,
                           example_input=example_input)
    order = sorted(plan, key=lambda name: (STRATEGIES[name].stage, list(STRATEGIES).index(name)))
    for name in order:
        STRATEGIES[name].apply(context, plan[name])
    pruned.zero_grad(set_to_none=True)
    return PrunedModel(pruned.eval(), context.masks)


def check_groups(
    model: nn.Module,
    groups: Sequence[PrunableGroup],
    strategies: Sequence[str],
    example_input: Any,
    settings: PruneSettings = PruneSettings(),  # noqa: B008 - frozen, never mutated
    ratios: Sequence[float] = (0.5,),
    calibration: Calibration | None = None,
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Which of `strategies` each group can take without breaking the model.

    Each structural strategy (one that changes shapes or modules) is tried on each group alone,
    at each of `ratios` (or its fixed ratio), on a copy; the copy must still run and give
    outputs of the original shape. Code that hard-codes a channel count (a `view` to a fixed
    width, say) breaks here, and that choice is removed with the reason, instead of producing a
    broken model in some trial later. Returns ({group id: usable strategies}, {"group/strategy":
    reason}); groups with no usable strategy are left out of the first. `calibration` is
    needed only by gradient-based criteria.
    """
    with torch.no_grad():
        expected = _output(model.eval(), example_input).shape
    allowed: dict[str, tuple[str, ...]] = {}
    rejected: dict[str, str] = {}
    for group in groups:
        usable = []
        for name in strategies:
            strategy = get_strategy(name)
            if group.kind not in strategy.kinds:
                continue
            if strategy.stage != MASK:
                tried = [strategy.fixed_ratio] if strategy.fixed_ratio is not None else ratios
                reason = next(filter(None, (
                    _breaks(model, group, groups, strategy.name, ratio, example_input,
                            expected, settings, calibration) for ratio in tried if ratio > 0)),
                    "")
                if reason:
                    rejected[f"{group.id}/{name}"] = reason
                    continue
            usable.append(name)
        if usable:
            allowed[group.id] = tuple(usable)
    return allowed, rejected


def _output(model: nn.Module, inputs: Any) -> torch.Tensor:
    from autoprune.tasks import call_model, model_output

    return model_output(call_model(model, inputs))


def _breaks(model: nn.Module, group: PrunableGroup, groups: Sequence[PrunableGroup],
            strategy: str, ratio: float, example_input: Any, expected: torch.Size,
            settings: PruneSettings, calibration: Calibration | None) -> str:
    """Why pruning `group` alone with `strategy` breaks the model, or "" when it does not."""
    policy = Policy({group.id: Decision(strategy, ratio)})
    try:
        pruned = apply_policy(model, policy, groups, example_input, settings, calibration).model
        with torch.no_grad():
            shape = _output(pruned, example_input).shape
        if shape != expected:
            raise ValueError(f"output shape changed from {tuple(expected)} to {tuple(shape)}")
    except Exception as exc:  # any failure means this choice is unsafe
        first = " ".join(str(exc).split())[:160] or type(exc).__name__
        return f"{type(exc).__name__}: {first}"
    return ""


def model_stats(model: nn.Module, example_input: Any) -> dict[str, float]:
    """Return params, nonzero params, sparsity, MACs and dense size in MB of a float model.

    MACs are those of one inference pass: for a gated model, of the channels that run.
    """
    from autoprune.pruning.strategies.gated_layers import gated_macs, is_gated

    macs, params = tp.utils.count_ops_and_params(model, example_input)
    if is_gated(model):
        macs += gated_macs(model, example_input)
    macs += _conv1d_macs(model, example_input)
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    size += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"params": float(total), "nonzero_params": float(nonzero),
            "sparsity": 1.0 - nonzero / total if total else 0.0, "macs": float(macs),
            "size_mb": size / 1e6}


def _conv1d_macs(model: nn.Module, example_input: Any) -> float:
    """Multiply-accumulates of transformers' Conv1D layers (GPT-2's projections), which the
    generic counter does not know: inputs x outputs per position."""
    from autoprune.pruning.attention import is_conv1d
    from autoprune.pruning.replay import record_calls

    names = [n for n, m in model.named_modules()
             if is_conv1d(m)]
    if not names:
        return 0.0
    total = 0.0
    for name, calls in record_calls(model, example_input, names).items():
        weight = model.get_submodule(name).weight
        total += sum(call.output.numel() * weight.shape[0] for call in calls)
    return total
