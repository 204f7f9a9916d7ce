"""Pruned-model bundles reload to the same model (float and int8), bad files are user errors, and
TorchScript exports run without autoprune and agree with PyTorch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.config import ModelConfig
from autoprune.errors import UserError
from autoprune.export import export_onnx, export_torchscript, load_pruned, save_pruned
from autoprune.models import build_model
from autoprune.pruning import (
    Decision,
    Policy,
    PruneSettings,
    apply_policy,
    find_groups,
)
from autoprune.pruning.quantize import is_quantized, quantize_int8

INPUT_SHAPE = (1, 16, 16)


def inputs(count: int) -> torch.Tensor:
    return torch.zeros(count, *INPUT_SHAPE)
SETTINGS = PruneSettings(alignment=4)
RESNET = ModelConfig(name="resnet", target="autoprune.models.resnet.ResNet", checkpoint=None,
                     kwargs={"num_classes": 10, "in_channels": 1, "width": 8,
                             "blocks_per_stage": 2})
VIT = ModelConfig(name="vit", target="autoprune.models.vit.ViT", checkpoint=None,
                  kwargs={"num_classes": 10, "in_channels": 1, "depth": 2})
HYBRID = ModelConfig(name="hybrid", target="tests.fixtures.hybrid.HybridNet", checkpoint=None,
                     kwargs={"num_classes": 10, "in_channels": 1})
# Each model pruned by every strategy that fits one of its groups.
STRATEGY_BY_KIND = {"conv": "channel", "linear": "neuron", "attention": "head", "block": "layer"}


def _inputs(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, *INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))


def _pruned(config: ModelConfig, quantize: str = "none"):
    """(pruned float model, groups, policy): the last block removed, then outside it the first
    group of each other kind pruned structurally and one more conv/linear group masked."""
    torch.manual_seed(0)
    model = build_model(config).eval()
    example = _inputs(1, 0)
    groups = find_groups(model, example)
    blocks = [g.id for g in groups if g.kind == "block"]
    decisions = {blocks[-1]: Decision("layer", 1.0)} if blocks else {}
    for group in groups:
        if any(group.id.startswith(b + ".") for b in decisions):
            continue  # inside the removed block: nothing left to prune
        used = {d.strategy for d in decisions.values()}
        if STRATEGY_BY_KIND[group.kind] not in used:
            decisions[group.id] = Decision(STRATEGY_BY_KIND[group.kind], 0.5)
        elif group.kind in ("conv", "linear") and "unstructured" not in used:
            decisions[group.id] = Decision("unstructured", 0.5)
    policy = Policy(decisions, quantize=quantize)
    pruned = apply_policy(model, policy, groups, example, SETTINGS).model
    return model, pruned, groups, policy


def _save(path, config: ModelConfig, quantize: str = "none", calibration=None):
    base, pruned, groups, policy = _pruned(config, quantize)
    save_pruned(path, pruned, base_model=base, model_config=config, example=inputs(1),
                groups=groups, policy=policy, prune=SETTINGS, calibration=calibration)
    return pruned, policy


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("config", [RESNET, VIT, HYBRID], ids=lambda c: c.name)
def test_float_bundle_round_trip(config: ModelConfig, tmp_path) -> None:
    path = tmp_path / "model.pt"
    pruned, policy = _save(path, config)
    loaded = load_pruned(path)
    assert loaded.policy == policy
    assert torch.equal(loaded.example, inputs(1))
    assert loaded.deployed is loaded.model
    assert _same_state(loaded.model, pruned)
    assert not loaded.model.training
    unpruned = build_model(config)
    assert _params(loaded.model) < _params(unpruned)
    batch = _inputs(3, 1)
    with torch.no_grad():
        assert torch.equal(loaded.model(batch), pruned(batch))


def test_int8_bundle_reloads_the_same_quantised_model(tmp_path) -> None:
    path = tmp_path / "model.pt"
    calibration = _inputs(16, 2)
    pruned, policy = _save(path, RESNET, "int8", calibration)
    loaded = load_pruned(path)
    assert loaded.policy.quantize == "int8"
    assert _same_state(loaded.model, pruned)
    assert not is_quantized(loaded.model)
    assert is_quantized(loaded.deployed)
    expected = quantize_int8(pruned, calibration)
    batch = _inputs(3, 3)
    with torch.no_grad():
        assert torch.equal(loaded.deployed(batch), expected(batch))


def test_int8_bundle_without_calibration_is_refused(tmp_path) -> None:
    path = tmp_path / "model.pt"
    with pytest.raises(ValueError, match="calibration"):
        _save(path, RESNET, "int8", calibration=None)
    assert not path.exists()


def test_missing_bundle_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_pruned(tmp_path / "absent.pt")


@pytest.mark.parametrize("content", ["text", "state_dict", "wrong_version"])
def test_a_file_that_is_not_a_bundle_is_a_user_error(content: str, tmp_path) -> None:
    path = tmp_path / "model.pt"
    if content == "text":
        path.write_text("not a model\n")
    elif content == "state_dict":
        torch.save(nn.Linear(2, 2).state_dict(), path)
    else:
        _save(path, RESNET)
        bundle = torch.load(path, weights_only=True)
        bundle["version"] = 99
        torch.save(bundle, path)
    with pytest.raises(UserError):
        load_pruned(path)


def test_weights_that_do_not_fit_are_a_user_error(tmp_path) -> None:
    path = tmp_path / "model.pt"
    _save(path, RESNET)
    bundle = torch.load(path, weights_only=True)
    bundle["state_dict"]["fc.weight"] = torch.zeros(10, 3)
    torch.save(bundle, path)
    with pytest.raises(UserError, match="do not fit"):
        load_pruned(path)


@pytest.mark.parametrize("config", [RESNET, VIT, HYBRID], ids=lambda c: c.name)
def test_torchscript_export_matches_pytorch(config: ModelConfig, tmp_path) -> None:
    _, pruned, _, _ = _pruned(config)
    path = tmp_path / "model.ts"
    export_torchscript(pruned, _inputs(1, 0), path)
    scripted = torch.jit.load(str(path))
    batch = _inputs(2, 4)  # traced at batch 1, run at batch 2
    with torch.no_grad():
        assert torch.allclose(scripted(batch), pruned(batch), atol=1e-5)


def test_torchscript_export_of_an_int8_model(tmp_path) -> None:
    _, pruned, _, _ = _pruned(RESNET)
    quantised = quantize_int8(pruned, _inputs(16, 2))
    path = tmp_path / "model.ts"
    export_torchscript(quantised, _inputs(1, 0), path)
    scripted = torch.jit.load(str(path))
    batch = _inputs(2, 5)
    with torch.no_grad():
        assert torch.equal(scripted(batch), quantised(batch))


def test_onnx_weights_counts_initializers_and_zeros(tmp_path):
    from autoprune.export import onnx_weights

    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 8), nn.ReLU(), nn.Linear(8, 10)).eval()
    with torch.no_grad():
        model[1].weight[:, :128] = 0.0
    path = tmp_path / "m.onnx"
    export_onnx(model, torch.zeros(1, 1, 16, 16), path)
    counted = onnx_weights(path)
    assert counted["onnx_weight_values"] == _params(model)
    assert counted["onnx_zero_fraction"] == pytest.approx(1024 / _params(model))


@pytest.mark.parametrize("name", ["bert", "vit", "gpt2", "llama"])
def test_a_hugging_face_model_exports_as_it_is_and_onnx_matches(name, tmp_path):
    from autoprune.export import onnx_difference
    from tests.fixtures.hf import hf_model

    model, x = hf_model(name)
    if name == "bert":  # keywords, as a tokenised dataset gives them
        x = {**x, "attention_mask": torch.ones_like(x["input_ids"])}
    elif name in ("gpt2", "llama"):  # token ids alone, as the language-model task gives them
        x = x["input_ids"]
    groups = find_groups(model, x)
    heads = {g.id: Decision("head", 0.5) for g in groups if g.kind == "attention"}
    pruned = apply_policy(model, Policy(heads), groups, x).model
    export_onnx(pruned, x, tmp_path / "model.onnx")
    assert onnx_difference(tmp_path / "model.onnx", pruned, x) <= 1e-4
    export_torchscript(pruned, x, tmp_path / "model.pt")
    traced = torch.jit.load(str(tmp_path / "model.pt"))
    args = tuple(x.values()) if isinstance(x, dict) else (x,)
    with torch.no_grad():
        assert torch.allclose(traced(*args), pruned(**x).logits if isinstance(x, dict)
                              else pruned(x).logits, atol=1e-5)
