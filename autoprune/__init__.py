"""autoprune: search hardware-aware pruning policies for PyTorch models.

From Python, `autoprune.run_search(["hardware=cpu", "search.n_trials=8"])` runs the study
that `python -m autoprune search hardware=cpu search.n_trials=8` runs (`autoprune.search` is
the package of the search methods).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoprune.config import Settings

__version__ = "0.1.0"


def run_search(config: Sequence[str] | Settings = (), output_dir: str = ".") -> str:
    """Run one study and return its MLflow run id.

    `config` is what the command line takes, as a list of Hydra overrides (groups, keys,
    `study=<name>`, `smoke=true`), composed from the package's config exactly as `python -m
    autoprune search` composes it, or settings already made (`autoprune.config`).
    `output_dir` takes what the command writes into its Hydra run folder (Ray Tune's trial
    folders, the failed trials' tracebacks). Raises `autoprune.errors.UserError` on a bad
    config, with the message the command prints.
    """
    from autoprune.cli import compose, expand_study
    from autoprune.config import Settings, settings_from_dict
    from autoprune.study.run import run_study

    if not isinstance(config, Settings):
        config = settings_from_dict(compose("search", expand_study(list(config))))
    return run_study(config, output_dir)
