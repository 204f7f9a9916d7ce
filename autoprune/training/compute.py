"""Where and in which precision training runs: `finetune.device` and `finetune.precision`.

`auto` trains on CUDA when it is available (the Ray runner decides for its trials: CUDA
only for a trial that Tune gave a GPU, `ray.gpus_per_trial`). bf16 and fp16 run the
forward pass under autocast; fp16 also scales the loss (GradScaler) so that small gradients
survive.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from autoprune.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Compute:
    """A device choice and a training precision."""

    device: str = "auto"
    precision: str = "fp32"

    def resolve(self) -> torch.device:
        """The torch device this process trains on; raises UserError when `cuda` was asked
        for and there is none."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"finetune.device={self.device}, but CUDA is not available "
                               "to this process (use auto or cpu)")
        return torch.device(self.device)

    def autocast(self, device: torch.device) -> AbstractContextManager:
        """Mixed precision for the forward pass (nothing for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=AUTOCAST[self.precision])

    def scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 on CUDA, else None."""
        if self.precision == "fp16" and device.type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None
