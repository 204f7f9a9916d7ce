"""`dynamic`: gate the inner channels of conv chains, so the kept channels depend on the input.

A gated group is a chain producer conv -> [BatchNorm] -> activations -> consumer conv, where
the producer's output channels reach nothing else (the inner channels of a residual block);
the ratio removes channels, as for static channel pruning, but which ones depends on the
input (see `gated_layers`). After gating, inference with the kept channels alone is checked
against running all of them masked.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from autoprune.errors import UserError
from autoprune.pruning.groups import dependency_graph
from autoprune.pruning.strategies.base import SURGERY, Decisions, PruneContext
from autoprune.pruning.strategies.channel import kept_channels
from autoprune.pruning.strategies.gated_layers import (
    GatedConv2d,
    GatedInputConv2d,
    gate_chain,
)
from autoprune.tasks import model_output


def _conv(module: object) -> bool:
    """A plain convolution, or one that an earlier chain of this policy already gated."""
    return type(module) in (nn.Conv2d, GatedConv2d, GatedInputConv2d)


def _chain(graph: tp.DependencyGraph, producer: nn.Conv2d, names: dict[nn.Module, str]
           ) -> tuple[nn.BatchNorm2d | None, nn.Conv2d]:
    """The BatchNorm (or None) and consumer conv fed by `producer`'s output channels alone."""
    pruner = graph.get_pruner_of_module(producer)
    group = graph.get_pruning_group(producer, pruner.prune_out_channels,
                                    list(range(producer.out_channels)))
    norms, consumers = [], []
    for item in group:
        module = item.dep.target.module
        if module is producer:
            continue
        if type(module) is nn.BatchNorm2d:
            norms.append(module)
        elif _conv(module) and graph.is_in_channel_pruning_fn(item.dep.handler):
            consumers.append(module)
        elif not (isinstance(module, (nn.ReLU, nn.ReLU6))
                  or tp.ops.module2type(module) == tp.ops.OPTYPE.ELEMENTWISE):
            raise UserError(f"its channels also reach {names.get(module, type(module).__name__)}"
                            "; only a conv -> [BatchNorm] -> activation -> conv chain is gated")
    if len(consumers) != 1 or len(norms) > 1:
        raise UserError(f"its channels reach {len(consumers)} convolutions and {len(norms)} "
                        "BatchNorms; a gated chain has one of each (or no BatchNorm)")
    norm, consumer = (norms[0] if norms else None), consumers[0]
    for conv in (producer, consumer):
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise UserError(f"{names[conv]} is a grouped or non-zero-padded convolution")
    if norm is not None and not (norm.affine and norm.track_running_stats):
        raise UserError(f"{names[norm]} has no affine parameters or running statistics")
    return norm, consumer


def _check(model: nn.Module, example_input: torch.Tensor, producers: list[GatedConv2d]) -> str:
    """Why inference with the kept channels alone differs from running all of them masked."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(example_input.shape, generator=generator)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            compact = model_output(model(x))
            for p in producers:
                p.full = True
            reference = model_output(model(x))
    finally:
        for p in producers:
            p.full = False
        model.train(training)
    error = float((compact - reference).abs().max())
    scale = float(reference.abs().max()) or 1.0
    return "" if error <= 1e-4 * scale else f"a zeroed channel does not stay zero ({error:.2g})"


class DynamicStrategy:
    """Gate the inner channels of conv chains: the kept channels depend on the input."""

    name = "dynamic"
    description = "dynamic channel gating: per input, only the top-k channels of a block run"
    kinds = frozenset({"conv"})
    stage = SURGERY
    fixed_ratio = None
    ramps = False

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        if context.example_input is None:
            raise ValueError("dynamic gating needs the context's example input")
        # Built afresh: earlier surgery (low-rank, layer removal) changed the modules.
        graph = dependency_graph(context.model, context.example_input)
        names = {m: n for n, m in context.model.named_modules()}
        gated = []
        for group, ratio in decisions:
            producer = context.module(group.id)
            if producer is None:  # its block was removed
                continue
            if not _conv(producer) or isinstance(producer, GatedConv2d):
                raise UserError(f"group {group.id!r} cannot be gated: it is a "
                                f"{type(producer).__name__}, not a plain Conv2d")
            keep = kept_channels(producer.out_channels, ratio, context.alignment)
            try:
                norm, consumer = _chain(graph, producer, names)
            except UserError as exc:
                raise UserError(f"group {group.id!r} cannot be gated: {exc}") from None
            if keep < producer.out_channels:
                gated.append(gate_chain(producer, norm, consumer, keep))
        if gated:
            reason = _check(context.model, context.example_input, gated)
            if reason:
                raise UserError(f"groups {', '.join(names[p] for p in gated)} cannot be gated: "
                                f"{reason}")
