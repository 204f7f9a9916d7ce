"""`python -m autoprune reproduce <mlflow-run-id>`: rerun a study from the config it stored.

The study run's `config.yaml` artifact is the resolved config of the original command; the
rerun uses it unchanged except for the MLflow store and base-model cache of this invocation,
and its study run is tagged `reproduces=<run id>`. With the same seeds, samplers whose
proposals do not depend on the measured values (random, uniform, and the start-up trials of
the others) propose the same policies, and fine-tuning gives the same accuracies on the same
CPU; measured latencies agree within their spread.
"""

from __future__ import annotations

from autoprune.config import Settings, parse_yaml, settings_from_dict
from autoprune.errors import UserError

SUMMARY = "rerun a study from the config stored in its MLflow run"


def run(settings: Settings, output_dir: str) -> None:
    import tempfile
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from autoprune.commands import search
    from autoprune.tracking.mlflow import check_store_exists

    run_id = settings.raw.get("run")
    if not run_id:
        raise UserError("reproduce needs the study's MLflow run id: "
                        "python -m autoprune reproduce <run id>")
    check_store_exists(settings.tracking.uri)
    client = MlflowClient(tracking_uri=settings.tracking.uri)
    try:
        study = client.get_run(str(run_id))
    except Exception as exc:
        raise UserError(f"no MLflow run {run_id} in {settings.tracking.uri}") from exc
    if study.data.tags.get("role") != "study":
        raise UserError(f"MLflow run {run_id} is not a study run (role="
                        f"{study.data.tags.get('role', 'none')})")
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(str(run_id), "config.yaml", folder)
        except Exception as exc:
            raise UserError(f"study run {run_id} stored no config.yaml") from exc
        raw = parse_yaml(Path(path).read_text(), "the study's config.yaml")
    raw["tracking"] = dict(settings.raw["tracking"])
    raw["cache_dir"] = settings.cache_dir
    raw["reproduces"] = str(run_id)
    raw["resume"] = None
    print(f"reproducing study {study.data.tags.get('study')} (run {run_id}) from its config",
          flush=True)
    search.run(settings_from_dict(raw), output_dir)
