"""transformers' `Conv1D` (GPT-2's projections: a Linear with its weight stored [in, out]) taught
to torch-pruning, which does not know it, so GPT-2-style MLPs form neuron groups."""

from __future__ import annotations

from collections.abc import Sequence

import torch_pruning as tp
from torch import nn

from autoprune.pruning.attention import is_conv1d


class Conv1DPruner(tp.pruner.function.BasePruningFunc):
    """Output features are the weight's columns, input features its rows."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = sorted(set(range(layer.weight.shape[1])) - set(idxs))
        layer.weight = nn.Parameter(layer.weight.detach()[:, keep].clone())
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias.detach()[keep].clone())
        layer.nf = len(keep)
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = sorted(set(range(layer.weight.shape[0])) - set(idxs))
        layer.weight = nn.Parameter(layer.weight.detach()[keep].clone())
        if hasattr(layer, "nx"):
            layer.nx = len(keep)
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.weight.shape[1]

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.weight.shape[0]


def custom_pruners(model: nn.Module) -> dict[type, tp.pruner.function.BasePruningFunc]:
    """torch-pruning pruners for the layer types of `model` it does not know."""
    return {type(m): Conv1DPruner() for m in model.modules()
            if is_conv1d(m)}

