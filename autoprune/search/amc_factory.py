"""Building `search=amc`'s sampler for one model: the agent's features, measured once with
the hardware profile's latency model, and its options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from autoprune.errors import UserError
from autoprune.pruning import PrunableGroup, PruneSettings
from autoprune.search.amc import AMCSampler
from autoprune.search.amc_features import group_features
from autoprune.search.amc_options import AgentOptions
from autoprune.tasks import Objective


def agent_factory(base_model: nn.Module, groups: Sequence[PrunableGroup], space: Any,
                  x: Any, prune: PruneSettings, profile: Any, base_latency_ms: float,
                  max_latency_ms: float | None, objective: Objective | None = None,
                  reference: float = 1.0, calibration: Any = None):  # noqa: ANN201
    """A `make_sampler(agent=...)` callable building the AMC sampler for this model; `x` is
    one example's model input, `reference` the base model's metric, `calibration` what a
    gradient criterion scores channels on."""
    from autoprune.hardware.predictor import predict_latency

    if profile.roofline is None:
        raise UserError(f"search=amc needs a latency model for its action wall, and "
                        f"hardware={profile.name} has none (no roofline)")
    def build(options: Mapping[str, Any], seed: int) -> AMCSampler:
        opts = AgentOptions.from_dict(options)
        features = group_features(
            base_model, groups, space.choices, space.ratio_max, x, prune,
            lambda m: predict_latency(m, x, profile).median_ms, opts.table_points, calibration)
        cap = 1.0 if max_latency_ms is None else min(max_latency_ms / base_latency_ms, 1.0)
        return AMCSampler(features, space, base_latency_ms, dataclasses.asdict(opts), seed, cap,
                          objective, reference)

    return build

