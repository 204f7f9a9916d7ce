"""The built-in GPT: causal, tied embeddings, and every unit the language-model search offers
(heads, MLP neurons, blocks) is found and can be pruned."""

from __future__ import annotations

import torch

from autoprune.models.gpt import GPT
from autoprune.pruning import Decision, Policy, apply_policy, check_groups, find_groups


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(context=16, dim=32, depth=2, num_heads=4).eval()


def test_each_position_sees_only_its_past():
    model = _model()
    tokens = torch.randint(0, 256, (1, 16))
    changed = tokens.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_the_output_head_is_the_token_embedding():
    model = _model()
    assert model.head.weight is model.tok_embed.weight


def test_heads_neurons_and_blocks_are_groups_that_prune():
    model = _model()
    x = torch.randint(0, 256, (1, 16))
    groups = find_groups(model, x)
    kinds = {g.id: g.kind for g in groups}
    assert kinds["blocks.0.attn"] == "attention" and kinds["blocks.1"] == "block"
    assert kinds["blocks.0.mlp.0"] == "linear"
    choices, rejected = check_groups(model, groups, ["head", "neuron", "layer"], x)
    assert not rejected
    policy = Policy({"blocks.0.attn": Decision("head", 0.5),
                     "blocks.0.mlp.0": Decision("neuron", 0.5),
                     "blocks.1": Decision("layer", 1.0)})
    pruned = apply_policy(model, policy, groups, x).model
    assert pruned.blocks[0].attn.num_heads == 2
    assert pruned.blocks[0].mlp[0].out_features == 64
    assert isinstance(pruned.blocks[1], torch.nn.Identity)
    assert pruned(x).shape == (1, 16, 256)
