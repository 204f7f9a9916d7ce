"""Residual blocks: modules that can be removed whole, leaving their input to pass through.

A block is found by what it computes, not by its class name: a module called once, whose output
(or the first element of the tuple it returns) is a tensor of the shape of the tensor it was
given (its first argument, or `hidden_states`),
and which either returns that input unchanged when all of its parameters are zero (checked
with a positive probe of the input's shape, device and dtype, and the call's other arguments)
or is one of a `ModuleList` of layers of one type (a transformer stack, post-norm ones
included). The zero test holds for `x + f(x)` and `relu(x + f(x))` with any `f` built from
convolutions, norms, attention and linear layers, and fails for plain layers, gates
(`x * sigmoid(...)`) and projection shortcuts. Containers of blocks (a stage of several) are
left out: the innermost blocks are the units. A removed block becomes a `PassThrough`, which
takes the block's arguments (masks, caches) and returns the input.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from autoprune.pruning.replay import Call, first_tensor, record_calls


class PassThrough(nn.Identity):
    """What a removed block leaves: its input (first argument, or `hidden_states`) unchanged
    (an `nn.Identity` that takes the block's other arguments too). A block that returned a
    tuple of `arity` (the hidden state first, attention weights after) gets the input and
    Nones."""

    def __init__(self, arity: int = 0) -> None:
        super().__init__()
        self.arity = arity

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        x = args[0] if args else kwargs["hidden_states"]
        return (x, *[None] * (self.arity - 1)) if self.arity else x


def arity(output: Any) -> int:
    """0 for a tensor, else the length of the tuple a block returned."""
    return len(output) if isinstance(output, tuple) else 0


def _probe(call: Call) -> Call:
    """`call` with its input replaced by a positive tensor of the same shape, device, dtype."""
    hidden = call.hidden
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(hidden.shape, generator=generator) + 0.1).to(hidden)
    if call.args:
        return Call((x, *call.args[1:]), call.kwargs, None)
    return Call((), {**call.kwargs, "hidden_states": x}, None)


def _passes_input_through(module: nn.Module, call: Call) -> bool:
    zeroed = copy.deepcopy(module).eval()
    probe = _probe(call)
    with torch.no_grad():
        for param in zeroed.parameters():
            param.zero_()
        try:
            out = first_tensor(probe.run(zeroed))
        except Exception:  # a module that cannot run alone is not a removable unit
            return False
    x = probe.hidden
    return out is not None and out.shape == x.shape and torch.allclose(out, x)


def _stack_members(model: nn.Module) -> set[str]:
    """Modules of a ModuleList holding two or more layers, all of one type."""
    members = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) >= 2 \
                and len({type(m) for m in module}) == 1:
            members.update(f"{name}.{i}" if name else str(i) for i in range(len(module)))
    return members


def find_blocks(model: nn.Module, example_input: Any,
                protected: Collection[str] = ()) -> list[str]:
    """Names of the innermost residual blocks of `model`, in module order.

    Blocks containing a `protected` module (the classifier, ignored layers) are left out.
    """
    calls = record_calls(model, example_input)
    stacks = _stack_members(model)
    found = []
    for name, module in model.named_modules():
        if len(calls.get(name, ())) != 1 or not any(True for _ in module.parameters()):
            continue
        call = calls[name][0]
        hidden, out = call.hidden, call.output
        main = out[0] if isinstance(out, tuple) and out else out  # (hidden, weights) too
        if hidden is None or not isinstance(main, torch.Tensor) or main.shape != hidden.shape:
            continue
        if any(p == name or p.startswith(name + ".") for p in protected):
            continue
        if name in stacks or _passes_input_through(module, call):
            found.append(name)
    return [n for n in found if not any(o.startswith(n + ".") for o in found)]
