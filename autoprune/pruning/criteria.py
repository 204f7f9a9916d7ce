"""Channel importance criteria: which channels of a group structured pruning removes first.

Each criterion scores every channel of a torch-pruning group (lower = removed first):

- `l1`, `l2`: magnitude of the channel's weights across all coupled layers.
- `fpgm`: distance to the geometric median of the filters (He et al., 2019): redundant
  filters, close to the others, go first.
- `taylor`: first-order Taylor estimate |w * dL/dw| of the loss change (Molchanov et al.,
  2019), from gradients of one calibration batch.
- `bn_scale`: |gamma| of the BatchNorm after the layer (network slimming, Liu et al., 2017).
  Groups without a BatchNorm are scored by `l1`.
"""

from __future__ import annotations

import torch
import torch_pruning as tp

CRITERIA = ("l1", "l2", "fpgm", "taylor", "bn_scale")
NEEDS_GRADIENTS = ("taylor",)


def _scorer(name: str) -> tp.importance.Importance:
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1, normalizer=None)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
    if name == "fpgm":
        return tp.importance.FPGMImportance(p=2, normalizer=None)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance(normalizer=None)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=None)
    raise ValueError(f"unknown criterion {name!r}; choose from {', '.join(CRITERIA)}")


def channel_scores(criterion: str, group: tp.Group) -> torch.Tensor:
    """One importance score per channel of `group`, as float64 on the CPU."""
    scores = _scorer(criterion)(group)
    if scores is None and criterion != "l1":
        scores = _scorer("l1")(group)
    if scores is None:  # only layers torch-pruning does not know (transformers' Conv1D)
        scores = _custom_l1(group)
    return scores.detach().double().cpu()


def _custom_l1(group: tp.Group) -> torch.Tensor:
    """L1 magnitude per channel over the group's layers pruned by our own pruners (weights
    stored [in, out])."""
    from autoprune.pruning.conv1d import Conv1DPruner

    parts = []
    for item in group:
        pruner = getattr(item.dep.pruning_fn, "__self__", None)
        if not isinstance(pruner, Conv1DPruner):
            continue
        weight = item.dep.layer.weight.detach().abs()
        out = item.dep.pruning_fn.__name__ == "prune_out_channels"
        local = weight[:, item.idxs].sum(0) if out else weight[item.idxs].sum(1)
        parts.append((torch.as_tensor(item.root_idxs), local))
    if not parts:
        raise ValueError("no layer of this group has weights to score")
    size = 1 + max(int(idx.max()) for idx, _ in parts)
    scores = torch.zeros(size, dtype=torch.float64)
    for idx, local in parts:
        scores.index_add_(0, idx, local.double())
    return scores
