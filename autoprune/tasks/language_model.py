"""Language modelling: batches of token ids, next-token cross-entropy, perplexity.

A batch is a (N, T + 1) tensor of token ids: the model reads the first T and predicts each
next one, returning logits (N, T, vocabulary).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from autoprune.tasks.base import MINIMIZE, Task


class LanguageModel(Task):
    """Primary metric `perplexity` (minimize): exp of the mean next-token negative
    log-likelihood; also `nll` (nats per token) and `bits_per_token`."""

    name = "language_model"
    metric = "perplexity"
    direction = MINIMIZE

    def inputs(self, batch: Any) -> torch.Tensor:
        return batch[:, :-1]

    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(output.float().reshape(-1, output.shape[-1]),
                                           batch[:, 1:].reshape(-1))

    def measure(self, output: torch.Tensor, batch: Any) -> dict[str, tuple[float, float]]:
        targets = batch[:, 1:].reshape(-1)
        output = output.float().reshape(-1, output.shape[-1])
        if not torch.isfinite(output).all():
            raise FloatingPointError("model outputs are NaN or infinite")
        nll = nn.functional.cross_entropy(output, targets, reduction="sum")
        return {"nll": (float(nll), targets.numel())}

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        nll = means["nll"]
        return {"perplexity": math.exp(min(nll, 700.0)), "nll": nll,
                "bits_per_token": nll / math.log(2)}

    def weak(self, metrics: Mapping[str, float], output: torch.Tensor) -> str | None:
        vocabulary = output.shape[-1]
        if metrics[self.metric] > vocabulary / 2:
            return (f"perplexity {metrics[self.metric]:.1f} is near chance for a vocabulary "
                    f"of {vocabulary} (above half of it, {vocabulary / 2:g})")
        return None
