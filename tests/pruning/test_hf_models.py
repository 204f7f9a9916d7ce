"""Hugging Face models as they are: heads (GPT-2's fused Conv1D, BERT's sibling output
projection, LLaMA's grouped-query attention), MLP neurons and whole layers are found and pruned,
and the pruned models compute what the removal means."""

from __future__ import annotations

import copy

import pytest
import torch

from autoprune.pruning import Decision, Policy, apply_policy, find_groups
from autoprune.pruning.attention import attention_layout, head_scores, unit_channels, zero_inputs
from autoprune.tasks import call_model, model_output
from tests.fixtures.hf import hf_model

MODELS = ("bert", "gpt2", "llama", "opt", "vit", "swin")


def _kinds(groups) -> dict[str, int]:  # noqa: ANN001
    counts: dict[str, int] = {}
    for group in groups:
        counts[group.kind] = counts.get(group.kind, 0) + 1
    return counts


def _logits(model, inputs) -> torch.Tensor:  # noqa: ANN001
    with torch.no_grad():
        return model_output(call_model(model, inputs))


@pytest.mark.parametrize("name", MODELS)
def test_heads_neurons_and_layers_are_found(name: str) -> None:
    model, x = hf_model(name)
    groups = find_groups(model, x)
    kinds = _kinds(groups)
    layers = 4 if name == "swin" else 2
    assert kinds.get("attention") == layers and kinds.get("block") == layers
    assert kinds.get("linear", 0) >= 2  # the MLPs
    units = {g.channels for g in groups if g.kind == "attention"}
    # LLaMA: units are key/value heads; Swin: 2 heads in its first stage, 4 in its second
    assert units == {"llama": {2}, "swin": {2, 4}}.get(name, {4})


