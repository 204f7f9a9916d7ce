"""What each strategy promises beyond the shared suite: the 2:4 pattern, whole heads, whole
blocks, exact factorisation, exact zero counts, criteria that matter and schedules that ramp."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autoprune.errors import UserError
from autoprune.models.mobilenet import MobileNetV2
from autoprune.models.resnet import BasicBlock, ResNet
from autoprune.models.vit import ViT
from autoprune.pruning import (
    STRATEGIES,
    Decision,
    Policy,
    PrunableGroup,
    PruneSettings,
    apply_policy,
    check_groups,
    find_groups,
)
from autoprune.pruning.apply import Calibration
from autoprune.pruning.attention import attention_layout, head_scores, remove_heads
from autoprune.pruning.blocks import find_blocks
from autoprune.pruning.criteria import CRITERIA
from autoprune.pruning.mha import HeadPrunedAttention, as_head_pruned
from autoprune.pruning.schedule import ramp
from autoprune.pruning.strategies.lowrank import factorize
from autoprune.pruning.strategies.nm import M, N, nm_mask
from autoprune.tasks import Classification
from tests.fixtures.hybrid import HybridNet

EXAMPLE = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
LABELS = torch.zeros(1, dtype=torch.long)


def _build(factory, **kwargs) -> nn.Module:
    """A seeded model with random norm parameters (untrained, but not all-equal)."""
    torch.manual_seed(0)
    model = factory(**kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
    return model.eval()


def _prune(model: nn.Module, strategy: str, ratio: float):
    """Apply `strategy` to every group of `model` that can safely take it."""
    groups = find_groups(model, EXAMPLE)
    allowed, _ = check_groups(model, groups, [strategy], EXAMPLE)
    ids = [g.id for g in groups if g.id in allowed]
    assert ids, f"no group takes {strategy}"
    policy = Policy.uniform(ids, strategy, ratio)
    result = apply_policy(model, policy, groups, EXAMPLE,
                          calibration=Calibration(Classification(), (EXAMPLE, LABELS)))
    return result, [g for g in groups if g.id in ids]


def _runs(weight: torch.Tensor) -> torch.Tensor:
    """Weights as runs of M consecutive inputs: conv weights laid out (out, kh, kw, in)."""
    if weight.dim() == 4:
        weight = weight.permute(0, 2, 3, 1)
    return weight.reshape(-1, M)


# --- N:M --------------------------------------------------------------------------------------

@pytest.mark.parametrize("factory", [MobileNetV2, HybridNet, ViT], ids=lambda f: f.__name__)
def test_nm_keeps_n_of_every_m_inputs(factory) -> None:
    model = _build(factory)
    result, groups = _prune(model, "nm", STRATEGIES["nm"].fixed_ratio)
    layers = {name for g in groups for name in g.layers}
    masked = {key.removesuffix(".weight") for key in result.masks}
    assert masked
    for name in layers:
        before = model.get_submodule(name).weight
        after = result.model.get_submodule(name).weight
        if before.shape[1] % M:  # depthwise and other narrow inputs stay dense
            assert name not in masked
            assert torch.equal(after, before)
            continue
        assert name in masked
        nonzero = (_runs(after.detach()) != 0).sum(dim=1)
        assert (nonzero <= N).all()
        if (before != 0).all():
            assert (nonzero == N).all()
        assert torch.equal(result.masks[f"{name}.weight"] == 0, after == 0)


def test_nm_depthwise_layers_exist_and_stay_dense() -> None:
    model = _build(MobileNetV2)
    result, groups = _prune(model, "nm", STRATEGIES["nm"].fixed_ratio)
    depthwise = [n for g in groups for n in g.layers
                 if model.get_submodule(n).groups > 1]
    assert depthwise
    for name in depthwise:
        assert f"{name}.weight" not in result.masks
        assert torch.count_nonzero(result.model.get_submodule(name).weight) == \
            model.get_submodule(name).weight.numel()


@pytest.mark.parametrize("shape", [(8, 12), (6, 8, 3, 3)])
def test_nm_mask_with_zeros_keeps_at_most_n_nonzeros(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(shape, generator=generator)
    weight[torch.rand(shape, generator=generator) < 0.4] = 0.0
    mask = nm_mask(weight, N, M)
    assert mask is not None and mask.shape == weight.shape
    assert ((_runs(mask) != 0).sum(dim=1) == N).all()
    assert ((_runs(weight * mask) != 0).sum(dim=1) <= N).all()
    # The kept entries are the largest in each run.
    kept = _runs(weight.abs() * mask).sort(dim=1, descending=True).values[:, :N]
    assert torch.equal(kept, _runs(weight.abs()).sort(dim=1, descending=True).values[:, :N])


def test_nm_mask_refuses_inputs_not_a_multiple_of_m() -> None:
    assert nm_mask(torch.randn(8, 1, 3, 3), N, M) is None
    assert nm_mask(torch.randn(8, 6), N, M) is None


# --- heads ------------------------------------------------------------------------------------

def test_head_pruning_halves_vit_heads() -> None:
    model = _build(ViT, depth=2)
    original = model.blocks[0].attn
    heads, dim = original.num_heads, original.head_dim
    scores = head_scores(original, attention_layout(original))
    result, groups = _prune(model, "head", 0.5)
    assert {g.kind for g in groups} == {"attention"}
    for group in groups:
        attn = result.model.get_submodule(group.id)
        assert attn.num_heads == heads // 2
        assert attn.head_dim == dim
        assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
        assert attn.qkv.weight.shape[0] == attn.qkv.out_features
        assert attn.proj.in_features == attn.num_heads * attn.head_dim
        assert attn.proj.weight.shape[1] == attn.proj.in_features
    # The strongest heads stay, their query/key/value rows copied unchanged.
    kept = sorted(scores.argsort(descending=True)[: heads // 2].tolist())
    pruned = result.model.blocks[0].attn
    rows = original.qkv.weight.detach().reshape(3, heads, dim, -1)[:, kept]
    assert torch.equal(pruned.qkv.weight.detach().reshape(3, len(kept), dim, -1), rows)
    with torch.no_grad():
        assert result.model(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_head_pruning_replaces_multihead_attention() -> None:
    model = _build(HybridNet)
    mha = model.attn
    embed, heads, dim = mha.embed_dim, mha.num_heads, mha.head_dim
    scores = head_scores(mha, attention_layout(mha))
    result, _ = _prune(model, "head", 0.5)
    attn = result.model.attn
    assert isinstance(attn, HeadPrunedAttention)
    assert (attn.num_heads, attn.head_dim) == (heads // 2, dim)
    for proj in (attn.q, attn.k, attn.v):
        assert (proj.in_features, proj.out_features) == (embed, heads // 2 * dim)
    assert (attn.out_proj.in_features, attn.out_proj.out_features) == (heads // 2 * dim, embed)
    kept = sorted(scores.argsort(descending=True)[: heads // 2].tolist())
    channels = torch.tensor([h * dim + i for h in kept for i in range(dim)])
    assert torch.equal(attn.q.weight.detach(), mha.in_proj_weight.detach()[:embed][channels])
    assert torch.equal(attn.out_proj.weight.detach(), mha.out_proj.weight.detach()[:, channels])


def _mask(kind: str, batch: int, length: int) -> dict[str, torch.Tensor]:
    if kind == "padding":
        padding = torch.zeros(batch, length, dtype=torch.bool)
        padding[0, -2:] = True
        return {"key_padding_mask": padding}
    if kind == "causal":
        return {"attn_mask": torch.ones(length, length, dtype=torch.bool).triu(1)}
    return {}


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masking", ["none", "padding", "causal"])
@pytest.mark.parametrize("route", ["convert", "remove_none"])
def test_head_pruned_attention_matches_multihead_attention(batch_first: bool, masking: str,
                                                           route: str) -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(24, 4, batch_first=batch_first).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    if route == "convert":
        converted = as_head_pruned(mha)
    else:
        holder = nn.Module()
        holder.attn = copy.deepcopy(mha)
        remove_heads(holder, "attn", list(range(mha.num_heads)))
        converted = holder.attn
    assert isinstance(converted, HeadPrunedAttention)
    batch, length = 3, 5
    x = torch.randn(batch, length, 24) if batch_first else torch.randn(length, batch, 24)
    masks = _mask(masking, batch, length)
    with torch.no_grad():
        expected, expected_weights = mha(x, x, x, **masks)
        out, weights = converted(x, x, x, **masks)
        fast, _ = converted(x, x, x, need_weights=False, **masks)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(fast, expected, atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-5)


# --- layers -----------------------------------------------------------------------------------

def test_find_blocks_finds_exactly_the_identity_shortcut_blocks() -> None:
    model = _build(ResNet, width=8, blocks_per_stage=2)
    expected = [n for n, m in model.named_modules()
                if isinstance(m, BasicBlock) and isinstance(m.shortcut, nn.Identity)]
    projection = [n for n, m in model.named_modules()
                  if isinstance(m, BasicBlock) and not isinstance(m.shortcut, nn.Identity)]
    assert expected and projection
    found = find_blocks(model, EXAMPLE)
    assert found == expected
    assert not set(found) & {"layer1", "layer2", "layer3", *projection}
    groups = find_groups(model, EXAMPLE)
    assert [g.id for g in groups if g.kind == "block"] == expected


def test_layer_pruning_removes_whole_blocks() -> None:
    model = _build(ResNet, width=8, blocks_per_stage=2)
    result, groups = _prune(model, "layer", 1.0)
    removed = [g.id for g in groups]
    assert removed
    names = dict(result.model.named_modules())
    for block in removed:
        assert isinstance(names[block], nn.Identity)
        assert not [n for n in names if n.startswith(block + ".")]
        assert f"{block}.conv1" in dict(model.named_modules())  # the original is untouched
    kept = [n for n, m in names.items() if isinstance(m, BasicBlock)]
    assert kept and not set(kept) & set(removed)
    with torch.no_grad():
        assert result.model(torch.randn(2, 1, 16, 16)).shape == (2, 10)


# --- low rank ---------------------------------------------------------------------------------

LAYERS = {
    "linear": lambda: nn.Linear(20, 12),
    "conv": lambda: nn.Conv2d(3, 10, 3, stride=2, padding=1),
    "conv_dilated": lambda: nn.Conv2d(4, 6, 3, stride=1, padding=2, dilation=2, bias=False),
}


def _product(factors: nn.Sequential) -> torch.Tensor:
    first, second = factors
    return (second.weight.reshape(second.weight.shape[0], -1)
            @ first.weight.reshape(first.weight.shape[0], -1)).detach()


@pytest.mark.parametrize("kind", list(LAYERS))
def test_factorize_error_falls_as_rank_rises(kind: str) -> None:
    torch.manual_seed(0)
    layer = LAYERS[kind]()
    matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    full = min(matrix.shape)
    errors = [torch.linalg.norm(matrix - _product(factorize(layer, r))).item()
              for r in range(1, full + 1)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False))
    assert errors[-1] < 1e-4


@pytest.mark.parametrize("kind", list(LAYERS))
def test_factorize_at_full_rank_reproduces_the_layer(kind: str) -> None:
    torch.manual_seed(0)
    layer = LAYERS[kind]().eval()
    full = min(layer.weight.shape[0], layer.weight[0].numel())
    factors = factorize(layer, full).eval()
    x = torch.randn(2, 20) if kind == "linear" else torch.randn(2, layer.in_channels, 9, 9)
    with torch.no_grad():
        expected, out = layer(x), factors(x)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-4)


# --- unstructured -----------------------------------------------------------------------------

def _zeros(model: nn.Module, layers) -> dict[str, int]:
    return {n: int((model.get_submodule(n).weight == 0).sum()) for n in layers}


@pytest.mark.parametrize("ratio", [0.3, 0.55, 0.9])
def test_unstructured_zeros_exactly_the_ratio_of_each_layer(ratio: float) -> None:
    model = _build(ResNet, width=8, blocks_per_stage=1)
    result, groups = _prune(model, "unstructured", ratio)
    layers = [n for g in groups for n in g.layers]
    assert len(layers) == len(set(layers))
    for name, zeros in _zeros(result.model, layers).items():
        assert zeros == round(ratio * model.get_submodule(name).weight.numel())


def test_global_unstructured_moves_zeros_between_layers() -> None:
    model = _build(ResNet, width=8, blocks_per_stage=1)
    ratio = 0.5
    local, groups = _prune(model, "unstructured", ratio)
    pooled, pooled_groups = _prune(model, "global_unstructured", ratio)
    assert [g.id for g in groups] == [g.id for g in pooled_groups]
    layers = [n for g in groups for n in g.layers]
    local_zeros, pooled_zeros = _zeros(local.model, layers), _zeros(pooled.model, layers)
    assert sum(pooled_zeros.values()) == sum(local_zeros.values())
    assert pooled_zeros != local_zeros
    # One threshold: every weight kept is at least as large as every weight removed.
    original = {n: model.get_submodule(n).weight.detach().abs() for n in layers}
    kept = torch.cat([original[n][pooled.model.get_submodule(n).weight != 0] for n in layers])
    dropped = torch.cat([original[n][pooled.model.get_submodule(n).weight == 0] for n in layers])
    assert kept.min() >= dropped.max()


# --- criteria ---------------------------------------------------------------------------------

CRITERION_GROUP = "layer2.0.conv1"


def _kept_filters(model: nn.Module, pruned: nn.Module) -> frozenset[int]:
    before = model.get_submodule(CRITERION_GROUP).weight.detach()
    after = pruned.get_submodule(CRITERION_GROUP).weight.detach()
    return frozenset(next(i for i in range(len(before)) if torch.equal(before[i], row))
                     for row in after)


def _criterion_prune(model: nn.Module, criterion: str, calibration) -> nn.Module:
    groups = find_groups(model, EXAMPLE)
    policy = Policy({CRITERION_GROUP: Decision("channel", 0.5)})
    return apply_policy(model, policy, groups, EXAMPLE, PruneSettings(criterion=criterion),
                        calibration).model


def test_criteria_keep_the_same_count_but_choose_differently() -> None:
    model = _build(ResNet, width=8, blocks_per_stage=1)
    channels = model.get_submodule(CRITERION_GROUP).out_channels
    calibration = Calibration(Classification(),
                              (torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])))
    kept = {}
    for criterion in CRITERIA:
        pruned = _criterion_prune(model, criterion, calibration)
        kept[criterion] = _kept_filters(model, pruned)
        assert len(kept[criterion]) == channels // 2
        with torch.no_grad():
            assert pruned(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    assert len(set(kept.values())) > 1, kept


def test_taylor_without_calibration_is_a_user_error() -> None:
    model = _build(ResNet, width=8, blocks_per_stage=1)
    with pytest.raises(UserError, match="calibration"):
        _criterion_prune(model, "taylor", None)


# --- schedules --------------------------------------------------------------------------------

def test_agp_ramp_is_front_loaded() -> None:
    agp, linear = ramp("agp", 3), ramp("iterative", 3)
    assert len(agp) == len(linear) == 3
    assert all(a < b for a, b in zip(agp, agp[1:], strict=False))
    assert agp[-1] == linear[-1] == 1.0
    assert all(a > b for a, b in zip(agp[:-1], linear[:-1], strict=True))
    assert ramp("oneshot", 3) == [1.0]


def _architecture(model: nn.Module) -> tuple[list, dict[str, torch.Size]]:
    return ([(n, type(m).__name__) for n, m in model.named_modules()],
            {k: v.shape for k, v in model.state_dict().items()})


def _mixed_policy(groups: list[PrunableGroup]) -> Policy:
    """Every kind of group gets a strategy of its own, ramping or not."""
    by_kind = {"conv": "channel", "linear": "neuron", "attention": "head", "block": "layer"}
    decisions = {}
    for index, group in enumerate(groups):
        strategy = by_kind[group.kind]
        if group.kind in ("conv", "linear") and index % 3 == 0:
            strategy = "lowrank" if index % 2 else "nm"
        ratio = STRATEGIES[strategy].fixed_ratio or 0.5
        decisions[group.id] = Decision(strategy, ratio)
    return Policy(decisions)


@pytest.mark.parametrize(("factory", "kwargs"), [
    (ResNet, {"width": 8, "blocks_per_stage": 2}),
    (ViT, {"depth": 2}),
], ids=["resnet", "vit"])
def test_stepwise_schedule_reaches_the_oneshot_architecture(factory, kwargs) -> None:
    model = _build(factory, **kwargs)
    groups = find_groups(model, EXAMPLE)
    allowed, _ = check_groups(model, groups, list(STRATEGIES), EXAMPLE)
    policy = _mixed_policy([g for g in groups if g.id in allowed])
    oneshot = apply_policy(model, policy, groups, EXAMPLE).model
    stepped = copy.deepcopy(model)
    halfway = None
    for fraction in (0.5, 1.0):
        apply_policy(stepped, policy, groups, EXAMPLE, fraction=fraction, inplace=True)
        halfway = halfway or _architecture(stepped)
    assert halfway != _architecture(oneshot)  # the first step really is partial
    assert _architecture(stepped) == _architecture(oneshot)
    assert _architecture(model) != _architecture(oneshot)  # the original is untouched
