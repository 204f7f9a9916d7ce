"""Real searches of workloads other than the digits: a language model, a user's own task with
a metric to minimise, a dataset too large to hold, trials sharing a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.fixtures.processes import env, peak_resident_mb
from tests.search.test_search_e2e import study_runs
from tests.test_cli import cli

TINY_GPT = ["task=language_model", "model.dim=32", "model.depth=2", "model.num_heads=4",
            "data.context=16", "finetune.base_steps=40", "finetune.steps=8",
            "finetune.eval_batches=2", "search.n_trials=3", "hardware=cpu",
            "hardware.measure.warmup=3", "hardware.measure.repeats=5", "hardware.measure.number=5"]
REGRESSION = ["task._target_=examples.regression.Regression", "data=dataset",
              "data.train._target_=examples.regression.Curve", "+data.train.size=2000",
              "model=custom", "model._target_=examples.regression.Net", "+model.width=64",
              "finetune.base_steps=200", "finetune.base_lr=0.05", "finetune.steps=20",
              "search.n_trials=4", "hardware=jetson", "pruning.strategies=[neuron]"]


def _trials(tmp: Path) -> tuple[MlflowClient, object, list]:
    client, study, trials = study_runs(tmp)
    return client, study, [t for t in trials if t.data.tags["state"] == "complete"]


@pytest.mark.slow
@pytest.mark.extended
def test_a_language_model_search_logs_perplexity_to_minimise(tmp_path, stores):
    result = cli("search", *TINY_GPT, f"cache_dir={tmp_path / 'cache'}", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training the base model" in result.stdout and "val perplexity" in result.stdout
    _, study, trials = _trials(tmp_path)
    tags, metrics = study.data.tags, study.data.metrics
    assert (tags["objective_metric"], tags["objective_direction"]) == ("perplexity", "minimize")
    assert 1 < metrics["base_perplexity"] < 128 and "base_perplexity_finetuned" in metrics
    assert "base_test_perplexity" in metrics and "base_accuracy" not in metrics
    assert trials
    for trial in trials:
        assert trial.data.tags["objective_metric"] == "perplexity"
        assert trial.data.metrics["perplexity"] > 1 and "accuracy" not in trial.data.metrics
    front = [t for t in trials if t.data.tags["pareto"] == "true"]
    assert front and all("test_perplexity" in t.data.metrics for t in front)
    by_latency = sorted(front, key=lambda t: t.data.metrics["latency_ms"])
    values = [t.data.metrics["perplexity"] for t in by_latency]
    assert values == sorted(values, reverse=True), "slower front models have lower perplexity"


@pytest.mark.slow
@pytest.mark.extended
def test_a_users_task_minimises_its_metric_under_a_constraint_and_reports_it(tmp_path, stores):
    result = cli("search", *REGRESSION, "search.max_relative_drop=0.5",
                 f"cache_dir={tmp_path / 'cache'}", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "constraints: mse <= " in result.stdout
    _, study, trials = _trials(tmp_path)
    assert study.data.tags["objective_direction"] == "minimize"
    reference = min(study.data.metrics["base_mse"], study.data.metrics["base_mse_finetuned"])
    bound = 1.5 * reference
    for trial in trials:
        feasible = trial.data.metrics["mse"] <= bound
        assert trial.data.tags["feasible"] == ("true" if feasible else "false")
        if not feasible:
            assert trial.data.tags["pareto"] == "false"
    front = [t for t in trials if t.data.tags["pareto"] == "true"]
    assert front
    for trial in front:  # nothing feasible is both faster and lower
        assert not any(o.data.metrics["mse"] < trial.data.metrics["mse"]
                       and o.data.metrics["latency_ms"] <= trial.data.metrics["latency_ms"]
                       and o.data.metrics["mse"] <= bound for o in trials)
    report = cli("report", cwd=str(tmp_path))
    assert report.returncode == 0, report.stderr
    assert "val mse" in report.stdout and "%" not in report.stdout.split("-----")[-1]
    rows = [line.split() for line in report.stdout.splitlines()
            if line.split() and line.split()[0].isdigit()]
    assert sorted(int(r[0]) for r in rows) == sorted(
        int(t.data.tags["trial_number"]) for t in front)


@pytest.mark.slow
@pytest.mark.extended
def test_two_trials_share_one_gpu_and_each_sees_the_id_it_was_given(tmp_path, warm_cache,
                                                                   stores):
    from tests.search.test_search_e2e import QUICK, SMALL_RESNET

    result = cli("search", *QUICK, *SMALL_RESNET, "hardware=jetson", "ray.num_gpus=1",
                 "ray.gpus_per_trial=0.5", "search.concurrency=2", "search.n_trials=4",
                 "search.early_stop=false", "finetune.steps=60", f"cache_dir={warm_cache}",
                 cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    _, _, trials = _trials(tmp_path)
    assert len(trials) == 4
    for trial in trials:
        assert trial.data.tags["gpu_ids"] == "0"
        assert trial.data.tags["device"] == "cpu", "no CUDA here: auto falls back to the CPU"
    spans = sorted((t.info.start_time, t.info.end_time) for t in trials)
    assert all(end > start for start, end in spans)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:],
                                                                  strict=False)), \
        f"two trials ran at once on the one GPU: {spans}"


def test_more_gpus_per_trial_than_the_cluster_has_is_one_clear_error(tmp_path):
    result = cli("search", "ray.num_gpus=0", "ray.gpus_per_trial=0.5", "search.n_trials=1",
                 "finetune.base_steps=2", f"cache_dir={tmp_path / 'cache'}", cwd=str(tmp_path))
    assert result.returncode == 2
    assert "ray.gpus_per_trial=0.5, but the Ray cluster has 0 GPUs" in result.stderr


@pytest.mark.slow
@pytest.mark.extended
def test_a_dataset_too_large_to_hold_is_searched_within_bounded_memory(tmp_path, stores):
    """200,000 lazily generated 3x32x32 images (2.4 GB if materialised): no process of the
    search holds more than 1.5 GB."""
    args = ["search", "data=dataset", "data.train._target_=tests.fixtures.datasets.LazyImages",
            "data.val._target_=tests.fixtures.datasets.LazyImages", "+data.val.size=2000",
            "+data.val.seed=1", "data.test._target_=tests.fixtures.datasets.LazyImages",
            "+data.test.size=2000", "+data.test.seed=2", "data.num_classes=3",
            "data.in_channels=3", "data.resolution=32", "data.num_workers=1",
            "model.width=8", "model.blocks_per_stage=1", "finetune.base_steps=60",
            "finetune.steps=20", "finetune.eval_batches=2", "search.n_trials=3",
            "hardware=jetson", f"cache_dir={tmp_path / 'cache'}"]
    process = subprocess.Popen([sys.executable, "-m", "autoprune", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env())
    peaks = peak_resident_mb(process)
    out, err = process.communicate()
    assert process.returncode == 0, err[-3000:]
    largest, name = max(peaks.values())
    assert len(peaks) > 3, "the driver, Ray's processes and the trials' workers were seen"
    assert largest < 1536, f"{name} held {largest:.0f} MB"
    _, study, trials = _trials(tmp_path)
    assert trials and study.data.metrics["base_accuracy"] > 0.5  # chance is 1/3