@pytest.mark.parametrize("name", MODELS)
def test_removing_heads_equals_zeroing_their_output_columns(name: str) -> None:
    model, x = hf_model(name)
    groups = find_groups(model, x)
    attention = [g for g in groups if g.kind == "attention"]
    pruned = apply_policy(model, Policy({g.id: Decision("head", 0.5) for g in attention}),
                          groups, x).model
    masked = copy.deepcopy(model)
    for group in attention:
        scope = masked.get_submodule(group.id)
        layout = attention_layout(scope)
        weakest = torch.sort(head_scores(scope, layout), stable=True).indices[:layout.units // 2]
        query, _ = unit_channels(layout, sorted(weakest.tolist()))
        zero_inputs(scope.get_submodule(layout.output), query)
        after = attention_layout(pruned.get_submodule(group.id))
        assert (after.units, after.heads) == (layout.units // 2, layout.heads // 2)
        assert after.head_dim == layout.head_dim
    assert torch.allclose(_logits(pruned, x), _logits(masked, x), atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(
        p.numel() for p in model.parameters())


def test_gpt2_conv1d_neurons_are_removed_as_zeroing_them_would():
    model, x = hf_model("gpt2")
    groups = find_groups(model, x)
    mlp = next(g for g in groups if g.id == "transformer.h.0.mlp.c_fc")
    assert mlp.kind == "linear" and mlp.channels == 128
    pruned = apply_policy(model, Policy({mlp.id: Decision("neuron", 0.5)}), groups, x).model
    before = model.transformer.h[0].mlp.c_fc.weight.detach()  # [in, out]
    after = pruned.transformer.h[0].mlp.c_fc.weight.detach()
    assert after.shape == (32, 64) and pruned.transformer.h[0].mlp.c_fc.nf == 64
    kept = [next(i for i in range(before.shape[1]) if torch.equal(before[:, i], column))
            for column in after.t()]
    removed = sorted(set(range(128)) - set(kept))
    masked = copy.deepcopy(model)
    zero_inputs(masked.transformer.h[0].mlp.c_proj, torch.tensor(removed))
    assert torch.allclose(_logits(pruned, x), _logits(masked, x), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_pruned_decoders_still_generate(name: str) -> None:
    model, x = hf_model(name)
    groups = find_groups(model, x)
    strategy = {"attention": "head", "linear": "neuron", "block": "layer"}
    blocks = [g.id for g in groups if g.kind == "block"]
    decisions = {g.id: Decision(strategy[g.kind], 0.5) for g in groups
                 if g.kind != "block" and not g.id.startswith(blocks[-1] + ".")}
    decisions[blocks[-1]] = Decision("layer", 1.0)
    pruned = apply_policy(model, Policy(decisions), groups, x).model
    out = pruned.generate(x["input_ids"][:1], max_new_tokens=6, do_sample=False,
                          min_new_tokens=6)
    assert out.shape == (1, 14)
    assert _logits(pruned, x).shape == _logits(model, x).shape


def test_a_layer_removed_passes_the_hidden_state_through():
    model, x = hf_model("bert")
    groups = find_groups(model, x)
    pruned = apply_policy(model, Policy({"bert.encoder.layer.1": Decision("layer", 1.0)}),
                          groups, x).model
    truncated = copy.deepcopy(model)
    truncated.bert.encoder.layer = truncated.bert.encoder.layer[:1]
    truncated.config.num_hidden_layers = 1
    assert torch.allclose(_logits(pruned, x), _logits(truncated, x), atol=1e-6)


def test_a_block_that_returns_a_tuple_leaves_a_pass_through_of_the_same_form():
    from autoprune.pruning.blocks import PassThrough

    model, x = hf_model("swin")  # its layers return (hidden states, attention weights)
    groups = find_groups(model, x)
    block = "swin.encoder.layers.0.blocks.1"
    pruned = apply_policy(model, Policy({block: Decision("layer", 1.0)}), groups, x).model
    gone = pruned.get_submodule(block)
    assert isinstance(gone, PassThrough) and gone.arity == 2
    hidden = torch.randn(2, 64, 16)
    assert gone(hidden, (8, 8))[0] is hidden
    assert _logits(pruned, x).shape == (2, 10)


def test_conv1d_work_is_counted_in_the_macs():
    import torch_pruning as tp

    from autoprune.pruning import model_stats

    model, x = hf_model("gpt2")
    ids = x["input_ids"][:1]  # 8 tokens
    counted, _ = tp.utils.count_ops_and_params(model, ids)
    conv1d = sum(8 * m.weight.shape[0] * m.weight.shape[1] for m in model.modules()
                 if type(m).__name__ == "Conv1D")
    assert conv1d > 0
    assert model_stats(model, ids)["macs"] == counted + conv1d


def test_a_factorised_layer_answers_what_the_model_reads_of_it():
    from autoprune.pruning import check_groups

    model, x = hf_model("vit")  # ViTModel casts its input to patch_embeddings.projection.weight
    groups = find_groups(model, x)
    usable, rejected = check_groups(model, groups, ["lowrank"], x)
    assert not rejected
    assert set(usable) == {g.id for g in groups if g.kind in ("conv", "linear")}


def test_gpt2_conv1d_factorises_into_linear_layers_that_approximate_it():
    from autoprune.pruning.strategies.lowrank import factorize

    model, _ = hf_model("gpt2")
    layer = model.transformer.h[0].mlp.c_fc  # Conv1D, weight [32 in, 128 out]
    x = torch.randn(3, 32)
    exact = factorize(layer, 32)  # full rank: the same map
    assert (exact[0].in_features, exact[1].out_features) == (32, 128)
    with torch.no_grad():
        assert torch.allclose(exact(x), layer(x), atol=1e-5)
        errors = [float((factorize(layer, r)(x) - layer(x)).norm()) for r in (4, 8, 16)]
    assert errors[0] > errors[1] > errors[2] > 0


def test_gpt2_conv1d_takes_the_2_4_pattern_along_its_inputs():
    model, x = hf_model("gpt2")
    groups = find_groups(model, x)
    mlp = "transformer.h.0.mlp.c_fc"
    pruned = apply_policy(model, Policy({mlp: Decision("nm", 0.5)}), groups, x)
    mask = pruned.masks[mlp + ".weight"]  # [in 32, out 128], like the weight
    assert mask.shape == (32, 128)
    runs = mask.t().reshape(128, 8, 4)  # per output, runs of 4 consecutive inputs
    assert torch.equal(runs.sum(-1), torch.full((128, 8), 2.0))
