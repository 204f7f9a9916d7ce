"""The fine-tuned weights of trials that can still reach the front, held by the driver."""

from __future__ import annotations

import ray
import torch


@ray.remote(num_cpus=0)
class WeightStore:
    """Fine-tuned weights of the trials that can still reach the front, held by the driver.

    Trials may run on other nodes, whose files the driver cannot read; the object store
    brings their weights here instead. Dominated trials can never rejoin the front, so their
    weights are dropped as soon as they are.
    """

    def __init__(self) -> None:
        self.states: dict[str, dict[str, torch.Tensor]] = {}

    def put(self, key: str, state: dict[str, torch.Tensor]) -> None:
        self.states[key] = state

    def get(self, key: str) -> dict[str, torch.Tensor]:
        return self.states[key]

    def drop(self, keys: list[str]) -> None:
        for key in keys:
            self.states.pop(key, None)
