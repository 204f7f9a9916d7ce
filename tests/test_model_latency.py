"""One model's latency as data: pruned by a policy file, measured with its spread, predicted
with the calibration's error."""

from __future__ import annotations

import dataclasses

import pytest

from autoprune.cli import compose
from autoprune.config import settings_from_dict
from autoprune.errors import UserError
from autoprune.hardware import calibrate as cal
from autoprune.model_latency import model_latency, read_policy

SMALL = ["model.width=8", "model.blocks_per_stage=1"]
POLICY = """groups:
  layer1.0: {strategy: layer, ratio: 1.0}
  stem.0: {strategy: channel, ratio: 0.5}
schedule: oneshot
quantize: none
"""


def _settings(tmp_path, *overrides):
    return settings_from_dict(compose("latency", [f"cache_dir={tmp_path}", *SMALL,
                                                  *overrides]))


def test_a_policy_prunes_the_model_and_its_prediction_drops(tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    settings = _settings(tmp_path, "hardware=jetson")  # predicted here: no Jetson
    plain = model_latency(settings)
    pruned = model_latency(settings, str(tmp_path / "policy.yaml"))
    assert pruned["params"] < plain["params"] and pruned["macs"] < plain["macs"]
    assert pruned["policy_summary"] == "channel 1/2 @0.50, layer 1/2 @1.00"
    assert plain["policy"] is None and plain["policy_summary"] == "unpruned"
    for out in (plain, pruned):
        assert out["measured"] is None and "jetson" in out["not_measured"]
        assert out["predicted"]["source"] == "predicted"
        assert out["predicted"]["relative_error"] is None  # uncalibrated: no error to give
    assert pruned["predicted"]["median_ms"] < plain["predicted"]["median_ms"]


def test_a_calibrated_prediction_carries_the_calibration_error(tmp_path):
    settings = _settings(tmp_path, "hardware=jetson")
    profile = settings.hardware
    fitted = dataclasses.replace(profile.roofline, kernel_overhead_us=50.0)
    cal.save(cal.calibration_path(str(tmp_path), profile), profile, fitted, "jetson",
             {}, {"mape": 0.04, "kendall_tau": 0.93}, 20)
    out = model_latency(settings)
    assert out["predicted"]["relative_error"] == 0.04
    assert out["predicted"]["kendall_tau"] == 0.93
    assert out["predicted"]["calibration_samples"] == 20
    assert out["predicted"]["calibration"].startswith("latency model calibrated on jetson")
    # The fitted factors are the ones predicting: 50 us a kernel outweighs the uncalibrated.
    uncalibrated = model_latency(_settings(tmp_path / "other", "hardware=jetson"))
    assert out["predicted"]["median_ms"] > uncalibrated["predicted"]["median_ms"]


def test_an_int8_policy_is_timed_as_int8(tmp_path):
    (tmp_path / "policy.yaml").write_text(POLICY.replace("quantize: none", "quantize: int8"))
    settings = _settings(tmp_path, "hardware=jetson")
    (tmp_path / "float.yaml").write_text(POLICY)
    out = model_latency(settings, str(tmp_path / "policy.yaml"))
    fp = model_latency(settings, str(tmp_path / "float.yaml"))
    assert out["precision"] == "int8" and fp["precision"] == "fp16"
    assert out["params"] == fp["params"]  # the same architecture ...
    assert out["predicted"]["median_ms"] < fp["predicted"]["median_ms"]  # ... at int8's peak


@pytest.mark.parametrize(("text", "expected"), [
    (None, "no such file"),
    ("groups: [1", "not plain YAML"),
    ("groups:\n  stem.0: {ratio: 0.5}\n", "needs 'strategy' and 'ratio'"),
])
def test_bad_policy_files_are_refused(tmp_path, text, expected):
    path = tmp_path / "policy.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match=expected):
        read_policy(str(path))
