"""Training, fine-tuning, evaluation and BatchNorm recalibration, through the task."""

from autoprune.training.compute import DEVICES, PRECISIONS, Compute
from autoprune.training.evaluate import evaluate, recalibrate_batchnorm
from autoprune.training.loop import (
    Checkpoints,
    Guard,
    Masks,
    OnStep,
    Resume,
    TrainSpec,
    apply_masks,
    no_guard,
    train,
)
from autoprune.training.optim import OPTIMIZERS, SCHEDULES

__all__ = ["DEVICES", "OPTIMIZERS", "PRECISIONS", "SCHEDULES", "Checkpoints", "Compute",
           "Guard", "Masks", "OnStep", "Resume", "TrainSpec", "apply_masks", "evaluate", "no_guard",
           "recalibrate_batchnorm", "train"]
