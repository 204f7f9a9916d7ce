"""Structured channel/filter pruning: channels are physically removed, not masked."""

from __future__ import annotations

import torch
import torch_pruning as tp

from autoprune.pruning.groups import PrunableGroup
from autoprune.pruning.strategies.base import PruneContext


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


class ChannelStrategy:
    """Remove the least important output channels of a group, with every coupled layer."""

    name = "channel"
    structural = True

    def apply(self, context: PruneContext, group: PrunableGroup, ratio: float) -> None:
        root = context.module(group.id)
        pruner = context.graph.get_pruner_of_module(root)
        channels = int(context.graph.get_out_channels(root))
        keep = kept_channels(channels, ratio, context.alignment)
        if keep >= channels:
            return
        full = context.graph.get_pruning_group(root, pruner.prune_out_channels,
                                               list(range(channels)))
        norm = 1 if context.importance == "l1" else 2
        scorer = tp.importance.GroupMagnitudeImportance(p=norm, normalizer=None)
        scores = scorer(full)
        # Stable sort: equal scores always drop the same channels, so a policy rebuilds
        # the same architecture and weights every time.
        order = torch.sort(scores.detach().double(), stable=True).indices
        drop = sorted(order[: channels - keep].tolist())
        context.graph.get_pruning_group(root, pruner.prune_out_channels, drop).prune()
