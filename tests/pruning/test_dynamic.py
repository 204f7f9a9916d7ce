"""Dynamic channel gating: only the kept channels are computed, the result is what running
every channel with the others zeroed gives, for any batch size, and the gates learn."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autoprune.data import DataSplits
from autoprune.errors import UserError
from autoprune.export import export_onnx, onnx_outputs
from autoprune.hardware.latency import architecture_key
from autoprune.models.resnet import ResNet
from autoprune.models.vgg import VGG
from autoprune.pruning import (
    Decision,
    Policy,
    PruneSettings,
    apply_policy,
    check_groups,
    find_groups,
    model_stats,
)
from autoprune.pruning.strategies.channel import kept_channels
from autoprune.pruning.strategies.gate_kernels import onnx_static_batch
from autoprune.pruning.strategies.gated_layers import GatedConv2d, GatedInputConv2d, is_gated
from autoprune.training import TrainSpec, train
from tests.conftest import classification

SETTINGS = PruneSettings(alignment=4)
X = torch.zeros(1, 1, 16, 16)


def inputs(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def make(model: nn.Module, ratio: float, strategy: str = "dynamic",
         only: tuple[str, ...] = ()) -> tuple[nn.Module, list[str]]:
    """`model` with every group that can be gated pruned by `strategy` at `ratio`."""
    torch.manual_seed(0)
    model = model.eval()
    groups = find_groups(model, X)
    usable, _ = check_groups(model, groups, ["dynamic"], X, SETTINGS)
    ids = [g.id for g in groups if g.id in usable and (not only or g.id in only)]
    policy = Policy({gid: Decision(strategy, ratio) for gid in ids})
    return apply_policy(model, policy, groups, X, SETTINGS).model, ids


def input_dependent(model: nn.Module) -> None:
    """Give every gate random weights, as training does, so that inputs pick different
    channels."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, GatedConv2d):
                m.gate.fc.weight.copy_(torch.randn(m.gate.fc.weight.shape, generator=generator))
                m._folded = None


def reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Every channel computed, the skipped ones multiplied by zero."""
    producers = [m for m in model.modules() if isinstance(m, GatedConv2d)]
    for m in producers:
        m.full = True
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for m in producers:
            m.full = False


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    model, _ = make(ResNet(width=16, blocks_per_stage=1), 0.5)
    input_dependent(model)
    return model


def test_only_the_blocks_inner_channels_can_be_gated():
    torch.manual_seed(0)
    model = ResNet(width=16, blocks_per_stage=1).eval()
    groups = find_groups(model, X)
    usable, rejected = check_groups(model, groups, ["dynamic"], X, SETTINGS)
    assert sorted(usable) == ["layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1"]
    # The residual additions tie the stem's channels to three convolutions.
    assert "cannot be gated" in rejected["stem.0/dynamic"]


def test_inference_computes_only_the_kept_channels(resnet):
    seen: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=name: seen.__setitem__(name, (args[0].shape[1],
                                                                  out.shape[1])))
        for name, m in resnet.named_modules() if isinstance(m, (GatedConv2d, GatedInputConv2d))]
    with torch.no_grad():
        resnet(inputs(1))
    for h in hooks:
        h.remove()
    for width, stage in ((16, "layer1"), (32, "layer2"), (64, "layer3")):
        keep = kept_channels(width, 0.5, SETTINGS.alignment)
        assert keep < width
        assert seen[f"{stage}.0.conv1"][1] == keep  # the producer makes k channels ...
        assert seen[f"{stage}.0.conv2"] == (keep, width)  # ... and the consumer reads k


@pytest.mark.parametrize("batch", [1, 5])
def test_result_equals_every_channel_run_with_the_skipped_ones_zeroed(resnet, batch):
    x = inputs(batch)
    with torch.no_grad():
        compact = resnet(x)
    torch.testing.assert_close(compact, reference(resnet, x), atol=1e-5, rtol=1e-4)


def test_a_batch_gives_what_its_examples_give_one_at_a_time(resnet):
    x = inputs(6)
    with torch.no_grad():
        together = resnet(x)
        alone = torch.cat([resnet(x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_different_inputs_run_different_channels(resnet):
    chosen = set()
    layer = resnet.get_submodule("layer2.0.conv1")
    with torch.no_grad():
        for i in range(8):
            resnet(inputs(1, seed=i))
            chosen.add(tuple(sorted(layer.index[0].tolist())))
    assert len(chosen) > 1


def test_macs_fall_with_k_and_equal_static_pruning_plus_the_gates():
    base = ResNet(width=16, blocks_per_stage=1)
    macs = [model_stats(make(base, r)[0], X)["macs"] for r in (0.25, 0.5, 0.75)]
    assert macs[0] > macs[1] > macs[2]
    static = model_stats(make(base, 0.5, "channel")[0], X)["macs"]
    assert static < macs[1] < static * 1.02
    # All weights stay: parameters grow by the gates.
    assert model_stats(make(base, 0.5)[0], X)["params"] > model_stats(base, X)["params"]


def test_fine_tuning_trains_the_gates_and_the_model_still_copies():
    model, _ = make(ResNet(width=16, blocks_per_stage=1), 0.5)
    gate = model.get_submodule("layer1.0.conv1").gate.fc
    before = gate.weight.detach().clone()
    x, y = inputs(64), torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))
    split = TensorDataset(x, y)
    train(model, classification(DataSplits(split, split, split, "x"), batch_size=16),
          TrainSpec(steps=8, lr=0.05))
    assert not torch.equal(gate.weight, before)
    copied = copy.deepcopy(model).eval()  # no autograd graph left on the modules
    with torch.no_grad():
        torch.testing.assert_close(copied(x[:3]), model.eval()(x[:3]))


def test_loading_weights_in_inference_mode_refreshes_the_folded_weights(resnet):
    x = inputs(2)
    other, _ = make(ResNet(width=16, blocks_per_stage=1), 0.5)
    with torch.no_grad():
        other(x)  # folds its current weights
        other.load_state_dict(resnet.state_dict())
        torch.testing.assert_close(other(x), resnet(x))


def test_consecutive_chains_gate_both_ends_of_a_convolution():
    model, ids = make(VGG(), 0.5)
    assert len(ids) >= 2
    middle = model.get_submodule(ids[1])
    assert isinstance(middle, GatedConv2d) and middle._source is model.get_submodule(ids[0])
    input_dependent(model)
    x = inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(model, x), atol=1e-5, rtol=1e-4)
        alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(model(x), alone, atol=1e-5, rtol=1e-4)


def test_gating_mixes_with_static_strategies_in_one_policy():
    torch.manual_seed(0)
    model = ResNet(width=16, blocks_per_stage=1).eval()
    groups = find_groups(model, X)
    policy = Policy({"layer1.0.conv1": Decision("dynamic", 0.5),
                     "layer2.0.conv1": Decision("channel", 0.5),
                     "layer2.0.shortcut.0": Decision("lowrank", 0.5),
                     "layer3.0.conv1": Decision("dynamic", 0.75),
                     "layer3.0.shortcut.0": Decision("unstructured", 0.5)})
    pruned = apply_policy(model, policy, groups, X, SETTINGS).model
    assert isinstance(pruned.get_submodule("layer1.0.conv1"), GatedConv2d)
    assert pruned.get_submodule("layer2.0.conv1").out_channels == 16
    with torch.no_grad():
        torch.testing.assert_close(pruned(inputs(2)), reference(pruned, inputs(2)))


def test_torchscript_trace_keeps_any_batch_size(resnet):
    with torch.no_grad():
        traced = torch.jit.trace(resnet, inputs(1), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    for batch in (1, 4):
        x = inputs(batch, seed=batch)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), resnet(x), atol=1e-5, rtol=1e-4)


def test_onnx_export_is_fixed_at_batch_one(resnet, tmp_path):
    import onnx

    path = tmp_path / "gated.onnx"
    export_onnx(resnet, inputs(1), path)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1
    x = inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(onnx_outputs(path, x), resnet(x), atol=1e-4, rtol=1e-4)
    assert not is_gated(ResNet()) and is_gated(resnet)


def test_outside_onnx_export_a_trace_is_batch_general():
    with onnx_static_batch():
        pass  # the switch is scoped: tracing afterwards is batch-general again
    model, _ = make(ResNet(width=16, blocks_per_stage=1), 0.5)
    with torch.no_grad():
        traced = torch.jit.trace(model, inputs(1), check_trace=False)
        torch.testing.assert_close(traced(inputs(3)), model(inputs(3)), atol=1e-5, rtol=1e-4)


def test_latency_cache_key_tells_k_apart():
    base = ResNet(width=16, blocks_per_stage=1)
    keys = {architecture_key(make(base, r)[0]) for r in (0.25, 0.5, 0.75)}
    assert len(keys) == 3


def test_an_activation_that_does_not_keep_zero_is_refused():
    class Sigmoidal(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv2(torch.sigmoid(self.conv1(x))).mean((2, 3)))

    model = Sigmoidal().eval()
    groups = find_groups(model, X)
    with pytest.raises(UserError, match="conv1 cannot be gated: a zeroed channel"):
        apply_policy(model, Policy({"conv1": Decision("dynamic", 0.5)}), groups, X, SETTINGS)


def test_int8_with_gating_is_refused():
    model = ResNet(width=16, blocks_per_stage=1).eval()
    groups = find_groups(model, X)
    policy = Policy({"layer1.0.conv1": Decision("dynamic", 0.5)}, quantize="int8")
    with pytest.raises(UserError, match="cannot be quantised to int8"):
        apply_policy(model, policy, groups, X, SETTINGS)
