"""MLflow layout of a study: one parent run, one nested run per trial, Pareto artifacts.

Only the driver talks to MLflow (through MlflowClient, explicit run ids, no global active
run), so concurrent trials never write to the store at the same time.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from autoprune.errors import UserError
from autoprune.search.records import TrialRecord
from autoprune.stores import creating

SYSTEM_EVERY_S = 10.0  # how often the study run samples the machine's use

MAX_PARAM_LENGTH = 6000


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Return {"a.b.c": "value"} for a nested mapping, values as strings."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with UserError when an http(s) tracking server does not answer."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
        except OSError as exc:
            raise UserError(f"tracking.uri {uri} cannot be reached ({exc.strerror or exc}); "
                            "start the server or use sqlite:///mlflow.db") from exc
    elif parsed.scheme == "sqlite":
        folder = Path(uri[len("sqlite:///"):]).expanduser().resolve().parent
        if not folder.is_dir():
            raise UserError(f"tracking.uri {uri}: folder {folder} does not exist")
    elif parsed.scheme in ("file", "") and not os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        raise UserError(f"tracking.uri {uri}: MLflow 3 refuses the plain file store; use "
                        "sqlite:///mlflow.db, a server URL, or set MLFLOW_ALLOW_FILE_STORE=true")
    elif parsed.scheme not in ("file", "databricks", "postgresql", "mysql", "mssql", ""):
        raise UserError(f"tracking.uri {uri}: unknown scheme {parsed.scheme!r}; "
                        "use sqlite:///file.db, http(s)://host:port or a database URI")


def check_store_exists(uri: str) -> None:
    """For commands that read results: UserError when a local store does not exist yet (so
    that reading does not create an empty one)."""
    check_reachable(uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).expanduser().exists():
        raise UserError(f"tracking.uri {uri}: no MLflow store there yet; run a search first, "
                        "or point tracking.uri at the store that holds the study")


class StudyTracker:
    """Writes one study to MLflow following the schema in the README. Study and trial runs
    carry the objective's tags (`objective_metric`, `objective_direction`)."""

    def __init__(self, uri: str, experiment: str, objective: Any = None,
                 system_metrics: bool = False) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        check_reachable(uri)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(uri)
        with creating(uri):  # another study may be creating the same store or experiment
            self.client = MlflowClient(tracking_uri=uri)  # opens (or creates) the store
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (found.experiment_id if found is not None
                                  else self.client.create_experiment(experiment))
        self.run_id: str | None = None
        self.system_metrics = system_metrics  # watch_system as the study run starts/resumes
        self.watching = False  # logging system metrics to the study run (watch_system)
        self.objective_tags: dict[str, str] = objective.tags() if objective is not None else {}

    def start_study(self, study_name: str, hardware: str, config: Mapping[str, Any],
                    tags: Mapping[str, str]) -> str:
        """Create the parent run with its tags and the resolved config as params."""
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id, run_name=study_name,
            tags={"role": "study", "study": study_name, "hardware": hardware,
                  **self.objective_tags, **tags},
        )
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in flatten(config).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        if self.system_metrics:
            self.watch_system()
        return self.run_id

    def log_inputs(self, datasets: Sequence[Any]) -> None:
        """Log `mlflow.entities.DatasetInput`s (the study's data splits) to the study run."""
        self.client.log_inputs(self.run_id, datasets=list(datasets))

    def log_metrics(self, metrics: Mapping[str, float], run_id: str | None = None,
                    step: int = 0) -> None:
        """Log metrics to the study run (or to `run_id`), at `step`."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(run_id or self.run_id, metrics=[Metric(k, float(v), now, step)
                                                              for k, v in metrics.items()])

    def _trial_tags(self, number: int, study_name: str, state: str) -> dict[str, str]:
        assert self.run_id is not None, "start_study first"
        return {"mlflow.parentRunId": self.run_id, "role": "trial", "study": study_name,
                "pareto": "false", "state": state, "trial_number": str(number),
                **self.objective_tags}

    def start_trial(self, number: int, study_name: str) -> str:
        """Create the nested run of a trial as it starts (RUNNING, tag `state=running`) and
        return its id; `log_trial` completes it."""
        return self.client.create_run(
            self.experiment_id, run_name=f"trial-{number:03d}",
            tags=self._trial_tags(number, study_name, "running")).info.run_id

    def log_trial(self, record: TrialRecord, study_name: str) -> str:
        """Complete the trial's run (`record.run_id`, from `start_trial`), or create it when
        there is none (a trial backfilled after a resume); return its id."""
        from mlflow.entities import Metric, Param, RunTag

        tags = {**self._trial_tags(record.number, study_name, record.state), **record.tags}
        if record.latency_source:
            tags["latency_source"] = record.latency_source
        if record.state == "complete":
            tags["feasible"] = "true" if record.feasible else "false"
        if record.strategies:
            tags["strategies"] = ",".join(record.strategies)
        if record.error:
            tags["error"] = record.error[:5000]
        run_id, tag_list = record.run_id, [RunTag(k, v) for k, v in tags.items()]
        if run_id is None:
            start = int(record.started * 1000) if record.started else None
            run_id = self.client.create_run(self.experiment_id, tags=tags, start_time=start,
                                            run_name=f"trial-{record.number:03d}").info.run_id
            tag_list = []
        # The final metrics at the step the fine-tuning ended, after the learning curves
        # (the same metric's values at the rungs, the training loss): MLflow's latest value
        # of each is the final one.
        now = int(time.time() * 1000)
        last = record.final_step()
        curves = [Metric(k, float(v), int(at * 1000), int(step))
                  for k, points in record.curves.items() for step, v, at in points
                  if not (k in record.metrics and step == last)]  # the final value says it
        finals = [Metric(k, float(v), now, last) for k, v in record.metrics.items()]
        params = [Param(k, str(v)) for k, v in sorted(record.params.items())]
        metrics = curves + finals
        for start in range(0, max(len(metrics), len(params), len(tag_list)), 100):
            self.client.log_batch(run_id, metrics=metrics[start:start + 100],  # batch limits
                                  params=params[start:start + 100],
                                  tags=tag_list[start:start + 100])
        status = {"complete": "FINISHED", "stopped": "KILLED"}.get(record.state, "FAILED")
        end = int(record.finished * 1000) if record.finished else None
        self.client.set_terminated(run_id, status, end_time=end)
        record.run_id = run_id
        return run_id

    def close_open_trials(self, why: str) -> int:
        """Trial runs of this study still RUNNING (the study stopped, or its driver was
        killed, while they ran): tagged failed with `why` and KILLED; returns how many."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}' and "
            "attributes.status = 'RUNNING'", max_results=50000)
        for run in runs:
            self.client.set_tag(run.info.run_id, "state", "failed")
            self.client.set_tag(run.info.run_id, "error", why)
            self.client.set_terminated(run.info.run_id, "KILLED")
        return len(runs)

    def resume(self, run_id: str) -> None:
        """Continue logging to an earlier study run (marked RUNNING again)."""
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        if self.system_metrics:
            self.watch_system()

    def mark_pareto(self, record: TrialRecord, scores: Mapping[str, float]) -> None:
        """Tag a trial run as on the front and add its final scores (`test_<metric>`, ...)."""
        assert record.run_id is not None
        self.client.set_tag(record.run_id, "pareto", "true")
        self.log_metrics(scores, record.run_id)

    def tag_trial(self, record: TrialRecord, key: str, value: str) -> None:
        """Set one tag of a logged trial's run (a front model measured at the end)."""
        if record.run_id is not None and value:
            self.client.set_tag(record.run_id, key, value)

    def log_trial_artifacts(self, record: TrialRecord, folder: str, artifact_path: str) -> None:
        """Attach files (the exported model) to a trial's run."""
        assert record.run_id is not None
        self.client.log_artifacts(record.run_id, folder, artifact_path)

    def log_artifacts(self, folder: str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, folder, artifact_path)

    def log_artifact(self, path: str) -> None:
        self.client.log_artifact(self.run_id, path)

    def watch_system(self, every_s: float = SYSTEM_EVERY_S) -> None:
        """Log the machine's CPU, memory, disk and network use (and GPUs', with pynvml) to the
        study run until `finish`: MLflow's system metrics (`system/...`), one sample every
        `every_s` seconds. The run becomes this thread's active MLflow run meanwhile (nested
        under the caller's own, if one is active)."""
        import mlflow

        mlflow.set_system_metrics_sampling_interval(every_s)
        mlflow.set_system_metrics_samples_before_logging(1)
        mlflow.start_run(run_id=self.run_id, nested=mlflow.active_run() is not None,
                         log_system_metrics=True)
        self.watching = True

    def finish(self, status: str = "FINISHED") -> None:
        if self.run_id is None:
            return
        if self.watching:  # ending the active run stops the sampling and sets the status
            import mlflow

            mlflow.end_run(status)
            self.watching = False
        else:
            self.client.set_terminated(self.run_id, status)
