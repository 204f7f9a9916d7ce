"""The unpruned base model: loaded from a checkpoint, taken as the factory gives it
(`model.pretrained`), or trained once and cached."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from autoprune.config import DataConfig, ModelConfig
from autoprune.errors import TrialFailed, UserError
from autoprune.models import build_model
from autoprune.training import OnStep, TrainSpec, train
from autoprune.workload import Workload


@dataclass
class BaseModel:
    """The model every trial prunes a copy of, and where it came from."""

    model: nn.Module
    source: str  # "checkpoint", "pretrained", "cache" or "trained"
    path: str


def cache_key(model: ModelConfig, data: DataConfig, spec: TrainSpec, task: str,
              fingerprint: str = "", batch_size: int = 64) -> str:
    """Return a short hash naming the base model that this config would train.

    `fingerprint` identifies the training data itself (see DataSplits), so that a user's data
    file that changes under the same path never reuses a model trained on the old contents.
    Loader settings that do not change the result (worker processes, pinned memory) are left
    out.
    """
    data_key = {k: v for k, v in asdict(data).items() if k not in ("num_workers", "pin_memory")}
    payload = json.dumps(
        {"model": {"target": model.target, "kwargs": model.kwargs}, "data": data_key,
         "task": task, "content": fingerprint, "train": asdict(spec), "batch": batch_size,
         "torch": torch.__version__.split("+")[0]},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load a state_dict saved with torch.save into `model` (weights only, never unpickled code)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"model.checkpoint {path!r} does not exist")
    state = load_weights(file, f"model.checkpoint {path!r}")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"model.checkpoint {path!r} holds a {type(state).__name__}, "
                        "not a state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"model.checkpoint {path!r} does not fit {type(model).__name__}: "
                        f"{_mismatch(model, state)}") from exc


def load_weights(file: Path, what: str) -> object:
    """torch.load with weights_only=True: tensors and plain containers, never pickled code.

    Raises UserError naming `what` with the reason in a few words."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global: (\S+)", text)
        if found:
            raise UserError(f"{what} holds pickled objects ({found.group(1)}), which are never "
                            "loaded: save a state_dict of tensors") from exc
        raise UserError(f"{what} is not a torch.save file (corrupt, or another format)") from exc


def _mismatch(model: nn.Module, state: dict) -> str:
    """Which keys and shapes of `state` do not match `model`, briefly."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

    parts = [f"{len(missing)} missing keys ({some(missing)})" if missing else "",
             f"{len(extra)} unexpected keys ({some(extra)})" if extra else "",
             f"{len(shapes)} shapes differ ({some(shapes)})" if shapes else ""]
    return "; ".join(p for p in parts if p) or "the state_dict does not load"


def save_atomic(state: dict, path: Path) -> None:
    """torch.save `state` to `path` through a temporary file: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_base_model(
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    spec: TrainSpec,
    workload: Workload,
    cache_dir: str,
    announce: Callable[[str], None] = print,
    on_step: OnStep | None = None,
) -> BaseModel:
    """Return the base model (in eval mode, on the CPU): from model.checkpoint, as the factory
    built it (model.pretrained), from the cache, or trained now by `spec` and cached
    (`on_step(step, loss)` follows the training)."""
    model = build_model(model_cfg)
    if model_cfg.checkpoint:
        load_checkpoint(model, model_cfg.checkpoint)
        return BaseModel(model.eval(), "checkpoint", str(model_cfg.checkpoint))
    if model_cfg.pretrained:
        return BaseModel(model.eval(), "pretrained", model_cfg.target)
    task = type(workload.task)
    key = cache_key(model_cfg, data_cfg, spec, f"{task.__module__}.{task.__qualname__}",
                    workload.data.fingerprint, workload.loading.batch_size)
    path = Path(cache_dir).expanduser() / "base" / f"{model_cfg.name}-{key}.pt"
    if path.is_file():
        load_checkpoint(model, str(path))
        return BaseModel(model.eval(), "cache", str(path))
    announce(f"training the base model ({spec.steps} steps), cached as {path}")
    torch.manual_seed(spec.seed)
    model = build_model(model_cfg)
    try:
        train(model, workload, spec, on_step=on_step)
        model.cpu()
    except TrialFailed as exc:
        raise UserError(f"training the base model failed: {exc}; "
                        "lower finetune.base_lr or pass model.checkpoint") from exc
    try:
        save_atomic(model.state_dict(), path)
    except OSError as exc:
        raise UserError(f"cache_dir: cannot write {path} ({exc.strerror or exc}); point "
                        "cache_dir at a writable folder") from exc
    return BaseModel(model.eval(), "trained", str(path))
