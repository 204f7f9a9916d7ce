"""A search killed mid-way is resumed by the same command with resume=true."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from autoprune.search.resume import INTERRUPTED_ATTR, counts
from tests.fixtures.processes import Driver, alive, descendants, env, kill, title
from tests.search.test_search_e2e import QUICK, SMALL_RESNET

ARGS = ["search", *QUICK, *SMALL_RESNET, "hardware=jetson", "search.n_trials=4",
        "search.concurrency=1", "search.seed_ratios=[]", "search=random"]
# The small ResNet the searches start from is trained once per session (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("warm_cache")


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "group"), [
    pytest.param(signal.SIGKILL, False, id="SIGKILL", marks=pytest.mark.extended),
    pytest.param(signal.SIGINT, True, id="ctrl-c", marks=pytest.mark.extended),
    pytest.param(signal.SIGTERM, False, id="SIGTERM", marks=pytest.mark.extended)])
def test_a_stopped_search_resumes_to_exactly_its_budget(tmp_path, stores, stop, group):
    """Killed outright, Ctrl-C in a terminal (the whole process group) or SIGTERM from a
    scheduler: the same command with resume=true finishes the study."""
    cache = f"cache_dir={tmp_path / 'cache'}"
    driver = Driver(tmp_path, *ARGS, cache)
    try:
        driver.wait_for("[  2/4]")
        started = descendants(driver.pid)
        driver.send(stop, group=group)
        code = driver.finish(timeout=120)
        if stop == signal.SIGKILL:  # a killed driver leaves its local Ray behind: as in life
            kill(started)
    finally:
        if stop != signal.SIGKILL:
            left = alive(started)
            deadline = time.monotonic() + 15
            while left and time.monotonic() < deadline:
                time.sleep(0.5)
                left = alive(started)
        driver.kill_all()
    if stop != signal.SIGKILL:
        assert code == 128 + stop, driver.output[-3000:]
        assert driver.output.strip().endswith(f"autoprune: interrupted ({stop.name})")
        assert "the partial front above is logged" in driver.output
        assert not left, f"processes left behind: {sorted(title(p) for p in left)}"
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("autoprune")
        study = client.search_runs([experiment.experiment_id], "tags.role = 'study'")[0]
        assert study.info.status == "KILLED"
        assert study.data.tags["interrupted"] == stop.name
        front = client.search_runs([experiment.experiment_id], "tags.pareto = 'true'")
        assert front, "the partial front is logged"

    resumed = subprocess.run([sys.executable, "-m", "autoprune", *ARGS, cache, "resume=true"],
                             cwd=tmp_path, capture_output=True, text=True, env=env(),
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "resuming study" in resumed.stdout and "[  4/4]" in resumed.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autoprune")
    studies = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    assert len(studies) == 1 and studies[0].info.status == "FINISHED"
    name = studies[0].data.tags["study"]
    trials = optuna.load_study(study_name=name,
                               storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    assert all(counts(t) or t.user_attrs.get(INTERRUPTED_ATTR) for t in trials)
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.mlflow.parentRunId = '{studies[0].info.run_id}'")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == [t.number for t in trials]
    complete = [r for r in runs if r.data.tags["state"] == "complete"]
    assert len(complete) == 4
    # Runs of trials that were in flight when the driver stopped are closed, not RUNNING.
    assert all(r.info.status in ("FINISHED", "KILLED", "FAILED") for r in runs)
    assert all(r.data.tags["state"] in ("complete", "failed", "stopped") for r in runs)
    assert any(r.data.tags["pareto"] == "true" for r in complete)


def test_nothing_to_resume_is_one_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autoprune", *ARGS,
                             f"cache_dir={tmp_path / 'cache'}", "resume=true"],
                            cwd=tmp_path, capture_output=True, text=True, env=env(),
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("autoprune: error: resume=true: no unfinished study")
    assert not (tmp_path / "mlflow.db").exists()


def test_trials_left_running_become_failed_and_marked_interrupted(tmp_path):
    import optuna

    from autoprune.search.resume import counts, mark_interrupted

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage,
                                directions=["maximize", "minimize"])
    done = study.ask()
    study.tell(done, [0.9, 1.0])
    study.ask()  # left RUNNING by a driver that was killed
    assert mark_interrupted(storage, "s") == 1
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL"]
    assert trials[1].user_attrs["interrupted"] is True
    assert [counts(t) for t in trials] == [True, False]  # the interrupted one runs again


class _Space:
    """The one part of a PolicySpace backfill uses: a single-strategy group's strategy is not
    sampled, so it is added back."""

    def complete(self, params):
        return {**params, "g.strategy": "channel"}


def test_backfilled_trials_keep_optunas_feasibility_and_report_works(tmp_path):
    """A driver killed after Optuna finished trials MLflow never logged: the backfilled runs
    keep the constraint values Optuna stored, so an infeasible trial stays off the front, and
    the records (without speedup or params counts) still plot."""
    from autoprune.commands.report import study_records
    from autoprune.search.pareto import front_records
    from autoprune.search.reference import Reference
    from autoprune.search.resume import backfill
    from autoprune.search.samplers import CONSTRAINTS_ATTR
    from autoprune.tasks import Objective
    from autoprune.tracking.mlflow import StudyTracker
    from autoprune.tracking.plots import plot_front_html, plot_front_png

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage,
                                directions=["maximize", "minimize"])
    # (accuracy, latency, constraint values): the fastest and most accurate breaks the floor
    told = [(0.95, 2.0, [-0.01]), (0.99, 0.5, [0.02]), (0.93, 1.0, [-0.02])]
    for accuracy, latency, limits in told:
        trial = study.ask({"g.ratio": optuna.distributions.FloatDistribution(0.0, 0.9)})
        trial.set_user_attr(CONSTRAINTS_ATTR, limits)
        study.tell(trial, [accuracy, latency])
    pruned = study.ask({"g.ratio": optuna.distributions.FloatDistribution(0.0, 0.9)})
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)

    objective = Objective("accuracy", "maximize")
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit", objective)
    run_id = tracker.start_study("s", "cpu", {}, {})
    assert backfill(tracker, "s", storage, set(), _Space(), "accuracy") == 4
    assert backfill(tracker, "s", storage, {0, 1, 2, 3}, _Space(), "accuracy") == 0

    records, _ = study_records(tracker.client, tracker.client.get_run(run_id))
    assert [(r.number, r.state, r.feasible) for r in records] == [
        (0, "complete", True), (1, "complete", False), (2, "complete", True),
        (3, "stopped", True)]
    assert [r.number for r in front_records(records, objective)] == [2, 0]
    base = Reference(objective, 0.97, 3.0)
    front = front_records(records, objective)
    plot_front_png(records, front, base, "resumed", tmp_path / "front.png")
    plot_front_html(records, front, base, "resumed", tmp_path / "front.html")
    assert (tmp_path / "front.png").stat().st_size and "trial 2" in (
        tmp_path / "front.html").read_text()
