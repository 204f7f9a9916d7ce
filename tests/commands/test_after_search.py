"""After a search: report, apply and ui against the study it left in MLflow."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import copy_base, copy_stores
from tests.fixtures.cluster import free_port
from tests.fixtures.processes import alive, descendants, title
from tests.search.test_search_e2e import QUICK, SMALL_RESNET
from tests.test_cli import cli


@pytest.fixture(scope="module")
def finished(tmp_path_factory, store_templates, trained_bases) -> Path:
    """A small measured CPU study, left in tmp/mlflow.db (its base model from the session's
    cache)."""
    tmp = tmp_path_factory.mktemp("study")
    copy_stores(store_templates, tmp)
    copy_base(trained_bases, tmp / "cache")
    # Front models logged as MLflow models.
    quick = [o for o in QUICK if not o.startswith("tracking.")]
    # The grid: its proposals do not depend on which trial finishes first or on measured
    # latencies, so `reproduce` must propose the very same policies.
    result = cli("search", "hardware=cpu", f"cache_dir={tmp / 'cache'}", *quick, *SMALL_RESNET,
                 "search.n_trials=3", "search=uniform", cwd=str(tmp))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp


def study_run(tmp: Path):
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autoprune")
    return client, experiment, client.search_runs([experiment.experiment_id],
                                                  "tags.role = 'study'")[0]


@pytest.mark.slow
def test_report_prints_the_front_and_writes_markdown_and_plots(finished):
    client, _, study = study_run(finished)
    result = cli("report", cwd=str(finished))
    assert result.returncode == 0, result.stderr[-3000:]
    name = study.data.tags["study"]
    assert f"Pareto front of {name}" in result.stdout and "val acc" in result.stdout
    folder = finished / "reports" / name
    markdown = (folder / "report.md").read_text()
    front = int(study.data.metrics["pareto_size"])
    rows = [line for line in markdown.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == front
    assert {"pareto_front.png", "pareto_front.html", "pareto_front.csv"} <= {
        p.name for p in folder.iterdir()}
    by_id = cli("report", f"run={study.info.run_id}", cwd=str(finished))
    assert by_id.returncode == 0 and f"Pareto front of {name}" in by_id.stdout
    missing = cli("report", "run=nosuchstudy", cwd=str(finished))
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("autoprune: error: no study run 'nosuchstudy' in "
                                      "experiment 'autoprune'")


@pytest.mark.slow
def test_every_front_model_is_an_mlflow_model_that_predicts_like_its_bundle(finished):
    import mlflow
    import numpy as np
    import torch

    from autoprune.export import load_pruned

    client, experiment, study = study_run(finished)
    front = client.search_runs([experiment.experiment_id],
                               f"tags.mlflow.parentRunId = '{study.info.run_id}' and "
                               "tags.pareto = 'true'")
    assert front
    mlflow.set_tracking_uri(f"sqlite:///{finished / 'mlflow.db'}")
    for run in front:
        folder = Path(client.download_artifacts(run.info.run_id, "model",
                                                str(finished / f"dl-{run.info.run_id}")))
        uri = json.loads((folder / "export.json").read_text())["mlflow_model"]
        logged = mlflow.models.get_model_info(uri)
        assert logged.run_id == run.info.run_id
        [spec] = logged.signature.inputs.to_dict()
        assert spec["tensor-spec"]["dtype"] == "float32"
        batch, *shape = spec["tensor-spec"]["shape"]
        assert batch == -1 and shape == [1, 16, 16]  # any batch of the digits at 16 x 16
        x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(0))
        bundle = load_pruned(folder / "pruned.pt").model.eval()
        with torch.no_grad():
            expected = bundle(x)
            module = mlflow.pytorch.load_model(uri)
            assert torch.allclose(module(x), expected, atol=1e-5)
        predicted = mlflow.pyfunc.load_model(uri).predict(x.numpy())
        assert np.allclose(predicted, expected.numpy(), atol=1e-5)


@pytest.mark.slow
def test_apply_logs_an_onnx_model_whose_accuracy_matches_and_latency_is_measured(finished):
    from autoprune import specs
    from autoprune.commands.apply import onnx_test_score, study_settings
    from autoprune.config import MeasureConfig
    from autoprune.export import load_pruned
    from autoprune.hardware.latency import settled_latency
    from autoprune.hardware.measure import MeasuredLatency

    result = cli("apply", "rule=knee", "steps=34", f"cache_dir={finished / 'cache'}",
                 cwd=str(finished))
    assert result.returncode == 0, result.stderr[-3000:]
    client, experiment, study = study_run(finished)
    applied = client.search_runs([experiment.experiment_id], "tags.role = 'apply'")
    assert len(applied) == 1
    run = applied[0]
    assert run.data.tags["mlflow.parentRunId"] == study.info.run_id
    m = run.data.metrics
    assert m["onnx_test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1 / 360)
    (finished / "dl").mkdir(exist_ok=True)
    folder = Path(client.download_artifacts(run.info.run_id, "model", str(finished / "dl")))
    assert {"model.onnx", "model.torchscript.pt", "pruned.pt", "policy.yaml"} <= {
        p.name for p in folder.iterdir()}
    settings = study_settings(client, study, str(finished / "cache"))
    workload = specs.workload(settings)
    assert onnx_test_score(folder / "model.onnx", workload) == m["onnx_test_accuracy"]
    # The logged latency is an ONNX Runtime measurement of that model; the reloaded model
    # measures too. (Comparing the two numbers is a benchmark's job: this shared machine's
    # load is not the test's to control.)
    profile = dataclasses.replace(settings.hardware, backend="onnxruntime", measure=MeasureConfig())
    again = settled_latency(MeasuredLatency(profile, workload.example()),
                            load_pruned(folder / "pruned.pt").model)
    assert again.source == "measured" and again.device.startswith("cpu (onnxruntime ")
    assert math.isfinite(m["onnx_latency_ms"]) and math.isfinite(m["onnx_latency_cv"])
    assert "latency" in result.stdout and f"runs:/{run.info.run_id}/mlflow_model" in result.stdout


@pytest.mark.slow
@pytest.mark.extended
def test_ui_serves_the_store_on_loopback(finished):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "autoprune", "ui", f"port={port}"],
                               cwd=finished, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "MLflow UI for" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            assert answer.status == 200
        # Bound to loopback only: the machine's other addresses do not answer.
        outside = socket.gethostbyname(socket.gethostname())
        if not outside.startswith("127."):
            with socket.socket() as probe:
                probe.settimeout(2)
                assert probe.connect_ex((outside, port)) != 0
        started = descendants(process.pid)  # the MLflow server, its workers and job consumers
        assert started
    finally:
        process.terminate()  # SIGTERM, as `kill` or a service manager would stop it
        process.wait(timeout=30)
    assert process.returncode == 0
    deadline = time.monotonic() + 20
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(started), f"left running: {sorted(title(p) for p in alive(started))}"


@pytest.mark.slow
@pytest.mark.extended
def test_reproduce_proposes_the_same_policies_with_the_same_accuracies(finished):
    client, experiment, study = study_run(finished)
    result = cli("reproduce", study.info.run_id, f"cache_dir={finished / 'cache'}",
                 cwd=str(finished))
    assert result.returncode == 0, result.stderr[-3000:]
    again = client.search_runs([experiment.experiment_id],
                               f"tags.reproduces = '{study.info.run_id}'")
    assert len(again) == 1 and again[0].info.status == "FINISHED"

    def trials(run):
        runs = client.search_runs([experiment.experiment_id],
                                  f"tags.mlflow.parentRunId = '{run.info.run_id}' and "
                                  "tags.role = 'trial'")
        return {int(r.data.tags["trial_number"]): r for r in runs}

    first, second = trials(study), trials(again[0])
    assert sorted(first) == sorted(second)
    for number, original in first.items():
        assert second[number].data.params == original.data.params
        assert second[number].data.metrics["accuracy"] == original.data.metrics["accuracy"]
        # The same policy gives the same architecture, whose latency is measured again
        # (compared across runs in benchmarks/, not here: this shared machine's load is not
        # the test's to control).
        for size in ("params", "macs"):
            assert second[number].data.metrics[size] == original.data.metrics[size]
        assert second[number].data.tags["latency_source"] == "measured"
        assert second[number].data.metrics["latency_ms"] != original.data.metrics["latency_ms"]


def test_reproduce_of_an_unknown_run_is_one_clear_error(tmp_path):
    result = cli("reproduce", "0123456789abcdef", cwd=str(tmp_path))
    assert result.returncode == 2
    assert "no MLflow store there yet" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def _matching(dom: str) -> int:
    """The "N matching runs" count of the MLflow runs page."""
    found = re.findall(r"(\d+)\s+matching runs", re.sub(r"<[^>]+>", " ", dom))
    assert found, "the runs page did not render"
    return int(found[0])


def _browser() -> str | None:
    import shutil

    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.skipif(_browser() is None, reason="no Chromium here (Debian: apt install chromium)")
def test_the_mlflow_ui_shows_the_study_its_front_and_the_plot_in_a_real_browser(finished,
                                                                               tmp_path):
    client, experiment, study = study_run(finished)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "autoprune", "ui", f"port={port}"],
                              cwd=finished, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    base = f"http://127.0.0.1:{port}"

    def render(fragment: str, screenshot: Path | None = None) -> str:
        args = [_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                "--virtual-time-budget=20000", "--window-size=1400,900"]
        if screenshot is not None:
            subprocess.run([*args, f"--screenshot={screenshot}", f"{base}/#{fragment}"],
                           capture_output=True, timeout=120)
        out = subprocess.run([*args, "--dump-dom", f"{base}/#{fragment}"],
                             capture_output=True, text=True, timeout=120)
        return out.stdout

    try:
        deadline = time.monotonic() + 120
        while "MLflow UI for" not in server.stdout.readline() and time.monotonic() < deadline:
            pass
        runs_page = render(f"/experiments/{experiment.experiment_id}/runs",
                           tmp_path / "experiment.png")
        assert study.data.tags["study"] in runs_page  # the study run, its trials nested in it
        everything = client.search_runs([experiment.experiment_id], "")
        assert _matching(runs_page) == len(everything)
        # The pareto filter: the front's trials, shown under their study runs.
        filtered = render(f"/experiments/{experiment.experiment_id}/runs?searchFilter="
                          "tags.pareto%20%3D%20%22true%22")
        front = client.search_runs([experiment.experiment_id], "tags.pareto = 'true'")
        parents = {t.data.tags["mlflow.parentRunId"] for t in front}
        assert front and _matching(filtered) == len(front) + len(parents)
        artifact = render(f"/experiments/{experiment.experiment_id}/runs/"
                          f"{study.info.run_id}/artifacts/pareto/pareto_front.png",
                          tmp_path / "artifact.png")
        assert re.search(r'<img alt="pareto/pareto_front.png" src="blob:', artifact)
        assert (tmp_path / "experiment.png").stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)
