"""Residual blocks: modules that can be removed whole, leaving their input to pass through.

A block is found by what it computes, not by its class name: a module called once on one tensor,
whose output has the input's shape, and which returns its (non-negative) input unchanged when
all of its parameters are zero. That holds for `x + f(x)` and `relu(x + f(x))` with any `f`
built from convolutions, norms, attention and linear layers, and fails for plain layers,
gates (`x * sigmoid(...)`) and projection shortcuts. Containers of blocks (a stage of several)
are left out: the innermost blocks are the units.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from autoprune.tasks import call_model


def _single_calls(model: nn.Module, example_input: Any) -> dict[str, tuple]:
    """Modules called exactly once with one tensor argument: name -> (input, output) shapes."""
    calls: dict[str, list] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m, args, kwargs, out, name=name):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            single = len(args) == 1 and not kwargs and len(tensors) == 1
            calls.setdefault(name, []).append(
                (tuple(tensors[0].shape), tuple(out.shape))
                if single and isinstance(out, torch.Tensor) else None)

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            call_model(model.eval(), example_input)
    finally:
        for handle in handles:
            handle.remove()
    return {n: c[0] for n, c in calls.items() if len(c) == 1 and c[0] is not None}


def _passes_input_through(module: nn.Module, shape: tuple[int, ...]) -> bool:
    zeroed = copy.deepcopy(module).eval()
    with torch.no_grad():
        for param in zeroed.parameters():
            param.zero_()
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=generator) + 0.1
        try:
            out = zeroed(x)
        except Exception:  # a module that cannot run alone is not a removable unit
            return False
    return isinstance(out, torch.Tensor) and out.shape == x.shape and torch.allclose(out, x)


def find_blocks(model: nn.Module, example_input: Any,
                protected: Collection[str] = ()) -> list[str]:
    """Names of the innermost residual blocks of `model`, in module order.

    Blocks containing a `protected` module (the classifier, ignored layers) are left out.
    """
    calls = _single_calls(model, example_input)
    found = []
    for name, module in model.named_modules():
        if name not in calls or not any(True for _ in module.parameters()):
            continue
        shape_in, shape_out = calls[name]
        if shape_in != shape_out:
            continue
        if any(p == name or p.startswith(name + ".") for p in protected):
            continue
        if _passes_input_through(module, shape_in):
            found.append(name)
    return [n for n in found if not any(o.startswith(n + ".") for o in found)]
