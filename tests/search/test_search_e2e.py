"""A real search: Ray Tune + Optuna + MLflow through the CLI, in a temporary directory."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.fixtures.cluster import bench_only_venv, two_node_cluster
from tests.fixtures.processes import env

ROOT = Path(__file__).resolve().parents[2]
# Early stopping is off: with these budgets a trial may be stopped halfway, which tests of
# other things should not have to allow for (test_hopeless_trials_are_stopped_early tests it).
QUICK = [
    "search.n_trials=4", "search.concurrency=2", "finetune.steps=17", "finetune.base_steps=34",
    "search.early_stop=false", "tracking.log_models=false",
    "hardware.measure.warmup=3", "hardware.measure.repeats=5", "hardware.measure.number=5",
]
SMALL_RESNET = ["model.width=16", "model.blocks_per_stage=1"]
# The small ResNet the searches start from is trained once per session (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("warm_cache", "stores")


def search(tmp: Path, *overrides: str, model: Sequence[str] = tuple(SMALL_RESNET)
           ) -> subprocess.CompletedProcess:
    # The repository on the path: a test model (tests.fixtures) is importable, as a user's
    # own package would be, in the driver and in Ray's workers. A FutureWarning (a deprecated
    # API of a dependency, Optuna's constraints_func was one) fails the study.
    return subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-m", "autoprune", "search",
         f"cache_dir={tmp / 'cache'}", *QUICK, *model, *overrides],
        cwd=tmp, capture_output=True, text=True, timeout=600, env=env(),
    )


def study_runs(tmp: Path):
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autoprune")
    studies = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    assert len(studies) == 1
    study = studies[0]
    trials = client.search_runs([experiment.experiment_id],
                                f"tags.mlflow.parentRunId = '{study.info.run_id}'")
    return client, study, trials


@pytest.mark.slow
def test_measured_cpu_search_logs_the_front(tmp_path):
    # Dynamic gating allowed next to static strategies: TPE's trials mix them per group
    # (the default method's first trials are the uniform grid, static strategies only).
    result = search(tmp_path, "hardware=cpu", "search=tpe",
                    "pruning.strategies=[channel,layer,dynamic]")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "latency: measured on this machine" in result.stdout
    assert "[  4/4]" in result.stdout and "Pareto front of" in result.stdout
    # Everything the command printed is also in its Hydra run folder, to the last line (which
    # need not be the log's last: Ray's shutdown may log a warning after it).
    logs = list(tmp_path.glob("outputs/*/*/search.log"))
    assert len(logs) == 1 and result.stdout.splitlines()[-1] + "\n" in logs[0].read_text()

    client, study, trials = study_runs(tmp_path)
    assert study.data.tags["hardware"] == "cpu"
    assert study.data.tags["study"].startswith("resnet-digits-cpu-")
    assert study.info.status == "FINISHED"
    assert {"base_accuracy", "base_latency_ms"} <= set(study.data.metrics)
    assert study.data.params["search.n_trials"] == "4"
    assert {(i.dataset.name, i.tags[0].value) for i in study.inputs.dataset_inputs} == {
        ("digits-train", "training"), ("digits-val", "validation"), ("digits-test", "test")}

    assert len(trials) == 4
    assert {t.data.tags["role"] for t in trials} == {"trial"}
    assert {t.data.tags["latency_source"] for t in trials} == {"measured"}
    assert {t.data.tags["state"] for t in trials} == {"complete"}
    for t in trials:
        assert {"accuracy", "latency_ms", "speedup", "params", "macs", "size_mb",
                "sparsity"} <= set(t.data.metrics)
        assert any(k.endswith(".ratio") for k in t.data.params)
        # Where the trial's time went, measured in the trial: training and timing both took
        # some, and together they fit in the trial's own wall time.
        assert t.data.metrics["time_train_s"] > 0 and t.data.metrics["time_latency_s"] > 0
        spent = sum(v for k, v in t.data.metrics.items() if k.startswith("time_"))
        assert spent <= (t.info.end_time - t.info.start_time) / 1000 + 1.0
    # ... and the study's: printed and logged, the shares of the slots' time adding to one
    # (the trials' waits on Tune's driver are a part of the framework's share).
    assert "time: " in result.stdout and "framework " in result.stdout
    assert "idle at the end" in result.stdout
    shares = {k: v for k, v in study.data.metrics.items() if k.startswith("share_")}
    assert sum(v for k, v in shares.items() if k not in ("share_report", "share_startup")) \
        == pytest.approx(1.0)
    assert shares["share_train"] > 0 and 0 < shares["share_report"] <= shares["share_framework"]
    # the slots waited for their first trial (Ray starting their workers): a part of it too
    assert 0 < shares["share_startup"] <= shares["share_framework"]
    assert "waiting for their first trial" in result.stdout
    front = [t for t in trials if t.data.tags["pareto"] == "true"]
    assert front and all("test_accuracy" in t.data.metrics for t in front)
    # Optuna's side names its objectives and each trial's MLflow run (created as it started).
    optuna_study = optuna.load_study(study_name=study.data.tags["optuna_study"],
                                     storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert optuna_study.metric_names == ["accuracy", "latency_ms"]
    assert {t.number: t.user_attrs["mlflow_run_id"] for t in optuna_study.trials} == {
        int(t.data.tags["trial_number"]): t.info.run_id for t in trials}

    used = [set(t.data.tags.get("strategies", "").split(",")) for t in trials]
    assert any("dynamic" in u for u in used) and any("channel" in u for u in used)
    assert any({"dynamic", "channel"} <= u for u in used)

    artifacts = {a.path for a in client.list_artifacts(study.info.run_id, "pareto")}
    assert {"pareto/pareto_front.csv", "pareto/pareto_front.png",
            "pareto/pareto_front.html"} <= artifacts
    exports = json.loads(Path(client.download_artifacts(
        study.info.run_id, "pareto/exports.json", str(tmp_path))).read_text())
    gated = {t.data.tags["trial_number"] for t in front
             if "dynamic" in t.data.tags.get("strategies", "")}
    for entry in exports:
        assert "onnx_error" not in entry and "torchscript_error" not in entry
        assert entry["onnx_max_abs_diff"] < 1e-4
        assert entry["onnx_batch"] == (1 if str(entry["trial"]) in gated else "dynamic")
    policies = client.list_artifacts(study.info.run_id, "pareto/policies")
    assert len(policies) == len(front)

    name = study.data.tags["optuna_study"]
    assert name != "optuna"
    optuna_study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    states = [t.state for t in optuna_study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    # The front is the trials no other beats on both objectives, by the final values MLflow
    # shows: the front's latencies timed again after the search (Optuna keeps the search's,
    # so its best_trials may differ when a second timing reorders them).
    def beats(a, b) -> bool:
        (acc_a, lat_a), (acc_b, lat_b) = ((r.data.metrics["accuracy"], r.data.metrics[
            "latency_ms"]) for r in (a, b))
        return acc_a >= acc_b and lat_a <= lat_b and (acc_a, lat_a) != (acc_b, lat_b)

    assert {t.info.run_id for t in front} == {
        t.info.run_id for t in trials if not any(beats(o, t) for o in trials)}


@pytest.mark.slow
@pytest.mark.slow
def test_adaptive_measurement_predicts_some_trials_and_measures_the_whole_front(tmp_path):
    result = search(tmp_path, "hardware=cpu", "hardware.measure_policy=adaptive",
                    "search=random", "search.n_trials=12")
    assert result.returncode == 0, result.stderr[-3000:]
    _, study, trials = study_runs(tmp_path)
    m = study.data.metrics
    measured, unmeasured = m["latency_measured_trials"], m["latency_unmeasured_trials"]
    assert measured + unmeasured == 12 and measured >= 5
    assert 0 <= m["latency_model_error"] < 1
    # A device too noisy to predict is measured throughout, and the learnt model's error on
    # its measurements says why (this shared machine at times times one model 25% apart from
    # one measurement to the next); otherwise some trials go unmeasured.
    assert unmeasured >= 1 or m["latency_model_error"] > 0.1
    assert (f"adaptive measurement: measured {measured:.0f} of 12 trials, {unmeasured:.0f} "
            "predicted instead") in result.stdout
    predicted = [t for t in trials if t.data.tags["latency_source"] == "predicted"]
    # Those left predicted say how sure the learnt model was; the front is all measured
    # (a predicted front model is measured at the end, and its tag says so).
    assert all(0 < t.data.metrics["latency_uncertainty"] < 1 for t in predicted)
    front = [t for t in trials if t.data.tags["pareto"] == "true"]
    assert front and {t.data.tags["latency_source"] for t in front} == {"measured"}
    # Every trial left unmeasured in the search is either still predicted or was measured
    # at the end for the front.
    assert len(predicted) + m.get("latency_measured_at_front", 0) == unmeasured


@pytest.mark.extended
def test_diverging_trials_are_failed_everywhere_and_the_study_says_so(tmp_path):
    result = search(tmp_path, "hardware=jetson", "finetune.lr=1e30", "search.n_trials=2",
                    "search.seed_ratios=[]")
    assert result.returncode == 1
    assert "FAILED: " in result.stdout and "diverged" in result.stdout
    assert "all 2 trials failed" in result.stderr
    _, study, trials = study_runs(tmp_path)
    assert study.info.status == "FAILED"
    assert [t.info.status for t in trials] == ["FAILED", "FAILED"]
    assert all("diverged" in t.data.tags["error"] for t in trials)
    name = study.data.tags["optuna_study"]
    optuna_study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in optuna_study.trials] == [optuna.trial.TrialState.FAIL] * 2


@pytest.mark.slow
@pytest.mark.extended
def test_unseen_hybrid_model_with_every_strategy_prunes_and_exports_correctly(tmp_path):
    """Residuals, a concat, depthwise convolutions, SE gates and nn.MultiheadAttention in one
    model the package never saw, every strategy enabled: no crash, no broken model, and the
    exported front models are exactly what the trials reported."""
    import json

    import torch

    from autoprune.export import load_pruned, onnx_difference
    from autoprune.pruning import model_stats

    result = search(tmp_path, "hardware=jetson", "pruning=all", "data=synthetic",
                    "data.samples=600", "search.n_trials=10", "search=random",
                    "search.seed_ratios=[0.5]",
                    model=["model=custom", "model._target_=tests.fixtures.hybrid.HybridNet",
                           "+model.num_classes=10", "+model.in_channels=1"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FAILED" not in result.stdout
    client, study, trials = study_runs(tmp_path)
    assert study.info.status == "FINISHED"
    assert len(trials) == 10 and {t.data.tags["state"] for t in trials} == {"complete"}
    used = {name for t in trials for name in t.data.tags.get("strategies", "").split(",")}
    assert {"head", "layer", "lowrank", "nm", "int8"} <= used
    front = [t for t in trials if t.data.tags["pareto"] == "true"]
    assert front
    x = torch.randn(4, 1, 16, 16)
    for trial in front:
        folder = Path(client.download_artifacts(trial.info.run_id, "model",
                                                str(tmp_path / trial.info.run_id)))
        checked = json.loads((folder / "export.json").read_text())
        loaded = load_pruned(folder / "pruned.pt")
        stats = model_stats(loaded.model, x[:1])
        assert stats["params"] == trial.data.metrics["params"] == checked["params"]
        assert stats["sparsity"] == pytest.approx(trial.data.metrics["sparsity"], abs=1e-12)
        assert onnx_difference(folder / "model.onnx", loaded.model, x) < 1e-4
        scripted = torch.jit.load(str(folder / "model.torchscript.pt"))
        with torch.no_grad():
            assert torch.allclose(scripted(x), loaded.deployed(x), atol=1e-5)


@pytest.mark.slow
@pytest.mark.extended
def test_two_node_cluster_measures_on_the_node_advertising_the_device(tmp_path):
    """A local two-node Ray cluster whose second node advertises `jetson`: the bench runs there
    (this machine has no GPU, so that node times on its CPU) and every trial is measured."""
    with two_node_cluster() as cluster:
        listing = subprocess.run(
            [sys.executable, "-c", "import json, sys, ray; ray.init(address=sys.argv[1], "
             "logging_level='ERROR'); print(json.dumps({n['NodeID']: n['Resources'] "
             "for n in ray.nodes() if n['Alive']}))", cluster.address],
            env=env(**cluster.env), check=True, capture_output=True, text=True, timeout=120)
        nodes = json.loads(listing.stdout.strip().splitlines()[-1])
        jetson_nodes = [node for node, res in nodes.items() if res.get("jetson")]
        assert len(nodes) == 2 and len(jetson_nodes) == 1
        result = subprocess.run(
            [sys.executable, "-m", "autoprune", "search", f"cache_dir={tmp_path / 'cache'}",
             *QUICK, *SMALL_RESNET, "hardware=jetson", "hardware.device=cpu",
             "hardware.precision=fp32", "hardware.measure.warmup_s=0", "search.n_trials=3",
             f"ray.address={cluster.address}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env(**cluster.env))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"latency: measured on Ray node {jetson_nodes[0][:12]} advertising 'jetson'" \
        in result.stdout
    _, study, trials = study_runs(tmp_path)
    assert study.data.tags["latency_source"] == "measured"
    assert study.data.tags["latency_node"] == jetson_nodes[0]
    assert study.data.tags["latency_device"] == "cpu"
    assert len(trials) == 3
    assert {t.data.tags["latency_source"] for t in trials} == {"measured"}
    # The torch backend sends torch.export programs; the node reports its PyTorch.
    assert study.data.tags["device.torch"] == torch.__version__


# Run on the device node: which Python its workers run, and which of the search stack they
# can import (none of it, when the node has only autoprune[bench]).
DEVICE_PROBE = """
import importlib.util, json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")

