"""Settings turned into the objects the core runs with: the task, the workload, training
and pruning specs. Every process of a study builds the same objects from the same settings.
"""

from __future__ import annotations

from autoprune.config import DataConfig, FinetuneConfig, Settings, TaskConfig
from autoprune.errors import UserError
from autoprune.pruning import PruneSettings
from autoprune.tasks import DIRECTIONS, Task
from autoprune.training import Compute, TrainSpec
from autoprune.workload import Loading, Workload


def build_task(cfg: TaskConfig) -> Task:
    """The configured task; raises UserError when it cannot be built or is not a Task."""
    from autoprune.instantiate import instantiate

    task = instantiate({"_target_": cfg.target, **cfg.kwargs}, "task")
    missing = [name for name in ("metric", "direction", "inputs", "output", "loss", "evaluate")
               if not hasattr(task, name)]
    if missing:
        raise UserError(f"task._target_ {cfg.target} returned {type(task).__name__}, which "
                        f"lacks {', '.join(missing)}: subclass autoprune.tasks.Task")
    if task.direction not in DIRECTIONS or not isinstance(task.metric, str):
        raise UserError(f"task {cfg.target}: direction must be one of {', '.join(DIRECTIONS)} "
                        f"and metric a name, got {task.direction!r} and {task.metric!r}")
    return task


def compute(finetune: FinetuneConfig) -> Compute:
    return Compute(finetune.device, finetune.precision)


def loading(data: DataConfig, finetune: FinetuneConfig, seed: int,
            cuda: bool = False) -> Loading:
    """How batches are read; memory is pinned for CUDA training unless data.pin_memory says."""
    pin = cuda if data.pin_memory is None else data.pin_memory
    return Loading(finetune.batch_size, finetune.eval_batch_size, finetune.eval_batches,
                   data.num_workers, pin, seed)


def workload(settings: Settings, task: Task | None = None) -> Workload:
    """The study's workload, its data loaded (cached per process)."""
    from autoprune.data import load_data

    cuda = compute(settings.finetune).resolve().type == "cuda"
    return Workload(task or build_task(settings.task), load_data(settings.data),
                    loading(settings.data, settings.finetune, settings.seed, cuda))


def train_spec(settings: Settings, base: bool = False, steps: int | None = None) -> TrainSpec:
    """How trials fine-tune (or, with `base`, how the base model is trained)."""
    ft = settings.finetune
    return TrainSpec(
        steps=steps if steps is not None else (ft.base_steps if base else ft.steps),
        lr=ft.base_lr if base else ft.lr, optimizer=ft.optimizer, schedule=ft.schedule,
        warmup=ft.warmup, momentum=ft.momentum, weight_decay=ft.weight_decay,
        seed=settings.seed, distill_alpha=0.0 if base else ft.distill_alpha,
        distill_temperature=ft.distill_temperature, grad_clip=ft.grad_clip,
        compute=compute(ft))


def prune_settings(settings: Settings) -> PruneSettings:
    return PruneSettings(settings.hardware.alignment, settings.pruning.importance,
                         settings.pruning.ignore)
