"""The TensorRT backend's plumbing: the trtexec call, its timings, and its absence.

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
from autoprune.hardware import tensorrt
from autoprune.hardware.measure import measurable_here

STAND_IN = """#!{python}
import json, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
flags = [a for a in sys.argv[1:] if "=" not in a]
open({log!r}, "w").write(json.dumps(sys.argv[1:]))
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
    assert tensorrt.block_times(records, 2) == [2.0, 2.0, 5.0]  # an incomplete block is dropped
    assert tensorrt.block_times([{"latencyMs": 4.0}], 1) == [4.0]


def test_command_builds_in_the_profiles_precision_and_times_compute_only(jetson):
    cmd = tensorrt.trtexec_command("trtexec", Path("m.onnx"), Path("t.json"), (1, 16, 16),
                                   jetson)
    m = jetson.measure
    assert "--fp16" in cmd and "--noDataTransfers" in cmd and "--useSpinWait" in cmd
    assert f"--iterations={m.repeats * m.number}" in cmd
    assert "--shapes=input:1x1x16x16" in cmd and "--exportTimes=t.json" in cmd
    int8 = dataclasses.replace(jetson, precision="int8")
    assert "--int8" in tensorrt.trtexec_command("t", Path("m"), Path("t"), (1, 16, 16), int8)


def test_without_trtexec_the_backend_says_what_is_missing(jetson, monkeypatch):
    monkeypatch.setattr(tensorrt, "find_trtexec", lambda: None)
    with pytest.raises(RuntimeError, match="needs TensorRT's trtexec on PATH"):
        tensorrt.trtexec_blocks(nn.Sequential(nn.Conv2d(1, 4, 3)), X, jetson)
    ok, why = measurable_here(jetson)
    assert not ok and ("trtexec" in why or "not available" in why)


def test_timings_come_from_trtexec_exported_times(jetson, tmp_path, monkeypatch):
    log = tmp_path / "args.json"
    script = tmp_path / "trtexec"
    script.write_text(STAND_IN.format(python=sys.executable, log=str(log)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert tensorrt.find_trtexec() == str(script)
    blocks, device = tensorrt.trtexec_blocks(nn.Sequential(nn.Conv2d(1, 4, 3)), X, jetson)
    assert len(blocks) == jetson.measure.repeats
    # One slow inference (2 ms, the rest 1 ms) in every 20; a block of `number` (50) inferences
    # holds two or three of them.
    assert jetson.measure.number == 50
    assert sorted(set(round(b, 6) for b in blocks)) == [1.04, 1.06]
    assert "TensorRT via trtexec, fp16" in device
    assert any(a.startswith("--onnx=") for a in json.loads(log.read_text()))
