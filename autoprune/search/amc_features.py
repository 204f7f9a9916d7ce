"""What the AMC agent knows about each prunable group: a normalised layer description and
the latency model's table of what pruning that group alone saves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from autoprune.pruning import Decision, Policy, PrunableGroup, PruneSettings, apply_policy
from autoprune.pruning.groups import KINDS
from autoprune.pruning.replay import record_calls
from autoprune.search.space import SEED_PREFERENCE


@dataclass(frozen=True)
class GroupFeatures:
    """What the agent knows about one group, and the latency model's view of pruning it."""

    gid: str
    strategy: str | None  # the strategy the agent drives; None: the group is left alone
    static: tuple[float, ...]  # normalised layer description
    ratios: tuple[float, ...]  # the latency table's ratio grid ...
    saved: tuple[float, ...]  # ... and the fraction of base latency each removes (monotone)
    binary: bool = False  # a whole-block removal: ratio 1 removes it, 0 keeps it

    def saving(self, ratio: float) -> float:
        """Latency fraction removed at `ratio` (linear between table points)."""
        if self.strategy is None:
            return 0.0
        if self.binary:
            return self.saved[-1] if ratio >= 0.5 else 0.0
        r, s = self.ratios, self.saved
        if ratio <= r[0]:
            return s[0]
        for i in range(1, len(r)):
            if ratio <= r[i]:
                w = (ratio - r[i - 1]) / (r[i] - r[i - 1])
                return s[i - 1] + w * (s[i] - s[i - 1])
        return s[-1]

    def ratio_for(self, saving: float, lo: float, hi: float) -> float:
        """The least ratio in [lo, hi] that removes at least `saving` (hi if none does)."""
        if self.saving(lo) >= saving:
            return lo
        if self.binary:
            return hi
        a, b = lo, hi
        for _ in range(40):
            mid = (a + b) / 2
            if self.saving(mid) >= saving:
                b = mid
            else:
                a = mid
        return b


def layer_shapes(model: nn.Module, x: Any) -> dict[str, tuple[int, int, int, float]]:
    """Per Conv2d/Linear: (in channels, kernel size, stride, MACs) from one forward pass."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    shapes: dict[str, tuple[int, int, int, float]] = {}
    for name, calls in record_calls(model, x, layers).items():
        m, out = layers[name], calls[-1].output
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            macs = out.numel() * (m.in_channels // m.groups) * k
            shapes[name] = (m.in_channels, m.kernel_size[0], m.stride[0], float(macs))
        else:
            shapes[name] = (m.in_features, 1, 1, float(out.numel() * m.in_features))
    return shapes


def group_features(base_model: nn.Module, groups: Sequence[PrunableGroup],
                   choices: Mapping[str, Sequence[str]], ratio_max: float, x: Any,
                   prune: PruneSettings, latency_ms, points: int = 6,  # noqa: ANN001
                   calibration: Any = None) -> list[GroupFeatures]:
    """The agent's view of each group: its layer description and a latency table (the
    latency model's prediction with that group alone pruned at `points` ratios up to
    `ratio_max`; `latency_ms(model)` predicts). Savings are made monotone in the ratio. A
    group with no ratio strategy but block removal is driven as a keep/remove choice."""
    shapes = layer_shapes(base_model, x)
    total_macs = sum(s[3] for s in shapes.values()) or 1.0
    base_ms = latency_ms(base_model)
    grid = tuple(ratio_max * i / (points - 1) for i in range(points))
    features = []
    widest = max((g.channels for g in groups), default=1)
    for index, group in enumerate(groups):
        strategy = next((s for s in SEED_PREFERENCE if s in choices.get(group.id, ())), None)
        binary = strategy is None and "layer" in choices.get(group.id, ())
        layers = [shapes[name] for name in group.layers if name in shapes]
        c_in, kernel, stride, _ = layers[0] if layers else (0, 1, 1, 0.0)
        macs = sum(s[3] for s in layers) / total_macs
        saved = [0.0]
        table = grid
        if binary:
            strategy, table = "layer", (0.0, 1.0)
            pruned = apply_policy(base_model, Policy({group.id: Decision("layer", 1.0)}), groups,
                                  x, prune).model
            saved.append(max(0.0, 1.0 - latency_ms(pruned) / base_ms))
        elif strategy is not None:
            for ratio in grid[1:]:
                policy = Policy({group.id: Decision(strategy, ratio)})
                pruned = apply_policy(base_model, policy, groups, x, prune, calibration).model
                saved.append(max(saved[-1], 1.0 - latency_ms(pruned) / base_ms))
        else:
            saved = [0.0] * points
        onehot = [1.0 if group.kind == k else 0.0 for k in KINDS]
        static = (index / max(len(groups) - 1, 1), *onehot,
                  math.log1p(group.channels) / math.log1p(widest),
                  math.log1p(c_in) / math.log1p(max(widest, c_in, 1)),
                  kernel / 7.0, stride / 2.0, macs, saved[-1])
        features.append(GroupFeatures(group.id, strategy, tuple(static), table, tuple(saved),
                                      binary))
    return features
