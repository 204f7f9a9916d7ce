"""The device's state as the bench reports it: read from what a Jetson or a GPU machine has
(stand-in `nvpmodel`, `nvidia-smi` and `trtexec` scripts, a devfreq folder), nothing guessed
where nothing is found."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autoprune.hardware import device_state


def _command(folder: Path, name: str, output: str) -> None:
    script = folder / name
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{output}\nEND\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def jetson_tools(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _command(bin_dir, "nvpmodel", "NV Power Mode: 15W\n0")
    _command(bin_dir, "trtexec", "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def _devfreq(root: Path, name: str, low: int, high: int, now: int) -> None:
    folder = root / "class" / "devfreq" / name
    folder.mkdir(parents=True)
    for field, value in (("min_freq", low), ("max_freq", high), ("cur_freq", now)):
        (folder / field).write_text(f"{value}\n")


def test_a_jetsons_power_mode_clocks_and_tensorrt_are_reported(jetson_tools):
    assert device_state.power_mode() == {"power_mode": "15W", "power_mode_id": "0"}
    assert device_state.tensorrt() == {"tensorrt": "10.3.0"}
    root = jetson_tools / "sys"
    _devfreq(root, "17000000.ga10b", 306_000_000, 624_750_000, 306_000_000)
    _devfreq(root, "15340000.vic", 1, 1, 1)  # not the GPU
    assert device_state.jetson_gpu_clocks(str(root)) == {
        "gpu_clock_mhz": "306", "gpu_max_clock_mhz": "624", "jetson_clocks": "off"}


def test_jetson_clocks_on_means_the_gpu_is_pinned_at_its_maximum(tmp_path):
    _devfreq(tmp_path, "17000000.gpu", 624_750_000, 624_750_000, 624_750_000)
    assert device_state.jetson_gpu_clocks(str(tmp_path))["jetson_clocks"] == "on"


def test_a_discrete_gpus_clocks_and_driver_come_from_nvidia_smi(tmp_path, monkeypatch):
    _command(tmp_path, "nvidia-smi", "NVIDIA H200, 1980, 1980, 570.86.15")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert device_state.nvidia_smi() == {"gpu": "NVIDIA H200", "gpu_clock_mhz": "1980",
                                         "gpu_max_clock_mhz": "1980", "driver": "570.86.15"}


def test_what_a_machine_lacks_is_left_out_and_the_rest_described(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvpmodel, nvidia-smi or trtexec
    assert device_state.power_mode() == {} and device_state.nvidia_smi() == {}
    assert device_state.jetson_gpu_clocks(str(tmp_path)) == {}
    state = device_state.device_state()
    assert {"power_mode", "gpu", "jetson_clocks"}.isdisjoint(state)
    assert state["cores"] == str(os.cpu_count())
    assert device_state.describe({"board": "Jetson Orin Nano", "power_mode": "15W",
                                  "jetson_clocks": "on", "tensorrt": "10.3.0"}) == \
        "Jetson Orin Nano, power mode 15W, jetson_clocks on, TensorRT 10.3.0"
