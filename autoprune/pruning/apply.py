"""Apply a policy to a copy of a model: plan from data, then change the copy."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from autoprune.errors import UserError
from autoprune.pruning.groups import PrunableGroup, build_graph
from autoprune.pruning.policy import Decision, Policy
from autoprune.pruning.strategies import PruneContext, get_strategy


@dataclass
class PrunedModel:
    """A pruned copy and the weight masks that fine-tuning must keep applied."""

    model: nn.Module
    masks: dict[str, torch.Tensor]


def apply_policy(
    model: nn.Module,
    policy: Policy,
    groups: Sequence[PrunableGroup],
    example_input: torch.Tensor,
    alignment: int = 1,
    importance: str = "l1",
    ignored: Sequence[str] = (),
) -> PrunedModel:
    """Return a pruned deep copy of `model`; `model` itself is left untouched.

    Structural strategies run first (in group order), then mask-based ones, so that masks
    match the final shapes. Same model, policy and groups give the same result, bit for bit.
    """
    known = {g.id: g for g in groups}
    unknown = sorted(set(policy.decisions) - set(known))
    if unknown:
        raise UserError(f"policy names unknown group {unknown[0]!r}; groups: {', '.join(known)}")
    pruned = copy.deepcopy(model).eval()
    graph, _ = build_graph(pruned, example_input, ignored)
    context = PruneContext(pruned, graph, alignment, importance)
    steps = [(get_strategy(d.strategy), known[gid], d.ratio)
             for gid, d in policy.decisions.items() if d.ratio > 0]
    for strategy, group, ratio in sorted(steps, key=lambda s: not s[0].structural):
        strategy.apply(context, group, ratio)
    return PrunedModel(pruned, context.masks)


def check_groups(
    model: nn.Module,
    groups: Sequence[PrunableGroup],
    example_input: torch.Tensor,
    alignment: int = 1,
    ignored: Sequence[str] = (),
) -> tuple[list[PrunableGroup], dict[str, str]]:
    """Split `groups` into those that prune into a working model and those that do not.

    Each group is channel-pruned alone, by half, on a copy; the copy must still run and give
    outputs of the original shape. Code that hard-codes a channel count (a `view` to a fixed
    width, say) breaks here, and its group is rejected with the reason, instead of producing
    a broken model in some trial later.
    """
    with torch.no_grad():
        expected = model.eval()(example_input).shape
    usable, rejected = [], {}
    for group in groups:
        policy = Policy({group.id: Decision("channel", 0.5)})
        try:
            pruned = apply_policy(model, policy, groups, example_input, alignment,
                                  ignored=ignored).model
            with torch.no_grad():
                shape = pruned(example_input).shape
            if shape != expected:
                raise ValueError(f"output shape changed from {tuple(expected)} to "
                                 f"{tuple(shape)}")
        except Exception as exc:  # any failure means this group is unsafe to prune
            first = " ".join(str(exc).split())[:160] or type(exc).__name__
            rejected[group.id] = f"{type(exc).__name__}: {first}"
            continue
        usable.append(group)
    return usable, rejected


def model_stats(model: nn.Module, example_input: torch.Tensor) -> dict[str, float]:
    """Return params, nonzero params, MACs and dense size in MB of `model`."""
    macs, params = tp.utils.count_ops_and_params(model, example_input)
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    size += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"params": float(params), "nonzero_params": float(nonzero), "macs": float(macs),
            "size_mb": size / 1e6}
