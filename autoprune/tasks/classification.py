"""Classification: batches of (inputs, integer labels), or dicts of model inputs with their
`labels` (as Hugging Face datasets give them), cross-entropy, top-1 accuracy.

Outputs are logits of shape (N, classes), or (N, classes, ...) for a label per position
(segmentation): the loss and the accuracy then count every position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from autoprune.tasks.base import MAXIMIZE, Task


class Classification(Task):
    """Cross-entropy loss; primary metric top-1 `accuracy` (maximize), with `cross_entropy` the mean
    cross-entropy on the split."""

    name = "classification"
    metric = "accuracy"
    direction = MAXIMIZE

    def loss(self, output: torch.Tensor, batch: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(output.float(), self.labels(batch))

    def measure(self, output: torch.Tensor, batch: Any) -> dict[str, tuple[float, float]]:
        labels = self.labels(batch)
        output = output.float()
        if not torch.isfinite(output).all():
            raise FloatingPointError("model outputs are NaN or infinite")
        correct = (output.argmax(1) == labels).sum()
        loss = nn.functional.cross_entropy(output, labels, reduction="sum")
        return {"accuracy": (float(correct), labels.numel()),
                "cross_entropy": (float(loss), labels.numel())}

    def distill(self, student: torch.Tensor, teacher: torch.Tensor,
                temperature: float) -> torch.Tensor:
        # Classes are along dim 1; every other position is an example of its own.
        return super().distill(student.movedim(1, -1), teacher.movedim(1, -1), temperature)

    def weak(self, metrics: Mapping[str, float], output: torch.Tensor) -> str | None:
        classes = output.shape[1] if output.dim() > 1 else 1
        limit = 1.5 / max(classes, 1)
        if metrics[self.metric] < limit:
            return (f"accuracy {100 * metrics[self.metric]:.1f}% is at chance level for "
                    f"{classes} classes (below 1.5/{classes} = {100 * limit:.1f}%)")
        return None
