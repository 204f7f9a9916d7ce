"""Prunable dependency groups of a model, found with torch-pruning's DependencyGraph.

Four kinds of group, each acted on by the strategies that declare that kind:

- `conv` / `linear`: coupled channels (or neurons). Pruning the output channels of the root layer
  forces the same channels out of every layer tied to it (BatchNorms, residual partners,
  consumers); `layers` are the Conv2d/Linear layers whose outputs the group owns.
- `attention`: one attention module whose heads can be removed whole (see `attention.py`).
- `block`: one residual block that can be removed whole (see `blocks.py`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from autoprune.errors import UserError
from autoprune.tasks import call_model, model_output, no_cache

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


class GroupingWarning(UserWarning):
    """Part of a model could not be grouped; the rest is searched."""


@dataclass(frozen=True)
class PrunableGroup:
    """One searchable unit: `id` is the root layer's module name."""

    id: str
    kind: str  # "conv", "linear", "attention" or "block"
    channels: int  # channels, neurons or heads in the unpruned model (1 for a block)
    layers: tuple[str, ...]  # Conv2d/Linear layers whose outputs (and weights) this group owns

KINDS = ("conv", "linear", "attention", "block")


def output_layer(model: nn.Module, example_input: Any) -> str | None:
    """Return the name of the last Conv2d/Linear executed in a forward pass (the classifier)."""
    from autoprune.pruning.replay import record_calls

    names = {n for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}
    order = list(record_calls(model, example_input, names))  # in the order first called
    return order[-1] if order else None


def build_graph(
    model: nn.Module, example_input: Any, ignored: Sequence[str] = ()
) -> tuple[tp.DependencyGraph, list[nn.Module]]:
    """Return the dependency graph of `model` and the layers it must never prune."""
    return dependency_graph(model, example_input), protected_layers(model, example_input,
                                                                    ignored)


def protected_layers(model: nn.Module, example_input: Any,
                     ignored: Sequence[str] = ()) -> list[nn.Module]:
    """The layers never pruned: the output layer and the `ignored` ones."""
    modules = dict(model.named_modules())
    skip = set(ignored)
    classifier = output_layer(model, example_input)
    if classifier is not None:
        skip.add(classifier)
    unknown = sorted(skip - set(modules))
    if unknown:
        raise UserError(f"pruning.ignore names no module {unknown[0]!r} of this model; "
                        f"name modules it has ({_ignore_hint(model)}), or pruning.ignore=[]")
    return [modules[name] for name in sorted(skip)]


def _ignore_hint(model: nn.Module) -> str:
    """What to name instead: the model's input embedding when it says which that is (a
    Hugging Face model does), else its top-level modules."""
    names = {m: n for n, m in model.named_modules()}
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if callable(getter) else None
    if embedding in names:
        return f"its input embedding is {names[embedding]}"
    return "at the top: " + ", ".join(n for n, _ in model.named_children())


def dependency_graph(model: nn.Module, example_input: Any) -> tp.DependencyGraph:
    """torch-pruning's dependency graph of `model`, traced through the tensor that counts in
    its output (`.logits` of a Hugging Face model), with pruners for layers it lacks."""
    from autoprune.pruning.conv1d import custom_pruners

    # A key/value cache concatenates across calls; tracing needs none of it.
    extra = no_cache(model)
    with torch.enable_grad():
        return tp.DependencyGraph().build_dependency(
            model, example_inputs=example_input, verbose=False,
            forward_fn=lambda m, x: model_output(call_model(m, x, **extra)),
            customized_pruners=custom_pruners(model))



def find_groups(
    model: nn.Module, example_input: Any, ignored: Sequence[str] = ()
) -> list[PrunableGroup]:
    """Return the prunable groups of `model` in module order; its output layer is never pruned.

    Channel groups rooted at attention projections are left out: their outputs are heads,
    which the attention group removes whole.
    """
    from autoprune.pruning.attention import projection_layers
    from autoprune.pruning.attention_scopes import find_attention
    from autoprune.pruning.blocks import find_blocks
    from autoprune.pruning.conv1d import custom_pruners

    skip = protected_layers(model, example_input, ignored)
    try:
        graph = dependency_graph(model, example_input)
    except Exception as exc:  # torch-pruning cannot trace every model: keep the other kinds
        graph = None
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        warnings.warn(f"no channel or neuron groups: torch-pruning could not trace the model "
                      f"({type(exc).__name__}: {reason})", GroupingWarning, stacklevel=2)
    names = {m: n for n, m in model.named_modules()}
    groups = []
    projections: set[str] = set()
    for name, layout in find_attention(model, example_input, ignored):
        layers = tuple(projection_layers(name, layout))
        projections.update(layers)
        groups.append(PrunableGroup(id=name, kind="attention", channels=layout.units,
                                    layers=layers))
    protected = [names[m] for m in skip]
    skip = skip + [model.get_submodule(n) for n in sorted(projections)]
    for name in find_blocks(model, example_input, protected):
        layers = tuple(f"{name}.{n}" if n else name for n, m in
                       model.get_submodule(name).named_modules() if isinstance(m, PRUNABLE_TYPES))
        groups.append(PrunableGroup(id=name, kind="block", channels=1, layers=layers))
    if graph is not None:
        groups += _channel_groups(graph, skip, names,
                                  PRUNABLE_TYPES + tuple(custom_pruners(model)))
    position = {name: i for i, name in enumerate(n for n, _ in model.named_modules())}
    return sorted(groups, key=lambda g: position[g.id])


def _channel_groups(graph: tp.DependencyGraph, skip: list[nn.Module],
                    names: dict[nn.Module, str], roots: tuple[type, ...]) -> list[PrunableGroup]:
    """The channel (conv) and neuron (linear) groups of the graph, rooted at `roots` layers."""
    groups = []
    for group in graph.get_all_groups(ignored_layers=skip, root_module_types=roots):
        root = group[0].dep.target.module
        layers = tuple(
            names[item.dep.target.module] for item in group
            if isinstance(item.dep.target.module, roots)
            and graph.is_out_channel_pruning_fn(item.dep.handler)
        )
        channels = graph.get_out_channels(root)
        if channels is None or channels < 2:
            continue
        groups.append(PrunableGroup(
            id=names[root], kind="conv" if isinstance(root, nn.Conv2d) else "linear",
            channels=int(channels), layers=layers,
        ))
    return groups
