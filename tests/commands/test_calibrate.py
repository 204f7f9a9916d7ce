"""`python -m autoprune calibrate`: measured here, fitted, stored, and used from then on."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tests.test_cli import cli

QUICK = ["hardware.measure.warmup=2", "hardware.measure.repeats=3", "hardware.measure.number=3"]


@pytest.mark.slow
@pytest.mark.extended
def test_calibration_is_stored_and_then_used(tmp_path):
    result = cli("calibrate", "hardware=cpu", f"cache_dir={tmp_path}", *QUICK, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "[144/144]" in result.stdout
    said = re.search(r"MAPE ([0-9.]+)% -> ([0-9.]+)%, Kendall tau ([0-9.-]+) -> ([0-9.-]+)",
                     result.stdout)
    assert said, result.stdout[-2000:]
    stored = json.loads((tmp_path / "calibration" / "cpu.json").read_text())
    assert stored["samples"] == 72 and stored["device"] == "cpu"
    # What it printed is what it stored: the fit's errors before and after, on its samples.
    before, after = stored["fit_before"], stored["fit_after"]
    assert [float(v) for v in said.groups()] == pytest.approx(
        [100 * before["mape"], 100 * after["mape"], before["kendall_tau"],
         after["kendall_tau"]], abs=0.051)
    # The kernel-level model: every distinct kernel of the 72 models timed into its table.
    kernels = stored["kernel_model"]
    said = re.search(r"kernel-level model: (\d+) distinct kernels; on the calibration set MAPE "
                     r"([0-9.]+)%", result.stdout)
    assert said and int(said.group(1)) == kernels["kernels"] > 100
    assert float(said.group(2)) == pytest.approx(100 * kernels["fit"]["mape"], abs=0.051)
    assert (tmp_path / "calibration" / kernels["table"]).is_file()
    latency = cli("latency", "hardware=cpu", f"cache_dir={tmp_path}", *QUICK, cwd=str(tmp_path))
    assert "latency model calibrated on cpu at " in latency.stdout
    assert "(kernel-level)" in latency.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU to measure on")
def test_calibrating_a_device_that_is_not_here_is_one_line_exit_2(tmp_path):
    result = cli("calibrate", "hardware=jetson", cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("autoprune: error: calibrate measures on this machine, and "
                                    "hardware=jetson cannot be measured here: the profile "
                                    "measures on a Ray node advertising 'jetson'")
    assert len(result.stderr.strip().splitlines()) == 1
