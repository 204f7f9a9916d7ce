"""A front model as an MLflow model of its trial run, with the signature of its inputs and
outputs: `mlflow.pytorch.load_model(uri)` gives the module back, `mlflow.pyfunc.load_model(uri)`
a model that predicts on NumPy arrays.

MLflow's default PyTorch format (pt2, a graph exported with `torch.export`) loads with torch
alone, without this package. A model `torch.export` cannot follow raises here; the caller
says so, and the trial's other exports still hold it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NAME = "model"  # the logged model's name in its trial run


def requirements() -> list[str]:
    """What a logged model needs to load: torch, as this process has it. Stated, not inferred:
    MLflow's inference loads the model again in a subprocess (seconds a model)."""
    return [f"torch=={torch.__version__.split('+')[0]}"]


def log_model(run_id: str, model: nn.Module, example: Any) -> str:
    """Log `model` (on the CPU) to the run `run_id` as the MLflow model `model` and return
    its URI (`models:/...`), the run left as it was. `example` is one input of batch size 1;
    the model is exported with two, so that the batch dimension stays free."""
    import mlflow.pytorch
    from mlflow.models import Model

    if not isinstance(example, torch.Tensor):
        raise TypeError(f"an MLflow model here takes one tensor, and this model takes "
                        f"{type(example).__name__}")
    batch = torch.cat([example, example]).cpu().numpy()
    info = Model.log(None, name=NAME, flavor=mlflow.pytorch, run_id=run_id,
                     pytorch_model=model.eval(), input_example=batch,
                     pip_requirements=requirements())
    return info.model_uri
