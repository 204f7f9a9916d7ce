"""VGG-style plain convolutional network (Simonyan and Zisserman, 2015) for small inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

POOL = "M"


class VGG(nn.Module):
    """3x3 conv-BatchNorm-ReLU stages separated by max-pooling, then a two-layer classifier.

    `stages` lists output widths, with "M" for a 2x2 max-pool; no residuals, so every
    convolution is its own prunable group.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 stages: Sequence[int | str] = (32, 32, POOL, 64, 64, POOL, 128, 128, POOL),
                 hidden: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in stages:
            if item == POOL:
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                       nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
            channels = int(item)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))
