"""Saving, reloading and exporting pruned models.

A pruned model is saved as a bundle: the model factory and its arguments, the base model's
weights, the prunable groups, the policy, the pruned weights and an example input, all plain
data loadable with `torch.load(weights_only=True)`. Reloading builds the unpruned
architecture from the factory, loads the base weights, re-applies the policy (which rebuilds
exactly the trial's architecture: which channels go, and so how a concatenated group's cut
splits between its branches, depends on the base weights) and loads the pruned weights. The
original class definitions are used unchanged and no pickled code is trusted. TorchScript and
ONNX exports need no autoprune.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoprune.config import ModelConfig
from autoprune.deprecations import known_deprecations
from autoprune.errors import UserError
from autoprune.models.base import load_weights, save_atomic
from autoprune.pruning import Policy, PrunableGroup, PruneSettings, apply_policy
from autoprune.pruning.apply import Calibration
from autoprune.pruning.quantize import quantize_int8
from autoprune.tasks import call_model, model_output, no_cache, takes_keyword

FORMAT = "autoprune-pruned-model"
VERSION = 2


@dataclasses.dataclass
class LoadedModel:
    """A reloaded pruned model: the float model, the int8 one if the policy quantises, and the
    policy itself."""

    model: nn.Module
    deployed: nn.Module
    policy: Policy
    example: Any  # one example's model input


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def save_pruned(path: Path, model: nn.Module, *, base_model: nn.Module,
                model_config: ModelConfig, example: Any,
                groups: list[PrunableGroup], policy: Policy, prune: PruneSettings,
                prune_batch: Calibration | None = None,
                calibration: Any = None) -> None:
    """Write the bundle of `model`, pruned from `base_model` by `policy`, to `path` (atomically).

    `example` is one example's model input. `prune_batch` is the batch (and task) a gradient
    criterion scored channels on: the batch and the task's class path are stored. The int8
    `calibration` inputs are stored when the policy quantises, so that the int8 model can be
    rebuilt exactly.
    """
    bundle = {
        "format": FORMAT, "version": VERSION,
        "model": {"target": model_config.target, "kwargs": dict(model_config.kwargs)},
        "base_state_dict": _tensors(base_model.state_dict()),
        "example": example,
        "groups": [dataclasses.asdict(g) for g in groups],
        "policy": policy.to_dict(),
        "prune": dataclasses.asdict(prune),
        "state_dict": _tensors(model.state_dict()),
    }
    if prune_batch is not None:
        task = type(prune_batch.task)
        bundle["prune_batch"] = {"batch": prune_batch.batch,
                                 "task": f"{task.__module__}.{task.__qualname__}"}
    if policy.quantize == "int8":
        if calibration is None:
            raise ValueError("an int8 policy needs calibration inputs in the bundle")
        bundle["calibration"] = calibration.detach().clone()
    save_atomic(bundle, Path(path))


def load_pruned(path: Path) -> LoadedModel:
    """Rebuild the pruned model saved at `path`; raises UserError for a missing or bad file."""
    from autoprune.models import build_model

    path = Path(path)
    if not path.is_file():
        raise UserError(f"pruned model {path} does not exist")
    bundle = load_weights(path, f"pruned model {path}")
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise UserError(f"{path} is not an autoprune pruned-model bundle")
    if bundle.get("version") != VERSION:
        raise UserError(f"{path} has bundle version {bundle.get('version')}; "
                        f"this autoprune reads version {VERSION}")
    spec = bundle["model"]
    base = build_model(ModelConfig(name=spec["target"].rsplit(".", 1)[-1], target=spec["target"],
                                   checkpoint=None, kwargs=dict(spec["kwargs"])))
    try:
        base.load_state_dict(bundle["base_state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: the base weights do not fit {spec['target']} "
                        f"({str(exc).splitlines()[0]})") from exc
    groups = [PrunableGroup(g["id"], g["kind"], g["channels"], tuple(g["layers"]))
              for g in bundle["groups"]]
    prune = bundle["prune"]
    settings = PruneSettings(prune["alignment"], prune["criterion"], tuple(prune["ignored"]))
    policy = Policy.from_dict(bundle["policy"])
    example = bundle["example"]
    batch = bundle.get("prune_batch")
    calibration = None
    if batch is not None:
        from autoprune.instantiate import instantiate

        calibration = Calibration(instantiate({"_target_": batch["task"]}, "the bundle's task"),
                                  batch["batch"])
    model = apply_policy(base, policy, groups, example, settings, calibration).model
    try:
        model.load_state_dict(bundle["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: the saved weights do not fit the rebuilt model "
                        f"({str(exc).splitlines()[0]})") from exc
    model.eval()
    deployed = model
    if policy.quantize == "int8":
        deployed = quantize_int8(model, bundle["calibration"])
    return LoadedModel(model, deployed, policy, example)


class MainOutput(nn.Module):
    """`model` returning only the tensor that counts in its output (`.logits` of a Hugging Face
    model), without a key/value cache: what an exported graph computes. Token ids alone get an
    all-ones attention mask (the same computation: nothing is padded), which keeps the mask
    code of `transformers` decoders within what the ONNX exporter knows."""

    def __init__(self, model: nn.Module, keywords: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = model
        self.keywords = tuple(keywords)  # positional inputs passed on under these names
        self.extra = no_cache(model)
        self.masks = takes_keyword(model, "attention_mask")

    def forward(self, *args: Any) -> torch.Tensor:
        if self.keywords:
            return model_output(self.model(**dict(zip(self.keywords, args, strict=True)),
                                           **self.extra))
        ids = args[0] if len(args) == 1 else None
        if self.masks and isinstance(ids, torch.Tensor) and not ids.is_floating_point():
            return model_output(self.model(ids, attention_mask=torch.ones_like(ids),
                                           **self.extra))
        return model_output(self.model(*args, **self.extra))



def export_onnx(model: nn.Module, example_input: Any, path: Path) -> None:
    """Export a float model to ONNX: the batch dimension dynamic, except for a gated model,
    which runs at the example's batch size only (see `strategies/gate_kernels.py`)."""
    from autoprune.pruning.strategies.gate_kernels import onnx_static_batch
    from autoprune.pruning.strategies.gated_layers import is_gated

    path.parent.mkdir(parents=True, exist_ok=True)
    gated = is_gated(model)
    with known_deprecations(), onnx_static_batch():
        # A dict of inputs (Hugging Face keywords) becomes one named graph input each.
        keywords = list(example_input) if isinstance(example_input, Mapping) else []
        names = keywords or ["input"]
        args = tuple(example_input.values()) if keywords else (example_input,)
        torch.onnx.export(MainOutput(model, keywords).eval(), args, str(path),
                          dynamo=False, input_names=names, output_names=["logits"],
                          dynamic_axes=None if gated else {
                              **{name: {0: "batch"} for name in names}, "logits": {0: "batch"}})


