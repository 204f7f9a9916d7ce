"""Finding the attention scopes of a model whose heads can be removed, checked on its inputs.

A candidate scope (see `attention.py` for what is recognised) is kept only when removing one
unit (a key/value head with its query heads) gives what zeroing that unit's output columns
gives, with the scope run alone on the arguments the model passed it: a layout read wrongly
(heads interleaved another way, a per-head bias, a hard-coded width) fails that and is left
out, its projections left to the other strategies.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from autoprune.pruning.attention import (
    AttentionLayout,
    attention_layout,
    remove_heads,
    unit_channels,
    zero_inputs,
)
from autoprune.pruning.mha import as_head_pruned
from autoprune.pruning.replay import Call, first_tensor, record_calls


def _inside(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _removes_cleanly(scope: nn.Module, layout: AttentionLayout, call: Call) -> bool:
    """Whether removing unit 0 of `scope` equals zeroing its output columns, on `call`."""
    masked = copy.deepcopy(scope).eval()
    if layout.replaced:
        masked = as_head_pruned(masked)
    query, _ = unit_channels(layout, [0])
    zero_inputs(masked.get_submodule(layout.output), query)
    holder = nn.Module()
    holder.scope = copy.deepcopy(scope).eval()
    try:
        remove_heads(holder, "scope", list(range(1, layout.units)))
        with torch.no_grad():
            expected, got = first_tensor(call.run(masked)), first_tensor(call.run(holder.scope))
    except Exception:  # a layout read wrongly breaks in many ways; all mean "not this one"
        return False
    if expected is None or got is None or expected.shape != got.shape:
        return False
    scale = float(expected.abs().max()) or 1.0
    return bool((expected - got).abs().max() <= 1e-4 * scale)


def find_attention(model: nn.Module, example_input: Any,
                   ignored: Sequence[str] = ()) -> list[tuple[str, AttentionLayout]]:
    """(scope name, layout) of every attention scope whose heads remove cleanly, in module
    order; scopes with one unit (a key/value head shared by all), holding an ignored module,
    or holding another scope, are left out."""
    found = {name: layout for name, module in model.named_modules()
             if name and (layout := attention_layout(module)) is not None and layout.units >= 2
             and not _inside(name, ignored) and not any(_inside(i, [name]) for i in ignored)}
    found = {n: lay for n, lay in found.items()
             if not any(o != n and _inside(o, [n]) for o in found)}
    if not found:
        return []
    calls = record_calls(model, example_input, found)
    return [(name, layout) for name, layout in found.items()
            if calls.get(name) and _removes_cleanly(model.get_submodule(name), layout,
                                                    calls[name][0])]
