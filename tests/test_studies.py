"""Every recipe in studies/ runs through `search study=<name>` (smoke budget) and is recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from autoprune.cli import compose, expand_study
from autoprune.config import settings_from_dict
from autoprune.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted(p.stem for p in (ROOT / "studies").glob("*.yaml"))


def test_there_are_at_least_three_recipes_each_saying_what_it_answers():
    assert len(STUDIES) >= 3
    for name in STUDIES:
        text = (ROOT / "studies" / f"{name}.yaml").read_text()
        comments = [line for line in text.splitlines() if line.startswith("#")]
        assert any(line.startswith("# Question:") for line in comments), name
        assert any(line.startswith("# Expect:") for line in comments), name
        body = yaml.safe_load(text)
        assert "seed" in body and "n_trials" in body["search"], name


@pytest.mark.parametrize("name", STUDIES)
def test_a_study_pins_its_choices_and_the_command_line_still_wins(name):
    settings = settings_from_dict(compose("search", expand_study([f"study={name}"])))
    body = yaml.safe_load((ROOT / "studies" / f"{name}.yaml").read_text())
    assert settings.raw["study"] == name
    assert settings.search.n_trials == body["search"]["n_trials"]
    override = settings_from_dict(compose("search", expand_study(
        [f"study={name}", "search.n_trials=5", "hardware=cpu"])))
    assert override.search.n_trials == 5 and override.hardware.name == "cpu"
    smoke = settings_from_dict(compose("search", expand_study([f"study={name}", "smoke=true"])))
    assert smoke.search.n_trials == 3 and smoke.finetune.steps == 17


def test_an_unknown_study_is_one_clear_error():
    with pytest.raises(UserError, match="unknown study 'nosuch'; choose one of: "):
        expand_study(["study=nosuch"])


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.parametrize("name", STUDIES)
def test_every_study_runs_in_smoke_mode_and_is_recorded(tmp_path, stores, name):
    result = subprocess.run(
        [sys.executable, "-m", "autoprune", "search", f"study={name}", "smoke=true",
         f"cache_dir={tmp_path / 'cache'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("autoprune")
    study = client.search_runs([experiment.experiment_id], "tags.role = 'study'")[0]
    assert study.info.status == "FINISHED"
    assert study.data.params["study"] == name and study.data.params["smoke"] == "True"
    assert study.data.tags["git_commit"] and study.data.tags["versions"]
    assert "torch=" in study.data.tags["versions"] and "optuna=" in study.data.tags["versions"]


def test_the_wheel_carries_the_recipes_where_the_installed_package_looks(tmp_path):
    """The package laid out as pyproject's wheel target lays it out, imported from there and
    run outside any checkout: `study=<name>` finds the shipped recipes."""
    import os
    import shutil

    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]
    site = tmp_path / "site"
    for package in wheel["packages"]:
        shutil.copytree(ROOT / package, site / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for source, target in wheel["force-include"].items():
        shutil.copytree(ROOT / source, site / target)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import autoprune.cli as c; print(c.__file__); print(c.study_roots()); "
            "print(c.study_names())")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(site)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    module, roots, names = out.stdout.strip().splitlines()
    assert module.startswith(str(site))
    assert roots == repr([site / "autoprune"]) and names == repr(STUDIES)
