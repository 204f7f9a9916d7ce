"""TensorRT timing through `trtexec`: the call, its timings, and its absence.

TensorRT does not exist on this machine; a stand-in `trtexec` (a script that checks its
arguments and writes timings the way `--exportTimes` does) exercises everything around it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.hardware import trtexec
from autoprune.hardware.device_bench import time_job
from autoprune.hardware.exported import bench_settings, export_job
from autoprune.hardware.measure import measurable_here

STAND_IN = """#!{python}
import json, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
flags = [a for a in sys.argv[1:] if "=" not in a]
open({log!r}, "w").write(json.dumps(sys.argv[1:]))
print("&&&& RUNNING TensorRT.trtexec [TensorRT v8602] # trtexec")
assert args["--shapes"] == "input:1x1x16x16" and "--noDataTransfers" in flags
n = int(args["--iterations"])
times = [{{"computeMs": 1.0 + (i % 20 == 0), "latencyMs": 9.0}} for i in range(n)]
open(args["--exportTimes"], "w").write(json.dumps(times))
"""


@pytest.fixture
def jetson():
    profile = settings_from_dict(compose("search", ["hardware=jetson",
                                                    "hardware.backend=tensorrt"])).hardware
    return dataclasses.replace(profile, mode="measure")

X = torch.zeros(1, 1, 16, 16)  # one example's input


def test_block_times_average_consecutive_inferences():
    records = [{"computeMs": v} for v in (1, 3, 2, 2, 5, 5, 9)]
    assert trtexec.block_times(records, 2) == [2.0, 2.0, 5.0]  # an incomplete block is dropped
    assert trtexec.block_times([{"latencyMs": 4.0}], 1) == [4.0]


def test_command_follows_nvidias_practice_in_the_profiles_precision(jetson):
    settings = bench_settings(jetson)
    shapes = {"input": (1, 1, 16, 16)}
    cmd = trtexec.trtexec_command("trtexec", Path("m.onnx"), Path("t.json"), shapes, settings)
    m = jetson.measure
    # CUDA graphs, GPU compute time only, warm-up by duration (ms).
    assert {"--fp16", "--useCudaGraph", "--noDataTransfers", "--useSpinWait"} <= set(cmd)
    assert f"--warmUp={int(m.warmup_s * 1000)}" in cmd and "--duration=0" in cmd
    assert f"--iterations={m.repeats * m.number}" in cmd
    assert "--shapes=input:1x1x16x16" in cmd and "--exportTimes=t.json" in cmd
    int8 = bench_settings(dataclasses.replace(jetson, precision="int8"))
    assert "--int8" in trtexec.trtexec_command("t", Path("m"), Path("t"), shapes, int8)
    two = {"input_ids": (4, 32), "attention_mask": (4, 32)}
    assert "--shapes=input_ids:4x32,attention_mask:4x32" in trtexec.trtexec_command(
        "t", Path("m"), Path("t"), two, settings)


def test_tensorrt_versions_are_read_from_the_banner():
    assert trtexec.tensorrt_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8602] # x") \
        == "8.6.2"
    assert trtexec.tensorrt_version("[TensorRT v100300]") == "10.3.0"
    assert trtexec.tensorrt_version("no banner") == ""


def test_without_trtexec_the_backend_says_what_is_missing(jetson, monkeypatch):
    monkeypatch.setattr(trtexec, "find_trtexec", lambda: None)
    job = export_job(nn.Sequential(nn.Conv2d(1, 4, 3)), X, jetson)
    with pytest.raises(RuntimeError, match="needs TensorRT's trtexec on PATH"):
        time_job(job, bench_settings(jetson))
    ok, why = measurable_here(jetson)
    assert not ok and ("trtexec" in why or "not available" in why)


def test_timings_come_from_trtexec_exported_times(jetson, tmp_path, monkeypatch):
    log = tmp_path / "args.json"
    script = tmp_path / "trtexec"
    script.write_text(STAND_IN.format(python=sys.executable, log=str(log)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert trtexec.find_trtexec() == str(script)
    # What the device bench gets: the ONNX file and the inputs, no module.
    job = export_job(nn.Sequential(nn.Conv2d(1, 4, 3)), X, jetson)
    assert job["format"] == "onnx" and isinstance(job["model"], bytes)
    result = time_job(job, bench_settings(jetson))
    # One slow inference (2 ms, the rest 1 ms) in every 20; a block of `number` (50) inferences
    # holds two or three of them: the median block is 1.04 or 1.06 ms.
    assert jetson.measure.number == 50
    assert round(result["median_ms"], 6) in (1.04, 1.06) and result["cv"] < 0.05
    assert "(TensorRT 8.6.2 via trtexec, fp16)" in result["device"]
    assert any(a.startswith("--onnx=") for a in json.loads(log.read_text()))