def export_torchscript(model: nn.Module, example_input: Any, path: Path) -> None:
    """Trace `model` (float or int8) to TorchScript."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with known_deprecations(), torch.no_grad():
        keywords = list(example_input) if isinstance(example_input, Mapping) else []
        args = tuple(example_input.values()) if keywords else example_input
        traced = torch.jit.trace(MainOutput(model, keywords).eval(), args, check_trace=False)
    traced.save(str(path))


def onnx_outputs(path: Path, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """ONNX Runtime's outputs for `inputs`, in batches (one example at a time for a file
    whose batch size is fixed)."""
    return OnnxRunner(path, batch_size)(inputs)


class OnnxRunner:
    """An ONNX file run by ONNX Runtime, called like the model it was exported from (one
    tensor input, the first output returned as a tensor), in batches of `batch_size` (one
    example at a time for a file whose batch size is fixed)."""

    def __init__(self, path: Path, batch_size: int = 256) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.names = [i.name for i in self.session.get_inputs()]
        fixed = self.input.shape[0]
        self.batch_size = fixed if isinstance(fixed, int) else batch_size

    def __call__(self, inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Outputs for one tensor, or a dict of the named inputs of a keyword export."""
        named = inputs if isinstance(inputs, Mapping) else {self.input.name: inputs}
        count, step = len(next(iter(named.values()))), self.batch_size
        outputs = [self.session.run(None, {n: named[n][i:i + step].numpy()
                                           for n in self.names})[0]
                   for i in range(0, count, step)]
        return torch.from_numpy(np.concatenate(outputs))


def onnx_difference(path: Path, model: nn.Module, inputs: Any) -> float:
    """Largest absolute difference between ONNX Runtime's outputs for `inputs` and PyTorch's."""
    with torch.no_grad():
        torch_out = model_output(call_model(model.eval(), inputs))
    return float((onnx_outputs(path, inputs) - torch_out).abs().max())


def onnx_weights(path: Path) -> dict[str, float]:
    """Values and zero fraction of an ONNX file's initializers (its stored weights).

    They differ from the PyTorch parameter count by construction: the exporter folds BatchNorm
    into the preceding convolution and turns constant lookups into constants.
    """
    import onnx
    from onnx import numpy_helper

    arrays = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    values = sum(int(a.size) for a in arrays)
    zeros = sum(int(np.count_nonzero(a == 0)) for a in arrays)
    return {"onnx_weight_values": float(values),
            "onnx_zero_fraction": zeros / values if values else 0.0}
