"""Finding a stopped study to resume, and repairing what its stopped run left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoprune.config import Settings
from autoprune.errors import UserError
from autoprune.search.records import INTERRUPTED
from autoprune.search.space import PolicySpace
from autoprune.study.front import say


def find_resumed(settings: Settings) -> tuple[Any, str | None]:
    """With `resume`, the MLflow study run and name to continue (UserError if none)."""
    value = settings.raw.get("resume")
    if value in (None, False) or str(value).lower() in ("false", "null", ""):
        return None, None
    from mlflow.tracking import MlflowClient

    from autoprune.search import resume
    from autoprune.stores import creating

    uri = settings.tracking.uri
    shown = str(value).lower() if isinstance(value, bool) else value
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).expanduser().exists():
        raise UserError(f"resume={shown}: no unfinished study named {settings.study_name}-* "
                        f"(there is no MLflow store at {uri} yet)")
    with creating(uri):
        client = MlflowClient(tracking_uri=uri)
    name, previous = resume.find_study(settings.search.storage, settings.study_name, value,
                                       client, settings.tracking.experiment)
    say(f"resuming study {name} (MLflow run {previous.info.run_id}, {previous.info.status})")
    return previous, name


def repair(tracker: Any, study_name: str, previous: Any, space: PolicySpace,
           metric: str) -> tuple[int, list]:
    """Repair what a stopped run left (RUNNING trials, trials MLflow missed); return the
    trials that count toward the budget and the earlier trials' records."""
    import optuna

    from autoprune.commands.report import study_records
    from autoprune.search import resume
    from autoprune.stores import optuna_storage

    storage = optuna_storage(resume.study_storage(previous))
    repaired = resume.mark_interrupted(storage, study_name)
    tracker.close_open_trials(f"{INTERRUPTED}: the study's driver stopped while it ran")
    logged, _ = study_records(tracker.client, previous)
    backfilled = resume.backfill(tracker, study_name, storage, {r.number for r in logged},
                                 space, metric)
    if repaired or backfilled:
        say(f"repaired: {repaired} trials left RUNNING marked interrupted, {backfilled} "
            "finished trials added to MLflow")
    records, _ = study_records(tracker.client, tracker.client.get_run(previous.info.run_id))
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    return sum(resume.counts(t) for t in trials), records
