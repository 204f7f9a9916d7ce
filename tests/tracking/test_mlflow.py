"""The MLflow layout of a study, written to a real SQLite store."""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from autoprune.errors import UserError
from autoprune.search.records import TrialRecord
from autoprune.tasks import Objective
from autoprune.tracking.mlflow import StudyTracker, check_reachable, flatten


def test_flatten_joins_nested_keys_and_stringifies():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {
        "a.b": "1", "a.c": "[1, 2]", "d": "None", "e": "{}"}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://127.0.0.1:9", "cannot be reached"),
        ("sqlite:////no/such/folder/mlflow.db", "does not exist"),
        ("file:///tmp/mlruns", "refuses the plain file store"),
        ("gopher://host", "unknown scheme"),
    ],
)
def test_unusable_tracking_uris_are_user_errors(uri, message, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(UserError, match=message):
        check_reachable(uri, timeout_s=1.0)


def test_study_and_trial_runs_follow_the_schema(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, "unit", Objective("accuracy", "maximize"))
    run_id = tracker.start_study("s-1", "cpu", {"search": {"n_trials": 2}}, {"extra": "x"})
    tracker.log_metrics({"base_accuracy": 0.9, "base_latency_ms": 2.0})
    good = TrialRecord(0, {"g.ratio": 0.5, "g.strategy": "channel"}, "complete",
                       {"accuracy": 0.8, "latency_ms": 1.0}, latency_source="measured")
    bad = TrialRecord(1, {"g.ratio": 0.2, "g.strategy": "channel"}, "failed",
                      latency_source="measured", error="TrialFailed: diverged")
    tracker.log_trial(good, "s-1")
    tracker.log_trial(bad, "s-1")
    tracker.mark_pareto(good, {"test_accuracy": 0.85})
    tracker.finish()

    client = MlflowClient(uri)
    study = client.get_run(run_id)
    assert study.data.tags["role"] == "study" and study.data.tags["hardware"] == "cpu"
    assert study.data.tags["objective_metric"] == "accuracy"
    assert study.data.tags["objective_direction"] == "maximize"
    assert study.data.params["search.n_trials"] == "2"
    assert study.data.metrics["base_latency_ms"] == 2.0
    assert study.info.status == "FINISHED"
    trials = {r.data.tags["trial_number"]: r for r in client.search_runs(
        [study.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")}
    assert trials["0"].data.tags["pareto"] == "true"
    assert trials["0"].data.tags["objective_metric"] == "accuracy"
    assert trials["0"].data.metrics["test_accuracy"] == 0.85
    assert trials["0"].data.params["g.strategy"] == "channel"
    assert trials["0"].info.status == "FINISHED"
    assert trials["1"].data.tags["pareto"] == "false"
    assert trials["1"].data.tags["state"] == "failed"
    assert trials["1"].data.tags["latency_source"] == "measured"
    assert trials["1"].data.tags["error"] == "TrialFailed: diverged"
    assert trials["1"].info.status == "FAILED"


def test_a_trial_run_holds_its_learning_curves_and_ends_on_its_final_metrics(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, "unit", Objective("accuracy", "maximize"))
    tracker.start_study("s-1", "cpu", {}, {})
    params = {f"g{i}.ratio": 0.1 for i in range(120)}  # more than one batch of params
    params.update({f"g{i}.strategy": "channel" for i in range(120)})
    record = TrialRecord(
        0, params, "complete", {"accuracy": 0.97, "latency_ms": 1.0, "steps": 68.0},
        curves={"accuracy": [(17, 0.90, 1000.0), (34, 0.95, 1001.0)],
                "train_loss": [(s, 2.0 / s, 1000.0 + s) for s in range(1, 69)]},
        started=990.0, finished=1100.0)
    run_id = tracker.log_trial(record, "s-1")
    client = MlflowClient(uri)
    history = client.get_metric_history(run_id, "accuracy")
    assert sorted((m.step, m.value) for m in history) == [(17, 0.90), (34, 0.95), (68, 0.97)]
    loss = client.get_metric_history(run_id, "train_loss")
    assert [m.step for m in sorted(loss, key=lambda m: m.step)] == list(range(1, 69))
    run = client.get_run(run_id)
    assert run.data.metrics["accuracy"] == 0.97 and len(run.data.params) == 240
    assert (run.info.start_time, run.info.end_time) == (990000, 1100000)


def test_a_trial_run_starts_with_its_trial_and_a_stopped_study_closes_the_open_ones(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, "unit", Objective("accuracy", "maximize"))
    tracker.start_study("s-1", "cpu", {}, {})
    first, second = tracker.start_trial(0, "s-1"), tracker.start_trial(1, "s-1")
    client = MlflowClient(uri)
    running = client.get_run(first)
    assert running.info.status == "RUNNING" and running.data.tags["state"] == "running"
    record = TrialRecord(0, {"g.ratio": 0.5, "g.strategy": "channel"}, "complete",
                         {"accuracy": 0.9, "latency_ms": 1.0}, run_id=first)
    assert tracker.log_trial(record, "s-1") == first  # the same run, completed
    done = client.get_run(first)
    assert done.info.status == "FINISHED" and done.data.tags["state"] == "complete"
    assert done.data.metrics["accuracy"] == 0.9 and done.data.params["g.ratio"] == "0.5"
    assert tracker.close_open_trials("interrupted: stopped") == 1
    closed = client.get_run(second)
    assert closed.info.status == "KILLED"
    assert (closed.data.tags["state"], closed.data.tags["error"]) == (
        "failed", "interrupted: stopped")
    assert client.get_run(first).info.status == "FINISHED"


def test_the_study_run_samples_the_machine_until_it_finishes(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, "unit", Objective("accuracy", "maximize"))
    with mlflow.start_run(experiment_id=tracker.experiment_id) as outer:  # a caller's own run
        run_id = tracker.start_study("s-1", "cpu", {}, {})
        tracker.watch_system(every_s=0.5)
        time.sleep(2.0)
        tracker.finish("KILLED")
        assert mlflow.active_run().info.run_id == outer.info.run_id  # the caller's run again
    run = tracker.client.get_run(run_id)
    assert run.info.status == "KILLED"
    cpu = tracker.client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert len(cpu) >= 2 and all(0 <= m.value <= 100 for m in cpu)
    assert "system/system_memory_usage_megabytes" in run.data.metrics
    count = len(cpu)
    time.sleep(1.0)  # finished: no more samples
    assert len(tracker.client.get_metric_history(run_id,
                                                 "system/cpu_utilization_percentage")) == count
