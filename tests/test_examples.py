"""The examples users copy from: the regression task is searched by tests/study, and the GPU
recipe composes into the config it promises (torchvision is not importable here, so it is
composed, not searched)."""

from __future__ import annotations

import os
from pathlib import Path

from autoprune.cli import compose, expand_study

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_imagenet_recipe_composes_with_nested_transforms(monkeypatch):
    monkeypatch.chdir(EXAMPLES)  # studies are looked up in ./studies first
    raw = compose("search", expand_study(["study=imagenet_resnet50"]))
    assert raw["model"]["_target_"] == "torchvision.models.resnet50"
    assert raw["model"]["pretrained"] is True and raw["model"]["weights"] == "IMAGENET1K_V2"
    train = raw["data"]["train"]
    assert train["_target_"] == "torchvision.datasets.ImageFolder"
    steps = [t["_target_"].rsplit(".", 1)[1] for t in train["transform"]["transforms"]]
    assert steps == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert raw["data"]["val"]["_target_"] == "torchvision.datasets.ImageFolder"
    assert raw["ray"]["gpus_per_trial"] == 0.5 and raw["finetune"]["precision"] == "bf16"
    assert raw["hardware"]["name"] == "cuda" and os.getcwd() == str(EXAMPLES)
