"""Tasks: what a model is trained and judged on (see `base.Task`).

Built in: `classification` (the default) and `language_model`; a user's own with
`task._target_=pkg.module.factory` (a Task subclass, or any callable returning a Task).
"""

from autoprune.tasks.base import (
    DIRECTIONS,
    MAXIMIZE,
    MINIMIZE,
    Objective,
    Task,
    call_model,
    first,
    model_output,
    no_cache,
    takes_keyword,
    to_device,
)
from autoprune.tasks.classification import Classification
from autoprune.tasks.language_model import LanguageModel

__all__ = ["DIRECTIONS", "MAXIMIZE", "MINIMIZE", "Classification", "LanguageModel",
           "Objective", "Task", "call_model", "first", "model_output", "no_cache", "takes_keyword",
           "to_device"]
