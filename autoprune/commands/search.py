"""`python -m autoprune search`: one study from config to MLflow front."""

from __future__ import annotations

from autoprune.config import Settings

SUMMARY = "search pruning policies on the metric/latency Pareto front"


def run(settings: Settings, output_dir: str) -> None:
    """Run one study (see `autoprune.study.run.run_study`)."""
    from autoprune.study.run import run_study

    run_study(settings, output_dir)