@ray.remote(num_cpus=0, resources={"jetson": 0.01})
def probe():
    names = ("torch", "hydra", "mlflow", "optuna", "torch_pruning", "onnxruntime")
    return {"python": sys.executable,
            "importable": [n for n in names if importlib.util.find_spec(n) is not None]}

print(json.dumps(ray.get(probe.remote())))
"""


@pytest.mark.slow
@pytest.mark.extended
def test_a_device_with_only_the_bench_extra_measures_the_search_from_exported_files(
        tmp_path):
    """The second node runs in its own virtual environment with only `autoprune[bench]`: no
    PyTorch, Hydra, MLflow or Optuna there. The study sends it ONNX files, every trial is
    measured there, and the study run records the device's state."""
    venv = bench_only_venv(tmp_path / "device-venv")
    with two_node_cluster(device_venv=venv) as cluster:
        device = json.loads(subprocess.run(
            [sys.executable, "-c", DEVICE_PROBE, cluster.address], cwd=tmp_path,
            env=env(**cluster.env), check=True, capture_output=True, text=True,
            timeout=120).stdout.strip().splitlines()[-1])
        result = subprocess.run(
            [sys.executable, "-m", "autoprune", "search", f"cache_dir={tmp_path / 'cache'}",
             *QUICK, *SMALL_RESNET, "hardware=jetson", "hardware.device=cpu",
             "hardware.backend=onnxruntime", "hardware.precision=fp32",
             "hardware.measure.warmup_s=0", "search.n_trials=3",
             f"ray.address={cluster.address}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env(**cluster.env))
    assert device == {"python": str(venv / "bin" / "python"), "importable": ["onnxruntime"]}
    assert result.returncode == 0, result.stderr[-3000:]
    _, study, trials = study_runs(tmp_path)
    tags = study.data.tags
    assert tags["latency_source"] == "measured"
    assert tags["latency_device"].startswith("cpu (onnxruntime ")
    assert len(trials) == 3
    assert {t.data.tags["latency_source"] for t in trials} == {"measured"}
    # The device's own state, as its bench found it (this one is a CPU: no power mode).
    assert tags["device.onnxruntime"] and tags["device.cores"].isdigit()
    assert "device.torch" not in tags and "device.power_mode" not in tags
    assert f"({tags['device.cpu']}" in result.stdout


@pytest.mark.slow
@pytest.mark.extended
# One per kind: the default (the grid, then refining the front), a genetic algorithm, and the
# agent with its warm start (TPE runs in the measured CPU search above). The other samplers
# run the same loop in miniature in test_samplers.py.
@pytest.mark.parametrize("method", ["refine", "nsga2", "amc"])
def test_every_search_method_runs_the_same_path_and_logs_alike(tmp_path, method):
    extra = ["search.sensitivity=true", "search.sensitivity_ratios=[0.5]"] \
        if method == "amc" else []
    result = search(tmp_path, "hardware=jetson", f"search={method}", "search.n_trials=3",
                    "search.max_accuracy_drop=0.02", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "constraints: accuracy >= " in result.stdout
    client, study, trials = study_runs(tmp_path)
    assert study.info.status == "FINISHED"
    assert study.data.params["search.sampler"] == method
    # No Jetson here: every latency is the model's prediction, and says so.
    assert "latency: PREDICTED" in result.stdout
    assert study.data.tags["latency_source"] == "predicted"
    assert {t.data.tags["latency_source"] for t in trials} == {"predicted"}
    assert {"trials_complete", "trials_failed", "trials_stopped_early", "trials_infeasible",
            "pareto_size"} <= set(study.data.metrics)
    assert len(trials) == 3 and {t.data.tags["state"] for t in trials} == {"complete"}
    for t in trials:
        assert {"role", "study", "pareto", "state", "trial_number", "latency_source",
                "feasible"} <= set(t.data.tags)
        assert {"accuracy", "latency_ms", "speedup", "params", "macs"} <= set(t.data.metrics)
    floor = study.data.metrics["base_accuracy"] - 0.02
    front = [t for t in trials if t.data.tags["pareto"] == "true"]
    assert all(t.data.tags["feasible"] == "true" for t in front)
    assert all(t.data.metrics["accuracy"] >= floor - 1e-9 for t in front)
    assert all((t.data.tags["feasible"] == "true") == (t.data.metrics["accuracy"] >= floor - 1e-9)
               for t in trials)
    assert study.data.metrics["trials_infeasible"] == sum(
        t.data.tags["feasible"] == "false" for t in trials)
    name = study.data.tags["optuna_study"]
    states = [t.state for t in optuna.load_study(
        study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3
    if method == "amc":
        assert "sensitivity warm start" in result.stdout


@pytest.mark.slow
@pytest.mark.extended
def test_hopeless_trials_are_stopped_early(tmp_path):
    """Margin 0: a trial that is behind a finished trial at least as fast, halfway through
    its fine-tuning, stops there (random proposals, predicted latency: deterministic)."""
    result = search(tmp_path, "hardware=jetson", "search=random", "search.n_trials=8",
                    "search.concurrency=1", "search.seed_ratios=[]", "search.early_stop=true",
                    "search.early_stop_margin=0.0", "search.rungs=[0.5]")
    assert result.returncode == 0, result.stderr[-3000:]
    _, study, trials = study_runs(tmp_path)
    stopped = [t for t in trials if t.data.tags["state"] == "stopped"]
    assert stopped, result.stdout
    assert "stopped early: " in result.stdout and "fine-tuning steps saved" in result.stdout
    for trial in stopped:
        assert trial.info.status == "KILLED" and trial.data.tags["pareto"] == "false"
        assert "a trial at least as fast had" in trial.data.tags["error"]
        assert trial.data.metrics["steps"] == 8  # halfway through 17 steps
        assert trial.data.metrics["time_train_s"] > 0  # its time up to the check counts too
        assert trial.info.start_time < trial.info.end_time
    # Learning curves with steps: every trial's accuracy at the rung (and, when it went on,
    # at the end: the latest value), and its training loss as it went.
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for trial in trials:
        history = sorted((m.step, m.value) for m in
                         client.get_metric_history(trial.info.run_id, "accuracy"))
        finished = trial.data.tags["state"] == "complete"
        assert [step for step, _ in history] == ([8, 17] if finished else [8])
        assert history[-1][1] == trial.data.metrics["accuracy"]
        loss = client.get_metric_history(trial.info.run_id, "train_loss")
        assert loss and (max(m.step for m in loss) == 17 or not finished)
    assert study.data.metrics["trials_stopped_early"] == len(stopped)
    optuna_study = optuna.load_study(study_name=study.data.tags["optuna_study"],
                                     storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    states = {t.number: t.state for t in optuna_study.trials}
    assert all(states[int(t.data.tags["trial_number"])] == optuna.trial.TrialState.PRUNED
               for t in stopped)
