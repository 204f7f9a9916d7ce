"""A search killed mid-way is resumed by the same command with resume=true."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from autoprune.search.resume import INTERRUPTED_ATTR, counts
from tests.search.test_search_e2e import QUICK, ROOT, SMALL_RESNET

ARGS = ["search", *QUICK, *SMALL_RESNET, "hardware=jetson", "search.n_trials=6",
        "search.concurrency=1", "search.seed_ratios=[]", "search=random"]


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_a_stopped_search_resumes_to_exactly_its_budget(tmp_path, stop):
    cache = f"cache_dir={tmp_path / 'cache'}"
    driver = subprocess.Popen([sys.executable, "-m", "autoprune", *ARGS, cache], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=_env(), start_new_session=True)
    deadline = time.monotonic() + 300
    seen = ""
    while "[  2/6]" not in seen and time.monotonic() < deadline:
        line = driver.stdout.readline()
        if not line and driver.poll() is not None:
            break
        seen += line
    assert "[  2/6]" in seen, seen[-3000:]
    driver.send_signal(stop)
    driver.wait(timeout=120)
    if stop == signal.SIGKILL:  # a killed driver leaves its local Ray behind: as in real life
        os.killpg(driver.pid, signal.SIGKILL)

    resumed = subprocess.run([sys.executable, "-m", "autoprune", *ARGS, cache, "resume=true"],
                             cwd=tmp_path, capture_output=True, text=True, env=_env(),
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "resuming study" in resumed.stdout and "[  6/6]" in resumed.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autoprune")
    studies = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    assert len(studies) == 1 and studies[0].info.status == "FINISHED"
    name = studies[0].data.tags["study"]
    trials = optuna.load_study(study_name=name,
                               storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) == 6
    assert all(counts(t) or t.user_attrs.get(INTERRUPTED_ATTR) for t in trials)
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.mlflow.parentRunId = '{studies[0].info.run_id}'")
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == [t.number for t in trials]
    complete = [r for r in runs if r.data.tags["state"] == "complete"]
    assert len(complete) == 6
    assert any(r.data.tags["pareto"] == "true" for r in complete)


def test_nothing_to_resume_is_one_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autoprune", *ARGS,
                             f"cache_dir={tmp_path / 'cache'}", "resume=true"],
                            cwd=tmp_path, capture_output=True, text=True, env=_env(),
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("autoprune: error: resume=true: no unfinished study")
    assert not (tmp_path / "mlflow.db").exists()
