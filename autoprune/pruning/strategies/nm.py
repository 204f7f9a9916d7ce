"""Semi-structured N:M sparsity: in every run of M consecutive input weights, N are kept.

2:4 is the pattern Ampere and Orin sparse tensor cores run at up to twice the dense speed (with
TensorRT or cuSPARSELt). Runs go along the input channels, as NVIDIA's ASP lays them out: for a
convolution, over the input channels at each kernel position. Layers whose input channel count
is not a multiple of M (depthwise convolutions, say) are left dense.
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.pruning.attention import is_conv1d
from autoprune.pruning.strategies.base import MASK, Decisions, PruneContext

N, M = 2, 4


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor | None:
    """A 0/1 mask keeping the `n` largest |w| in each run of `m` inputs, or None if it can't."""
    if weight.dim() == 4:
        per_position = weight.detach().permute(0, 2, 3, 1)  # (out, kh, kw, in)
    elif weight.dim() == 2:
        per_position = weight.detach()
    else:
        return None
    if per_position.shape[-1] % m:
        return None
    runs = per_position.abs().reshape(-1, m).double()
    # Stable sort: ties keep the earlier position, so the mask is the same every time.
    order = torch.sort(runs, dim=1, descending=True, stable=True).indices
    mask = torch.zeros_like(runs).scatter_(1, order[:, :n], 1.0).to(weight.dtype)
    mask = mask.reshape(per_position.shape)
    return mask.permute(0, 3, 1, 2).contiguous() if weight.dim() == 4 else mask


class NMStrategy:
    """Apply the 2:4 pattern to every layer of the group whose inputs allow it."""

    name = "nm"
    description = "semi-structured 2:4 sparsity, the pattern sparse tensor cores accelerate"
    kinds = frozenset({"conv", "linear"})
    stage = MASK
    fixed_ratio = 1.0 - N / M
    ramps = False

    def apply(self, context: PruneContext, decisions: Decisions) -> None:
        for group, _ in decisions:
            for layer in group.layers:
                module = context.module(layer)
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    mask = nm_mask(module.weight, N, M)
                elif is_conv1d(module):  # weight stored [in, out]
                    mask = nm_mask(module.weight.t(), N, M)
                    mask = None if mask is None else mask.t().contiguous()
                else:
                    continue
                if mask is not None:
                    context.add_mask(layer, mask)
