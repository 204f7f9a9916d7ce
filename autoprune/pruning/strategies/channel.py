"""Structured channel/filter and neuron pruning: removed physically through the dependency graph."""

from __future__ import annotations

import torch

from autoprune.pruning.criteria import channel_scores
from autoprune.pruning.strategies.base import GRAPH, Decisions, PruneContext


def kept_channels(channels: int, ratio: float, alignment: int) -> int:
    """Channels left after removing `ratio` of them, rounded to a multiple of `alignment`.

    Never fewer than one alignment step (or all channels, when there are fewer than that):
    an unaligned count can make a kernel slower even though it does less arithmetic.
    """
    if ratio <= 0.0:
        return channels
    if channels <= alignment:
        return channels
    keep = channels * (1.0 - ratio)
    aligned = alignment * max(1, int(keep / alignment + 0.5))
    return min(channels, aligned)


def prune_group_channels(context: PruneContext, root_name: str, keep: int) -> None:
    """Cut the group rooted at `root_name` down to `keep` channels, least important first."""
    root = context.module(root_name)
    graph = context.graph
    pruner = graph.get_pruner_of_module(root)
    channels = int(graph.get_out_channels(root))
    if keep >= channels:
        return
    full = graph.get_pruning_group(root, pruner.prune_out_channels, list(range(channels)))
    scores = channel_scores(context.criterion, full)
    # Stable sort: equal scores always drop the same channels, so a policy rebuilds the same
    # architecture and weights every time.
    order = torch.sort(scores, stable=True).indices.tolist()
    count = channels - keep
    group = graph.get_pruning_group(root, pruner.prune_out_channels, sorted(order[:count]))
    # A group that spans a concatenation maps its channels onto the branches; removing the
    # least important ones must not empty a branch (a layer with zero channels). Keep the next
    # most important channel until every layer keeps at least one.
    while count > 0 and not graph.check_pruning_group(group):
        count -= 1
        group = graph.get_pruning_group(root, pruner.prune_out_channels, sorted(order[:count]))
    if count > 0:
        group.prune()


class ChannelStrategy:
    """Remove the least important output channels (filters) of a convolution group."""

    name = "channel"
    description = "structured filter pruning of conv groups, channels physically removed"
    kinds = frozenset({"conv"})
    stage = GRAPH
    fixed_ratio = None
    ramps = True

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        for group, ratio in decisions:
            prune_group_channels(context, group.id,
                                 kept_channels(group.channels, ratio, context.alignment))


class NeuronStrategy(ChannelStrategy):
    """Remove the least important neurons (output features) of a Linear group."""

    name = "neuron"
    description = "structured neuron pruning of Linear/MLP groups, neurons physically removed"
    kinds = frozenset({"linear"})
