"""Each module's own calls during one forward pass of a model, so that a module can be run again
alone, as the model ran it (Hugging Face layers take masks, position embeddings and caches as
keywords)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoprune.tasks import call_model


@dataclass(frozen=True)
class Call:
    """One call of a module: its arguments and what it returned."""

    args: tuple
    kwargs: dict[str, Any]
    output: Any

    def run(self, module: nn.Module) -> Any:
        """`module` called with this call's arguments."""
        return module(*self.args, **self.kwargs)

    @property
    def hidden(self) -> torch.Tensor | None:
        """The tensor that flows through: the first positional argument, else `hidden_states`."""
        value = self.args[0] if self.args else self.kwargs.get("hidden_states")
        return value if isinstance(value, torch.Tensor) else None


def replayable(value: Any) -> Any:
    """`value` as it can be passed again: tensors, numbers, strings and containers of them
    kept; anything else (a key/value cache the first call filled) None."""
    if value is None or isinstance(value, (torch.Tensor, bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(replayable(v) for v in value)
    return None


def first_tensor(output: Any) -> torch.Tensor | None:
    """The main tensor of what a module returned: itself, or the first element of a tuple,
    list or mapping."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = tuple(output.values())
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def record_calls(model: nn.Module, example_input: Any,
                 names: Collection[str] | None = None) -> dict[str, list[Call]]:
    """The calls of `model`'s submodules (those in `names`, or all) in one eval forward pass."""
    calls: dict[str, list[Call]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name or (names is not None and name not in names):
            continue

        def hook(_m: nn.Module, args: tuple, kwargs: dict, out: Any, name: str = name) -> None:
            calls.setdefault(name, []).append(Call(
                replayable(tuple(args)), {k: replayable(v) for k, v in kwargs.items()}, out))

        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    training = model.training
    try:
        with torch.no_grad():
            call_model(model.eval(), example_input)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return calls
