"""Model construction from a factory path: the built-in zoo or any importable callable."""

from __future__ import annotations

import importlib
import inspect

from torch import nn

from autoprune.config import ModelConfig
from autoprune.errors import UserError
from autoprune.instantiate import RESERVED, instantiate


def build_model(cfg: ModelConfig) -> nn.Module:
    """`cfg.target` called with `cfg.kwargs` by Hydra's instantiate (nested `_target_`s, such
    as a transformers config object, are built first; `_partial_` is honoured); raises
    UserError on misuse."""
    module_name, _, attr = cfg.target.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"model._target_ {cfg.target!r} cannot be imported ({exc})") from exc
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        unknown = sorted(k for k in cfg.kwargs
                         if k not in signature.parameters and k not in RESERVED)
        if unknown and not accepts_any:
            accepted = ", ".join(p for p in signature.parameters if p != "self") or "none"
            raise UserError(
                f"model {cfg.target} takes no argument {unknown[0]!r} (it takes: {accepted}); "
                "start from model=custom for a model of your own"
            )
    model = instantiate({"_target_": cfg.target, **cfg.kwargs}, "model")
    if not isinstance(model, nn.Module):
        raise UserError(f"model._target_ {cfg.target} returned {type(model).__name__}, "
                        "not a torch.nn.Module")
    return model
