"""The base model: trained once then cached; a bad checkpoint is a clear user error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autoprune.config import DataConfig, ModelConfig
from autoprune.data import DataSplits
from autoprune.errors import UserError
from autoprune.models import build_model
from autoprune.models.base import load_checkpoint, prepare_base_model
from autoprune.models.resnet import ResNet
from autoprune.training import TrainSpec
from tests.conftest import classification

MODEL = ModelConfig(name="resnet", target="autoprune.models.resnet.ResNet", checkpoint=None,
                    kwargs={"num_classes": 10, "in_channels": 1, "width": 4,
                            "blocks_per_stage": 1})
DATA = DataConfig(name="digits", resolution=8, in_channels=1, num_classes=10,
                  val_fraction=0.2, test_fraction=0.2, split_seed=0)

@pytest.fixture(scope="module")
def data() -> DataSplits:
    from torch.utils.data import TensorDataset

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=generator)
    y = torch.arange(64) % 10
    return DataSplits(TensorDataset(x, y), TensorDataset(x[:16], y[:16]),
                      TensorDataset(x[:16], y[:16]), fingerprint="random-64")


def _prepare(data: DataSplits, cache: Path, model: ModelConfig = MODEL, seed: int = 0,
             messages: list[str] | None = None):  # noqa: ANN202
    announce = (messages if messages is not None else []).append
    spec = TrainSpec(steps=2, lr=0.05, seed=seed)
    return prepare_base_model(model, DATA, spec, classification(data, 32), str(cache),
                              announce=announce)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _checkpoint(config: ModelConfig, path: Path) -> ModelConfig:
    return dataclasses.replace(config, checkpoint=str(path))


# --- training and the cache -------------------------------------------------------------------

def test_base_model_is_trained_once_then_loaded_from_cache(
    data: DataSplits, tmp_path: Path
) -> None:
    messages: list[str] = []
    first = _prepare(data, tmp_path, messages=messages)
    assert first.source == "trained"
    assert Path(first.path).is_file()
    assert Path(first.path).is_relative_to(tmp_path)
    assert len(messages) == 1 and "training" in messages[0]

    second = _prepare(data, tmp_path, messages=messages)
    assert second.source == "cache"
    assert second.path == first.path
    assert len(messages) == 1, "a cached model is not trained again"
    assert _same_state(first.model, second.model)
    assert not second.model.training


def test_trained_model_differs_from_its_initialisation(data: DataSplits, tmp_path: Path) -> None:
    trained = _prepare(data, tmp_path).model
    torch.manual_seed(0)
    assert not _same_state(trained, build_model(MODEL))


def test_other_seed_or_model_gets_its_own_cache_entry(data: DataSplits, tmp_path: Path) -> None:
    base = _prepare(data, tmp_path)
    other_seed = _prepare(data, tmp_path, seed=1)
    wider = dataclasses.replace(MODEL, kwargs={**MODEL.kwargs, "width": 8})
    other_model = _prepare(data, tmp_path, model=wider)
    assert other_seed.source == other_model.source == "trained"
    assert len({base.path, other_seed.path, other_model.path}) == 3


def test_pretrained_weights_are_used_as_the_factory_gives_them(data: DataSplits,
                                                               tmp_path: Path) -> None:
    messages: list[str] = []
    torch.manual_seed(5)
    base = _prepare(data, tmp_path / "cache", model=dataclasses.replace(MODEL, pretrained=True),
                    messages=messages)
    assert base.source == "pretrained" and messages == []
    assert not (tmp_path / "cache").exists()
    torch.manual_seed(5)
    assert _same_state(base.model, build_model(MODEL)), "the factory's weights, untouched"


def test_checkpoint_is_loaded_instead_of_training(data: DataSplits, tmp_path: Path) -> None:
    torch.manual_seed(3)
    saved = build_model(MODEL)
    path = tmp_path / "net.pt"
    torch.save(saved.state_dict(), path)
    messages: list[str] = []
    base = _prepare(data, tmp_path / "cache", model=_checkpoint(MODEL, path), messages=messages)
    assert base.source == "checkpoint"
    assert messages == []
    assert _same_state(base.model, saved)
    assert not (tmp_path / "cache").exists()


def test_wrapped_state_dict_is_accepted(tmp_path: Path) -> None:
    saved = ResNet(width=4, blocks_per_stage=1)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": saved.state_dict(), "epoch": 3}, path)
    model = ResNet(width=4, blocks_per_stage=1)
    load_checkpoint(model, str(path))
    assert _same_state(model, saved)


# --- bad checkpoints --------------------------------------------------------------------------

def test_missing_checkpoint_is_a_user_error(data: DataSplits, tmp_path: Path) -> None:
    path = tmp_path / "absent.pt"
    with pytest.raises(UserError, match="does not exist") as info:
        _prepare(data, tmp_path, model=_checkpoint(MODEL, path))
    assert str(path) in str(info.value)


def test_corrupt_checkpoint_is_a_user_error(data: DataSplits, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"this is not a torch file\x00\x01\x02")
    with pytest.raises(UserError, match="is not a torch.save file") as info:
        _prepare(data, tmp_path, model=_checkpoint(MODEL, path))
    assert str(path) in str(info.value)


def test_checkpoint_of_another_model_is_a_user_error(data: DataSplits, tmp_path: Path) -> None:
    path = tmp_path / "wider.pt"
    torch.save(ResNet(width=8, blocks_per_stage=1).state_dict(), path)
    with pytest.raises(UserError, match="does not fit ResNet") as info:
        _prepare(data, tmp_path, model=_checkpoint(MODEL, path))
    assert "shapes differ (stem.0.weight (8, 1, 3, 3) vs (4, 1, 3, 3)" in str(info.value)


def test_checkpoint_holding_no_state_dict_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(UserError, match="not a state_dict"):
        load_checkpoint(ResNet(width=4, blocks_per_stage=1), str(path))


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    # weights_only loading never runs pickled code; a whole pickled model is rejected.
    path = tmp_path / "module.pt"
    torch.save(ResNet(width=4, blocks_per_stage=1), path)
    with pytest.raises(UserError, match=r"holds pickled objects \(.*ResNet\), which are never "
                                        "loaded"):
        load_checkpoint(ResNet(width=4, blocks_per_stage=1), str(path))


def test_pickled_code_in_a_checkpoint_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "payload.pt"
    torch.save({"stem.0.weight": Payload()}, path)
    with pytest.raises(UserError, match="holds pickled objects"):
        load_checkpoint(ResNet(width=4, blocks_per_stage=1), str(path))
    assert not marker.exists()


# --- build_model ------------------------------------------------------------------------------

def test_build_model_passes_kwargs() -> None:
    model = build_model(MODEL)
    assert isinstance(model, ResNet)
    assert model.fc.out_features == 10
    assert model.stem[0].out_channels == 4


def test_build_model_unknown_kwarg_is_a_user_error() -> None:
    config = dataclasses.replace(MODEL, kwargs={**MODEL.kwargs, "depth": 50})
    with pytest.raises(UserError, match="depth") as info:
        build_model(config)
    assert "width" in str(info.value), "the message lists the accepted arguments"


def test_build_model_unimportable_target_is_a_user_error() -> None:
    config = dataclasses.replace(MODEL, target="autoprune.models.nothing.Net", kwargs={})
    with pytest.raises(UserError, match="cannot be imported"):
        build_model(config)


def test_build_model_rejects_a_factory_returning_no_module() -> None:
    config = dataclasses.replace(MODEL, target="collections.OrderedDict", kwargs={})
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        build_model(config)


def test_build_model_wraps_factory_errors() -> None:
    config = dataclasses.replace(MODEL, kwargs={**MODEL.kwargs, "width": -1})
    with pytest.raises(UserError, match=r"^model: Error in call to target "
                       r"'autoprune.models.resnet.ResNet' \(RuntimeError: .*negative"):
        build_model(config)


def test_build_model_builds_nested_targets_first():
    # A factory argument that is itself an object (a transformers config, a backbone) is
    # written as a nested _target_ in YAML.
    config = ModelConfig("seq", "torch.nn.Sequential", None, {"_args_": [
        {"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 3},
        {"_target_": "torch.nn.ReLU"}]})
    model = build_model(config)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU]
    assert model[0].weight.shape == (3, 4)
    bad = ModelConfig("seq", "torch.nn.Sequential", None, {"_args_": [
        {"_target_": "torch.nn.Linear", "in_features": 4, "out_feature": 3}]})
    with pytest.raises(UserError, match=r"^model: Error in call to target .*Linear.*out_feature"):
        build_model(bad)


def test_cache_key_follows_the_data_contents_not_just_the_config():
    from autoprune.data.splits import split_arrays
    from autoprune.models.base import cache_key

    model = ModelConfig("m", "autoprune.models.resnet.ResNet", None, {"width": 8})
    data = DataConfig("arrays", 0.2, 0.2, 0, 16, 1, 10, path="same.npz")
    spec = TrainSpec(steps=10, lr=0.1)
    labels = np.arange(100) % 10
    one = split_arrays(np.zeros((100, 1, 16, 16)), labels, 0.2, 0.2, 0).fingerprint
    other = split_arrays(np.ones((100, 1, 16, 16)), labels, 0.2, 0.2, 0).fingerprint

    def key(fingerprint: str, batch: int = 64, task: str = "C") -> str:
        return cache_key(model, data, spec, task, fingerprint, batch)

    assert key(one) == key(one)
    assert key(one) != key(other)
    assert key(one) != key(one, batch=32) and key(one) != key(one, task="L")
    workers = dataclasses.replace(data, num_workers=4)
    assert cache_key(model, workers, spec, "C", one, 64) == key(one)
