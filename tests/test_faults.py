"""Faults injected into a running search, as they happen on shared machines and clusters.

Each test starts `python -m autoprune search` as a user would, waits until it is underway,
then breaks something from outside: kills a trial's worker, freezes the latency bench, takes
the device's Ray node away, or starts a second study against the same stores. The study must
carry on (or stop with a clear message), and nothing finished may be lost. Interrupting the
driver itself (SIGINT, SIGTERM, SIGKILL) and resuming are in tests/search/test_resume.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.fixtures.cluster import two_node_cluster
from tests.fixtures.processes import Driver, alive, descendants, title

# The small ResNet the searches start from is trained once per session (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.extended,
              pytest.mark.usefixtures("warm_cache", "stores")]

STUDY = ["search", "search=random", "search.seed_ratios=[]", "search.concurrency=1",
         "search.early_stop=false", "finetune.base_steps=34", "hardware.measure.warmup=3",
         "hardware.measure.repeats=5", "hardware.measure.number=5"]
RESNET = ["model.width=16", "model.blocks_per_stage=1"]
TrialState = optuna.trial.TrialState


def _stores(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autoprune")
    studies = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    return client, experiment, studies, storage


def _trial_runs(client, experiment, study) -> dict[int, object]:
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.mlflow.parentRunId = '{study.info.run_id}'")
    return {int(r.data.tags["trial_number"]): r for r in runs}


def _kill_trial_1_worker(tmp_path, wait, *extra: str) -> Driver:  # noqa: ANN001
    """A 3-trial study, one trial at a time, whose worker is killed (SIGKILL) once trial 0
    has finished and `wait()` returned; the study is left to finish."""
    driver = Driver(tmp_path, *STUDY, *RESNET, f"cache_dir={tmp_path / 'cache'}", "hardware=cpu",
                    "search.n_trials=3", "finetune.steps=136", *extra)
    try:
        driver.wait_for("[  1/3]")
        wait()
        workers = driver.workers("ImplicitFunc")
        assert len(workers) == 1, [title(p) for p in descendants(driver.pid)]
        os.kill(workers[0], signal.SIGKILL)
        assert driver.finish() == 0, driver.output[-3000:]
    finally:
        driver.kill_all()
    return driver


def test_a_worker_killed_mid_finetune_is_retried_from_its_checkpoint(tmp_path):
    """The default, one retry: trial 1's worker dies after it handed out its checkpoint
    (halfway); Tune runs it again in a new worker, which goes on from there."""
    def checkpointed() -> None:  # trial 1 (Tune's second) handed out its checkpoint
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("outputs/*/*/ray/*/trainable_????????_2_*/checkpoint_*")):
            assert time.monotonic() < deadline, "no checkpoint of trial 1"
            time.sleep(0.2)

    driver = _kill_trial_1_worker(tmp_path, checkpointed)
    assert "3 completed, 0 failed" in driver.output
    assert "[worker lost; resumed at step " in driver.output
    client, experiment, studies, storage = _stores(tmp_path)
    trials = optuna.load_study(study_name=studies[0].data.tags["study"], storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    runs = _trial_runs(client, experiment, studies[0])
    assert runs[1].data.tags["resumed_from_step"] == "68"
    assert runs[1].data.metrics["steps"] == 136
    assert "resumed_from_step" not in runs[0].data.tags | runs[2].data.tags


def test_a_worker_killed_mid_finetune_without_retries_fails_only_its_trial(tmp_path):
    driver = _kill_trial_1_worker(tmp_path, lambda: time.sleep(1.0),  # trial 1 fine-tunes
                                  "search.max_failures=0")
    assert "trial   1: FAILED: WorkerDied: the trial's worker process died" in driver.output
    assert "2 completed, 1 failed" in driver.output

    client, experiment, studies, storage = _stores(tmp_path)
    assert len(studies) == 1 and studies[0].info.status == "FINISHED"
    assert studies[0].data.metrics["trials_failed"] == 1
    trials = optuna.load_study(study_name=studies[0].data.tags["study"], storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.COMPLETE]
    runs = _trial_runs(client, experiment, studies[0])
    assert runs[1].info.status == "FAILED"
    assert runs[1].data.tags["error"].startswith("WorkerDied: ")
    assert {runs[0].info.status, runs[2].info.status} == {"FINISHED"}


def test_a_diverging_trial_fails_with_the_reason_and_the_study_goes_on(tmp_path):
    # Trial 0 keeps 24 of 32 channels (seed ratio 0.25) and fine-tunes; trial 1 keeps 16
    # (0.5), and its loss becomes NaN.
    driver = Driver(tmp_path, *STUDY, f"cache_dir={tmp_path / 'cache'}", "hardware=jetson",
                    "search.seed_ratios=[0.25,0.5]", "search.n_trials=3", "finetune.steps=17",
                    "model=custom", "model._target_=tests.fixtures.fragile.FragileNet",
                    "pruning.strategies=[channel]")
    try:
        assert driver.finish() == 0, driver.output[-3000:]
    finally:
        driver.kill_all()
    assert "trial   1: FAILED: TrialFailed: training diverged: loss is nan" in driver.output
    client, experiment, studies, storage = _stores(tmp_path)
    trials = optuna.load_study(study_name=studies[0].data.tags["study"], storage=storage).trials
    assert trials[0].state == TrialState.COMPLETE and trials[1].state == TrialState.FAIL
    assert len(trials) == 3 and studies[0].info.status == "FINISHED"
    runs = _trial_runs(client, experiment, studies[0])
    assert runs[1].info.status == "FAILED"
    assert runs[1].data.tags["error"].startswith("TrialFailed: training diverged")
    # The whole traceback is one path away, printed and tagged.
    where = runs[1].data.tags["error_file"]
    assert f"(traceback: {where})" in driver.output
    assert Path(where).is_relative_to(tmp_path)  # with the study's output, not in /tmp/ray
    assert 'raise TrialFailed(f"training diverged' in Path(where).read_text()


def test_a_hung_bench_is_restarted_and_no_trial_is_lost(tmp_path):
    driver = Driver(tmp_path, *STUDY, *RESNET, f"cache_dir={tmp_path / 'cache'}", "hardware=cpu",
                    "hardware.measure.timeout_s=5", "search.n_trials=3", "finetune.steps=68")
    try:
        driver.wait_for("[  1/3]")
        benches = driver.workers("Bench")
        assert len(benches) == 1
        os.kill(benches[0], signal.SIGSTOP)  # the device stops answering mid-study
        assert driver.finish() == 0, driver.output[-3000:]
    finally:
        driver.kill_all()
    assert "3 completed, 0 failed" in driver.output
    assert not alive(set(benches)), "the frozen bench must have been replaced"


def test_a_device_that_leaves_mid_study_stops_it_with_a_clear_message(tmp_path, two_nodes):
    driver = Driver(tmp_path, *STUDY, *RESNET, f"cache_dir={tmp_path / 'cache'}", "hardware=jetson",
                    "hardware.device=cpu", "hardware.precision=fp32",
                    "hardware.measure.warmup_s=0", "hardware.measure.timeout_s=5",
                    "hardware.measure.attempts=2", "hardware.measure.give_up_after=2",
                    "search.n_trials=8", "finetune.steps=34", f"ray.address={two_nodes.address}",
                    extra_env=two_nodes.env)
    try:
        driver.wait_for("[  1/8]")
        os.kill(two_nodes.raylet_advertising("jetson"), signal.SIGKILL)  # the Jetson is unplugged
        code = driver.finish(timeout=300)
    finally:
        driver.kill_all()
    assert code == 1, driver.output[-3000:]
    last = driver.output.strip().splitlines()[-1]
    assert last.startswith("autoprune: the latency device did not answer: 2 trials in a row "
                           "could not be measured (last: BenchUnavailable: latency bench gave "
                           "up after 2 attempt(s)"), last
    assert "check the device, then run the same command with resume=true" in last

    client, experiment, studies, storage = _stores(tmp_path)
    assert len(studies) == 1 and studies[0].info.status == "FAILED"
    trials = optuna.load_study(study_name=studies[0].data.tags["study"], storage=storage).trials
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert trials[0].state == TrialState.COMPLETE
    runs = _trial_runs(client, experiment, studies[0])
    assert runs[0].data.tags["pareto"] == "true", "the partial front is logged"
    assert len(trials) < 8, "the study stopped instead of failing every remaining trial"


def test_two_studies_at_once_keep_their_trials_apart(tmp_path):
    args = [*(a for a in STUDY if a != "search=random"), *RESNET,
            f"cache_dir={tmp_path / 'cache'}", "hardware=jetson", "search.n_trials=3",
            "finetune.steps=17", "ray.num_cpus=1"]
    first = Driver(tmp_path, *args, "search=random")  # different proposals, same base model
    second = Driver(tmp_path, *args, "search=uniform")
    try:
        codes = [first.finish(), second.finish()]
    finally:
        first.kill_all()
        second.kill_all()
    assert codes == [0, 0], first.output[-2000:] + second.output[-2000:]

    client, experiment, studies, storage = _stores(tmp_path)
    assert len(studies) == 2
    names = {s.data.tags["study"] for s in studies}
    assert len(names) == 2 and set(optuna.get_all_study_names(storage)) == names
    for study in studies:
        trials = optuna.load_study(study_name=study.data.tags["study"], storage=storage).trials
        runs = _trial_runs(client, experiment, study)
        assert sorted(runs) == [t.number for t in trials] == [0, 1, 2]
        for trial in trials:
            run = runs[trial.number]
            assert run.data.tags["study"] == study.data.tags["study"]
            assert {k: run.data.params[k] for k in trial.params} == \
                {k: str(v) for k, v in trial.params.items()}


@pytest.fixture
def two_nodes():
    with two_node_cluster() as cluster:
        yield cluster


def test_fault_helpers_see_this_process_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendants(os.getpid())
        assert alive({child.pid}) == {child.pid}
    finally:
        child.kill()
        child.wait()
    assert alive({child.pid}) == set()
