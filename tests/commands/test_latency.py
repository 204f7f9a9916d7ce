"""`python -m autoprune latency`: measured with its spread here, predicted where modelled."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tests.test_cli import cli

QUICK = ["cache_dir=.", "hardware.measure.warmup=3", "hardware.measure.repeats=5",
         "hardware.measure.number=5", "model.width=8", "model.blocks_per_stage=1"]
MEASURED = re.compile(r"measured +([0-9.]+) ms \+/- ([0-9.]+)% \(robust CV of 5 blocks of 5 runs")


def test_cpu_latency_is_measured_with_its_spread(tmp_path):
    result = cli("latency", "hardware=cpu", *QUICK, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "resnet: " in result.stdout and "parameters" in result.stdout
    match = MEASURED.search(result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) > 0 and float(match.group(2)) >= 0
    assert "latency model uncalibrated (run: python -m autoprune calibrate hardware=cpu)" \
        in result.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_jetson_without_a_jetson_is_predicted_and_says_why(tmp_path):
    result = cli("latency", "hardware=jetson_agx_orin", "model=mlp", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "measured  -  (the profile measures on a Ray node advertising 'jetson'" in result.stdout
    assert re.search(r"predicted +[0-9.]+ ms \(NVIDIA Jetson AGX Orin", result.stdout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU to measure on")
def test_cuda_profile_without_a_gpu_is_one_line_exit_2(tmp_path):
    result = cli("latency", "hardware=cuda", cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == ("autoprune: error: hardware=cuda cannot be measured here: "
                                     "cuda is not available on this machine; hardware.mode="
                                     "predict uses its latency model")
    assert result.stdout == ""


def test_unknown_profile_lists_every_profile(tmp_path):
    result = cli("latency", "hardware=orin", cwd=str(tmp_path))
    assert result.returncode == 2
    assert ("unknown hardware 'orin'; choose one of: cpu, cuda, jetson, jetson_agx_orin, "
            "jetson_nano, jetson_orin_nano_super, jetson_orin_nx, jetson_xavier_nx"
            ) in result.stderr


def test_json_is_one_object_with_the_pruned_models_measured_spread(tmp_path):
    (tmp_path / "policy.yaml").write_text("groups:\n  stem.0: {strategy: channel, ratio: 0.5}\n")
    result = cli("latency", "hardware=cpu", *QUICK, "policy=policy.yaml", "format=json",
                 cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # the whole of stdout
    assert out["policy"] == "policy.yaml" and out["policy_summary"] == "channel 1/1 @0.50"
    measured = out["measured"]
    assert measured["source"] == "measured" and measured["median_ms"] > 0
    assert measured["p90_ms"] >= measured["median_ms"] and 0 <= measured["cv"] < 1
    assert (measured["repeats"], measured["number"], measured["threads"]) == (5, 5, 1)
    assert out["predicted"]["source"] == "predicted"


@pytest.mark.parametrize(("args", "expected"), [
    (["format=xml"], "format=xml is not a format; choose one of: text, json"),
    (["policy=missing.yaml"], "policy=missing.yaml: no such file"),
])
def test_bad_format_or_policy_is_refused_up_front(tmp_path, refused, args, expected):
    code, stderr = refused("latency", *args, cwd=tmp_path)
    assert code == 2
    assert stderr.strip() == f"autoprune: error: {expected}" or (
        stderr.strip().startswith(f"autoprune: error: {expected}")
        and len(stderr.strip().splitlines()) == 1)
    assert list(tmp_path.iterdir()) == []  # nothing written
