"""`autoprune.run_search(...)`: the study the command line runs, from Python."""

from __future__ import annotations

import pytest

import autoprune
from autoprune.cli import compose, expand_study
from autoprune.config import settings_from_dict
from autoprune.errors import UserError


def test_search_composes_what_the_command_line_composes_and_returns_the_run(monkeypatch):
    import autoprune.study.run as study_run

    seen = []

    def fake_run_study(settings, output_dir):  # noqa: ANN001, ANN202
        seen.append((settings, output_dir))
        return "run-id"

    monkeypatch.setattr(study_run, "run_study", fake_run_study)
    overrides = ["study=digits_resnet_jetson", "search.n_trials=5", "hardware=cpu"]
    assert autoprune.run_search(overrides, output_dir="out") == "run-id"
    (settings, output_dir), = seen
    assert output_dir == "out"
    assert settings == settings_from_dict(compose("search", expand_study(overrides)))
    assert settings.search.n_trials == 5 and settings.hardware.name == "cpu"
    assert autoprune.run_search(settings) == "run-id" and seen[-1][0] is settings


def test_a_bad_config_is_the_command_lines_user_error():
    with pytest.raises(UserError, match="unknown key 'search.n_trail'; valid keys under search"):
        autoprune.run_search(["search.n_trail=3"])
